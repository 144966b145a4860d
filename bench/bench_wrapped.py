#!/usr/bin/env python3
"""What `runwatch run` costs a chatty job: the job alone against the job wrapped, side by side.

usage: python3 bench/bench_wrapped.py [--lines 1000000] [--rounds 3] [--dense] [--unbuffered] [--no-pyc]
                                   [--reference DIR]

The job is a Python program that prints N log lines one `print()` at a time
(an agent evaluation's or a search's output: task, step, score lines among
ordinary logging; with --dense nearly every line is an event). It runs alone
(`python job.py > /dev/null`), into a pipe that `cat` reads (`python job.py | cat >
/dev/null`: what any reader of its output costs it, the floor for a wrapper) and as
`runwatch run --grace 0 -- python job.py > /dev/null`, in turn, and the wall time of each is measured from start
to exit, with its CPU time (user + system, children included: on a busy
machine the steadier figure) and the job's own time from its first line to
its last (does the job wait for runwatch?). The wrapped run's metrics are checked against the counts the job
printed, so a fast wrong answer does not count. Prints medians and the ratio
wrapped / alone (target <= 1.25); asserts nothing.

The job's output is buffered as Python buffers it (PYTHONUNBUFFERED is dropped from its
environment; --unbuffered sets it: every line a write of its own, as `python -u` or a job
under a terminal does). runwatch runs as installed, its modules compiled once, unless --no-pyc.

Run with the package importable (the project venv: .venv/bin/python bench/bench_wrapped.py).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

JOB = r'''
import sys, time
t0 = time.perf_counter()
n, dense = int(sys.argv[1]), sys.argv[2] == "dense"
actions = ("CLICK", "TYPE", "HOTKEY", "SCROLL", "WAIT", "DONE")
task = step = 0
tasks = max(1, n // 2000)
for i in range(n):
    if dense or i % 10 == 0:
        if i % 2000 == 0 and task < tasks:
            task += 1
            print(f"2026-11-24 10:00:00,{i % 1000:03d} INFO openadapt_evals.runner: "
                  f"Task {task}/{tasks}: notepad_{task}")
        else:
            step += 1
            print(f"2026-11-24 10:00:00,{i % 1000:03d} INFO openadapt_evals.runner: Step {step}: {actions[i % 6]}")
    else:
        print(f"2026-11-24 10:00:00,{i % 1000:03d} DEBUG urllib3.connectionpool: http://127.0.0.1:5000 "
              f"\"POST /execute HTTP/1.1\" 200 {i % 977}")
sys.stdout.flush()
json.dump({"tasks": task, "steps": step}, open(sys.argv[3], "w")) if len(sys.argv) > 3 and sys.argv[3] else None
open(sys.argv[4], "w").write(repr(time.perf_counter() - t0)) if len(sys.argv) > 4 else None
'''.replace("json.dump", "__import__('json').dump")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str], job_time: str, env=None) -> tuple[float, float, float]:
    """Wall time of the whole process, its CPU time (children included), and the job's own
    time from its first line to its last (written by the job into job_time)."""
    t, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
    with open(job_time) as f:
        return wall, cpu, float(f.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrapped_steps(job: str, lines: int, mode: str, env) -> float:
    """One more wrapped run, kept serving after the job: the steps its /metrics counted."""
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "runwatch", "run", "--grace", "120", "--listen", f"127.0.0.1:{port}",
                          "--pack", "waa", "--run-id", "bench", "--", sys.executable, job, str(lines), mode],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            if 'runwatch_run_state{run_id="bench",runwatch_run_state="succeeded"} 1' in text:
                return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("runwatch_steps_total{"))
            time.sleep(0.2)
        raise SystemExit("the wrapped run did not end within 300 s")
    finally:
        p.terminate()
        p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dense", action="store_true", help="nearly every line an event")
    ap.add_argument("--unbuffered", action="store_true",
                    help="the job writes every line on its own (PYTHONUNBUFFERED=1, as python -u)")
    ap.add_argument("--reference", metavar="DIR",
                    help="also wrap the job with the runwatch package found in DIR (an exporter/ of another "
                         "commit, e.g. from git archive), in the same rounds: before and after side by side")
    ap.add_argument("--no-pyc", action="store_true",
                    help="leave PYTHONDONTWRITEBYTECODE as it is (runwatch compiles its modules at every start)")
    args = ap.parse_args()
    mode = "dense" if args.dense else "sparse"
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.py")
        with open(job, "w") as f:
            f.write(JOB)
        truth_path = os.path.join(tmp, "truth.json")
        subprocess.run([sys.executable, job, str(args.lines), mode, truth_path], check=True,
                       stdout=subprocess.DEVNULL)
        truth = json.load(open(truth_path))
        runs: dict[str, list] = {"alone": [], "piped": [], "wrapped": []}
        env = dict(os.environ, RUNWATCH_DATA_DIR=os.path.join(tmp, "data"))
        # The job's buffering is Python's own (block-buffered into a pipe or file) unless
        # --unbuffered: a shell that exports PYTHONUNBUFFERED would otherwise turn every
        # print() into a write() of its own, a cost of the pipe, not of runwatch (see "piped").
        env.pop("PYTHONUNBUFFERED", None)
        if args.unbuffered:
            env["PYTHONUNBUFFERED"] = "1"
        job_env = dict(env)
        if not args.no_pyc:
            # runwatch as installed: its modules compiled once (pip does that at install), not at
            # every start as a checkout run with PYTHONDONTWRITEBYTECODE would (~0.4 s of CPU each)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        subprocess.run([sys.executable, "-m", "runwatch", "run", "--grace", "0", "--listen", "127.0.0.1:0",
                        "--pack", "waa", "--", sys.executable, job, "100", mode], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)       # warm-up
        job_time = os.path.join(tmp, "job_time")
        load0 = os.getloadavg()[0]
        kinds = ("alone", "piped", "wrapped") + (("reference",) if args.reference else ())
        runs["reference"] = []
        ref_env = dict(env, PYTHONPATH=os.path.abspath(args.reference)) if args.reference else None
        if ref_env:
            ref_env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache-ref")
            subprocess.run([sys.executable, "-m", "runwatch", "run", "--grace", "0", "--listen", "127.0.0.1:0",
                            "--pack", "waa", "--", sys.executable, job, "100", mode], check=True, env=ref_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)       # warm-up
        for r in range(args.rounds):
            for what in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                job_argv = [sys.executable, job, str(args.lines), mode, "", job_time]
                if what == "alone":
                    runs[what].append(timed(job_argv, job_time, job_env))
                elif what == "piped":          # the floor of any reader: the job into a pipe, cat reading it
                    runs[what].append(timed(["sh", "-c", '"$@" | cat', "sh", *job_argv], job_time, job_env))
                else:
                    argv = [sys.executable, "-m", "runwatch", "run", "--grace", "0", "--listen", "127.0.0.1:0",
                            "--pack", "waa", "--run-id", "bench", "--", *job_argv]
                    runs[what].append(timed(argv, job_time, env if what == "wrapped" else ref_env))
            print(f"round {r + 1}: " + ", ".join(
                f"{k} {runs[k][-1][0]:.2f} s (CPU {runs[k][-1][1]:.2f} s, the job itself {runs[k][-1][2]:.2f} s)"
                for k in kinds), flush=True)
        load1 = os.getloadavg()[0]
        steps = wrapped_steps(job, args.lines, mode, env)
        ok = steps == truth["steps"]
        med = {k: [statistics.median(x[i] for x in runs[k]) for i in range(3)] for k in kinds}
        (a, a_cpu, a_job), (p, p_cpu, p_job), (w, w_cpu, w_job) = (med[k] for k in kinds[:3])
        print(f"machine: {os.cpu_count()} CPUs, load average {load0:.1f} before, {load1:.1f} after")
        print(f"{args.lines} lines ({mode}, {'unbuffered' if args.unbuffered else 'buffered'} job), "
              f"medians of {args.rounds}: alone {a:.2f} s (CPU {a_cpu:.2f} s), "
              f"piped into cat {p:.2f} s (CPU {p_cpu:.2f} s), wrapped {w:.2f} s (CPU {w_cpu:.2f} s)")
        print(f"the job's own time, first line to last: alone {a_job:.2f} s, piped {p_job:.2f} s, "
              f"wrapped {w_job:.2f} s (wrapped/alone {w_job / a_job:.2f})")
        print(f"CPU time wrapped/alone: {w_cpu / a_cpu:.2f} (runwatch's own share: {w_cpu - a_cpu:.2f} s; "
              f"beyond the piped floor: {w_cpu - p_cpu:.2f} s)")
        print(f"figures: steps {int(steps)} of {truth['steps']} {'right' if ok else 'WRONG'}")
        print(f"ratio wrapped/alone: {w / a:.2f}   (target <= 1.25); piped/alone {p / a:.2f}, "
              f"wrapped/piped {w / p:.2f}")
        if args.reference:
            r_w, r_cpu, r_job = med["reference"]
            print(f"reference ({args.reference}) wrapped: {r_w:.2f} s (CPU {r_cpu:.2f} s, "
                  f"the job itself {r_job:.2f} s, runwatch's own share {r_cpu - a_cpu:.2f} s); "
                  f"ratio wrapped/alone {r_w / a:.2f}")


if __name__ == "__main__":
    main()
