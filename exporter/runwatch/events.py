"""The one vocabulary every source speaks: small typed events.

A pattern pack turns a line into events, the events API (later) accepts them as
JSON, the demo and the cloud pollers produce them directly; the run state
(`state.py`) is the only consumer. Each event type declares its fields and their
types here, so packs are checked at load time and bad input is refused with a
reason instead of corrupting a run.
"""
from __future__ import annotations

import collections
import itertools
import json
import operator
import re
from typing import Any
from collections.abc import Callable

RUN_STATES = ("pending", "running", "succeeded", "failed", "canceled")
#: the run states a run ends in (it never leaves them but for a new status event)
TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled"})
VM_POWER_STATES = ("starting", "running", "stopping", "stopped", "deallocating", "deallocated",
                   "deleted", "unknown")   # runwatch's own: the VM is gone / could not be read for long

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}

#: the bounds every value from outside is held to (docs/events.md, "Limits")
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1     # integers: what an int64 holds
MAX_TEXT = 4096          # characters of a free-text field (message, reason, error); longer is cut
MAX_WORD = 256           # characters of a field that becomes a label value or a key (phase, action, name …)
MAX_NAME = 128           # characters of an agent id
_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_error(s: str) -> str | None:
    """Why `s` is not a valid Unicode scalar string (a lone surrogate, which no UTF-8 can
    encode and no scrape can print), or None when it is one."""
    m = _SURROGATE.search(s)
    if m is None:
        return None
    return (f"not valid Unicode: a lone surrogate U+{ord(m.group()):04X} at character {m.start()} "
            f"(send the text as UTF-8; escape bytes that are not text)")


def escape_surrogates(s: str) -> str:
    """A string from a file name or argv (os.fsdecode keeps undecodable bytes as surrogates
    U+DC80..U+DCFF) as a valid Unicode string: such a byte becomes `\\xNN`, any other lone
    surrogate `\\uNNNN`. Valid strings come back as the same object."""
    if _SURROGATE.search(s) is None:
        return s
    return _SURROGATE.sub(lambda m: (f"\\x{ord(m.group()) - 0xDC00:02x}" if 0xDC80 <= ord(m.group()) <= 0xDCFF
                                     else f"\\u{ord(m.group()):04x}"), s)


def text(v: Any, limit: int = MAX_TEXT) -> str:
    """A string from outside: valid Unicode, at most `limit` characters (the rest is cut)."""
    if isinstance(v, (dict, list, tuple, set)):
        raise ValueError("must be a string")
    s = v if isinstance(v, str) else str(v)
    why = unicode_error(s)
    if why:
        raise ValueError(why)
    return s if len(s) <= limit else s[:limit]


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    s = text(v, MAX_WORD).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"not a boolean: {s[:40]!r}")


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite number: {v!r}")
        if v != int(v):
            raise ValueError(f"not an integer: {v!r}")
        n = int(v)
    elif isinstance(v, int):
        n = v
    else:
        s = text(v, 1 << 30).strip()
        if len(s) > 20 and s.lstrip("+-").isdigit():
            raise ValueError(f"out of range: an integer of {len(s.lstrip('+-'))} digits "
                             f"(integers must fit in 64 bits)")
        n = int(s)
    if not INT_MIN <= n <= INT_MAX:
        raise ValueError(f"out of range: an integer of {len(str(abs(n)))} digits (integers must fit in 64 bits)")
    return n


def _count(v: Any) -> int:
    """A count, an index or a total: an integer, 0 or more."""
    n = _int(v)
    if n < 0:
        raise ValueError(f"must not be negative; got {n}")
    return n


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(v, int) and not INT_MIN <= v <= INT_MAX:
        raise ValueError(f"out of range: an integer of {len(str(abs(v)))} digits (numbers must fit in 64 bits)")
    try:
        f = float(v if isinstance(v, (int, float)) else text(v, 1 << 30))
    except OverflowError:
        raise ValueError("out of range: too large for a 64-bit float") from None
    if f != f:
        raise ValueError("not a number (NaN)")
    if f in (float("inf"), float("-inf")):
        raise ValueError("not a finite number: infinite, or too large for a 64-bit float (like 1e400)")
    return f


def _str(v: Any) -> str:
    return text(v, MAX_TEXT)


def _word(v: Any) -> str:
    """A short string that may become a label value or a key (phase, step action, score name …)."""
    return text(v, MAX_WORD)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        s = text(v, MAX_WORD).strip().lower()
        if s not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {s[:40]!r}")
        return s
    return conv


