"""runwatch and other programs as subprocesses of a test."""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import requests

from .paths import EXPORTER
from .waits import wait_for


def runwatch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "runwatch", *args]


def child_env(**overrides: str) -> dict[str, str]:
    """os.environ for a child Python that must import this checkout's runwatch
    (exporter/ first on PYTHONPATH), with overrides applied."""
    env = dict(os.environ, **overrides)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (EXPORTER, env.get("PYTHONPATH")) if p)
    return env


class Proc:
    """A runwatch subprocess with its address; always killed at teardown.

    Its output goes to files (`stderr_text()`), never to a pipe nobody reads: a
    chatty process must not block on a full pipe. Unless the test says otherwise
    (env with RUNWATCH_DATA_DIR, or --data-dir), it keeps its state and history
    in a directory of its own, so no test sees another's history or the user's."""

    def __init__(self, args, port, **kw):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="runwatch-test-"))
        env = dict(kw.pop("env", None) or os.environ)
        env.setdefault("RUNWATCH_DATA_DIR", str(self.dir / "data"))
        self._out = open(self.dir / "stdout", "wb")
        self._err = open(self.dir / "stderr", "wb")
        kw.setdefault("stdout", self._out)
        kw.setdefault("stderr", self._err)
        self.p = subprocess.Popen(runwatch_cmd(*args), env=env, **kw)

    def stderr_text(self) -> str:
        self._err.flush()
        return (self.dir / "stderr").read_text(errors="replace")

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=5).text

    def wait_up(self, timeout=10):
        wait_for(lambda: requests.get(self.url + "/healthz", timeout=1).ok, timeout, what=f"{self.url}/healthz")
        return self

    def stop(self):
        self._stop()
        self._out.close()
        self._err.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def start_logged(argv: list[str], log: pathlib.Path, **kw) -> subprocess.Popen:
    """Start argv in its own process group, stdout and stderr to log."""
    fh = open(log, "wb")
    try:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, **kw)
    finally:
        fh.close()


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process start_logged started, and its children (its group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
