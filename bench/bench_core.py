#!/usr/bin/env python3
"""Core performance figures of runwatch; prints them, asserts nothing.

usage: python3 bench/bench_core.py [latency] [render] [startup] [memory] [--lines N]

  latency  append a line to a file `runwatch serve` follows, poll /metrics
           until it shows; p50/p99 over 300 appends (target p99 <= 50 ms)
  render   GET /metrics with 1,000 live runs (target <= 100 ms) and the RSS
  startup  process start to first successful scrape (target <= 1 s) and
           idle RSS of the core with one run (target <= 60 MB)
  memory   RSS while `runwatch serve` reads a 10M-line file (must not grow)

Run with the package importable (pip install -e . or PYTHONPATH=exporter).
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def value(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


class Serve:
    def __init__(self, workdir: str, runs: list[tuple[str, str, str]]):
        self.port = free_port()
        cfg = os.path.join(workdir, "runwatch.yaml")
        with open(cfg, "w") as f:
            f.write(f"listen: 127.0.0.1:{self.port}\nruns:\n")
            for rid, path, packs in runs:
                f.write(f"  - {{id: {rid}, file: {path}, packs: [{packs}]}}\n")
        self.url = f"http://127.0.0.1:{self.port}"
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen([sys.executable, "-m", "runwatch", "serve", "-c", cfg],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.first_scrape = None
        while time.perf_counter() - self.t0 < 30:
            try:
                get(self.url + "/metrics")
                self.first_scrape = time.perf_counter() - self.t0
                break
            except OSError:
                time.sleep(0.005)

    def metrics(self) -> str:
        return get(self.url + "/metrics")

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench_latency(tmp: str) -> None:
    log = os.path.join(tmp, "latency.log")
    open(log, "w").close()
    s = Serve(tmp, [("lat", log, "waa")])
    key = 'runwatch_steps_total{action="CLICK",run_id="lat"}'
    lat = []
    rng = random.Random(1)
    try:
        with open(log, "a", buffering=1) as f:
            for i in range(1, 301):
                time.sleep(rng.uniform(0.005, 0.05))          # appends at random moments
                f.write(f"2026-11-24 10:00:00 INFO runner: Step {i}: CLICK\n")
                t = time.perf_counter()
                while value(s.metrics(), key) != i:
                    if time.perf_counter() - t > 5:
                        raise SystemExit(f"line {i} never showed up")
                lat.append((time.perf_counter() - t) * 1000)
    finally:
        s.stop()
    print(f"latency  append -> visible on /metrics, 300 appends: p50 {pct(lat, .5):.1f} ms  "
          f"p90 {pct(lat, .9):.1f} ms  p99 {pct(lat, .99):.1f} ms  max {max(lat):.1f} ms  (target p99 <= 50 ms)")


def bench_render(tmp: str, n: int = 1000) -> None:
    runs = []
    for i in range(n):
        path = os.path.join(tmp, f"run{i}.log")
        with open(path, "w") as f:
            f.write(f"Task 1/10: t{i}\nStep 1: CLICK\nStep 2: TYPE\nTask t{i}: SUCCESS\nTask 2/10: u{i}\n"
                    f"ERROR: x\n 45%|####5     | 450/1000 [00:12<00:15, 36.1it/s]\n")
        runs.append((f"run-{i:04d}", path, "waa, python, tqdm"))
    s = Serve(tmp, runs)
    try:
        t0 = time.perf_counter()
        while value(s.metrics(), "runwatch_read_lines_total") != 7 * n:
            if time.perf_counter() - t0 > 60:
                raise SystemExit("runs never all read")
            time.sleep(0.1)
        times, size = [], 0
        for _ in range(30):
            t = time.perf_counter()
            body = s.metrics()
            times.append((time.perf_counter() - t) * 1000)
            size = len(body)
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        print(f"render   /metrics with {n} live runs ({series} series, {size / 1e6:.1f} MB): "
              f"median {statistics.median(times):.0f} ms  p90 {pct(times, .9):.0f} ms  max {max(times):.0f} ms  "
              f"(target <= 100 ms); RSS {rss_mb(s.p.pid):.0f} MB")
    finally:
        s.stop()


def bench_startup(tmp: str) -> None:
    log = os.path.join(tmp, "idle.log")
    with open(log, "w") as f:
        f.write("Task 1/3: a\n")
    starts, rss = [], []
    for _ in range(7):
        s = Serve(tmp, [("idle", log, "waa")])
        starts.append(s.first_scrape * 1000)
        time.sleep(2)
        rss.append(rss_mb(s.p.pid))
        s.stop()
    print(f"startup  process start -> first successful scrape: median {statistics.median(starts):.0f} ms  "
          f"max {max(starts):.0f} ms  (target <= 1000 ms)")
    print(f"idle RSS serve with one run, 2 s after start: median {statistics.median(rss):.1f} MB  (target <= 60 MB)")


def bench_memory(tmp: str, lines: int) -> None:
    log = os.path.join(tmp, "big.log")
    rng = random.Random(3)
    with open(log, "w") as f:
        block = []
        for i in range(lines):
            r = rng.random()
            if r < 0.01:
                block.append(f"Task {i}/{lines}: t{i}\n")
            elif r < 0.03:
                block.append("Step 2: CLICK\n")
            else:
                block.append(f"2026-11-24 10:00:00 INFO trainer: step {i} loss={rng.random():.4f} lr=3e-4\n")
            if len(block) == 100_000:
                f.write("".join(block))
                block = []
        f.write("".join(block))
    size = os.path.getsize(log)
    s = Serve(tmp, [("big", log, "waa, python")])
    samples = []
    try:
        while True:
            t = s.metrics()
            n = value(t, 'runwatch_lines_total{run_id="big"}') or 0
            samples.append((n, rss_mb(s.p.pid)))
            if n >= lines:
                break
            time.sleep(0.25)
    finally:
        s.stop()
    marks = [samples[int(q * (len(samples) - 1))] for q in (0.1, 0.5, 1.0)]
    print(f"memory   serve reading {lines:,} lines ({size / 1e9:.2f} GB): RSS at "
          + ", ".join(f"{n / 1e6:.1f}M lines {r:.0f} MB" for n, r in marks)
          + f"; max {max(r for _, r in samples):.0f} MB")
    os.unlink(log)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="*", default=["latency", "render", "startup", "memory"])
    ap.add_argument("--lines", type=int, default=10_000_000, help="lines for the memory run")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as tmp:
        for w in a.what:
            sub = os.path.join(tmp, w)
            os.makedirs(sub)
            {"latency": bench_latency, "render": bench_render, "startup": bench_startup,
             "memory": lambda d: bench_memory(d, a.lines)}[w](sub)


if __name__ == "__main__":
    main()
