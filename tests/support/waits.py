"""Waiting for an event by polling it: never sleep-then-assert."""
from __future__ import annotations

import subprocess
import time

import requests


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Call predicate until it returns something true and return that; a
    connection error counts as "not yet". AssertionError after timeout."""
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


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Until url answers 200; fails at once if proc, the server, has exited."""
    def answers() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        return requests.get(url, timeout=1).status_code == 200

    wait_for(answers, timeout, interval=0.2, what=f"{url} to answer 200")
