"""The runs runwatch follows, and the glue that feeds a source's bytes into one.

`Registry` holds every run behind one lock: sources apply events under it, a
scrape copies a snapshot under it and renders outside it. `Ingest` is one
run's line path: raw chunks -> LineFramer -> Matcher -> events -> Registry.
"""
from __future__ import annotations

import collections
import re
import threading
import time
from dataclasses import dataclass, field

from ..events import TERMINAL_STATES, Event
from ..parse.framing import DEFAULT_MAX_LINE, LineFramer, count_decode_errors
from ..parse.packs import Matcher
from .state import RunState

RECENT_LINES = 50
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


@dataclass
class RunSpec:
    """What a run is; fixed for its lifetime. Goes into runwatch_run_info."""

    id: str
    kind: str = "job"
    source: str = "command"
    url: str = ""
    labels: dict = field(default_factory=dict)
    cost_rate: float | None = None   # USD per hour while running
    budget: float | None = None      # USD


def spec_cost_event(spec: RunSpec, ts: float) -> Event | None:
    """The cost event a run's configured rate and budget amount to (--cost-per-hour /
    --budget, a config's cost_per_hour / budget_usd, a demo sample's); None without either."""
    fields = {}
    if spec.cost_rate is not None:
        fields["rate_usd_per_hour"] = spec.cost_rate
    if spec.budget is not None:
        fields["budget_usd"] = spec.budget
    return Event("cost", fields, ts) if fields else None


class Run:
    __slots__ = ("spec", "state", "lines_cut", "decode_errors", "sources_up", "source_errors", "recent",
                 "finished_at", "changes")

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.state = RunState()
        self.lines_cut = 0
        self.decode_errors = 0
        self.sources_up: dict[str, bool] = {}
        self.source_errors: dict[str, int] = {}    # failed polls (or parts of polls) by source
        self.recent: collections.deque = collections.deque(maxlen=RECENT_LINES)
        self.finished_at: float | None = None
        self.changes = 0                 # bumped on every update: checkpoints skip runs that did not change


class Registry:
    def __init__(self, grace_seconds: float = 0.0, history=None):
        self.lock = threading.Lock()
        self.history = history               # history.History: ETA priors in, finished runs out
        self.runs: dict[str, Run] = {}
        self.grace_seconds = grace_seconds   # finished runs stay exported this long
        self.lines_total = 0
        self.lines_cut_total = 0
        self.decode_errors_total = 0
        self.changed = threading.Condition(self.lock)   # notified on every update (status page, waits)
        self.version = 0

    def add(self, spec: RunSpec, now: float | None = None) -> Run:
        now = time.time() if now is None else now
        with self.lock:
            run = self.runs.get(spec.id)
            if run is None:
                run = self.runs[spec.id] = Run(spec)
                if self.history is not None:
                    run.state.set_prior(self.history.prior(spec.kind))
                cost = spec_cost_event(spec, now)
                if cost is not None:
                    run.state.apply(cost)
                self._bump()
            return run

    def restore(self, run: Run, saved: Run, now: float | None = None) -> None:
        """Put a run read back from the state database (persist.py) in place of `run`'s
        state and counters. The history prior stays (it is not saved), and the spec's
        configured cost rate and budget win over the saved ones."""
        now = time.time() if now is None else now
        with self.lock:
            prior = run.state.eta_prior
            run.state, run.lines_cut, run.decode_errors = saved.state, saved.lines_cut, saved.decode_errors
            run.recent.clear()
            run.recent.extend(saved.recent)
            run.finished_at = saved.finished_at
            run.state.set_prior(prior)
            cost = spec_cost_event(run.spec, now)
            if cost is not None:
                run.state.apply(cost)
            self._bump()

    def get(self, run_id: str) -> Run | None:
        with self.lock:
            return self.runs.get(run_id)

    def apply(self, run: Run, events: list, now: float | None = None) -> None:
        """Apply events that did not come from lines (status, cost, VM power …)."""
        with self.lock:
            run.state.apply_all(events)
            self._after(run, now if now is not None else time.time())

    def ingest(self, run: Run, block: bytes, events: list, cut: int, now: float) -> None:
        """Account one block of lines and apply the events parsed from it."""
        self.account(run, block.count(b"\n"), events, cut, count_decode_errors(block), now,
                     _last_lines(block, RECENT_LINES))

    def account(self, run: Run, lines: int, events: list, cut: int, bad: int, now: float,
                recent: list[str] = ()) -> None:
        """Counts and events of lines already framed and matched (ingest; scan's workers)."""
        with self.lock:
            st = run.state
            if lines:
                st.lines_seen(lines, now)
            if events:
                st.apply_all(events)
            run.lines_cut += cut
            run.decode_errors += bad
            run.recent.extend(recent)
            self.lines_total += lines
            self.lines_cut_total += cut
            self.decode_errors_total += bad
            self._after(run, now)

    def set_url(self, run: Run, url: str | None) -> None:
        """A source learned the run's page (Azure ML studio, W&B): it goes into
        run_info{url} unless the run has one already (the config's)."""
        if not url:
            return
        with self.lock:
            if not run.spec.url:
                run.spec.url = url
                self._bump()

    def set_source_up(self, run: Run, source: str, up: bool) -> None:
        with self.lock:
            if run.sources_up.get(source) != up:
                run.sources_up[source] = up
                self._bump()

    def source_failed(self, run: Run, source: str) -> None:
        """A poll of the source (or a part of it) failed: down, and one more error counted."""
        with self.lock:
            run.sources_up[source] = False
            run.source_errors[source] = run.source_errors.get(source, 0) + 1
            self._bump()

    def _after(self, run: Run, now: float) -> None:
        run.changes += 1
        if run.state.state in TERMINAL_STATES:
            if run.finished_at is None:
                run.finished_at = now
                if self.history is not None:
                    st = run.state
                    self.history.record(run.spec.kind, run.spec.id, st.state, st.history_summary(), st.end_ts)
        else:
            run.finished_at = None
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        self.changed.notify_all()

    def remove(self, run_id: str) -> None:
        """Forget a run now, finished or not (the demo starts each sample over as a new run)."""
        with self.lock:
            if self.runs.pop(run_id, None) is not None:
                self._bump()

    def expire(self, now: float) -> list[str]:
        """Forget finished runs whose grace period is over; their series end."""
        with self.lock:
            gone = [rid for rid, r in self.runs.items()
                    if r.finished_at is not None and now - r.finished_at >= self.grace_seconds]
            for rid in gone:
                del self.runs[rid]
            if gone:
                self._bump()
            return gone

    def snapshot(self, now: float | None = None, only: str | None = None) -> list[tuple[Run, dict]]:
        """(run, plain values) for every run, or for run `only`."""
        now = time.time() if now is None else now
        with self.lock:
            out = []
            runs = self.runs.values() if only is None else [r for r in (self.runs.get(only),) if r is not None]
            for run in runs:
                snap = run.state.snapshot(now)
                snap["lines_cut"] = run.lines_cut
                snap["decode_errors"] = run.decode_errors
                snap["sources_up"] = dict(run.sources_up)
                snap["source_errors"] = dict(run.source_errors)
                out.append((run, snap))
            return out

    def recent_lines(self, run: Run) -> list[str]:
        with self.lock:
            return list(run.recent)


