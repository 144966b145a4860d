#!/usr/bin/env python3
"""What following many files costs `runwatch serve`: inotify against polling, side by side.

usage: python3 bench/bench_idle_files.py [--files 1000] [--seconds 30] [--rounds 2]

For each mode (`file_watch: poll`, the old way, and `file_watch: inotify`, the
default), alternating, it starts `runwatch serve` following N empty files,
waits until they are all open and 12 s more (start-up's checkpoint and
rescan), measures the CPU time the process uses over
--seconds while nothing is written (utime+stime from /proc), then appends 200
lines at random moments to one of the files and measures how long each takes
to show in that run's JSON (GET /api/runs/ID: cheap to poll, unlike /metrics
with N runs). Prints both modes and the ratios; asserts nothing.
Targets: idle <= 1% of a core with 1,000 files; latency p99 no worse than polling.

Run with the package importable (the project venv: .venv/bin/python bench/bench_idle_files.py).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def measure(tmp: str, mode: str, n: int, seconds: float) -> tuple[float, list[float]]:
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs, exist_ok=True)
    for i in range(n):
        open(os.path.join(logs, f"f{i}.log"), "w").close()
    port = free_port()
    cfg = os.path.join(tmp, f"{mode}.yaml")
    with open(cfg, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\nfile_watch: {mode}\nruns:\n")
        for i in range(n):
            f.write(f"  - {{id: r{i}, file: logs/f{i}.log, packs: [waa]}}\n")
    p = subprocess.Popen([sys.executable, "-m", "runwatch", "serve", "-c", cfg, "--data-dir",
                          os.path.join(tmp, f"data-{mode}")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                runs = get_json(url + "/api/runs")["runs"]
                if len(runs) == n and all(r["sources_up"].get("file") for r in runs):
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode}: serve did not open {n} files within 60 s")
            time.sleep(0.2)
        # Settle past the start-up work, which is not idle cost: the first checkpoint (after 5 s)
        # writes every run's state once (~0.2 s of CPU for 1,000 runs) and the first rescan
        # (after 10 s) stats every file once more.
        time.sleep(12)
        a, t0 = cpu_seconds(p.pid), time.monotonic()
        time.sleep(seconds)
        idle = (cpu_seconds(p.pid) - a) / (time.monotonic() - t0)

        lat = []
        rng = random.Random(7)
        target = os.path.join(logs, f"f{n // 2}.log")
        with open(target, "a", buffering=1) as f:
            for i in range(1, 201):
                time.sleep(rng.uniform(0.005, 0.05))
                f.write(f"2026-11-24 10:00:00 INFO runner: Step {i}: CLICK\n")
                t = time.perf_counter()
                while get_json(f"{url}/api/runs/r{n // 2}")["lines"] != i:
                    if time.perf_counter() - t > 10:
                        raise SystemExit(f"{mode}: line {i} never showed up")
                lat.append((time.perf_counter() - t) * 1000)
        return idle, lat
    finally:
        p.terminate()
        p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    results: dict[str, list] = {"poll": [], "inotify": []}
    for r in range(args.rounds):
        for mode in ("poll", "inotify") if r % 2 == 0 else ("inotify", "poll"):
            with tempfile.TemporaryDirectory() as tmp:
                idle, lat = measure(tmp, mode, args.files, args.seconds)
            results[mode].append((idle, lat))
            print(f"round {r + 1} {mode:8s} idle {idle * 100:6.2f}% of a core   latency p50 {pct(lat, .5):6.1f} ms"
                  f"  p99 {pct(lat, .99):6.1f} ms", flush=True)
    summary = {}
    for mode, rs in results.items():
        lat = [x for _, ls in rs for x in ls]
        summary[mode] = (statistics.median(i for i, _ in rs), pct(lat, .5), pct(lat, .99))
        print(f"{mode:8s} {args.files} files: idle {summary[mode][0] * 100:.2f}% of a core (median of {len(rs)}), "
              f"latency p50 {summary[mode][1]:.1f} ms  p99 {summary[mode][2]:.1f} ms")
    (pi, p50, p99), (ii, i50, i99) = summary["poll"], summary["inotify"]
    print(f"ratio inotify/poll: idle CPU {ii / pi if pi else float('nan'):.3f}, latency p50 "
          f"{i50 / p50:.2f}, p99 {i99 / p99:.2f}   (targets: idle <= 1% of a core; p99 ratio <= 1)")


if __name__ == "__main__":
    main()
