#!/usr/bin/env python3
"""What agent payloads and executions cost; prints figures and ratios, asserts nothing.

usage: .venv/bin/python bench/bench_agents.py

1. The reducer: agent_started + agent_completed pairs over 100 agents, with 2 KiB JSON input
   and output payloads against the same events without them.
2. The way in of a posted event (payloads as text, then redaction, then the event is made), with
   those payloads against without.
3. A snapshot (every scrape and status-page push takes one, under the registry lock) of a run with
   1000 agents that ran 20 times each (20 executions kept per agent) against the same agents with
   only the keys an agent had before executions and payload sizes.
"""
from __future__ import annotations

import statistics
import time

from runwatch.events import make, payloads_as_text
from runwatch.model.state import RunState
from runwatch.parse.redact import default_redactor

PAYLOAD = {"question": "How did open-weight models change the cost of reports?", "documents": list(range(40)),
           "summary": "Seven open-weight models above 30B parameters were released. " * 25}


def best_of(fn, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pairs(payloads: bool, n: int = 10_000) -> list:
    evs = []
    for i in range(n):
        extra_in = {"input": payloads_as_text({"input": PAYLOAD})["input"]} if payloads else {}
        extra_out = {"output": payloads_as_text({"output": PAYLOAD})["output"]} if payloads else {}
        evs.append(make("agent_started", {"agent_id": f"a{i % 100}", **extra_in}, 1.0 + i))
        evs.append(make("agent_completed", {"agent_id": f"a{i % 100}", **extra_out}, 1.5 + i))
    return evs


def reducer(evs):
    def go():
        st = RunState()
        for e in evs:
            st.apply(e)
    return go


def way_in(items):
    red = default_redactor()

    def go():
        for it in items:
            f = red.fields(payloads_as_text(dict(it)), skip=("type",))
            make(f.pop("type"), f, 1.0)
    return go


def snapshot_of(executions: int, reference: bool = False):
    st = RunState()
    t = 1.0
    for _ in range(executions):
        for i in range(1000):
            st.apply(make("agent_started", {"agent_id": f"a{i}"}, t))
            st.apply(make("agent_completed", {"agent_id": f"a{i}"}, t + 0.5))
            t += 1
    if reference:                # the agents' six keys only, as they were before
        for a in st.agents.values():
            for k in ("executions", "executions_total", "input_bytes", "output_bytes"):
                a.pop(k)
    return lambda: [st.snapshot(t) for _ in range(10)]


def main() -> None:
    size = len(payloads_as_text({"output": PAYLOAD})["output"].encode())
    plain, heavy = pairs(False), pairs(True)
    a, b = best_of(reducer(plain)), best_of(reducer(heavy))
    print(f"reducer, {len(plain)} agent events: {len(plain) / a:,.0f}/s without payloads, "
          f"{len(heavy) / b:,.0f}/s with {size:,} B input and output; ratio (with / without time): {b / a:.2f}")
    items_plain = [{"type": "agent_completed", "agent_id": "a", "output_size": 10}] * 5000
    items_heavy = [{"type": "agent_completed", "agent_id": "a", "output": PAYLOAD}] * 5000
    a, b = best_of(way_in(items_plain)), best_of(way_in(items_heavy))
    print(f"way in (as text, redaction, make), 5000 events: {a / 5000 * 1e6:.1f} us without a payload, "
          f"{b / 5000 * 1e6:.1f} us with a {size:,} B JSON output; ratio: {b / a:.2f}")
    a, b = best_of(snapshot_of(1, reference=True), 3), best_of(snapshot_of(20), 3)
    print(f"snapshot of a run with 1000 agents (10 snapshots): {a / 10 * 1e3:.2f} ms as the agents were before "
          f"executions and payload sizes, {b / 10 * 1e3:.2f} ms with 20 executions each; ratio: {b / a:.2f}")


if __name__ == "__main__":
    main()
