"""The JSON side of the HTTP endpoint: the events API and the read-only run views.

Everything here is plain functions over a `Registry`; `web.py` does the HTTP.

Events API (see docs/events.md): a body is one JSON event, a JSON array of
events, or NDJSON (one event per line). An event is a flat object:

    {"type": "agent_started", "agent_id": "planner", "run_id": "wf-1", "ts": 1732440000.5}

`type` and the event's own fields (events.SCHEMA) are required as the schema
says; `run_id` comes from the body or the URL path; `ts` (seconds since the
epoch) defaults to the time it arrived; `kind` only matters for the event that
creates a run. Besides the state vocabulary there is one more type, `log`
({"line": "...", "level": "INFO"}): a line of the job's output, which counts
as output (runwatch_lines_total, last-output age, the status page's recent
lines); a `log` at level ERROR or above also counts an error.
"""
from __future__ import annotations

import hmac
import json
import math
import re
import threading
import time

from ..parse.redact import default_redactor
from ..events import (TERMINAL_STATES as TERMINAL, Event, EventError, escape_surrogates, make, payloads_as_text,
                      unicode_error)
from ..parse.packs import Matcher
from ..model.runs import RUN_ID_RE, Ingest, Registry, Run, RunLimit, RunSpec
from ..model.state import MAX_AGENT_EVENTS, MAX_AGENT_EXECUTIONS, MAX_PAYLOAD_BYTES, MAX_RUN_PAYLOAD_BYTES

RESERVED = ("type", "run_id", "ts", "kind")
LOG_TYPE = "log"
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL", "FATAL", "EXCEPTION"})
DEFAULT_KIND = "workflow"
MAX_LOG_LINE = 16 * 1024     # characters of one log line kept
MAX_EVENTS_PER_BODY = 10000

# ---------------------------------------------------------------- auth


def token_ok(header: str | None, token: str | None) -> bool:
    """`Authorization: Bearer TOKEN`, compared in constant time."""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


class RateLimit:
    """A token bucket: `rate` requests per second on average, bursts of `burst`."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate * 2))
        self.tokens = self.burst
        self.t = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0 when the request may go ahead, else the seconds to wait (Retry-After)."""
        if self.rate <= 0:
            return 0.0
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


# ---------------------------------------------------------------- redaction

def redact(line: str) -> str:
    """A line as the status page and JSON API may show it: runwatch/redact.py,
    the same redaction the line path and the Loki shipper use."""
    return default_redactor().text(line)


# ---------------------------------------------------------------- events in


class BodyError(ValueError):
    pass


MAX_JSON_DEPTH = 32          # nesting of a body: an array of flat objects needs 2


def parse_body(body: bytes) -> list:
    """One JSON value, a JSON array, or NDJSON -> list of items.

    The decoding of a posted body, and its limits: UTF-8, valid JSON, at most
    MAX_JSON_DEPTH levels of nesting (deeper is refused before the decoder sees it),
    numbers JSON can spell but no float holds (1e400) refused; the strings' and
    numbers' own checks are the event schema's (events.py). An item that is not valid
    JSON (NDJSON only) is kept as a BodyError so it is reported with its index while
    the others are applied."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BodyError(f"body is not UTF-8: {e.reason} at byte {e.start}") from None
    if not text.strip():
        raise BodyError("empty body; send a JSON event, a JSON array of events, or NDJSON")
    try:
        value = _loads(text)
    except json.JSONDecodeError as e:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) < 2:
            raise BodyError(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        items: list = []
        for n, ln in enumerate(lines, 1):
            try:
                items.append(_loads(ln))
            except json.JSONDecodeError as le:
                items.append(BodyError(f"NDJSON line {n} is not JSON: {le.msg} at column {le.colno}"))
            except BodyError as be:
                items.append(BodyError(f"NDJSON line {n}: {be}"))
        return items
    if isinstance(value, list):
        return value
    return [value]


def _too_deep(text: str) -> bool:
    """Do arrays and objects nest deeper than MAX_JSON_DEPTH in this JSON text? Brackets in
    strings do not count; the strings and everything but brackets go first, at C speed."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False                     # cannot nest deeper than it has brackets
    depth = 0
    for c in _NOT_BRACKETS.sub("", _STRINGS.sub("", text)):
        if c == "[" or c == "{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _bad_constant(name: str):
    raise BodyError(f"{name} is not a number runwatch accepts (JSON has no NaN or Infinity)")


