"""A run's recent past, kept in memory: a ring of samples (progress, cost, metrics over
time) for the status page's charts, and the last events applied, for the export.

Both are bounded per run, whatever the run does:

- samples: at most MAX_SAMPLES (+1). One is kept every `interval` seconds (first
  SAMPLE_INTERVAL) when the run changes; between two, one more sample stands for
  the latest state, so the curve always ends where the run is. When the ring is full every other
  sample is dropped and the interval doubles, so the samples span the whole run
  at a coarser grain instead of forgetting its start. A sample holds at most
  MAX_SERIES metric and MAX_SERIES score values (the first names the run had).
- events: the last MAX_EVENTS events applied (type, time, fields), each field
  value a number, a bool or a string of at most MAX_FIELD_CHARS characters.

Nothing here is saved: a restarted runwatch starts the curves over. Called under
the registry's lock (model/runs.py); reads copy.
"""
from __future__ import annotations

import collections
import itertools

from ..events import StepRun, last_events
from .state import RunState

SAMPLE_INTERVAL = 2.0      # seconds between samples at first
MAX_SAMPLES = 120          # samples per run; full: every other one goes and the interval doubles
MAX_SERIES = 8             # metric names and score names per sample
MAX_EVENTS = 300           # events per run kept for the export
MAX_FIELD_CHARS = 1024     # characters of one string field of a kept event
_SERIAL = itertools.count(1)
REFRESH = 0.5              # the newest sample is refreshed at most this often (seconds)

SAMPLE_KEYS = ("ts", "state", "progress", "eta_seconds", "cost_usd", "cost_rate_usd_per_hour", "errors", "lines",
               "tasks_completed", "metrics", "scores", "best_scores")


class Timeline:
    __slots__ = ("serial", "samples", "interval", "_ring", "_pending", "events_dropped", "_last_kept", "_refreshed",
                 "_series", "_dirty", "tail")

    def __init__(self, interval: float = SAMPLE_INTERVAL):
        self.serial = next(_SERIAL)       # tells a run from an earlier one of the same id (the stream)
        self.samples: list[tuple] = []
        self.interval = float(interval)
        self._ring: collections.deque = collections.deque(maxlen=MAX_EVENTS)
        self._pending: list | None = None  # a batch that alone fills the ring, made into its entries when read
        self.events_dropped = 0           # events that fell out of the ring
        self._last_kept: float | None = None   # time of the newest sample that is not provisional
        self._refreshed: float | None = None
        self._dirty = False               # changed since the newest sample was taken
        self.tail: tuple | None = None     # the latest state, newer than the last kept sample
        self._series: dict[str, set] = {"metrics": set(), "scores": set(), "best_scores": set()}

    # ------------------------------------------------------------ in

    @property
    def events(self) -> collections.deque:
        """The last MAX_EVENTS events as (ts, type, fields), oldest first."""
        self._flush()
        return self._ring

    def _flush(self) -> None:
        if self._pending is not None:
            batch, self._pending = self._pending, None
            self._append(last_events(batch, self._ring.maxlen))

    def record(self, events, now: float) -> None:
        keep = self._ring.maxlen
        total = len(events)
        for e in events:
            if type(e) is StepRun:               # the matcher's compact steps
                total += len(e) - 1
        if total >= keep:
            # this batch alone fills the ring: what it held falls out, and this batch's last
            # events are made only when someone reads them (a chatty job's every block would
            # otherwise build MAX_EVENTS events that the next block pushes out unread)
            held = keep if self._pending is not None else len(self._ring)
            self.events_dropped += total - keep + held
            self._ring.clear()
            self._pending = list(events)
            return
        self._flush()                            # an earlier pending batch goes in first
        self._append(last_events(events, total) if total != len(events) else events)

    def _append(self, events) -> None:
        ring = self._ring
        for e in events:
            if len(ring) == ring.maxlen:
                self.events_dropped += 1
            f = e.fields
            if any(not isinstance(v, (int, float)) and (not isinstance(v, str) or len(v) > MAX_FIELD_CHARS)
                   for v in f.values()):
                f = _bounded(f)
            ring.append((e.ts, e.type, f))    # events are not changed once made: no copy

    def observe(self, st: RunState, now: float, force: bool = False) -> None:
        """The run changed at `now`: keep a sample if one is due, else refresh the newest."""
        if not force and self._refreshed is not None and now - self._refreshed < REFRESH:
            self._dirty = True
            return
        self._refreshed, self._dirty = now, False
        sample = self._sample(st, now)
        if self._last_kept is None or now - self._last_kept >= self.interval:
            self.samples.append(sample)
            self._last_kept, self.tail = now, None
            if len(self.samples) > MAX_SAMPLES:
                self.samples = self.samples[:-1][::2] + [self.samples[-1]]
                self.interval *= 2
        else:
            self.tail = sample                    # the newest state until the next sample is due

    def _sample(self, st: RunState, now: float) -> tuple:
        """A sample as a tuple in SAMPLE_KEYS order (compact: a run keeps hundreds)."""
        return (now, st.state, st.progress_ratio(), st.eta_seconds(now), st.cost(now), st.current_rate(), st.errors,
                st.lines, st.tasks_completed, self._few("metrics", st.metrics), self._few("scores", st.scores),
                self._few("best_scores", st.best_scores))

    def _few(self, key: str, values: dict) -> tuple:
        names = self._series[key]
        out = []
        for k, v in values.items():
            if k in names or len(names) < MAX_SERIES:
                names.add(k)
                out.append((k, v))
        return tuple(out) if out else ()

    # ------------------------------------------------------------ out

    def view(self, st: RunState, now: float) -> dict:
        """The samples as dicts; with the run's state as of `now` as the newest when it
        changed since the newest was taken (a read changes nothing)."""
        rows = list(self.samples)
        if self._dirty and rows:
            rows.append(self._sample(st, max(now, rows[-1][0])))
        elif self.tail is not None:
            rows.append(self.tail)
        return {"interval_seconds": self.interval, "max_samples": MAX_SAMPLES,
                "samples": [_as_dict(r) for r in rows]}

    def events_view(self) -> dict:
        return {"max_events": MAX_EVENTS, "events_dropped": self.events_dropped,
                "events": [{"ts": ts, "type": t, "fields": dict(f)} for ts, t, f in self.events]}


def _as_dict(row: tuple) -> dict:
    d = dict(zip(SAMPLE_KEYS, row, strict=True))
    for k in ("metrics", "scores", "best_scores"):
        d[k] = dict(d[k])
    return d


def _bounded(fields: dict) -> dict:
    out = {}
    for k, v in fields.items():
        if isinstance(v, str) and len(v) > MAX_FIELD_CHARS:
            v = v[:MAX_FIELD_CHARS] + "…"
        elif not isinstance(v, (str, int, float, bool)) and v is not None:
            v = str(v)[:MAX_FIELD_CHARS]
        out[k] = v
    return out
