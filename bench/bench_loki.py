#!/usr/bin/env python3
"""Loki shipping and redaction figures; prints them, asserts nothing.

usage: python3 bench/bench_loki.py [ship] [scan] [--lines N] [--mtail]

  ship   lines/s shipped end to end: bytes in chunks of 64 KiB (what a
         command's pipe gives) -> Ingest (framing, redaction, packs, run
         state) -> shipper (queue, batches, JSON, gzip) -> HTTP -> the Loki
         double (tests/support/loki_double.py, its own process: it validates every
         entry) -> 204. Timed until Loki acknowledged the last line.
         Target >= 100k lines/s on the 2-core dev machine.
  scan   `runwatch scan` throughput with redaction off (as shipped: scan does
         not redact) and on (every block redacted before the packs see it, in
         each worker), on the 1M-line mixed log of bench/make_mixed_log.py.
         With --mtail, both go through bench/compare_mtail.py for the ratio
         against mtail (target >= 5x; needs mtail: apt-get install mtail).

Internal: `bench_loki.py --as-runwatch ARGS…` is `runwatch ARGS…` with
redaction patched into the scan path (what `scan` times as "on").
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
from make_mixed_log import ensure_log  # noqa: E402 - a sibling script (the script's folder is on sys.path)


def patch_scan_with_redaction() -> None:
    from runwatch.parse.packs import Matcher
    from runwatch.parse.redact import default_redactor

    red = default_redactor()
    orig = Matcher.match_block

    def match_block(self, block, ts, out):
        return orig(self, red.block(block), ts, out)
    Matcher.match_block = match_block


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus(lines: int) -> bytes:
    """Realistic mixed output: log lines with levels, tqdm redraws, task lines, a few secrets."""
    import random
    rng = random.Random(3)
    out = []
    for i in range(lines):
        r = rng.random()
        if r < 0.6:
            out.append(f"2024-05-01 12:{i // 60000 % 60:02d}:{i // 1000 % 60:02d},{i % 1000:03d} INFO train: "
                       f"epoch 3 step {i} loss={rng.random():.4f} lr=0.0003 grad_norm={rng.random():.3f}")
        elif r < 0.8:
            out.append(f"train:  {i % 100:2d}%|#####     | {i % 1000}/1000 [01:02<01:45,  5.98it/s, loss=0.41]")
        elif r < 0.9:
            out.append(f"Task {i % 200 + 1}/200: notepad-{i % 37} step {i % 15} action CLICK(120, 340)")
        elif r < 0.97:
            out.append(f"2024-05-01 12:00:00 WARNING data: slow batch {i} took {rng.random() * 3:.2f}s")
        elif r < 0.995:
            out.append(f"2024-05-01 12:00:00 ERROR worker {i % 8}: KeyError: 'image' in sample {i}")
        else:
            out.append(f"GET https://acct.blob.core.windows.net/c/{i}.pt?sv=2022-11-02&sr=b&sig=Ab{i}Cd%3D 200")
    return ("\n".join(out) + "\n").encode()


def bench_ship(lines: int) -> None:
    from runwatch.export.loki import LokiConfig, Shipper
    from runwatch.parse.packs import Matcher, load_packs
    from runwatch.model.runs import Ingest, Registry, RunSpec

    port = free_port()
    srv = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "support", "loki_double.py"), str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    srv.stdout.readline()
    data = corpus(lines)
    try:
        for label, packs in (("Ingest + packs waa,python,tqdm", ["waa", "python", "tqdm"]),
                             ("Ingest, no packs", [])):
            with tempfile.TemporaryDirectory() as tmp:
                sh = Shipper(LokiConfig(url=f"http://127.0.0.1:{port}", spool_dir=tmp)).start()
                reg = Registry()
                run = reg.add(RunSpec(id="bench", kind="train", source="command"))
                ing = Ingest(reg, run, Matcher(load_packs(packs, [])), on_block=sh.ship)
                t0 = time.perf_counter()
                for i in range(0, len(data), 1 << 16):
                    ing.data(0, data[i:i + (1 << 16)])
                ing.end(0)
                t_in = time.perf_counter() - t0
                while sh.sent + sum(sh.dropped.values()) < lines and time.perf_counter() - t0 < 120:
                    time.sleep(0.005)
                t_all = time.perf_counter() - t0
                sh.close()
                sh.release()
                print(f"ship [{label}]: {lines:,} lines ({len(data) / 1e6:.0f} MB) acknowledged by the Loki "
                      f"double in {t_all:.2f} s = {lines / t_all:,.0f} lines/s end to end "
                      f"(line path alone {lines / t_in:,.0f} lines/s; sent {sh.sent:,}, "
                      f"dropped {sum(sh.dropped.values())}, pushes {sum(sh.requests.values())})")
    finally:
        srv.terminate()
        srv.wait()


def _mixed_log(lines: int) -> str:
    return ensure_log(os.path.join(tempfile.gettempdir(), "runwatch-bench"), lines)[0]


def bench_scan(lines: int, runs: int, use_mtail: bool) -> None:
    off = f"{sys.executable} -m runwatch"
    on = f"{sys.executable} {os.path.abspath(__file__)} --as-runwatch"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "exporter"))
    if use_mtail:
        for label, cmd in (("redaction off", off), ("redaction on ", on)):
            p = subprocess.run([sys.executable, os.path.join(HERE, "compare_mtail.py"), "--lines", str(lines),
                                "--runs", str(runs), "--runwatch", cmd], capture_output=True, text=True, env=env)
            if p.returncode == 2:
                print(f"scan [{label}]: compare_mtail.py could not run: {p.stderr.strip()[-500:]}")
                continue
            rw = re.search(r"runwatch median .*?([\d,]+) lines/s", p.stdout)
            ratio = re.search(r"ratio: ([\d.]+)", p.stdout)
            wrong = [x for x in p.stdout.splitlines() if x.startswith("WRONG")]
            print(f"scan [{label}]: {rw.group(1) if rw else '?'} lines/s, ratio to mtail "
                  f"{ratio.group(1) if ratio else '?'} (target >= 5.0){' ' + '; '.join(wrong) if wrong else ''}")
        return
    log = _mixed_log(lines)
    args = ["scan", "--pack", "waa", "--pack", "docker", "--pack", "python", log]
    times = {"off": [], "on": []}
    for _ in range(runs):                 # alternating, whole processes
        for key, cmd in (("off", off), ("on", on)):
            t0 = time.perf_counter()
            subprocess.run(shlex.split(cmd) + args, check=True, stdout=subprocess.DEVNULL, env=env)
            times[key].append(time.perf_counter() - t0)
    for key in ("off", "on"):
        m = statistics.median(times[key])
        print(f"scan [redaction {key:3s}]: median {m:.3f} s = {lines / m:,.0f} lines/s "
              f"(5x mtail's 512,502 lines/s is 2,562,510)")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--as-runwatch"]:
        patch_scan_with_redaction()
        from runwatch.cli import main as cli_main
        return cli_main(argv[1:])
    lines = 1_000_000
    if "--lines" in argv:
        lines = int(argv[argv.index("--lines") + 1])
    what = [a for a in argv if a in ("ship", "scan")] or ["ship", "scan"]
    if "ship" in what:
        bench_ship(min(lines, 1_000_000))
    if "scan" in what:
        bench_scan(lines, 5, "--mtail" in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
