"""A pack's compiled emit plans give the events the strict schema would.

The plans (parse/packs.py `_plan`) convert a group's text inline: a text field is cut by a
slice, a count is int() checked in range after the fields are built, and whatever the fast way
refuses goes through the general plan, which drops that field. Each plan is held here to the
reference: every group-fed field through its events.SCHEMA converter, a refused value dropped,
no event when a required field is missing.
"""
from __future__ import annotations

import pytest

from runwatch import events as ev
from runwatch.parse.packs import parse_pack
from runwatch.yamlfile import load_text

PACK = r"""
pack: plans
rules:
  - name: step
    match: 'Step (?P<index>[^:]+): (?P<action>.+)$'
    emit: step
  - name: task
    match: 'Task (?P<index>[^/]+)/(?P<total>.+?) (?P<task>\S*)$'
    emit: task_started
  - name: optional
    match: 'Plan(?: (?P<total>\S+))?'
    emit: task_planned
  - name: err
    match: 'ERR (?P<message>.*)$'
    emit:
      error: {continues: true}
  - name: metric
    match: 'M (?P<name>[^=]+)=(?P<value>.+)$'
    emit: metric
"""

BIG = "9" * 400
VALUES = ["0", "7", "-3", "9223372036854775807", "9223372036854775808", "9999999999999999999", BIG,
          "9" * 5000, "\u0663", " 12", "1_000", "x", "1.5", "nan", "inf", "1e400", "w" * 300]


def reference(rule, m, ts):
    """What the strict schema makes of the match: each group's text through its converter."""
    out = []
    for emit in rule.emits:
        spec = ev.SCHEMA[emit.etype]
        f = dict(emit.consts)
        for field, group, conv in emit.from_groups:
            v = m.group(group)
            if v is None:
                continue
            try:
                f[field] = conv(v)
            except (TypeError, ValueError, OverflowError):
                pass
        if all(name in f for name, (_c, req) in spec.items() if req):
            out.append((emit.etype, f))
        else:
            out.append(None)
    return out


def built(rule, m, ts):
    out = []
    for emit in rule.emits:
        e = emit.build(m, ts)
        out.append(None if e is None else (e.type, e.fields))
    return out


@pytest.fixture(scope="module")
def rules():
    return {r.name: r for r in parse_pack(load_text(PACK, "plans.yaml"), "plans.yaml", "plans").rules}


def lines():
    for v in VALUES:
        yield "step", f"Step {v}: CLICK"
        yield "step", f"Step 3: {v}"
        yield "task", f"Task {v}/5 notepad"
        yield "task", f"Task 1/{v} notepad"
        yield "optional", f"Plan {v}"
        yield "metric", f"M loss={v}"
        yield "metric", f"M {v}=0.5"
    yield "optional", "Plan"
    yield "step", "Step 1: " + "a" * 5000
    yield "err", "ERR " + "e" * 10000
    yield "task", "Task 1/2 " + "t" * 1000


@pytest.mark.parametrize("name,line", list(lines()))
def test_a_plan_builds_what_the_schema_makes(rules, name, line):
    rule = rules[name]
    m = rule.search(line)
    assert m is not None, line
    assert built(rule, m, 1.0) == reference(rule, m, 1.0)


def test_a_field_the_fast_way_refuses_is_dropped_not_kept(rules):
    m = rules["task"].search(f"Task 2/{BIG} x")
    e = rules["task"].emits[0].build(m, 1.0)
    assert e.fields == {"index": 2, "task": "x"}
    m = rules["step"].search("Step -1: CLICK")
    assert rules["step"].emits[0].build(m, 1.0).fields == {"action": "CLICK"}


def test_text_is_cut_to_the_schema_s_limits(rules):
    m = rules["step"].search("Step 1: " + "a" * 5000)
    assert len(rules["step"].emits[0].build(m, 1.0).fields["action"]) == ev.MAX_WORD
    m = rules["err"].search("ERR " + "e" * 10000)
    assert len(rules["err"].emits[0].build(m, 1.0).fields["message"]) == ev.MAX_TEXT
