#!/usr/bin/env python3
"""Write a deterministic mixed ML-job log and the truth about what it holds.

usage: python3 bench/make_mixed_log.py LINES OUT.log [TRUTH.json] [--dense]

The log the scan benchmarks read (bench/compare_mtail.py, bench/bench_loki.py).
Most lines are training noise; a few per cent are what the built-in packs
`waa`, `docker` and `python` read: agent-evaluation task starts (`Task 3/200:
notepad_3`), agent steps (`Step 4: CLICK`), task results (`Task notepad_3:
SUCCESS|FAIL`), `ERROR:` lines and classic docker build steps (`Step 5/12 :
RUN …`). Trial lines (`Trial 5/15: Score=0.1502`) are distractors: no pack of
the benchmark reads them.

With --dense the noise inside a task is replaced by agent step lines, so
nearly every line yields an event: that times the event path (regexes, event
building, the run state) rather than the search for candidate lines.

The truth file (JSON) counts what was written, so a scan of the log can be
checked for correctness as well as timed. The same LINES and mode always give
the same bytes (a fixed seed).
"""
from __future__ import annotations

import json
import os
import random
import sys

FORMAT = 1                 # bump when the log's content changes: cached logs are named after it
SEED = 7
TASKS = 200
BUILD_STEPS = 12
ACTIONS = ("CLICK", "TYPE", "SCROLL", "WAIT", "DONE", "HOTKEY")
# share of lines (when not a task boundary) that are each kind of event line
P_STEP, P_ERROR, P_DOCKER, P_TRIAL = 0.028, 0.001, 0.003, 0.004


def write_log(lines: int, out: str, dense: bool = False) -> dict:
    """Write the log to `out`; return the truth about it."""
    rng = random.Random(SEED)
    per_task = max(lines // TASKS, 1)
    truth = {"format": FORMAT, "dense": dense, "lines": lines, "tasks_planned": TASKS,
             "tasks_started": 0, "tasks_completed": 0, "tasks_failed": 0, "steps": {}, "errors": 0,
             "docker_step": None, "docker_steps": None, "distractors": 0}
    task, in_task = 0, False
    c_step, c_error, c_docker = P_STEP, P_STEP + P_ERROR, P_STEP + P_ERROR + P_DOCKER
    c_trial = c_docker + P_TRIAL

    def step_line(ts: str) -> str:
        action = rng.choice(ACTIONS)
        truth["steps"][action] = truth["steps"].get(action, 0) + 1
        return f"{ts} INFO openadapt_evals.runner: Step {rng.randint(0, 30)}: {action}\n"

    with open(out, "w", encoding="ascii") as f:
        write = f.write
        for i in range(lines):
            ts = f"2026-11-24 10:{(i // 6000) % 60:02d}:{(i // 100) % 60:02d},{i % 1000:03d}"
            r = rng.random()
            if not in_task and task < TASKS and i >= task * per_task:
                task += 1
                in_task = True
                truth["tasks_started"] += 1
                write(f"{ts} INFO openadapt_evals.runner: Task {task}/{TASKS}: notepad_{task}\n")
            elif in_task and (i + 1) % per_task == 0:
                in_task = False
                ok = rng.random() < 0.6
                truth["tasks_completed"] += 1
                truth["tasks_failed"] += 0 if ok else 1
                write(f"{ts} INFO openadapt_evals.runner: Task notepad_{task}: {'SUCCESS' if ok else 'FAIL'}\n")
            elif r < c_step and in_task:
                write(step_line(ts))
            elif r < c_error:
                truth["errors"] += 1
                write(f"{ts} ERROR: Connection failed to 10.0.0.{rng.randint(1, 254)}:5000\n")
            elif r < c_docker:
                step = rng.randint(1, BUILD_STEPS)
                truth["docker_step"], truth["docker_steps"] = step, BUILD_STEPS
                write(f"Step {step}/{BUILD_STEPS} : RUN apt-get install -y pkg{rng.randint(1, 99)}\n")
            elif r < c_trial:
                truth["distractors"] += 1
                write(f"  Trial {rng.randint(1, 15)}/15: Score={rng.random():.4f}\n")
            elif dense and in_task:
                write(step_line(ts))
            else:
                write(f"{ts} INFO trainer: epoch {i // 10000} batch {i % 10000} "
                      f"loss={rng.random():.4f} lr=3.0e-04 grad_norm={rng.random() * 5:.3f} "
                      f"throughput=812.5 samples/s\n")
    return truth


def ensure_log(workdir: str, lines: int, dense: bool = False) -> tuple[str, dict]:
    """The log of `lines` lines in workdir (written once, then reused) and its truth."""
    os.makedirs(workdir, exist_ok=True)
    log = os.path.join(workdir, f"{'dense' if dense else 'mixed'}-v{FORMAT}_{lines}.log")
    truth_path = log + ".truth.json"
    if os.path.exists(truth_path) and os.path.exists(log) and os.path.getsize(log) > 0:
        with open(truth_path, encoding="utf-8") as f:
            return log, json.load(f)
    tmp = f".tmp{os.getpid()}"                    # two benchmarks at once never share a half-written file
    truth = write_log(lines, log + tmp, dense)
    with open(truth_path + tmp, "w", encoding="utf-8") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
    os.replace(log + tmp, log)
    os.replace(truth_path + tmp, truth_path)       # the truth last: a log is reused only once complete
    return log, truth


def main(argv: list[str]) -> int:
    dense = "--dense" in argv
    args = [a for a in argv if a != "--dense"]
    if len(args) not in (2, 3) or not args[0].isdigit():
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    lines, out = int(args[0]), args[1]
    truth = write_log(lines, out, dense)
    with open(args[2] if len(args) > 2 else out + ".truth.json", "w", encoding="utf-8") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
