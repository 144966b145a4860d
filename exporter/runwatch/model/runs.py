"""The runs runwatch follows, and the glue that feeds a source's bytes into one.

`Registry` holds every run behind one lock: sources apply events under it, a
scrape copies a snapshot under it and renders outside it. `Ingest` is one
run's line path: raw chunks -> LineFramer -> Matcher -> events -> Registry.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

from ..events import TERMINAL_STATES, Event, escape_surrogates
from ..parse.framing import DEFAULT_MAX_LINE, LineFramer, count_decode_errors
from ..parse.packs import Matcher
from .samples import Timeline
from .state import RunState
from ..settings import RUN_ID_RE  # noqa: F401 - the run id's form, for those that import it from here

log = logging.getLogger("runwatch")

RECENT_LINES = 50
MAX_RUNS = 1000          # runs a registry holds before it refuses new ones from outside (Registry.add limit=True)


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
    total: int | None = None         # planned units of the outermost level (epochs, rounds): --total

    def __post_init__(self):
        # id, kind, url and labels become label values: a name from argv or a file name (`runwatch
        # scan` names a run after its file; os.fsdecode's lone surrogates) must not make a scrape fail
        self.id, self.kind, self.url = escape_surrogates(self.id), escape_surrogates(self.kind), \
            escape_surrogates(self.url)
        self.labels = {escape_surrogates(str(k)): escape_surrogates(str(v)) for k, v in self.labels.items()}


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
                 "finished_at", "changes", "timeline")

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
        self.timeline = Timeline()       # samples over time and the last events (samples.py), in memory only


class RunLimit(Exception):
    """A new run was refused: the registry holds max_runs runs and none of them has finished."""


class Registry:
    def __init__(self, grace_seconds: float = 0.0, history=None, max_runs: int = MAX_RUNS,
                 timelines: bool = True):
        self.lock = threading.Lock()
        # timelines=False: no run keeps samples or events for the status page and the export
        # (scan and backfill print metrics and exit; nothing reads them)
        self.timelines = timelines
        self.max_runs = max_runs
        self.refused: collections.Counter = collections.Counter()   # reason -> what a cap turned away
        self.evicted = 0                     # finished runs forgotten early to make room for new ones
        self.history = history               # history.History: ETA priors in, finished runs out
        self.runs: dict[str, Run] = {}
        self.grace_seconds = grace_seconds   # finished runs stay exported this long
        self.lines_total = 0
        self.lines_cut_total = 0
        self.decode_errors_total = 0
        self.changed = threading.Condition(self.lock)   # notified on every update (status page, waits)
        self.version = 0

    def add(self, spec: RunSpec, now: float | None = None, *, limit: bool = False) -> Run:
        """The run `spec.id`, made if new. limit=True (runs that input from outside creates, like
        the events API's): at max_runs runs, the finished run that ended first is forgotten to
        make room; with none finished, RunLimit (counted in refused["runs"])."""
        now = time.time() if now is None else now
        with self.lock:
            run = self.runs.get(spec.id)
            if run is None and limit and len(self.runs) >= self.max_runs:
                done = [(r.finished_at, rid) for rid, r in self.runs.items() if r.finished_at is not None]
                if not done:
                    self.refused["runs"] += 1
                    raise RunLimit(f"already {len(self.runs)} runs, none of them finished "
                                   f"(at most {self.max_runs}); finish or wait for one")
                for _, rid in sorted(done)[:len(self.runs) - self.max_runs + 1]:
                    self._forget(rid)
                    self.evicted += 1
            if run is None:
                run = self.runs[spec.id] = Run(spec)
                if self.history is not None:
                    run.state.set_prior(self._prior(spec.kind))
                run.state.set_plan(spec.total)
                cost = spec_cost_event(spec, now)
                if cost is not None:
                    run.state.apply(cost)
                self._bump()
            return run

    def _prior(self, kind: str):
        """The history's prior for kind; None (with a warning) when what it stored cannot be read."""
        try:
            return self.history.prior(kind)
        except Exception as e:  # noqa: BLE001 - a damaged history must not stop a run from being added
            log.warning("history: no ETA prior for kind %r (%s: %s)", escape_surrogates(kind), type(e).__name__, e)
            return None

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
            if run.state.outer_plan is None:     # saved by an older runwatch, or planned since
                run.state.set_plan(run.spec.total)
            cost = spec_cost_event(run.spec, now)
            if cost is not None:
                run.state.apply(cost)
            self._bump()

    def get(self, run_id: str) -> Run | None:
        with self.lock:
            return self.runs.get(run_id)

    def apply(self, run: Run, events: list, now: float | None = None, *, outside: bool = False) -> None:
        """Apply events that did not come from lines (status, cost, VM power …).

        outside=True: posted by the job (the events API). A `status` event for a command that
        `runwatch run` launched is then only recorded as what the job reported: the process's
        exit decides how the run ends, and until then it can still be canceled."""
        with self.lock:
            st = run.state
            if outside and run.spec.source == "command" and any(e.type == "status" for e in events):
                for e in events:        # a status posted for a command run: recorded, the exit decides
                    if e.type == "status":
                        st.report_status(e.fields, e.ts)
                    else:
                        st.apply(e)
            else:
                st.apply_all(events)
            now = now if now is not None else time.time()
            if self.timelines:
                run.timeline.record(events, now)
            self._after(run, now)

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
                if self.timelines:
                    run.timeline.record(events, now)
            run.lines_cut += cut
            run.decode_errors += bad
            run.recent.extend(recent)
            self.lines_total += lines
            self.lines_cut_total += cut
            self.decode_errors_total += bad
            self._after(run, now)

    def set_url(self, run: Run, url: str | None) -> None:
        """A source learned the run's page (Azure ML studio, W&B): it goes into
        run_info{url} unless the run has one already (the config's). Only http(s): the
        status page links it, and a cloud API's answer is input from outside."""
        if not url or not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            return
        url = escape_surrogates(url)[:2048]
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
        if self.timelines:
            run.timeline.observe(run.state, now, force=run.state.state in TERMINAL_STATES and run.finished_at is None)
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

    def _forget(self, run_id: str) -> Run | None:
        """Under the lock: drop a run; what its caps refused stays in refused_total()."""
        run = self.runs.pop(run_id, None)
        if run is not None:
            self.refused.update(run.state.refused)
            if run.state.labels_folded:
                self.refused["label_values"] += run.state.labels_folded
        return run

    def refused_total(self) -> dict[str, int]:
        """What every cap turned away since the start, by reason (runwatch_events_refused_total):
        runs (RunLimit), label_values (folded into "other"), agents, data_flows, build_vertices."""
        with self.lock:
            out = collections.Counter(self.refused)
            for run in self.runs.values():
                out.update(run.state.refused)
                if run.state.labels_folded:
                    out["label_values"] += run.state.labels_folded
            return dict(out)

    def remove(self, run_id: str) -> None:
        """Forget a run now, finished or not (the demo starts each sample over as a new run)."""
        with self.lock:
            if self._forget(run_id) is not None:
                self._bump()

    def expire(self, now: float) -> list[str]:
        """Forget finished runs whose grace period is over; their series end."""
        with self.lock:
            gone = [rid for rid, r in self.runs.items()
                    if r.finished_at is not None and now - r.finished_at >= self.grace_seconds]
            for rid in gone:
                self._forget(rid)
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
        self.matcher.match_block(block, now, events, True)      # the steps may come compact: only model/ sees them
        self.registry.ingest(self.run, block, events, cut, now)
        if self.on_block is not None:
            self.on_block(self.run, block, now)