def _last_lines(block: bytes, n: int) -> list[str]:
    """The last n lines of a block, decoded; only the tail of the block is split."""
    return [b.decode("utf-8", "replace") for b in block.rsplit(b"\n", n + 1)[-(n + 1):-1]]


class Ingest:
    """One run's line path; implements the sink protocol of the sources.

    `data(stream, chunk)` and `end(stream)`: each stream (a file incarnation, a
    command's output) has its own framer, so a partial line of a rotated file
    is never glued to the first line of the new one.
    """

    def __init__(self, registry: Registry, run: Run, matcher: Matcher, max_line: int = DEFAULT_MAX_LINE,
                 on_block=None, redactor=True):
        self.registry, self.run, self.matcher, self.max_line = registry, run, matcher, max_line
        self.framers: dict[int, LineFramer] = {}
        self.on_block = on_block     # e.g. the Loki shipper: called with (run, block, ts)
        # Secrets are redacted before anything sees the block (packs, recent lines, Loki):
        # True = the built-in rules, a redact.Redactor = those rules, None/False = off.
        if redactor is True:
            from ..parse.redact import default_redactor
            redactor = default_redactor()
        self.redactor = redactor or None
        self.redact_states: dict = {}    # per stream: inside a private key block?

    def data(self, stream: int, chunk: bytes) -> None:
        framer = self.framers.get(stream)
        if framer is None:
            framer = self.framers[stream] = LineFramer(self.max_line)
        cut0 = framer.lines_cut
        block = framer.push(chunk)
        if block:
            self._block(block, framer.lines_cut - cut0, stream)

    def end(self, stream: int) -> None:
        framer = self.framers.pop(stream, None)
        if framer is not None:
            block = framer.flush()
            if block:
                self._block(block, 0, stream)
            self.redact_states.pop(stream, None)

    def end_all(self) -> None:
        for stream in list(self.framers):
            self.end(stream)

    def _block(self, block: bytes, cut: int, stream: int = 0) -> None:
        now = time.time()
        if self.redactor is not None:
            st = self.redact_states.get(stream)
            if st is None:
                from ..parse.redact import RedactState
                st = self.redact_states[stream] = RedactState()
            block = self.redactor.block(block, st)
        events: list = []
        self.matcher.match_block(block, now, events)
        self.registry.ingest(self.run, block, events, cut, now)
        if self.on_block is not None:
            self.on_block(self.run, block, now)
