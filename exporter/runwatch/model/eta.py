"""Time left: a robust progress-rate estimate blended with the history of earlier runs.

Pure, like the run state it serves: no I/O and no clock; times come from the
events and from the `now` a caller passes. `Tracker` lives inside a RunState
(`RunState._eta`): it is told about every applied event and keeps what the
estimate needs (progress points, phase timeline). `Prior` is what
`history.History.prior(kind)` read from the database about earlier runs of the
same kind; the registry hands it to a run when the run is added.

The estimate (see docs/time-and-money.md):

* While progress moves (tasks, docker steps, trials, a bar): seconds per unit
  of progress = half the run's overall rate since progress began and half the
  rate over the most recent third of it, bursts left out (a burst of cached
  steps does not make the rest look instant, a slow-down shows within a few
  units), blended with the history's seconds per unit weighted by how much
  progress has been seen. The unit in progress is charged what is left of its
  expected time; once it is overdue (a pause, a stuck task) the estimate grows
  with the overdue time instead of sitting at zero. With a history progress
  curve of the same shape, the mean of that and the curve's time left.
* Before the first progress line, for phases whose progress the log does not
  reveal (vm_provision, windows_boot, a docker build before its first step):
  what is left of the current phase by its typical duration, plus the phases
  that followed it last time, plus the typical progress and tail durations.
* Nothing honest to say (no progress rate yet, no history): None.
"""
from __future__ import annotations

import collections
import statistics

MAX_POINTS = 512
MAX_PHASES = 64
PRIOR_WEIGHT = 0.25      # history counts as much as this fraction of observed progress
OVERDUE_FLOOR = 0.1      # an overdue unit/phase still has this fraction of its expected time left
OVERDUE_GROWTH = 0.5     # ... plus this much per second it is overdue
BURST = 0.1              # a unit done in under this fraction of the typical unit's time is a burst
RECENT_UNITS = 5         # the typical unit: the median of the last few
CURVE_KNOTS = 101        # a finished run's progress curve: time since progress began at 0 %, 1 %, … 100 %
CURVE_WEIGHT = 0.5       # share of the history's curve in the estimate while progress moves


def overdue(expected: float, elapsed: float) -> float:
    """Time left of something expected to take `expected` s, `elapsed` s in.

    Counts down, then holds at a small floor and grows again once overdue:
    a pause never makes the estimate reach zero and stay there."""
    return max(expected - elapsed, OVERDUE_FLOOR * expected + OVERDUE_GROWTH * max(0.0, elapsed - expected))


class Prior:
    """What earlier runs of the same kind say (medians over the last few runs).

    pre_seconds: start -> first progress; progress_seconds: progress 0 -> 1;
    unit_seconds: per unit of progress (a task, a docker step); post_seconds:
    progress done -> run end; total_seconds: start -> end; pre_phases: the
    phases before the first progress line, in order, with typical durations;
    runs: how many runs this is from."""

    __slots__ = ("pre_seconds", "progress_seconds", "unit_seconds", "post_seconds", "total_seconds",
                 "pre_phases", "phase_seconds", "runs", "curve", "curve_units")

    def __init__(self, pre_seconds=None, progress_seconds=None, unit_seconds=None, post_seconds=None,
                 total_seconds=None, pre_phases=(), phase_seconds=None, runs=0, curve=None, curve_units=None):
        self.pre_seconds, self.progress_seconds, self.unit_seconds = pre_seconds, progress_seconds, unit_seconds
        self.post_seconds, self.total_seconds = post_seconds, total_seconds
        self.pre_phases = list(pre_phases)          # [(phase, seconds)]
        self.phase_seconds = dict(phase_seconds or {})
        self.runs = runs
        self.curve = list(curve) if curve else None   # median progress curve (CURVE_KNOTS values)
        self.curve_units = curve_units                # the units of the runs it came from

    def __repr__(self) -> str:
        return (f"Prior(pre={self.pre_seconds}, progress={self.progress_seconds}, unit={self.unit_seconds}, "
                f"post={self.post_seconds}, total={self.total_seconds}, phases={self.pre_phases}, runs={self.runs})")