def _loads(text: str):
    if _too_deep(text):
        raise BodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels; an event is a flat object")
    try:
        return json.loads(text, parse_constant=_bad_constant)
    except RecursionError:
        raise BodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels; an event is a flat object") from None
    except (json.JSONDecodeError, BodyError):
        raise
    except ValueError as e:          # an integer of more than 4300 digits
        raise BodyError(f"a number runwatch cannot read: {str(e)[:120]}") from None


class Rejected(Exception):
    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


def _ts(v, now: float) -> float:
    if v is None:
        return now
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise Rejected("ts", "must be seconds since the epoch (a number)")
    if isinstance(v, str) and unicode_error(v):
        raise Rejected("ts", unicode_error(v))
    try:
        f = float(v)
    except OverflowError:
        raise Rejected("ts", "out of range: too large for a 64-bit float") from None
    except ValueError:
        raise Rejected("ts", f"must be seconds since the epoch (a number); got {str(v)[:40]!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise Rejected("ts", f"must be a positive finite number; got {str(v)[:40]!r}")
    return f


def _valid_text(item) -> None:
    """Every key and string value of an item is valid Unicode (events.unicode_error), checked
    before anything else (redaction, the schema) reads it."""
    if not isinstance(item, dict):
        return
    for k, v in item.items():
        why = unicode_error(k)
        if why:
            raise Rejected(escape_surrogates(k)[:64], f"field name {why}")
        if isinstance(v, str):
            why = unicode_error(v)
            if why:
                raise Rejected(k, why)


def _check(item, path_run_id: str | None, now: float):
    """One item -> (run_id, kind, Event | ('log', line, level))."""
    if isinstance(item, BodyError):
        raise Rejected("body", str(item))
    if not isinstance(item, dict):
        raise Rejected("event", f"must be a JSON object; got {type(item).__name__}")
    etype = item.get("type")
    if not isinstance(etype, str) or not etype:
        raise Rejected("type", "required (a string such as agent_started, progress_update, step)")
    rid = item.get("run_id")
    if rid is not None and not isinstance(rid, str):
        raise Rejected("run_id", "must be a string")
    if path_run_id is not None:
        if rid is not None and rid != path_run_id:
            raise Rejected("run_id", f"{rid!r} does not match the run in the URL ({path_run_id!r})")
        rid = path_run_id
    if not rid:
        raise Rejected("run_id", "required: in the event or in the URL (/api/runs/{run_id}/events)")
    if not RUN_ID_RE.match(rid):
        raise Rejected("run_id", "use letters, digits and _ . : - (at most 128, starting with a letter or digit)")
    kind = item.get("kind")
    if kind is not None and (not isinstance(kind, str) or not kind or len(kind) > 64):
        raise Rejected("kind", "must be a non-empty string of at most 64 characters")
    if kind is not None and unicode_error(kind):
        raise Rejected("kind", unicode_error(kind))
    ts = _ts(item.get("ts"), now)
    fields = {k: v for k, v in item.items() if k not in RESERVED}
    if etype == LOG_TYPE:
        line = fields.pop("line", None)
        if line is None:
            line = fields.pop("message", None)
        level = fields.pop("level", None)
        fields.pop("logger", None)
        if fields:
            raise Rejected(next(iter(fields)), "not a field of 'log' (fields: line, level, logger)")
        if not isinstance(line, str):
            raise Rejected("line", "required for 'log' (a string)")
        if level is not None and not isinstance(level, str):
            raise Rejected("level", "must be a string such as INFO or ERROR")
        for name, value in (("line", line), ("level", level or "")):
            if unicode_error(value):
                raise Rejected(name, unicode_error(value))
        return rid, kind, (LOG_TYPE, line[:MAX_LOG_LINE], (level or "").upper(), ts)
    try:
        ev = make(etype, fields, ts)
    except EventError as e:
        raise Rejected(e.field, e.reason) from None
    return rid, kind, ev


class LogLines:
    """Where `log` events go: one Ingest per run, so posted lines take the same
    path as every other line (redaction, recent lines, Loki) instead of a
    shortcut into the registry. No packs: a job that posts knows what it says."""

    def __init__(self, registry: Registry, on_block=None, redactor=True):
        self.registry, self.on_block, self.redactor = registry, on_block, redactor
        self.ingests: dict[str, Ingest] = {}
        self.lock = threading.Lock()          # concurrent POSTs for one run share its framer
        self.matcher = Matcher([])

    def redact_item(self, item):
        """A posted event with its free-text fields (message, reason, phase, task,
        action, name, ...) redacted as lines are, before they reach state, labels,
        Loki or the status page; type, run_id, ts and kind are validated as sent."""
        if not isinstance(item, dict):
            return item
        item = payloads_as_text(item)          # an agent's JSON input/output is redacted as its text
        red = self.redactor
        if red is True:
            red = default_redactor()
        if not red:
            return item
        return red.fields(item, skip=RESERVED)

    def write(self, run: Run, block: bytes) -> None:
        with self.lock:
            ing = self.ingests.get(run.spec.id)
            if ing is None or ing.run is not run:
                if len(self.ingests) >= self.registry.max_runs:     # bounded: forget runs the registry forgot
                    with self.registry.lock:
                        live = dict(self.registry.runs)
                    for rid in [rid for rid, i in self.ingests.items() if live.get(rid) is not i.run]:
                        del self.ingests[rid]
                ing = self.ingests[run.spec.id] = Ingest(self.registry, run, self.matcher, on_block=self.on_block,
                                                         redactor=self.redactor)
            ing.data(0, block)


def apply_body(registry: Registry, items: list, path_run_id: str | None = None,
               now: float | None = None, log_lines: LogLines | None = None) -> dict:
    """Validate every item, apply the valid ones in order, report both.

    Returns {"applied": n, "rejected": m, "errors": [{"index", "field", "reason"}],
    "runs_created": [...]}."""
    now = time.time() if now is None else now
    log_lines = log_lines or LogLines(registry)
    errors: list[dict] = []
    applied = 0
    created: list[str] = []
    if len(items) > MAX_EVENTS_PER_BODY:
        return {"applied": 0, "rejected": len(items), "runs_created": [],
                "errors": [{"index": None, "field": "body",
                            "reason": f"{len(items)} events in one body; at most {MAX_EVENTS_PER_BODY}"}]}
    pending_run: Run | None = None
    pending: list[Event] = []

    def flush():
        nonlocal pending
        if pending_run is not None and pending:
            registry.apply(pending_run, pending, now, outside=True)
        pending = []

    for i, item in enumerate(items):
        try:
            _valid_text(item)
            rid, kind, ev = _check(log_lines.redact_item(item), path_run_id, now)
            run = registry.get(rid)
            if run is None:
                try:                 # at the registry's cap: finished runs make room, else refused
                    run = registry.add(RunSpec(id=rid, kind=kind or DEFAULT_KIND, source="api"), now, limit=True)
                except RunLimit as e:
                    raise Rejected("run_id", f"unknown run {rid!r} refused: {e}") from None
                created.append(rid)
        except Rejected as e:
            errors.append({"index": i, "field": e.field, "reason": e.reason})
            continue
        if run is not pending_run:
            flush()
            pending_run = run
        if isinstance(ev, Event):
            pending.append(ev)
        else:
            flush()
            _, line, level, ts = ev
            lines = [ln.rstrip("\r") for ln in line.split("\n")] or [""]
            block = ("\n".join(lines) + "\n").encode("utf-8", "replace")
            log_lines.write(run, block)
            if level in ERROR_LEVELS:
                registry.apply(run, [Event("error", {"message": lines[0]}, ts)], ts)
        applied += 1
    flush()
    return {"applied": applied, "rejected": len(errors), "errors": errors, "runs_created": created}


# ---------------------------------------------------------------- views out


def run_view(run: Run, snap: dict, now: float, *, lines: list[str] | None = None,
             cancellable: dict | None = None) -> dict:
    """A run as JSON: everything the snapshot has, plus the keys benchmark dashboards read
    from a live-status file (status, total_tasks, tasks_completed, current_task)."""
    s = snap
    spec = run.spec
    current = None
    if s.get("current_task") is not None or s.get("task_steps"):
        current = {"task_id": s.get("current_task"), "steps": s.get("task_steps", []),
                   "step_count": s.get("current_task_steps", 0)}
    age = now - s["last_line_ts"] if s.get("last_line_ts") else None
    agents = [{"agent_id": k, **v} for k, v in sorted(s.get("agents", {}).items())]
    flows = [{"from_agent": a, "to_agent": b, "bytes": n} for (a, b), n in sorted(s.get("data_flow", {}).items())]
    out = {
        "run_id": spec.id, "kind": spec.kind, "source": spec.source, "url": spec.url,
        "labels": dict(spec.labels),
        # benchmark_live.json compatible
        "status": s["state"], "status_reason": s.get("status_reason"), "total_tasks": s.get("tasks_planned"),
        "tasks_completed": s.get("tasks_completed"),
        "current_task": current,
        # runwatch
        "state": s["state"], "phase": s.get("phase"), "progress": s.get("progress"), "eta_seconds": s.get("eta"),
        "start_ts": s.get("start_ts"), "end_ts": s.get("end_ts"), "last_progress_ts": s.get("last_progress_ts"),
        "last_line_ts": s.get("last_line_ts"), "last_output_age_seconds": age, "lines": s.get("lines"),
        "tasks_planned": s.get("tasks_planned"), "tasks_started": s.get("tasks_started"),
        "tasks_failed": s.get("tasks_failed"), "steps": s.get("steps"), "build_step": s.get("build_step"),
        "build_steps": s.get("build_steps"), "build_done": s.get("build_done"), "scores": s.get("scores"),
        "best_scores": s.get("best_scores"), "errors": s.get("errors"),
        "last_error": redact(s["last_error"]) if s.get("last_error") else None,
        "cost_usd": s.get("cost"), "cost_rate_usd_per_hour": s.get("cost_rate"),
        "cost_projected_usd": s.get("cost_projected"), "budget_usd": s.get("budget"),
        "artifacts": {k: {"available": a, "since": since} for k, (a, since) in (s.get("artifacts") or {}).items()},
        "vm_power": s.get("vm_power"), "vm_power_since": s.get("vm_power_since"), "sources_up": s.get("sources_up"),
        "metrics": s.get("metrics"), "links": run_links(spec),
        "agents": agents, "data_flow": flows,
        "cancellable": bool(cancellable), "process": cancellable or None,
    }
    if lines is not None:
        out["recent_lines"] = lines          # redacted on the way in (runs.Ingest)
    return _json_safe(out)


def _json_safe(v):
    """NaN/inf have no JSON spelling: send null."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def runs_view(registry: Registry, *, with_lines: bool = False, cancellable=None, only: str | None = None) -> list:
    now = time.time()
    cancellable = cancellable or {}
    out = []
    for run, snap in registry.snapshot(now, only=only):
        lines = registry.recent_lines(run) if with_lines else None
        out.append(run_view(run, snap, now, lines=lines, cancellable=cancellable.get(run.spec.id)))
    out.sort(key=lambda r: r["run_id"])
    return out


def agent_view(registry: Registry, run_id: str, agent_id: str) -> tuple[int, dict]:
    """GET /api/runs/{run_id}/agents/{agent_id}: one workflow agent for the status page's inspector:
    its state and executions, its last events, the data it sent and received, and its latest input
    and output payloads (redacted on the way in, and again here). (404, error) for an unknown run or agent."""
    with registry.lock:
        run = registry.runs.get(run_id)
        detail = run.state.agent_detail(agent_id) if run is not None else None
    if run is None:
        return 404, {"error": f"no run {run_id!r}"}
    if detail is None:
        return 404, {"error": f"run {run_id!r} has no agent {agent_id!r}", "run_id": run_id}
    a = detail.pop("agent")
    if a.get("error"):
        a["error"] = redact(a["error"])
    for ex in a.get("executions", ()):
        if ex.get("error"):
            ex["error"] = redact(ex["error"])
    for which in ("input", "output"):
        p = detail[which]
        if p is not None:
            p["text"] = redact(p["text"])
            p["truncated"] = p["cut_bytes"] > 0
    for e in detail["events"]:
        for k, v in e.items():
            if isinstance(v, str) and k not in ("type", "from_agent", "to_agent"):
                e[k] = redact(v)
    out = {"run_id": run_id, "agent_id": agent_id, **a, **detail,
           "limits": {"payload_bytes": MAX_PAYLOAD_BYTES, "run_payload_bytes": MAX_RUN_PAYLOAD_BYTES,
                      "events": MAX_AGENT_EVENTS, "executions": MAX_AGENT_EXECUTIONS}}
    return 200, _json_safe(out)
# ---------------------------------------------------------------- links, history, export

LINK_KINDS = (               # (what the URL has, the button's name), first match wins
    ("vnc", "Open VNC"), ("wandb.ai", "W&B run"), ("ml.azure.com", "Azure ML studio"),
    ("portal.azure.com", "Azure portal"),
)


def _http_url(v) -> bool:
    if not isinstance(v, str) or len(v) > 2048:
        return False
    low = v.lower()
    return (low.startswith("http://") or low.startswith("https://")) and not any(c in v for c in " \t\r\n\"'<>")


def run_links(spec: RunSpec) -> list[dict]:
    """The run's URLs as buttons: its page (run_info url), and every label whose value is
    an http(s) URL. Anything else (javascript:, data:, file:) is never a link."""
    out = []
    seen = set()
    cands = [("url", spec.url)] + sorted((k, v) for k, v in (spec.labels or {}).items())
    for key, url in cands:
        if not _http_url(url) or url in seen:
            continue
        seen.add(url)
        low = url.lower()
        name = next((n for part, n in LINK_KINDS if part in low), "Open page" if key == "url" else key)
        out.append({"name": name, "url": url, "source": key})
    return out


def history_view(registry: Registry, run_id: str) -> dict | None:
    """GET /api/runs/{id}/history: the run's samples over time (model/samples.py)."""
    with registry.lock:
        run = registry.runs.get(run_id)
        if run is None:
            return None
        view = run.timeline.view(run.state, time.time())
    return _json_safe({"run_id": run_id, **view})


EXPORT_FORMATS = ("csv", "json")
CSV_COLUMNS = ("record", "seq", "ts", "type", "key", "value")


def export_run(registry: Registry, run_id: str, fmt: str, cancellable=None) -> tuple[str, bytes] | None:
    """GET /api/runs/{id}/export?format=csv|json: (content type, body), None for an unknown run.

    JSON: {"run": the run's view, "samples": [...], "events": [{"ts", "type", "fields"}], ...}.
    CSV, one value a row: record (sample | event), seq (the sample's or event's number), ts,
    type (the event's type; empty for a sample), key (the field or sample value's name;
    metrics.NAME, scores.NAME, best_scores.NAME), value. String fields are redacted again."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}")
    runs = runs_view(registry, with_lines=True, cancellable=cancellable, only=run_id)
    with registry.lock:
        run = registry.runs.get(run_id)
        if run is None or not runs:
            return None
        hist = run.timeline.view(run.state, time.time())
        evs = run.timeline.events_view()
    for e in evs["events"]:
        e["fields"] = {k: redact(v) if isinstance(v, str) else v for k, v in e["fields"].items()}
    if fmt == "json":
        doc = _json_safe({"run_id": run_id, "exported_at": time.time(), "run": runs[0],
                          "interval_seconds": hist["interval_seconds"], "samples": hist["samples"], **evs})
        return "application/json", (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("utf-8")
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i, smp in enumerate(hist["samples"]):
        for k in ("state", "progress", "eta_seconds", "cost_usd", "cost_rate_usd_per_hour", "errors", "lines",
                  "tasks_completed"):
            if smp.get(k) is not None:
                w.writerow(("sample", i, _num(smp["ts"]), "", k, _num(smp[k])))
        for group in ("metrics", "scores", "best_scores"):
            for name, v in sorted(smp[group].items()):
                w.writerow(("sample", i, _num(smp["ts"]), "", f"{group}.{name}", _num(v)))
    for i, e in enumerate(evs["events"]):
        fields = sorted(e["fields"].items()) or [("", "")]
        for k, v in fields:
            w.writerow(("event", i, _num(e["ts"]), e["type"], k, _csv_cell(_num(v))))
    return "text/csv; charset=utf-8", buf.getvalue().encode("utf-8")


def _num(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def _csv_cell(v):
    """A text cell a spreadsheet would run as a formula (=, +, -, @ first) gets a leading '."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


# ---------------------------------------------------------------- the event stream

MAX_RUNS_PER_PUSH = 50       # runs in one push of the stream; the rest follow in the next
MAX_PUSH_LINE_BYTES = 32 * 1024   # output lines of one run in one push (the newest; the rest are counted)


def _fit_lines(lines: list[str], limit: int = MAX_PUSH_LINE_BYTES) -> tuple[list[str], int]:
    """The newest lines that fit in `limit` bytes (at least the newest, cut), and how many were left out."""
    out, size = [], 0
    for ln in reversed(lines):
        n = len(ln.encode("utf-8", "replace")) + 1
        if size + n > limit:
            if not out:
                out.append(ln[:limit])
            break
        out.append(ln)
        size += n
    out.reverse()
    return out, len(lines) - len(out)


class StreamDiff:
    """What one status-page stream has been sent, so each push carries only what changed.

    `snapshot()` at connect: every run with its recent lines. `diff()` then: for each run
    whose state, output, URL, sources or cancel info changed since it was last sent, only
    the keys of its view that changed (always with `run_id`) and its new lines
    (`new_lines`); a run new to this stream, or a new run of the same id, comes whole
    with `recent_lines`. Also the ids of runs that went away and, when `refresh`, the
    running runs again (ETA and cost move with time). Bounded: at most MAX_RUNS_PER_PUSH
    runs a push (`more` says that others are still due) and MAX_PUSH_LINE_BYTES of lines
    a run (`lines_skipped` counts the older lines left out)."""

    def __init__(self, registry: Registry, max_runs: int = MAX_RUNS_PER_PUSH):
        self.registry = registry
        self.max_runs = max_runs
        self.sent: dict[str, tuple] = {}       # run_id -> (key, lines counted when sent)
        self.views: dict[str, dict] = {}       # run_id -> the view last sent (without lines)
        self.refresh_due: set[str] = set()

    @staticmethod
    def _key(rid: str, r: Run, cancellable: dict) -> tuple:
        return (r.timeline.serial, r.changes, r.state.lines, r.spec.url, tuple(sorted(r.sources_up.items())),
                rid in cancellable)

    def _keys(self, cancellable: dict) -> dict[str, tuple]:
        with self.registry.lock:
            return {rid: (self._key(rid, r, cancellable), r.state.state) for rid, r in self.registry.runs.items()}

    def _view(self, rid: str, cancellable: dict, now: float):
        """(view, key, lines counted, recent lines) of one run, all read under one lock; None if gone."""
        reg = self.registry
        with reg.lock:
            run = reg.runs.get(rid)
            if run is None:
                return None
            key, lines, recent = self._key(rid, run, cancellable), run.state.lines, list(run.recent)
        snap = reg.snapshot(now, only=rid)
        if not snap or snap[0][0] is not run:
            return None
        return run_view(run, snap[0][1], now, cancellable=cancellable.get(rid)), key, lines, recent

    def _whole(self, rid: str, view: dict, recent: list[str]) -> dict:
        self.views[rid] = dict(view)
        view["recent_lines"], skipped = _fit_lines(recent)
        if skipped:
            view["lines_skipped"] = skipped
        return view

    def snapshot(self, cancellable: dict) -> dict:
        now = time.time()
        self.sent.clear()
        self.views.clear()
        self.refresh_due.clear()
        out = []
        for rid in sorted(self._keys(cancellable)):
            got = self._view(rid, cancellable, now)
            if got is None:
                continue
            view, key, lines, recent = got
            out.append(self._whole(rid, view, recent))
            self.sent[rid] = (key, lines)
        return {"type": "snapshot", "now": now, "runs": out}

    def diff(self, cancellable: dict, refresh: bool = False) -> dict | None:
        """The next push, or None when nothing is due."""
        keys = self._keys(cancellable)
        removed = [rid for rid in self.sent if rid not in keys]
        for rid in removed:
            del self.sent[rid]
            self.views.pop(rid, None)
        if refresh:
            self.refresh_due |= {rid for rid, (_, state) in keys.items() if state not in TERMINAL}
        due = [rid for rid, (key, _) in sorted(keys.items())
               if rid not in self.sent or self.sent[rid][0] != key or rid in self.refresh_due]
        if not due and not removed:
            return None
        todo, rest = due[:self.max_runs], due[self.max_runs:]
        now = time.time()
        out = []
        for rid in todo:
            self.refresh_due.discard(rid)
            got = self._view(rid, cancellable, now)
            if got is None:
                continue
            view, key, lines, recent = got
            prev, last = self.sent.get(rid), self.views.get(rid)
            self.sent[rid] = (key, lines)
            if prev is None or last is None or prev[0][0] != key[0] or lines < prev[1]:
                out.append(self._whole(rid, view, recent))     # new to this client, or a new run of the same id
                continue
            change = {k: v for k, v in view.items() if last.get(k) != v}
            self.views[rid] = view
            n = min(lines - prev[1], len(recent))
            if n > 0:
                change["new_lines"], skipped = _fit_lines(recent[len(recent) - n:])
                skipped += lines - prev[1] - n             # more lines than the server keeps came in
                if skipped:
                    change["lines_skipped"] = skipped
            if change:
                change["run_id"] = rid
                out.append(change)
        return {"type": "diff", "now": now, "runs": out, "removed": removed, "more": bool(rest)}
