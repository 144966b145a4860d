#!/usr/bin/env python3
"""How much of the truth runwatch reads from real tools' output.

For every recorded case under tests/real/ (see tests/real/record.py), run `runwatch scan` on
its log, with every built-in pack (no --pack) and with the packs a user would pick, and check
each fact of its truth file (taken from the tool's own result objects; tests/support/real_facts.py).
Prints, per case and in total, facts right / facts checked. The target is 100%.

    .venv/bin/python bench/real_accuracy.py [--verbose]
    # the same corpus read by another version's packs (e.g. `git archive REV exporter | tar -x -C /tmp/old`)
    .venv/bin/python bench/real_accuracy.py --exporter /tmp/old/exporter
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("real_facts", os.path.join(ROOT, "tests", "support", "real_facts.py"))
corpus = importlib.util.module_from_spec(_spec)     # the facts the tests check, read the same way
_spec.loader.exec_module(corpus)


def scan(case: str, packs: list[str] | None, exporter: str) -> str:
    args = [sys.executable, "-m", "runwatch", "scan", "--run-id", case]
    for p in packs or []:
        args += ["--pack", p]
    env = dict(os.environ)
    env["PYTHONPATH"] = exporter + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run(args + ["log"], capture_output=True, text=True, env=env,
                       cwd=os.path.join(corpus.HERE, case))
    return p.stdout if p.returncode == 0 else ""     # a refused scan reads nothing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verbose", action="store_true", help="print every wrong fact")
    ap.add_argument("--exporter", default=os.path.join(ROOT, "exporter"),
                    help="the runwatch package's parent directory to measure (default: this checkout's)")
    args = ap.parse_args()
    totals = {"all": [0, 0], "user": [0, 0]}
    print(f"{'case':28} {'all packs':>10} {'user packs':>11}")
    for case in corpus.cases():
        row = []
        for mode, packs in (("all", None), ("user", corpus.user_packs(case))):
            text = scan(case, packs, os.path.abspath(args.exporter))
            right = 0
            fs = corpus.facts(case)
            for fact in fs:
                ok, got = corpus.check(text, fact)
                right += ok
                if not ok and args.verbose:
                    print(f"  {case} [{mode}] {fact[0]}: want {fact[1]}{fact[2] or ''} {fact[3]} {fact[4]}, got {got}")
            totals[mode][0] += right
            totals[mode][1] += len(fs)
            row.append(f"{right}/{len(fs)}")
        print(f"{case:28} {row[0]:>10} {row[1]:>11}")
    line = []
    for mode in ("all", "user"):
        r, n = totals[mode]
        line.append(f"{r}/{n} ({100.0 * r / n:.0f}%)" if n else "-")
    print(f"{'total':28} {line[0]:>10} {line[1]:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
