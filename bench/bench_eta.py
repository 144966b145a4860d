#!/usr/bin/env python3
"""ETA accuracy: replay recorded runs with their real timing, on a simulated clock.

Runs replayed:
  * the demo's sample runs (exporter/runwatch/demo/*.yaml), with the timing
    their scripts give (lines `every` N s, bars, sleeps, events, exit);
  * synthetic runs with bursts (cached docker steps, a batch of instant tasks),
    pauses (a stalled task, a paused bar) and heavy-tailed task durations.

Each run is replayed twice: "cold" (empty history) and "warm" (a second run of
the same kind, timing jittered by a different seed, with the first run in the
history database). No real sleeps: events carry simulated timestamps and the
ETA is asked at 25 %, 50 % and 75 % of the run's real duration.

error = |ETA - real time left| / real time left; "-" = no ETA (nothing honest
to say, e.g. a cold run still booting). Target: median |error| <= 20 % at 50 %.

    .venv/bin/python bench/bench_eta.py [--seeds N]
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile

from runwatch.commands.demo import load_samples
from runwatch.events import Event, make
from runwatch.model.history import History
from runwatch.parse.packs import Matcher, load_builtin
from runwatch.model.state import RunState

QUANTILES = (0.25, 0.5, 0.75)


# ---------------------------------------------------------------- timelines

def demo_timeline(sample, rng: random.Random | None) -> list:
    """(t, 'line', text) / (t, 'event', Event) from a demo script; rng jitters durations."""
    j = (lambda x: x * rng.uniform(0.8, 1.25)) if rng else (lambda x: x)
    out, t = [], 0.0
    for step in sample.script:
        if "lines" in step:
            every = float(step.get("every", 0.5))
            for line in str(step["lines"]).splitlines():
                out.append((t, "line", line))
                t += j(every)
        elif "bar" in step:
            bar = step["bar"]
            total, seconds, desc = int(bar.get("total", 100)), j(float(bar.get("seconds", 10))), bar.get("desc", "")
            frames = max(2, int(bar.get("frames", 20)))
            for k in range(frames + 1):
                n = total * k // frames
                el = seconds * k / frames
                rate = n / el if el else 0.0
                left = (total - n) / rate if rate else None
                out.append((t, "line", f"{desc}: {100 * n // total:3d}%|{'#' * (10 * n // total):10s}| {n}/{total} "
                                       f"[{_clock(el)}<{_clock(left) if left is not None else '?'}, {rate:.2f}it/s]"))
                if k < frames:
                    t += seconds / frames
        elif "sleep" in step:
            t += j(float(step["sleep"]))
        elif "event" in step:
            fields = dict(step["event"])
            out.append((t, "event", make(fields.pop("type"), fields, t)))
        elif "exit" in step:
            code = int(step["exit"])
            out.append((t, "event", Event("status", {"state": "succeeded" if code == 0 else "failed"}, t)))
            return out
    return out


def _clock(s):
    m, s = divmod(int(s), 60)
    return f"{m:02d}:{s:02d}"


def tasks_run(durations, prefix=(), pause_after=None, pause=0.0, tail=()):
    """Lines of a waa-style run: optional pre-phase lines, tasks, optional pause."""
    out, t = [], 0.0
    for dt, text in prefix:
        out.append((t, "line", text))
        t += dt
    n = len(durations)
    for i, d in enumerate(durations, 1):
        out.append((t, "line", f"INFO runner: Task {i}/{n}: task_{i}"))
        if pause_after == i:
            t += pause
        t += d
        out.append((t, "line", f"INFO runner: Task task_{i}: SUCCESS"))
    for dt, text in tail:
        t += dt
        out.append((t, "line", text))
    out.append((t, "event", Event("status", {"state": "succeeded"}, t)))
    return out


def docker_run(step_durations):
    out, t = [], 0.0
    out.append((t, "line", "#1 [internal] load build definition from Dockerfile"))
    t += 1.0
    n = len(step_durations)
    for i, d in enumerate(step_durations, 1):
        v = i + 3
        out.append((t, "line", f"#{v} [{i}/{n}] RUN step {i}"))
        t += d
        out.append((t, "line", f"#{v} DONE {d:.1f}s" if d > 0.5 else f"#{v} CACHED"))
    t += 3.0
    out.append((t, "line", "#99 exporting to image"))
    out.append((t, "event", Event("status", {"state": "succeeded"}, t)))
    return out


def bar_run(total_s, pause_at=None, pause=0.0, frames=200, total=1000):
    """A tqdm bar whose own ETA (rate = n / elapsed, like tqdm without smoothing) is printed."""
    out, t = [], 0.0
    busy = 0.0
    for k in range(frames + 1):
        n = total * k // frames
        el = t
        rate = n / el if el else 0.0
        left = (total - n) / rate if rate else None
        out.append((t, "line", f"train: {100 * n // total:3d}%|{'#' * (10 * n // total):10s}| {n}/{total} "
                               f"[{_clock(el)}<{_clock(left) if left is not None else '?'}, {rate:.2f}it/s]"))
        if k < frames:
            dt = total_s / frames
            busy += dt
            t += dt
            if pause_at is not None and abs(busy - pause_at) < dt / 2:
                t += pause
    out.append((t, "event", Event("status", {"state": "succeeded"}, t)))
    return out


def synthetic(seed: int):
    rng = random.Random(seed)

    def ln(mu, s):
        return math.exp(rng.gauss(math.log(mu), s))

    boot = [(rng.uniform(100, 140), "INFO setup: creating VM"), (rng.uniform(200, 300), "INFO setup: waiting for boot")]
    return {
        "tasks_lognormal": ("eval", ["waa"], tasks_run([ln(60, 0.4) for _ in range(20)])),
        "tasks_burst": ("eval_burst", ["waa"], tasks_run([rng.uniform(0.5, 1.5) for _ in range(8)]
                                                         + [ln(60, 0.3) for _ in range(22)])),
        "tasks_pause": ("eval_pause", ["waa"], tasks_run([ln(30, 0.2) for _ in range(20)], pause_after=8,
                                                         pause=rng.uniform(200, 400))),
        "boot_then_tasks": ("eval_vm", ["waa"], tasks_run([ln(45, 0.3) for _ in range(10)], prefix=boot,
                                                          tail=[(rng.uniform(20, 40), "INFO teardown")])),
        "docker_cached": ("docker", ["docker"], docker_run([0.1] * 4 + [ln(90, 0.2), 0.3, ln(200, 0.2)]
                                                           + [ln(4, 0.3) for _ in range(3)])),
        "bar_pause": ("train", ["tqdm"], bar_run(rng.uniform(500, 700), pause_at=rng.uniform(150, 350),
                                                 pause=rng.uniform(60, 120))),
        "bar_steady": ("train_steady", ["tqdm"], bar_run(rng.uniform(500, 700))),
    }


# ---------------------------------------------------------------- replay

def replay(timeline, packs, spec_kind, prior, quantiles=QUANTILES, cost_rate=None):
    """Feed a timeline into a RunState; return (duration, [eta at each quantile], state)."""
    st = RunState()
    st.set_prior(prior)
    if cost_rate is not None:
        st.apply(Event("cost", {"rate_usd_per_hour": cost_rate}, 0.0))
    matcher = Matcher(packs)
    end = timeline[-1][0]
    start = timeline[0][0]
    marks = [start + q * (end - start) for q in quantiles]
    etas, i = [], 0
    for t, what, payload in timeline:
        while i < len(marks) and marks[i] < t:
            etas.append((marks[i], st.eta_seconds(marks[i])))
            i += 1
        if what == "line":
            evs = []
            matcher.match_line(payload, t, evs)
            st.lines_seen(1, t)
            for e in evs:
                st.apply(e)
        else:
            st.apply(payload)
    while i < len(marks):
        etas.append((marks[i], st.eta_seconds(marks[i])))
        i += 1
    errs = [None if eta is None else abs(eta - (end - m)) / (end - m) for m, eta in etas]
    return end - start, errs, st


def scenarios(seeds: int):
    """(name, kind, packs, cold timeline, warm timeline)"""
    out = []
    for s in load_samples():
        packs = s.packs
        out.append((s.spec.id, s.spec.kind, packs, demo_timeline(s, None), demo_timeline(s, random.Random(7))))
    for seed in range(seeds):
        a, b = synthetic(1000 + seed), synthetic(2000 + seed)
        for name, (kind, pack_names, tl) in a.items():
            packs = [load_builtin(n) for n in pack_names]
            out.append((f"{name}#{seed}", kind, packs, tl, b[name][2]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="synthetic runs per scenario")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, kind, packs, cold, warm) in enumerate(scenarios(args.seeds)):
            hist = History(os.path.join(tmp, f"h{i}.db"))
            dur, errs, st = replay(cold, packs, kind, hist.prior(kind))
            rows.append((name, "cold", dur, errs))
            hist.record(kind, name, st.state, st.history_summary(), st.end_ts)
            dur, errs, st = replay(warm, packs, kind, hist.prior(kind))
            rows.append((name, "warm", dur, errs))
            hist.close()

    def fmt(e):
        return "     -" if e is None else f"{100 * e:5.0f}%"

    print(f"{'run':24s} {'mode':5s} {'duration':>9s}  {'@25%':>6s} {'@50%':>6s} {'@75%':>6s}")
    for name, mode, dur, errs in rows:
        print(f"{name:24s} {mode:5s} {dur:8.0f}s  " + " ".join(fmt(e) for e in errs))
    print()
    ok = True
    for mode in ("cold", "warm", "all"):
        sel = [r for r in rows if mode == "all" or r[1] == mode]
        cells = []
        for qi, q in enumerate(QUANTILES):
            xs = [r[3][qi] for r in sel if r[3][qi] is not None]
            med = statistics.median(xs) if xs else None
            cells.append(f"{fmt(med)} ({len(xs)}/{len(sel)})")
            if mode == "all" and q == 0.5:
                ok = med is not None and med <= 0.20
        row = "  ".join(f"@{int(q * 100)}% {c}" for q, c in zip(QUANTILES, cells, strict=True))
        print(f"median |error| {mode:5s}: {row}")
    print(f"\ntarget median |error| <= 20% at 50%: {'met' if ok else 'NOT met'}  "
          "(n/m: runs with an ETA / runs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
