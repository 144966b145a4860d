"""The wheel built from pyproject.toml holds every subpackage and data file, and runs on its own."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import requests

from support.ports import free_port
from support.waits import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "exporter" / "runwatch"
DATA_DIRS = ("packs", "demo", "static", "data")


def test_wheel_holds_every_subpackage_and_data_file_and_runs_the_demo(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("runwatch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())

    wanted = {str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py")}
    for d in DATA_DIRS:
        wanted |= {str(p.relative_to(PKG.parent)) for p in (PKG / d).rglob("*") if p.is_file()}
    wanted = {w for w in wanted if "__pycache__" not in w}
    assert wanted - names == set(), "missing from the wheel"

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    port = free_port()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-I", "-c",
                             f"import sys; sys.path.insert(0, {str(site)!r}); "
                             "import runwatch, runwatch.cli; "
                             f"assert runwatch.__file__.startswith({str(site)!r}), runwatch.__file__; "
                             f"sys.exit(runwatch.cli.main(['demo', '--listen', '127.0.0.1:{port}', '--speed', '20']))"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def demo_metrics():
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            return text if "runwatch_docker_build_step{" in text else None
        text = wait_for(demo_metrics, 60, what="the installed wheel's demo on /metrics")
        assert "runwatch_run_info{" in text
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text.lstrip().startswith("<!doctype html>")
    finally:
        proc.terminate()
        proc.wait(10)
