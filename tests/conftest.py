"""Shared fixtures: free ports, a runwatch subprocess, scraping helpers."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")

# tests/real/<case>/ holds inputs of recorded tool runs (pytest-*/test_sample.py fails on purpose):
# data for tests/test_real.py, not tests of this project
collect_ignore_glob = ["real/*"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runwatch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "runwatch", *args]


def sample(text: str, name: str, /, **labels: str):
    """Value of the first sample `name{labels…}` in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (requests.RequestException, OSError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Proc:
    """A runwatch subprocess with its address; always killed at teardown."""

    def __init__(self, args, port, **kw):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.p = subprocess.Popen(runwatch_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=5).text

    def wait_up(self, timeout=10):
        wait_for(lambda: requests.get(self.url + "/healthz", timeout=1).ok, timeout, what=f"{self.url}/healthz")
        return self

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def runwatch_proc():
    procs = []

    def start(*args, port=None, **kw):
        port = port or free_port()
        args = list(args)
        if "--listen" not in args:      # right after the subcommand, before any "-- CMD"
            args[1:1] = ["--listen", f"127.0.0.1:{port}"]
        pr = Proc(args, port, **kw)
        procs.append(pr)
        return pr

    yield start
    for pr in procs:
        pr.stop()


def pytest_sessionstart(session):
    """In CI every test must run: a missing SDK or browser driver is an error, not a skip."""
    if os.environ.get("CI"):
        import importlib.util
        missing = [m for m in ("azure.ai.ml", "azure.mgmt.compute", "wandb", "playwright")
                   if importlib.util.find_spec(m) is None]
        if missing:
            raise pytest.UsageError(f"CI: {', '.join(missing)} not installed; scripts/test installs '.[test]'")