def _name(v: Any) -> str:
    """An agent name: non-empty, one line, at most 128 characters (it becomes a label value)."""
    s = text(v, 1 << 20).strip()
    if not s:
        raise ValueError("must not be empty")
    if len(s) > MAX_NAME or "\n" in s:
        raise ValueError(f"at most {MAX_NAME} characters on one line")
    return s


def _payload(v: Any) -> str:
    """An agent's input or output: a string as it is, any other JSON value as compact JSON text.
    Not cut here: the run state keeps a bounded part of it (model/state.py, MAX_PAYLOAD_BYTES)."""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)


#: the agent event fields that carry a payload (redacted as text before an event is made)
PAYLOAD_FIELDS = ("input", "output")


def _utf8_text(s: str) -> str:
    """s, with what UTF-8 cannot encode (a lone surrogate from JSON's \\ud800) replaced by '?'."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")


def payloads_as_text(fields: dict) -> dict:
    """fields with each input/output as text: a JSON value becomes its JSON text (so the redaction
    of text fields, parse/redact.py Redactor.fields, sees what an object payload says), and text
    UTF-8 cannot encode is replaced. fields itself when nothing changes."""
    out = fields
    for k in PAYLOAD_FIELDS:
        v = fields.get(k)
        if v is None:
            continue
        t = _utf8_text(v if isinstance(v, str) else _payload(v))
        if t is not v:
            if out is fields:
                out = dict(fields)
            out[k] = t
    return out


def _nonneg(v: Any) -> float:
    f = _float(v)
    if f < 0:
        raise ValueError(f"must not be negative; got {v!r}")
    return f


def _percent(v: Any) -> float:
    f = _float(v)
    if not 0 <= f <= 100:
        raise ValueError(f"must be between 0 and 100; got {v!r}")
    return f


def _duration(v: Any) -> float:
    """Seconds (0 or more) from a number or from tqdm/clock style 'MM:SS' / 'H:MM:SS'."""
    if isinstance(v, str) and ":" in v:
        total = 0.0
        for part in text(v, MAX_WORD).strip().split(":"):
            total = total * 60 + _float(part)
        return _nonneg(total)
    return _nonneg(v)


# type -> {field: (converter, required)}
SCHEMA: dict[str, dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "phase": {"phase": (_word, True)},
    "status": {"state": (_choice(*RUN_STATES), True), "reason": (_str, False)},
    "progress": {"done": (_nonneg, False), "total": (_nonneg, False), "ratio": (_float, False),
                 "percent": (_float, False), "current": (_count, False), "last": (_count, False),
                 "done_index": (_count, False), "eta_seconds": (_duration, False),
                 "level": (_choice("outer", "inner", "nested", "eval", "prelude"), False), "message": (_str, False)},
    "task_planned": {"total": (_count, True)},
    "task_started": {"task": (_word, False), "index": (_count, False), "total": (_count, False),
                     "repeat": (_bool, False)},
    "task_finished": {"task": (_word, False), "result": (_word, False), "failed": (_bool, False),
                      "index": (_count, False), "total": (_count, False), "repeat": (_bool, False)},
    "step": {"action": (_word, False), "index": (_count, False)},
    "build_step": {"step": (_count, True), "steps": (_count, False), "stage": (_word, False),
                   "vertex": (_word, False), "done": (_bool, False)},
    "build_step_done": {"vertex": (_word, True), "cached": (_bool, False)},
    "build_complete": {},
    "score": {"name": (_word, False), "value": (_float, False), "best": (_bool, False),
              "best_value": (_float, False), "direction": (_choice("max", "min", "auto"), False)},
    "error": {"message": (_str, False), "continues": (_bool, False), "detail": (_bool, False),
              "build_report": (_bool, False), "build_failed": (_bool, False)},
    "artifact": {"artifact": (_word, True), "available": (_bool, False), "deadline_seconds": (_nonneg, False)},
    "cost": {"rate_usd_per_hour": (_nonneg, False), "cost_usd": (_nonneg, False),
             "budget_usd": (_nonneg, False)},
    "vm_power": {"vm": (_word, True), "state": (_choice(*VM_POWER_STATES), True)},
    "metric": {"name": (_word, True), "value": (_float, True),
               "direction": (_choice("max", "min", "auto"), False), "running": (_bool, False)},
    # a metric a tool's layout wrapped across lines (rich's metrics column): a name alone ends a
    # line, its value opens the next; the parts become one `metric` (state.py _metric_part)
    "metric_part": {"name": (_word, False), "value": (_float, False),
                    "direction": (_choice("max", "min", "auto"), False), "running": (_bool, False)},
    # multi-agent workflows (posted by a workflow engine through the events API)
    # input / output: optional payloads (any JSON value) for the status page's inspector, kept bounded
    "agent_started": {"agent_id": (_name, True), "input": (_payload, False), "output": (_payload, False)},
    "agent_completed": {"agent_id": (_name, True), "duration": (_nonneg, False),
                        "output_size": (_nonneg, False), "input": (_payload, False), "output": (_payload, False)},
    "agent_failed": {"agent_id": (_name, True), "error": (_str, False), "input": (_payload, False),
                     "output": (_payload, False)},
    "data_flow": {"from_agent": (_name, True), "to_agent": (_name, True), "data_size": (_nonneg, True)},
    # progress in percent, as workflow engines report it; the same as progress{percent, message}
    "progress_update": {"progress": (_percent, True), "message": (_str, False)},
}

AGENT_STATES = ("pending", "running", "completed", "failed")

#: task results that count as failures (case-insensitive)
FAILED_RESULTS = frozenset({"fail", "failed", "failure", "error", "errored", "crashed", "false"})


class EventError(ValueError):
    """An event that cannot be applied; `field` names the culprit."""

    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


class Event:
    """type, fields and the time it happened (seconds since the epoch)."""

    __slots__ = ("type", "fields", "ts")

    def __init__(self, type_: str, fields: dict, ts: float):
        self.type, self.fields, self.ts = type_, fields, ts

    def __repr__(self) -> str:
        return f"Event({self.type!r}, {self.fields!r}, ts={self.ts})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Event) and self.type == other.type
                and self.fields == other.fields and self.ts == other.ts)


class StepRun:
    """Consecutive `step` events one pack rule made from one block's lines, kept as the
    matches' groups: of most of them the run state needs only the action it counts
    (model/state.py RunState._steps), so only the last few become Events. `emit` is the rule's
    parse/packs.py Emit: `build_groups(groups, ts)` makes the event of one line, `action_at`
    the index of the action's group (None: the action is `emit.action`, a constant or None).
    `len()` is the number of events it stands for; `events()` makes them, all or the last few."""

    __slots__ = ("groups", "emit", "ts")
    type = "step"

    def __init__(self, groups: list, emit, ts: float):
        self.groups, self.emit, self.ts = groups, emit, ts

    def __len__(self) -> int:
        return len(self.groups)

    def __repr__(self) -> str:
        return f"StepRun({len(self.groups)} steps, ts={self.ts})"

    def events(self, last: int | None = None) -> list[Event]:
        gs = self.groups
        if last is not None and last < len(gs):
            gs = gs[len(gs) - last:]
        return list(map(self.emit.build_groups, gs, itertools.repeat(self.ts, len(gs))))

    def action_counts(self) -> dict:
        """The action texts as the lines give them (uncut; None or "" where a line has none)
        and how many lines give each, in the order they first come."""
        at = self.emit.action_at
        if at is None:
            return {self.emit.action: len(self.groups)}
        return collections.Counter(map(operator.itemgetter(at), self.groups))


def expand(events) -> list[Event]:
    """events with every StepRun made into its Events."""
    out: list[Event] = []
    for e in events:
        if type(e) is StepRun:
            out += e.events()
        else:
            out.append(e)
    return out


def last_events(events, n: int) -> list[Event]:
    """The last n of events, StepRuns made into Events (only as many of theirs as are needed)."""
    tail: list[Event] = []
    for e in reversed(events):
        if len(tail) >= n:
            break
        if type(e) is StepRun:
            tail += reversed(e.events(n - len(tail)))
        else:
            tail.append(e)
    tail.reverse()
    return tail


def make(etype: str, fields: dict, ts: float) -> Event:
    """Validate and coerce: the strict constructor used for external input (the events API,
    the client). Every string comes out valid Unicode and bounded, every number finite and
    in range, or EventError names the field and the reason."""
    spec = SCHEMA.get(etype)
    if spec is None:
        raise EventError("type", f"unknown event type {escape_surrogates(str(etype))[:64]!r}; "
                                 f"known: {', '.join(SCHEMA)}")
    out = {}
    for name, value in fields.items():
        if name not in spec:
            raise EventError(escape_surrogates(str(name))[:64],
                             f"not a field of {etype!r} (fields: {', '.join(spec)})")
        if value is None:
            continue
        try:
            out[name] = spec[name][0](value)
        except (TypeError, ValueError, OverflowError) as e:
            raise EventError(name, str(e)) from None
    for name, (_, required) in spec.items():
        if required and name not in out:
            raise EventError(name, f"required for {etype!r}")
    return Event(etype, out, ts)
