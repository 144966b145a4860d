#!/usr/bin/env python3
"""Record the real output of real tools: the corpus under tests/real/<case>/.

    python tests/real/record.py                 # every case
    python tests/real/record.py pytest-default  # some cases
    python tests/real/record.py --list

For each case this script
  1. makes (or reuses) a throwaway virtualenv under /tmp with the exact versions in PINS,
     installed from PyPI with pip;
  2. copies the case's driver (tests/real/<case>/run.py or run.sh) into a fresh scratch
     directory and runs it there, with the log captured exactly: `> log 2>&1`, or under a
     pseudo-terminal with `script -qfec CMD log` for the cases marked `pty`;
  3. keeps the driver's truth.json: facts the driver took from the tool's own API and result
     objects (tqdm's counters, pytest's reports, `pip list`, cv_results_, ...), never from the log;
  4. writes tests/real/<case>/README with the tool versions and the command.

The suite (tests/test_real.py) reads only the recorded files: it needs none of these tools.
Re-run a case when its tool changes, then review the diff of log, truth.json and golden.prom.
No model hub is reachable from where this was recorded: data are synthetic, models tiny.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("RUNWATCH_REAL_VENV", "/tmp/runwatch-real/venv")
SCRATCH = "/tmp/runwatch-real/work"

# Exact versions; pip resolves their dependencies (recorded in each README from `pip freeze`).
PINS = {
    "pip": "26.3",
    "tqdm": "4.70.1",
    "pytest": "9.2.0",
    "numpy": "2.4.6",
    "scikit-learn": "1.9.1",
    "xgboost": "3.2.0",
    "lightgbm": "4.7.0",
    "optuna": "5.0.0",
    "uv": "0.13.9",
}

# case -> (packages whose versions the README names, run under a pty?)
CASES = {
    "python-chained": ((), False),
    "python-crash-after-bar": (("tqdm",), False),
    "tqdm-nested": (("tqdm",), False),
    "tqdm-nested-pty": (("tqdm",), True),
    "tqdm-no-total": (("tqdm",), False),
    "tqdm-unit-scale": (("tqdm",), False),
    "tqdm-stdout": (("tqdm",), False),
    "pytest-default": (("pytest",), False),
    "pytest-verbose": (("pytest",), False),
    "pytest-pty": (("pytest",), True),
    "pip-ok": (("pip",), False),
    "pip-fail": (("pip",), False),
    "uv-ok": (("uv",), False),
    "uv-fail": (("uv",), False),
    "sklearn-grid": (("scikit-learn", "numpy"), False),
    "sklearn-random": (("scikit-learn", "numpy"), False),
    "xgboost-early-stop": (("xgboost", "numpy"), False),
    "lightgbm-early-stop": (("lightgbm", "numpy"), False),
    "optuna-single": (("optuna",), False),
    "optuna-multi": (("optuna",), False),
    "openadapt-cli-mock": (("openadapt-evals",), False),
    "openadapt-api-sequential": (("openadapt-evals",), False),
    "openadapt-api-parallel": (("openadapt-evals",), False),
}

# Cases whose tool gets a virtualenv of its own (its dependencies are many, or pin what PINS
# pins): case-name prefix -> (environment variable naming the venv, its default, exact versions).
VENV_GROUPS = {
    "openadapt-": ("RUNWATCH_REAL_VENV_AGENTS", "/tmp/runwatch-real/venv-agents", {"openadapt-evals": "0.98.0"}),
}


def venv_of(case: str) -> tuple[str, dict[str, str]]:
    """The virtualenv a case runs in and the versions pinned there."""
    for prefix, (var, default, pins) in VENV_GROUPS.items():
        if case.startswith(prefix):
            return os.environ.get(var, default), pins
    return VENV, PINS


def ensure_venv(venv: str = VENV, pins: dict[str, str] = PINS) -> str:
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    want = [f"{k}=={v}" for k, v in pins.items()]
    subprocess.run([py, "-m", "pip", "install", "-q", *want], check=True)
    return py


def versions(py: str) -> dict[str, str]:
    out = subprocess.run([py, "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                         check=True).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(out)}


def strip_script_banners(path: str) -> None:
    """Drop the two lines `script` itself adds ("Script started on ..." first and, after an
    empty line, "Script done on ..." last: it writes them even with -q when stdin is no
    terminal); every byte the tool wrote stays as it was."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"Script started on "):
        data = data[data.index(b"\n") + 1:]
    end = data.rfind(b"\nScript done on ")
    if end >= 0 and data.find(b"\n", end + 1) in (-1, len(data) - 1):
        data = data[:end]
        if data.endswith(b"\n"):          # the empty line script puts before its trailer
            data = data[:-1]
    with open(path, "wb") as f:
        f.write(data)


