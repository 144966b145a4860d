"""`runwatch scan` run inside the test process: the exposition it prints, byte for byte.

Dozens of recorded logs are scanned per run of the suite; an interpreter start and
the package's imports per scan cost far more than the scan itself. The same
`runwatch.cli.main` a `runwatch scan` process runs, with stdout captured;
tests/test_golden.py holds that a real `runwatch scan` process prints the same bytes.
"""
from __future__ import annotations

import contextlib
import io
import os


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


def scan(*args: str, cwd: str | None = None) -> str:
    """What `runwatch scan ARGS` prints, run in cwd; AssertionError (with its stderr) if it fails."""
    from runwatch.cli import main

    out, err = io.BytesIO(), io.StringIO()
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    with _cwd(cwd), contextlib.redirect_stdout(text), contextlib.redirect_stderr(err):
        try:
            code = main(["scan", *args])
        except SystemExit as e:         # argparse and sys.exit() paths, as a process would exit
            code = e.code
        text.flush()
    if code:
        raise AssertionError(f"runwatch scan {' '.join(args)} exited {code}: {err.getvalue()}")
    return out.getvalue().decode("utf-8")
