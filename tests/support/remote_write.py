"""Shared by the remote-write tests: a job that waits for a gate, /metrics parsed into series."""
from __future__ import annotations

import re
import textwrap

JOB = textwrap.dedent("""
    import os, sys, time
    out = sys.stdout
    out.write("Task 1/3: notepad_1\\nStep 1: CLICK\\nTask notepad_1: SUCCESS\\n")
    out.write("Task 2/3: paint_2\\nERROR something broke\\n")
    out.flush()
    while not os.path.exists(sys.argv[1]):     # hold until the test has looked
        time.sleep(0.02)
    out.write("Task paint_2: FAIL\\n"); out.flush()
""")

# Values that move with the clock between a scrape and a push: compared by presence only.
MOVING = {"runwatch_run_eta_seconds", "runwatch_scrape_duration_seconds"}

_LINE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple, float]:
    """{(name, sorted label pairs): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        assert m, line
        labels = tuple(sorted((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                              for k, v in _LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def run_series(metrics: dict[tuple, float], run_id: str) -> dict[tuple, float]:
    return {k: v for k, v in metrics.items() if ("run_id", run_id) in k[1]}


def wait_writes_while_down(metrics_url: str, writes: int, timeout: float = 60.0) -> None:
    """Wait until runwatch has made `writes` more writes while its receiver is down: each one
    grows what waits (memory queue samples + spool bytes); nothing leaves while it is down."""
    import time

    import requests

    def waiting() -> float:
        m = parse_metrics(requests.get(metrics_url, timeout=2).text)
        return sum(v for (n, _), v in m.items()
                   if n in ("runwatch_remote_write_queue_samples", "runwatch_remote_write_spool_bytes"))
    seen = {waiting()}
    deadline = time.monotonic() + timeout
    while len(seen) <= writes:
        if time.monotonic() > deadline:
            raise AssertionError(f"runwatch made {len(seen) - 1} of {writes} writes in {timeout}s")
        time.sleep(0.05)
        seen.add(waiting())