def record(case: str, py: str) -> None:
    src = os.path.join(HERE, case)
    driver = "run.py" if os.path.exists(os.path.join(src, "run.py")) else "run.sh"
    names, pty = CASES[case]
    work = os.path.join(SCRATCH, case)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for f in os.listdir(src):                      # the driver and its inputs (a test file, ...)
        if f not in ("log", "truth.json", "README", "golden.prom") and os.path.isfile(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), work)
    bindir = os.path.dirname(py)
    cmd = f"{bindir}/python run.py" if driver == "run.py" else "bash run.sh"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", VIRTUAL_ENV=os.path.dirname(bindir),
               PYTHONDONTWRITEBYTECODE="1", COLUMNS="100", LINES="30")
    for k in [k for k in env if k.startswith(("PIP_", "UV_")) or k == "PYTHONPATH"]:
        del env[k]                                 # the tools' defaults, not this machine's settings
    env.pop("TERM", None) if not pty else env.setdefault("TERM", "xterm-256color")
    if pty:
        shown = f"script -qfec '{cmd}' log"
        rc = subprocess.run(["script", "-qfec", f"stty cols 100 rows 30; {cmd}", "log"], cwd=work,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode
    else:
        shown = f"{cmd} > log 2>&1"
        with open(os.path.join(work, "log"), "wb") as log:
            rc = subprocess.run(cmd.split(), cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
    if pty:
        strip_script_banners(os.path.join(work, "log"))
    truth_path = os.path.join(work, "truth.json")
    if not os.path.exists(truth_path):
        raise SystemExit(f"{case}: the driver wrote no truth.json (exit {rc}); see {work}/log")
    with open(truth_path) as f:
        truth = json.load(f)
    truth["exit_code"] = rc
    with open(os.path.join(src, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.write("\n")
    shutil.copy(os.path.join(work, "log"), os.path.join(src, "log"))
    v = versions(py)
    pkgs = ", ".join(f"{n} {v[n]}" for n in names if n in v)
    with open(os.path.join(src, "README"), "w") as f:
        f.write(f"{case}: recorded by tests/real/record.py\n"
                f"python {subprocess.run([py, '-c', 'import platform; print(platform.python_version())'], capture_output=True, text=True).stdout.strip()}"
                f"{', ' + pkgs if pkgs else ''}\n"
                f"command (in a scratch directory holding {driver}): {shown}\n"
                f"{'under a pseudo-terminal, 100 columns (script banner lines removed)' if pty else 'stdout and stderr to one file, no terminal'}; "
                f"exit code {rc}\n")
    print(f"{case}: exit {rc}, {os.path.getsize(os.path.join(src, 'log'))} bytes of log")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="cases to record (default: all)")
    ap.add_argument("--list", action="store_true", help="list the cases")
    args = ap.parse_args()
    if args.list:
        print("\n".join(CASES))
        return 0
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)}; see --list")
    pythons: dict[str, str] = {}
    for case in args.cases or CASES:
        if os.path.isdir(os.path.join(HERE, case)):
            venv, pins = venv_of(case)
            if venv not in pythons:
                pythons[venv] = ensure_venv(venv, pins)
            record(case, pythons[venv])
        else:
            print(f"{case}: no driver yet, skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
