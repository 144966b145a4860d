"""runwatch's command line run inside the test process: exit code, stdout and stderr, byte for byte.

Many tests only read what a command prints (`scan` output, `check` errors, `--help`);
an interpreter start and the package's imports per call cost far more than the
command itself. `run_cli` calls the same `runwatch.cli.main` a `runwatch` process
runs, with stdout and stderr captured and argparse's exits turned into the exit
code. For commands that read and print only: `run`, `serve` and `demo` start
servers and signal handlers and stay subprocesses (support/procs.py).
tests/test_golden.py holds that a real `runwatch scan` process prints the same bytes.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _cwd(path: str | None):
    if path is None:
        yield
        return
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_cli(*args: str, cwd: str | None = None) -> Result:
    """What `runwatch ARGS` exits with and prints, run in cwd."""
    from runwatch.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    out_text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    err_text = io.TextIOWrapper(err, encoding="utf-8", newline="", write_through=True)
    with _cwd(cwd), contextlib.redirect_stdout(out_text), contextlib.redirect_stderr(err_text):
        try:
            code = main(list(args))
        except SystemExit as e:         # argparse and sys.exit(), as the process would exit
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                err_text.write(e.code + "\n")
        out_text.flush()
        err_text.flush()
    return Result(code or 0, out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8"))


def scan(*args: str, cwd: str | None = None) -> str:
    """What `runwatch scan ARGS` prints, run in cwd; AssertionError (with its stderr) if it fails."""
    r = run_cli("scan", *args, cwd=cwd)
    if r.returncode:
        raise AssertionError(f"runwatch scan {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r.stdout
