#!/usr/bin/env python3
"""`runwatch scan` against `mtail --one_shot`: the same log, the same rules, one run.

usage: python3 bench/compare_mtail.py [--lines N] [--runs K] [--dense]
                                      [--runwatch CMD] [--also NAME=CMD ...] [--mtail CMD] [--workdir DIR]

Needs mtail on the PATH (Debian: `apt-get install mtail`); the test suite does
not. Both tools read one deterministic log from bench/make_mixed_log.py (1M
lines by default, written once into --workdir and reused) with equivalent
rules: the packs waa, docker and python for runwatch, bench/mixed.mtail for
mtail. Runs alternate, mtail then runwatch, K times each after one warm-up
run of each (page cache, imports), so drift in the machine's speed hits both
alike. Each run is timed as a whole process, start-up included.

Then the figures each tool printed are checked against the truth file the
generator wrote: a fast wrong answer does not count, and an mtail program
that did less work than the packs would make the ratio a lie.

--dense uses a log in which nearly every line is an event (agent steps), so it
times the event path rather than the search for candidate lines.

By default runwatch is this checkout's (`python -m runwatch` with exporter/
first on PYTHONPATH, run by the interpreter running this script, which needs
the package's dependencies); --runwatch "runwatch" times an installed one.
--also NAME=CMD times another runwatch in the same alternation (an archive of
an earlier commit, other packs: `--also "before=env PYTHONPATH=/tmp/old/exporter
python3 -m runwatch"`), with its own figures checked and its own ratios.

Every runwatch runs with its bytecode compiled, as an installed one has it:
PYTHONPYCACHEPREFIX points into --workdir (the warm-up run writes it there, the
checkout stays clean) and a PYTHONDONTWRITEBYTECODE of the shell is dropped, so no
timed run compiles the package again (0.1-0.25 s per process otherwise).

Prints the medians of wall time (and of CPU time, which a busy machine
disturbs less, as a second opinion) and, last, `ratio: X.XX` = runwatch
lines/s over mtail lines/s, from the wall-time medians. Exit status: 0 all
figures right, 1 a tool's figures are wrong, 2 a tool is missing or failed.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
from make_mixed_log import ensure_log  # noqa: E402 - a sibling script, not a package

PACKS = ("waa", "docker", "python")
MTAIL_PROG = os.path.join(HERE, "mixed.mtail")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[tuple, float]:
    """Prometheus text exposition -> {(name, frozenset of label pairs): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            out[(m.group(1), frozenset(_LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def value(found: dict, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    hits = [v for (n, ls), v in found.items() if n == name and want <= ls]
    return hits[0] if len(hits) == 1 else None


def expected(truth: dict) -> list[tuple[str, dict, float | None]]:
    """(metric name without prefix, labels, value) the log must yield, from its truth."""
    want = [("tasks_planned", {}, truth["tasks_planned"]),
            ("tasks_started_total", {}, truth["tasks_started"]),
            ("tasks_completed_total", {}, truth["tasks_completed"]),
            ("tasks_failed_total", {}, truth["tasks_failed"]),
            ("errors_total", {}, truth["errors"]),
            ("docker_build_step", {}, truth["docker_step"]),
            ("docker_build_steps", {}, truth["docker_steps"])]
    want += [("steps_total", {"action": a}, n) for a, n in sorted(truth["steps"].items())]
    return want


def check(name: str, out: str, prefix: str, want: list, extra: list = ()) -> list[str]:
    """What `out` got wrong, one line each."""
    found = samples(out)
    wrong = []
    for metric, labels, n in list(want) + list(extra):
        got = value(found, prefix + metric, **labels)
        if got != n:
            lab = ",".join(f"{k}={v}" for k, v in labels.items())
            wrong.append(f"WRONG {name}: {prefix}{metric}{'{' + lab + '}' if lab else ''}: got {got}, want {n}")
    return wrong


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Wall time and CPU time (user + system, its own children included) of the
    whole process, and its stdout; exit 2 if it fails."""
    cpu, t = _children_cpu(), time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    except OSError as e:
        print(f"cannot run {shlex.join(cmd)}: {e}", file=sys.stderr)
        sys.exit(2)
    dt, dcpu = time.perf_counter() - t, _children_cpu() - cpu
    if p.returncode != 0:
        print(f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}", file=sys.stderr)
        sys.exit(2)
    return dt, dcpu, p.stdout


def tool_version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr).strip() else "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Time runwatch scan against mtail --one_shot on one log.")
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines in the generated log (default 1M)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each tool (default 5)")
    ap.add_argument("--dense", action="store_true", help="nearly every line an event")
    ap.add_argument("--runwatch", default=None, metavar="CMD",
                    help="how to start runwatch (default: this checkout, python -m runwatch)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=CMD",
                    help="another runwatch to time in the same alternation (repeatable)")
    ap.add_argument("--mtail", default="mtail", metavar="CMD", help="how to start mtail (default: mtail)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "runwatch-bench"),
                    help="where the generated logs are kept between runs")
    a = ap.parse_args(argv)
    if a.lines < 1 or a.runs < 1:
        ap.error("--lines and --runs must be at least 1")

    mtail_cmd = shlex.split(a.mtail)
    if not shutil.which(mtail_cmd[0]):
        print(f"{mtail_cmd[0]} not found: apt-get install mtail (Debian), or --mtail CMD", file=sys.stderr)
        return 2
    also = []
    for spec in a.also:
        name, eq, cmd = spec.partition("=")
        if not eq or not name or not cmd.strip():
            ap.error(f"--also takes NAME=CMD, got {spec!r}")
        also.append((name, shlex.split(cmd)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(os.path.abspath(a.workdir), "pycache")
    also_env = dict(env)
    if a.runwatch is None:
        runwatch_cmd = [sys.executable, "-m", "runwatch"]
        path = os.environ.get("PYTHONPATH")
        env["PYTHONPATH"] = os.path.join(ROOT, "exporter") + (os.pathsep + path if path else "")
    else:
        runwatch_cmd = shlex.split(a.runwatch)

    log, truth = ensure_log(a.workdir, a.lines, a.dense)
    progs = tempfile.mkdtemp(prefix="mtail-progs-", dir=a.workdir)   # mtail loads every file of --progs
    shutil.copy(MTAIL_PROG, progs)
    try:
        # --address/--port 0: even --one_shot opens mtail's HTTP port (3903 by default)
        mtail = mtail_cmd + ["--one_shot", "--one_shot_format", "prometheus", "--progs", progs,
                             "--logs", log, "--logtostderr", "--address", "127.0.0.1", "--port", "0"]
        scan_args = ["scan"] + [x for p in PACKS for x in ("--pack", p)] + [log]
        runwatch = runwatch_cmd + scan_args
        others = [(name, cmd + scan_args) for name, cmd in also]
        load0 = os.getloadavg()[0]
        timed(mtail), timed(runwatch, env)          # warm-up
        for _name, cmd in others:
            timed(cmd, also_env)
        tm, tr, cm, cr, out_m, out_r = [], [], [], [], "", ""
        t_o, c_o, out_o = [[] for _ in others], [[] for _ in others], ["" for _ in others]
        for _ in range(a.runs):
            dt, dcpu, out_m = timed(mtail)
            tm.append(dt)
            cm.append(dcpu)
            dt, dcpu, out_r = timed(runwatch, env)
            tr.append(dt)
            cr.append(dcpu)
            for k, (_name, cmd) in enumerate(others):
                dt, dcpu, out_o[k] = timed(cmd, also_env)
                t_o[k].append(dt)
                c_o[k].append(dcpu)
        load1 = os.getloadavg()[0]
    finally:
        shutil.rmtree(progs, ignore_errors=True)

    want = expected(truth)
    wrong = check("runwatch", out_r, "runwatch_", want, [("lines_total", {}, truth["lines"])])
    wrong += check("mtail", out_m, "", want)
    for k, (name, _cmd) in enumerate(others):
        wrong += check(name, out_o[k], "runwatch_", want, [("lines_total", {}, truth["lines"])])
    mm, mr = statistics.median(tm), statistics.median(tr)
    rm, rr = a.lines / mm, a.lines / mr
    print(f"log: {log} ({os.path.getsize(log) / 1e6:.0f} MB, {a.lines:,} lines, "
          f"{'dense' if a.dense else 'sparse'}); {a.runs} runs each, alternating, whole processes")
    print(f"machine: {os.cpu_count()} CPUs, load average {load0:.1f} before, {load1:.1f} after; "
          f"Python {platform.python_version()}; {tool_version(mtail_cmd + ['--version'])}")
    print(f"mtail    median {mm:.3f} s  {rm:,.0f} lines/s  (runs: {', '.join(f'{t:.3f}' for t in tm)})")
    print(f"runwatch median {mr:.3f} s  {rr:,.0f} lines/s  (runs: {', '.join(f'{t:.3f}' for t in tr)})")
    cpu_m, cpu_r = statistics.median(cm), statistics.median(cr)
    print(f"CPU time (user + system) median: mtail {cpu_m:.3f} s, "
          f"runwatch {cpu_r:.3f} s, ratio {cpu_m / max(cpu_r, 1e-9):.2f}")
    for k, (name, _cmd) in enumerate(others):
        mo, co = statistics.median(t_o[k]), statistics.median(c_o[k])
        runs = ", ".join(f"{t:.3f}" for t in t_o[k])
        print(f"{name}: median {mo:.3f} s  {a.lines / mo:,.0f} lines/s  (runs: {runs}); "
              f"CPU {co:.3f} s; ratio {mm / mo:.2f} wall, {cpu_m / max(co, 1e-9):.2f} CPU")
    print(f"figures checked against the truth: {len(want) + 1} for each runwatch, {len(want)} for mtail"
          f"{'' if wrong else ', all right'}")
    for w in wrong:
        print(w)
    print(f"ratio: {rr / rm:.2f}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
