#!/usr/bin/env python3
"""Regex figures: the worst cost of a hostile line per rule, and what redaction costs a line.

usage: python3 bench/bench_regex.py [worst] [redact] [packs] [--against DIR]

  worst   every rule runwatch ships (pack rules, redaction rules), fed the hostile
          lines of tests/support/adversarial.py at the 64 KiB line limit: prints each
          rule's worst µs per KiB, and the same for a plain 64 KiB line as the
          reference (ratio = worst / reference).
  redact  ns per line of Redactor.block on bench_loki's mixed corpus (1 MiB
          blocks), the shipped rules on RE2 against the same rules on Python re,
          interleaved, best of 7. With --against DIR (a source tree with
          exporter/runwatch, e.g. an older checkout), that tree's redactor too,
          loaded side by side in this process.
  packs   ns per line of Matcher.match_block (packs waa, trials, tqdm, python,
          docker) on the same corpus, rules on RE2 against the same rules on
          Python re, interleaved, best of 7: what RE2 costs the common path.

Prints figures, asserts nothing. Run with the package importable
(the project venv: .venv/bin/python bench/bench_regex.py).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADVERSARIAL = os.path.join(ROOT, "tests", "support", "adversarial.py")

_spec = importlib.util.spec_from_file_location("adversarial", ADVERSARIAL)   # the tests' hostile lines
adversarial = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adversarial)


def bench_worst() -> None:
    rows = []
    for name, rx, apply in adversarial.shipped_rules():
        kib = adversarial.LINE_LIMIT / 1024
        plain = max(adversarial.timed(apply, adversarial.as_input(rx.pattern, line), 3)
                    for _, line in adversarial.plain_lines(rx.pattern))
        worst, what = 0.0, ""
        for w, line in adversarial.hostile_lines(rx.pattern):
            t = adversarial.timed(apply, adversarial.as_input(rx.pattern, line), 2)
            if t > worst:
                worst, what = t, w
        rows.append((name, rx.engine, plain / kib * 1e6, worst / kib * 1e6, what))
    ref = max(r[2] for r in rows)
    print(f"{'rule':58s} {'engine':6s} {'plain µs/KiB':>12s} {'worst µs/KiB':>12s}  worst line")
    for name, engine, p, w, what in rows:
        print(f"{name[:58]:58s} {engine:6s} {p:12.2f} {w:12.2f}  {what}")
    worst = max(rows, key=lambda r: r[3])
    print(f"\nworst of all: {worst[3]:.2f} µs/KiB ({worst[0]}, {worst[4]}); "
          f"reference (slowest rule on a plain line): {ref:.2f} µs/KiB; ratio {worst[3] / ref:.1f}")


def _blocks(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        j = data.find(b"\n", min(i + (1 << 20), len(data) - 1))
        out.append(data[i:j + 1])
        i = j + 1
    return out


def _on_python_re(red):
    """The same redactor with every rule on Python's re (the engine it had before RE2), each
    rule run on every triggered line, as before (no RE2 set to pick the rules)."""
    from runwatch.parse.linear_regex import BacktrackingPattern, PatternSet
    red.rules = [(BacktrackingPattern(re.compile(rx.pattern), "bench"), repl) for rx, repl in red.rules]
    red._set, red._linear_index, red._always = PatternSet([]), [], list(range(len(red.rules)))
    return red


def _load_tree(path: str):
    """runwatch.parse.redact from another source tree, as a separate package `runwatch_other`."""
    pkg = os.path.join(os.path.abspath(path), "exporter", "runwatch")
    spec = importlib.util.spec_from_file_location("runwatch_other", os.path.join(pkg, "__init__.py"),
                                                  submodule_search_locations=[pkg])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["runwatch_other"] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module("runwatch_other.parse.redact")


def bench_redact(against: str | None) -> None:
    from bench_loki import corpus
    from runwatch.parse.redact import Redactor
    data = corpus(200_000)
    blocks = _blocks(data)
    lines = data.count(b"\n")
    cands = [("RE2 (shipped)", Redactor()), ("same rules on Python re", _on_python_re(Redactor()))]
    if against:
        cands.append((f"{against}", _load_tree(against).Redactor()))
    best = {n: float("inf") for n, _ in cands}
    for _ in range(7):                   # interleaved: a busy machine slows all alike
        for n, red in cands:
            t = time.perf_counter()
            for b in blocks:
                red.block(b)
            best[n] = min(best[n], time.perf_counter() - t)
    ref = best[cands[0][0]]
    print(f"redaction, {lines:,} lines of bench_loki's corpus in {len(blocks)} blocks of 1 MiB:")
    for n, _ in cands:
        print(f"  {n:40s} {best[n] / lines * 1e9:8.0f} ns/line  ({best[n] / ref:.2f}x RE2)")


def bench_packs() -> None:
    from bench_loki import corpus
    from runwatch.parse.packs import Matcher, load_packs
    data = corpus(200_000)
    blocks = _blocks(data)
    lines = data.count(b"\n")
    names = ["waa", "trials", "tqdm", "python", "docker"]
    on_re2 = Matcher(load_packs(names, []))
    on_re = Matcher(load_packs(names, []))
    on_re.rule_lists = [tuple(_rule_on_re(r) for r in rules) for rules in on_re.rule_lists]
    best = {"RE2 (shipped)": float("inf"), "same rules on Python re": float("inf")}
    counts = {}
    for _ in range(7):
        for n, m in (("RE2 (shipped)", on_re2), ("same rules on Python re", on_re)):
            out: list = []
            t = time.perf_counter()
            for b in blocks:
                m.match_block(b, 0.0, out)
            best[n] = min(best[n], time.perf_counter() - t)
            counts[n] = len(out)
    ref = best["RE2 (shipped)"]
    print(f"packs {', '.join(names)}, {lines:,} lines:")
    for n, t in best.items():
        print(f"  {n:40s} {t / lines * 1e9:8.0f} ns/line  ({t / ref:.2f}x RE2), {counts[n]:,} events")


def _rule_on_re(rule):
    import copy
    from runwatch.parse.linear_regex import BacktrackingPattern
    r = copy.copy(rule)
    r.rx = BacktrackingPattern(re.compile(rule.rx.pattern, rule.rx.flags), "bench")
    r.search = r.rx.search
    return r


def main(argv: list[str]) -> int:
    against = argv[argv.index("--against") + 1] if "--against" in argv else None
    what = [a for a in argv if a in ("worst", "redact", "packs")] or ["worst", "redact", "packs"]
    if "worst" in what:
        bench_worst()
    if "redact" in what:
        bench_redact(against)
    if "packs" in what:
        bench_packs()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
