#!/usr/bin/env python3
"""Record the real output of real tools: the corpus under tests/real/<case>/.

    python tests/real/record.py                 # every case
    python tests/real/record.py pytest-default  # some cases
    python tests/real/record.py --list

For each case this script
  1. makes (or reuses) a throwaway virtualenv under /tmp for the case's venv group, with the
     exact versions in VENVS[group], installed from PyPI with pip (one group per set of pins
     that fits one environment: the training frameworks pin torch and numpy their own way);
  2. copies the case's driver (tests/real/<case>/run.py or run.sh, or the one of the case named
     by its `driver` option: several cases share one driver) into a fresh scratch directory and
     runs it there with RUNWATCH_CASE=<case> in its environment, the log captured exactly:
     `> log 2>&1`, or under a pseudo-terminal with `script -qfec CMD log` for the cases marked
     `pty`;
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
ROOT = os.environ.get("RUNWATCH_REAL_ROOT", "/tmp/runwatch-real")
SCRATCH = os.path.join(ROOT, "work")

# Exact versions; pip resolves their dependencies (each README names the versions of its case's tools).
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
# The training frameworks. torch comes first: the CPU build of this version is on local disk, and
# pinning it in the same install keeps pip from pulling another (CUDA) build for the others.
TRAIN_PINS = {
    "torch": "2.13.0",
    "pip": "26.3",
    "numpy": "2.4.6",
    "tqdm": "4.70.1",
    "transformers": "5.23.0",
    "accelerate": "1.15.0",
    "keras": "3.15.1",
    "pytorch-lightning": "2.6.6",
    "rich": "15.0.0",
}
# venv group -> (its directory under ROOT, its pins)
VENVS = {
    "base": ("venv", PINS),
    "train": ("venv-train", TRAIN_PINS),
    "agents": ("venv-agents", {"openadapt-evals": "0.98.0"}),
}

# case -> (packages whose versions the README names, run under a pty?[, options]); options:
#   venv:   the venv group (default "base")
#   driver: the case whose run.py / run.sh this case runs (default: its own)
#   cols:   the terminal's width (default 100)
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
    "xgboost-no-early-stop": (("xgboost", "numpy"), False),
    "xgboost-sklearn": (("xgboost", "scikit-learn", "numpy"), False),
    "lightgbm-early-stop": (("lightgbm", "numpy"), False),
    "lightgbm-full-rounds": (("lightgbm", "numpy"), False),
    "optuna-single": (("optuna",), False),
    "optuna-multi": (("optuna",), False),
    "hf-tqdm": (("transformers", "torch"), False, {"venv": "train"}),
    "hf-no-tqdm": (("transformers", "torch"), False, {"venv": "train", "driver": "hf-tqdm"}),
    "hf-crash": (("transformers", "torch"), False, {"venv": "train"}),
    "keras-verbose1": (("keras", "torch"), False, {"venv": "train"}),
    "keras-verbose2": (("keras", "torch"), False, {"venv": "train", "driver": "keras-verbose1"}),
    "keras-pty": (("keras", "torch"), True, {"venv": "train", "driver": "keras-verbose1"}),
    "lightning-tqdm": (("pytorch-lightning", "torch", "tqdm"), False, {"venv": "train"}),
    # 160 columns: at 100, tqdm cuts the bar's postfix (dynamic_ncols) and the last metrics never show
    "lightning-tqdm-pty": (("pytorch-lightning", "torch", "tqdm"), True,
                           {"venv": "train", "driver": "lightning-tqdm", "cols": 160}),
    "lightning-rich": (("pytorch-lightning", "torch", "rich"), False, {"venv": "train", "driver": "lightning-tqdm"}),
    "lightning-rich-pty": (("pytorch-lightning", "torch", "rich"), True, {"venv": "train", "driver": "lightning-tqdm"}),
    "lightning-early-stop": (("pytorch-lightning", "torch", "tqdm"), False,
                             {"venv": "train", "driver": "lightning-tqdm"}),
    # Lightning's own limits: no max_epochs (it sets 1000 and warns), max_steps without max_epochs (-1)
    "lightning-tqdm-no-max-epochs": (("pytorch-lightning", "torch", "tqdm"), False,
                                     {"venv": "train", "driver": "lightning-tqdm"}),
    "lightning-tqdm-no-max-epochs-pty": (("pytorch-lightning", "torch", "tqdm"), True,
                                         {"venv": "train", "driver": "lightning-tqdm", "cols": 160}),
    "lightning-tqdm-max-steps": (("pytorch-lightning", "torch", "tqdm"), False,
                                 {"venv": "train", "driver": "lightning-tqdm"}),
    "lightning-rich-max-steps": (("pytorch-lightning", "torch", "rich"), False,
                                 {"venv": "train", "driver": "lightning-tqdm"}),
    # rich on a file takes its width from COLUMNS (80 without it): the metrics column wraps
    "lightning-rich-80": (("pytorch-lightning", "torch", "rich"), False,
                          {"venv": "train", "driver": "lightning-tqdm", "cols": 80}),
    "lightning-rich-100": (("pytorch-lightning", "torch", "rich"), False,
                           {"venv": "train", "driver": "lightning-tqdm", "cols": 100}),
    "lightning-rich-120": (("pytorch-lightning", "torch", "rich"), False,
                           {"venv": "train", "driver": "lightning-tqdm", "cols": 120}),
    "openadapt-cli-mock": (("openadapt-evals",), False, {"venv": "agents"}),
    "openadapt-api-sequential": (("openadapt-evals",), False, {"venv": "agents"}),
    "openadapt-api-parallel": (("openadapt-evals",), False, {"venv": "agents"}),
}


def options(case: str) -> dict:
    spec = CASES[case]
    return spec[2] if len(spec) > 2 else {}


def ensure_venv(group: str) -> str:
    name, pins = VENVS[group]
    venv = os.path.join(ROOT, name)
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
    names, pty = CASES[case][:2]
    cols = options(case).get("cols", 100)
    dsrc = os.path.join(HERE, options(case).get("driver", case))
    driver = "run.py" if os.path.exists(os.path.join(dsrc, "run.py")) else "run.sh"
    work = os.path.join(SCRATCH, case)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for d in dict.fromkeys((dsrc, src)):           # the driver and its inputs (a test file, ...)
        for f in os.listdir(d):
            if f not in ("log", "truth.json", "README", "golden.prom") and os.path.isfile(os.path.join(d, f)):
                shutil.copy(os.path.join(d, f), work)
    bindir = os.path.dirname(py)
    cmd = f"{bindir}/python run.py" if driver == "run.py" else "bash run.sh"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", VIRTUAL_ENV=os.path.dirname(bindir),
               PYTHONDONTWRITEBYTECODE="1", COLUMNS=str(cols), LINES="30", RUNWATCH_CASE=case)
    for k in [k for k in env if k.startswith(("PIP_", "UV_")) or k == "PYTHONPATH"]:
        del env[k]                                 # the tools' defaults, not this machine's settings
    env.pop("TERM", None) if not pty else env.setdefault("TERM", "xterm-256color")
    if pty:
        shown = f"script -qfec '{cmd}' log"
        rc = subprocess.run(["script", "-qfec", f"stty cols {cols} rows 30; {cmd}", "log"], cwd=work,
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
    pyver = subprocess.run([py, "-c", "import platform; print(platform.python_version())"], capture_output=True,
                           text=True).stdout.strip()
    how = (f"under a pseudo-terminal, {cols} columns (script banner lines removed)" if pty
           else "stdout and stderr to one file, no terminal")
    pkgs = ", ".join(f"{n} {v[n]}" for n in names if n in v)
    with open(os.path.join(src, "README"), "w") as f:
        shared = f" (the driver of {os.path.basename(dsrc)})" if dsrc != src else ""
        f.write(f"{case}: recorded by tests/real/record.py\n"
                f"python {pyver}"
                f"{', ' + pkgs if pkgs else ''}\n"
                f"command (in a scratch directory holding {driver}{shared}, RUNWATCH_CASE={case}): {shown}\n"
                f"{how}; "
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
        dsrc = os.path.join(HERE, options(case).get("driver", case))
        if not any(os.path.exists(os.path.join(dsrc, f)) for f in ("run.py", "run.sh")):
            print(f"{case}: no driver yet, skipped")
            continue
        group = options(case).get("venv", "base")
        if group not in pythons:
            pythons[group] = ensure_venv(group)
        os.makedirs(os.path.join(HERE, case), exist_ok=True)
        record(case, pythons[group])
    return 0


if __name__ == "__main__":
    sys.exit(main())
