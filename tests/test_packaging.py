"""The wheel built from pyproject.toml holds every subpackage and data file, and runs on its own.

It is built from a copy of what the build reads, so the checkout gets no build/ or
*.egg-info, and a build/ left over from an older tree cannot slip stale modules in."""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
import requests

from support.ports import free_port
from support.waits import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "exporter" / "runwatch"
DATA_DIRS = ("packs", "demo", "static", "data")


def source_copy(dest: pathlib.Path) -> pathlib.Path:
    """pyproject.toml, the readme it names and the package source, without caches or build output."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "exporter", dest / "exporter",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build"))
    return dest


@pytest.mark.stack       # pip builds a wheel (in an isolated build env): seconds
def test_wheel_holds_every_subpackage_and_data_file_and_runs_the_demo(tmp_path):
    src = source_copy(tmp_path / "src")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                        "-w", str(tmp_path), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    wheel = next(tmp_path.glob("runwatch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "runwatch = runwatch.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

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