class Tracker:
    """Progress points and phase timeline of one run, fed by RunState.apply."""

    __slots__ = ("points", "anchor", "anchor_phase", "phase", "phase_ts", "phases", "done_ts", "prior", "_cache")

    def __init__(self) -> None:
        self.points: collections.deque = collections.deque(maxlen=MAX_POINTS)  # (ts, ratio) at changes
        self.anchor: tuple | None = None       # (ts, ratio) where progress began
        self.anchor_phase: str | None = None
        self.phase: str | None = None
        self.phase_ts: float | None = None
        self.phases: list = []                 # [phase, start_ts], oldest first
        self.done_ts: float | None = None      # when progress first reached 1
        self.prior: Prior | None = None        # not persisted: read again from history
        self._cache: tuple | None = None       # (points key, _observed result): scrapes between changes are cheap

    # ------------------------------------------------------------ input

    def observe(self, st, ts: float) -> None:
        """Called after each event is applied to `st` (a RunState)."""
        ph = st.phase
        if ph != self.phase or self.phase_ts is None:
            if self.anchor is not None and self.anchor[0] == ts and len(self.points) <= 1:
                self.anchor_phase = ph             # `Task 1/5` and `phase: benchmark` from one line
            self.phase, self.phase_ts = ph, ts
            self.phases.append([ph, ts])
            del self.phases[:-MAX_PHASES]
        r = st.progress_ratio()
        if r is None:
            return
        if self.anchor is None or (self.points and r < self.points[-1][1] - 1e-9):
            # progress began, or went back (a bar restarting): a new segment
            self.anchor, self.anchor_phase = (ts, r), ph
            self.points.clear()
            self.points.append((ts, r))
            self.done_ts = ts if r >= 1.0 else None
            return
        if r != self.points[-1][1]:
            self.points.append((ts, r))
        if r >= 1.0 and self.done_ts is None:
            self.done_ts = ts

    # ------------------------------------------------------------ estimate

    def eta(self, st, now: float) -> float | None:
        prior = self.prior
        post = prior.post_seconds if prior and prior.post_seconds is not None else 0.0
        r = st.progress_ratio()
        if r is not None and r >= 1.0:
            if self.done_ts is None or not (prior and prior.post_seconds):
                return 0.0
            return overdue(prior.post_seconds, now - self.done_ts)
        if (st.bar_eta is not None and st.bar_ratio is not None and st.outer_ratio is None
                and not st.tasks_planned and not st.build_steps):
            return overdue(st.bar_eta, max(0.0, now - st.bar_eta_ts)) + post   # the tool's own estimate
        if r is not None and self.anchor is not None:
            left = self._progress_left(st, r, now)
            if left is not None:
                return left + post
            return None
        return self._before_progress(st, now)

    def sec_per_progress(self, st) -> float | None:
        """Seconds per whole progress (0 -> 1): observed, blended with history."""
        obs, p = self._observed()
        pri = self._prior_span(st)
        if obs is None:
            return pri
        if pri is None:
            return obs
        return (PRIOR_WEIGHT * pri + p * obs) / (PRIOR_WEIGHT + p)

    def _observed(self) -> tuple[float | None, float]:
        """Observed seconds per whole progress, and how much progress it is based on.

        Bursts (units done in a small fraction of the typical unit's time:
        cached docker layers, skipped tasks) are left out of the rate, the
        typical unit being the median of the last RECENT_UNITS units (a burst
        long past does not define it; one long pause does not either). Pauses
        stay in the rate: they happened."""
        pts = self.points
        if len(pts) < 2:
            return None, 0.0
        key = (len(pts), pts[-1], pts[0], self.anchor)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        res = self._compute_observed(pts)
        self._cache = (key, res)
        return res

    def _compute_observed(self, pts) -> tuple[float | None, float]:
        p = pts[-1][1] - self.anchor[1]
        segs = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(pts, list(pts)[1:], strict=False) if b[1] > a[1]]
        segs = [(max(0.0, dt), dr) for dt, dr in segs]
        total_t = sum(dt for dt, _ in segs)
        if p <= 0 or total_t <= 0:
            return None, max(p, 0.0)
        ref = statistics.median([dt / dr for dt, dr in segs[-RECENT_UNITS:]])
        keep = [(dt, dr) for dt, dr in segs if dt / dr >= BURST * ref]
        kt, kp = sum(dt for dt, _ in keep), sum(dr for _, dr in keep)
        overall = kt / kp
        rt = rp = 0.0                      # the most recent third of that progress, at least 2 units
        for i, (dt, dr) in enumerate(reversed(keep)):
            rt, rp = rt + dt, rp + dr
            if rp >= kp / 3 and i >= 1:
                break
        recent = rt / rp if rp > 0 and rt > 0 else overall
        return 0.5 * overall + 0.5 * recent, p

    def _prior_span(self, st) -> float | None:
        prior = self.prior
        if prior is None:
            return None
        n = units(st)
        if n and prior.unit_seconds:
            return prior.unit_seconds * n
        return prior.progress_seconds

    def _unit(self, st) -> float | None:
        n = units(st)
        if n:
            return 1.0 / n
        steps = [b[1] - a[1] for a, b in zip(list(self.points)[-10:-1], list(self.points)[-9:], strict=False)]
        steps = [s for s in steps if s > 0]
        return statistics.median(steps) if steps else None

    def _progress_left(self, st, r: float, now: float) -> float | None:
        sp = self.sec_per_progress(st)
        if sp is None:
            return None
        last_t = self.points[-1][0] if self.points else self.anchor[0]
        since = max(0.0, now - last_t)
        remaining = 1.0 - r
        u = self._unit(st) or remaining
        cur = min(u, remaining)
        rate_left = (remaining - cur) * sp + overdue(cur * sp, since)
        curve_left = self._curve_left(st, r, u, last_t, since)
        if curve_left is None:
            return rate_left
        return CURVE_WEIGHT * curve_left + (1.0 - CURVE_WEIGHT) * rate_left

    def _curve_left(self, st, r: float, u: float, last_t: float, since: float) -> float | None:
        """Time left by the history's progress curve, at this run's speed so far.

        Earlier runs of the same job (the same Dockerfile, the same benchmark)
        spend their time at the same places: a slow `pip install` at step 4/7
        is in the curve, not in any rate."""
        prior = self.prior
        if prior is None or not prior.curve or self.anchor is None:
            return None
        n = units(st)
        if prior.curve_units and n and prior.curve_units != n:
            return None                    # a different job shape: the curve does not apply
        c = prior.curve

        def at(x: float) -> float:
            return _interp(c, x)

        done_hist = at(r)
        speed = 1.0
        if done_hist > 0.05 * c[-1] and last_t > self.anchor[0]:
            speed = min(3.0, max(1 / 3, (last_t - self.anchor[0]) / done_hist))
        nxt = min(1.0, r + u)
        unit_left = max(0.0, at(nxt) - done_hist) * speed
        rest = max(0.0, c[-1] - at(nxt)) * speed
        return rest + overdue(unit_left, since) if unit_left > 0 else rest

    def _before_progress(self, st, now: float) -> float | None:
        prior = self.prior
        if prior is None or st.start_ts is None:
            return None
        later = (self._prior_span(st) or 0.0) + (prior.post_seconds or 0.0)
        names = [p for p, _ in prior.pre_phases]
        key = self.phase or ""
        if key in names and self.phase_ts is not None:
            j = names.index(key)
            pre = overdue(prior.pre_phases[j][1], now - self.phase_ts) + sum(s for _, s in prior.pre_phases[j + 1:])
        elif prior.pre_seconds is not None:
            pre = overdue(prior.pre_seconds, now - st.start_ts)
        elif prior.total_seconds is not None:
            return overdue(prior.total_seconds, now - st.start_ts)
        else:
            return None
        return pre + later

    # ------------------------------------------------------------ history

    def curve(self) -> list | None:
        """Seconds since progress began at each 1 % of progress (the run reached 100 %)."""
        if self.anchor is None or self.done_ts is None or not self.points:
            return None
        pts = list(self.points)
        if pts[0] != self.anchor:
            pts.insert(0, self.anchor)
        a_t, a_r = self.anchor
        out, j = [], 0
        for k in range(CURVE_KNOTS):
            x = k / (CURVE_KNOTS - 1)
            if x <= a_r:
                out.append(0.0)
                continue
            while j < len(pts) and pts[j][1] < x - 1e-12:
                j += 1
            out.append(max(0.0, (pts[j][0] if j < len(pts) else self.done_ts) - a_t))
        return out

    def summary(self, st) -> dict | None:
        """What a finished run teaches the history (None if it never started)."""
        if st.start_ts is None or st.end_ts is None:
            return None
        start, end = st.start_ts, st.end_ts
        out = {"total_seconds": max(0.0, end - start), "pre_seconds": None, "progress_seconds": None,
               "units": units(st), "post_seconds": None, "phases": []}
        if self.anchor is not None:
            out["pre_seconds"] = max(0.0, self.anchor[0] - start)
            if self.done_ts is not None:
                out["progress_seconds"] = max(0.0, self.done_ts - self.anchor[0])
                out["post_seconds"] = max(0.0, end - self.done_ts)
                out["curve"] = self.curve()
        segs = [(p, max(t, start)) for p, t in self.phases]
        for i, (p, t) in enumerate(segs):
            t2 = segs[i + 1][1] if i + 1 < len(segs) else end
            pre = self.anchor is None or t < self.anchor[0]
            done = i + 1 < len(segs) or st.state == "succeeded"
            out["phases"].append({"phase": p or "", "seconds": max(0.0, t2 - t), "pre": pre, "complete": done})
        return out

    # ------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        return {"points": [list(p) for p in self.points], "anchor": list(self.anchor) if self.anchor else None,
                "anchor_phase": self.anchor_phase, "phase": self.phase, "phase_ts": self.phase_ts,
                "phases": [list(p) for p in self.phases], "done_ts": self.done_ts}

    @classmethod
    def from_dict(cls, d: dict) -> "Tracker":
        t = cls()
        t.points.extend(tuple(p) for p in d.get("points") or [])
        t.anchor = tuple(d["anchor"]) if d.get("anchor") else None
        t.anchor_phase, t.phase, t.phase_ts = d.get("anchor_phase"), d.get("phase"), d.get("phase_ts")
        t.phases = [list(p) for p in d.get("phases") or []]
        t.done_ts = d.get("done_ts")
        return t


def _interp(curve: list, x: float) -> float:
    """The curve (values at 0, 1/(n-1), …, 1) at x, linearly interpolated."""
    n = len(curve) - 1
    x = 0.0 if x < 0 else 1.0 if x > 1 else x
    i = min(int(x * n), n - 1)
    f = x * n - i
    return curve[i] * (1 - f) + curve[i + 1] * f


def units(st) -> int | None:
    """How many units the run's progress has (tasks, docker steps), if the log says."""
    if st.outer_ratio is not None:
        if st.outer_total and st.task_total:
            return int(st.outer_total * st.task_total)
        return int(st.outer_total) if st.outer_total else None
    if st.tasks_planned:
        return int(st.tasks_planned)
    if st.build_steps:
        return int(st.build_steps)
    return None
