"""Waiting for an event by polling it: never sleep-then-assert.

A timeout here only says when to stop waiting for an event that is not coming; it
is never a measurement. Every wait therefore lasts at least MIN_TIMEOUT before it
fails, whatever number the call gives: on a machine several times slower and busier
than the one a test was written on the event still arrives in time, and a wait that
succeeds costs only the time the event took.
"""
from __future__ import annotations

import subprocess
import time

import requests

MIN_TIMEOUT = 60.0


def wait_for(predicate, timeout: float = MIN_TIMEOUT, interval: float = 0.05, what: str = "condition"):
    """Call predicate until it returns something true and return that; a
    connection error counts as "not yet". AssertionError after
    max(timeout, MIN_TIMEOUT) seconds."""
    timeout = max(timeout, MIN_TIMEOUT)
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
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Until url answers 200; fails at once if proc, the server, has exited."""
    def answers() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        return requests.get(url, timeout=5).status_code == 200

    wait_for(answers, timeout, interval=0.05, what=f"{url} to answer 200")
