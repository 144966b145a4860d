#!/usr/bin/env python3
"""`/metrics` with many live runs: runwatch's renderer against prometheus_client's, same families, one process.

usage: python3 bench/bench_render.py [--runs 1000] [--rounds 20]

N live runs (default 1,000) with bench_core's per-run output (tasks, steps, an
error, a tqdm bar), so each has the families a real run has. One collect()
builds the families; then, alternating, `exposition.render` (what GET /metrics
serves) and `prometheus_client.generate_latest` over the very same families,
in the text format and in OpenMetrics, each timed `--rounds` times. Both
outputs are compared byte for byte first (a faster renderer that writes
something else does not count). Also times collect() itself, the other half of
a scrape. Prints medians of wall and CPU time and, last, `ratio: X` =
runwatch's text render / prometheus_client's (target <= 0.5: at least twice
as fast). Asserts nothing.

Run with the package importable (the project venv: .venv/bin/python bench/bench_render.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om

from runwatch.export.collector import RunwatchCollector
from runwatch.export.exposition import render
from runwatch.model.runs import Ingest, Registry, RunSpec
from runwatch.parse.packs import Matcher, load_packs

RUN_OUTPUT = ("Task 1/10: t{i}\nStep 1: CLICK\nStep 2: TYPE\nTask t{i}: SUCCESS\nTask 2/10: u{i}\n"
              "ERROR: x\n 45%|####5     | 450/1000 [00:12<00:15, 36.1it/s]\n")


def registry_with(n: int) -> Registry:
    reg = Registry()
    matcher = Matcher(load_packs(["waa", "python", "tqdm"], []))
    for i in range(n):
        run = reg.add(RunSpec(id=f"run-{i:04d}", kind="job", source="file"))
        ing = Ingest(reg, run, matcher)
        ing.data(1, RUN_OUTPUT.format(i=i).encode())
        ing.end(1)
    return reg


class Families:
    """A collector that hands prometheus_client the families runwatch built."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def timed(fn) -> tuple[float, float]:
    c, t = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    registry = registry_with(a.runs)
    collector = RunwatchCollector(registry)
    load0 = os.getloadavg()[0]
    families = list(collector.collect())
    ref = Families(families)
    ours_text, theirs_text = render(families, openmetrics=False), generate_latest(ref)
    ours_om, theirs_om = render(families, openmetrics=True), generate_latest_om(ref)
    if ours_text != theirs_text or ours_om != theirs_om:
        print("WRONG: runwatch's render differs from prometheus_client's", file=sys.stderr)
        return 1
    series = sum(1 for line in ours_text.decode().splitlines() if line and not line.startswith("#"))
    cases = {
        "collect": lambda: list(collector.collect()),
        "render text": lambda: render(families, openmetrics=False),
        "generate_latest text": lambda: generate_latest(ref),
        "render OpenMetrics": lambda: render(families, openmetrics=True),
        "generate_latest OpenMetrics": lambda: generate_latest_om(ref),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for r in range(a.rounds):
        order = list(cases) if r % 2 == 0 else list(reversed(cases))
        for k in order:
            times[k].append(timed(cases[k]))
    load1 = os.getloadavg()[0]
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    print(f"{a.runs} live runs: {series} series, {len(ours_text) / 1e6:.2f} MB of text; outputs identical")
    print(f"machine: {os.cpu_count()} CPUs, load average {load0:.1f} before, {load1:.1f} after; "
          f"{a.rounds} rounds, alternating")
    for k, (w, c) in med.items():
        print(f"  {k:28} median {w * 1000:7.1f} ms  (CPU {c * 1000:7.1f} ms)")
    text = med["render text"][0] / med["generate_latest text"][0]
    om = med["render OpenMetrics"][0] / med["generate_latest OpenMetrics"][0]
    text_cpu = med["render text"][1] / med["generate_latest text"][1]
    print(f"OpenMetrics ratio: {om:.2f}; text ratio in CPU time: {text_cpu:.2f}")
    print(f"ratio: {text:.2f}   (runwatch render / prometheus_client generate_latest, text; target <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
