#!/usr/bin/env python3
"""What `runwatch scan` spends before it reads a line, phase by phase, in CPU seconds.

usage: python3 bench/startup.py [--runs K] [--packs waa,docker,python] [--against DIR]

Each run is a fresh interpreter (bytecode compiled, as installed: a pycache prefix in
$TMPDIR/runwatch-bench) that imports what `scan` imports and loads the packs, timing with
the process's own CPU clock: the interpreter itself, the command line (runwatch.cli), the
pattern packs' modules (YAML, RE2), the rest of scan's imports (the model, the collector),
and loading the packs. --packs all loads every built-in pack (scan without --pack).
--against DIR times another build (the exporter/ folder of an archive of an earlier commit)
in the same alternation, and prints the ratio of each phase.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PHASES = ("interpreter", "cli", "packs modules", "scan imports", "load packs", "total")
PROBE = r"""
import resource, sys
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0 = cpu()
import runwatch.cli
c1 = cpu()
import runwatch.parse.packs
c2 = cpu()
import runwatch.commands.scan
c3 = cpu()
from runwatch.parse.packs import builtin_names, load_packs
names = sys.argv[1].split(",")
load_packs(builtin_names() if names == ["all"] else names, [])
c4 = cpu()
print(c0, c1 - c0, c2 - c1, c3 - c2, c4 - c3, c4)
"""


def probe(exporter: str, packs: str, env: dict) -> list[float]:
    out = subprocess.run([sys.executable, "-c", PROBE, packs], env=dict(env, PYTHONPATH=exporter),
                         capture_output=True, text=True, check=True).stdout
    return [float(x) for x in out.split()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Start-up of runwatch scan, phase by phase (CPU seconds).")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--packs", default="waa,docker,python", help="comma-separated built-in packs, or 'all'")
    ap.add_argument("--against", metavar="DIR", help="another build's exporter/ folder, timed alongside")
    a = ap.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "runwatch-bench", "pycache")
    builds = [("this checkout", os.path.join(os.path.dirname(HERE), "exporter"))]
    if a.against:
        builds.append((a.against, os.path.abspath(a.against)))
    for _name, path in builds:          # warm-up: bytecode written, files in the page cache
        probe(path, a.packs, env)
    got: dict[str, list[list[float]]] = {name: [] for name, _ in builds}
    load0 = os.getloadavg()[0]
    for _ in range(a.runs):
        for name, path in builds:
            got[name].append(probe(path, a.packs, env))
    load1 = os.getloadavg()[0]
    print(f"runwatch scan start-up, packs {a.packs}: median CPU seconds of {a.runs} runs each, alternating; "
          f"load average {load0:.1f} before, {load1:.1f} after")
    med = {name: [statistics.median(r[i] for r in runs) for i in range(len(PHASES))] for name, runs in got.items()}
    head = f"{'phase':<14}" + "".join(f"{name[-28:]:>30}" for name, _ in builds)
    print(head + ("   other / this" if a.against else ""))
    for i, phase in enumerate(PHASES):
        row = f"{phase:<14}" + "".join(f"{med[name][i]:>30.3f}" for name, _ in builds)
        if a.against:
            row += f"   {med[builds[1][0]][i] / max(med[builds[0][0]][i], 1e-9):.2f}x"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
