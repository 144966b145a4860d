"""The one vocabulary every source speaks: small typed events.

A pattern pack turns a line into events, the events API (later) accepts them as
JSON, the demo and the cloud pollers produce them directly; the run state
(`state.py`) is the only consumer. Each event type declares its fields and their
types here, so packs are checked at load time and bad input is refused with a
reason instead of corrupting a run.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

RUN_STATES = ("pending", "running", "succeeded", "failed", "canceled")
#: the run states a run ends in (it never leaves them but for a new status event)
TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled"})
VM_POWER_STATES = ("starting", "running", "stopping", "stopped", "deallocating", "deallocated",
                   "deleted", "unknown")   # runwatch's own: the VM is gone / could not be read for long

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(v, float):
        if v != int(v):
            raise ValueError(f"not an integer: {v!r}")
        return int(v)
    return int(v)


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("a boolean is not a number")
    f = float(v)
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {v!r}")
    return f


def _str(v: Any) -> str:
    if isinstance(v, (dict, list)):
        raise ValueError("must be a string")
    return str(v)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        s = str(v).strip().lower()
        if s not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {v!r}")
        return s
    return conv


def _name(v: Any) -> str:
    """An agent name: non-empty, one line, at most 128 characters (it becomes a label value)."""
    s = _str(v).strip()
    if not s:
        raise ValueError("must not be empty")
    if len(s) > 128 or "\n" in s:
        raise ValueError("at most 128 characters on one line")
    return s


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
    """Seconds from a number or from tqdm/clock style 'MM:SS' / 'H:MM:SS'."""
    if isinstance(v, str) and ":" in v:
        total = 0.0
        for part in v.strip().split(":"):
            total = total * 60 + float(part)
        return total
    return _float(v)


# type -> {field: (converter, required)}
SCHEMA: dict[str, dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "phase": {"phase": (_str, True)},
    "status": {"state": (_choice(*RUN_STATES), True), "reason": (_str, False)},
    "progress": {"done": (_float, False), "total": (_float, False), "ratio": (_float, False),
                 "percent": (_float, False), "current": (_int, False), "last": (_int, False),
                 "eta_seconds": (_duration, False),
                 "level": (_choice("outer", "inner", "nested", "eval", "prelude"), False), "message": (_str, False)},
    "task_planned": {"total": (_int, True)},
    "task_started": {"task": (_str, False), "index": (_int, False), "total": (_int, False)},
    "task_finished": {"task": (_str, False), "result": (_str, False), "failed": (_bool, False),
                      "index": (_int, False), "total": (_int, False)},
    "step": {"action": (_str, False), "index": (_int, False)},
    "build_step": {"step": (_int, True), "steps": (_int, False), "stage": (_str, False),
                   "vertex": (_str, False), "done": (_bool, False)},
    "build_step_done": {"vertex": (_str, True), "cached": (_bool, False)},
    "build_complete": {},
    "score": {"name": (_str, False), "value": (_float, False), "best": (_bool, False),
              "best_value": (_float, False), "direction": (_choice("max", "min", "auto"), False)},
    "error": {"message": (_str, False), "continues": (_bool, False)},
    "artifact": {"artifact": (_str, True), "available": (_bool, False), "deadline_seconds": (_float, False)},
    "cost": {"rate_usd_per_hour": (_float, False), "cost_usd": (_float, False),
             "budget_usd": (_float, False)},
    "vm_power": {"vm": (_str, True), "state": (_choice(*VM_POWER_STATES), True)},
    "metric": {"name": (_str, True), "value": (_float, True),
               "direction": (_choice("max", "min", "auto"), False), "running": (_bool, False)},
    # multi-agent workflows (posted by a workflow engine through the events API)
    "agent_started": {"agent_id": (_name, True)},
    "agent_completed": {"agent_id": (_name, True), "duration": (_nonneg, False),
                        "output_size": (_nonneg, False)},
    "agent_failed": {"agent_id": (_name, True), "error": (_str, False)},
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

    def __init__(self, type: str, fields: dict, ts: float):
        self.type, self.fields, self.ts = type, fields, ts

    def __repr__(self) -> str:
        return f"Event({self.type!r}, {self.fields!r}, ts={self.ts})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Event) and self.type == other.type
                and self.fields == other.fields and self.ts == other.ts)


def make(etype: str, fields: dict, ts: float) -> Event:
    """Validate and coerce: the strict constructor used for external input."""
    spec = SCHEMA.get(etype)
    if spec is None:
        raise EventError("type", f"unknown event type {etype!r}; known: {', '.join(SCHEMA)}")
    out = {}
    for name, value in fields.items():
        if name not in spec:
            raise EventError(name, f"not a field of {etype!r} (fields: {', '.join(spec)})")
        if value is None:
            continue
        try:
            out[name] = spec[name][0](value)
        except (TypeError, ValueError) as e:
            raise EventError(name, str(e)) from None
    for name, (_, required) in spec.items():
        if required and name not in out:
            raise EventError(name, f"required for {etype!r}")
    return Event(etype, out, ts)
