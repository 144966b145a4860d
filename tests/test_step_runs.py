"""The compact form of a rule's steps (events.StepRun) changes nothing the run shows.

`Matcher.match_block(..., compact=True)`, which scan and the line path of every run use,
hands a long run of one rule's steps to model/ as the matches' groups. The run state, its
history for the page and the export, and the events kept must be what the same lines make as
Events applied one by one: action counts with labels folded past the cap, the current task's
step list and its numbering, steps before the tracker saw anything, a StepRun split by other
events, and the kept events' ring.
"""
from __future__ import annotations

import random

import pytest

from runwatch.events import StepRun, expand
from runwatch.model.samples import Timeline
from runwatch.model.state import MAX_LABEL_VALUES, RunState
from runwatch.parse.framing import LineFramer
from runwatch.parse.packs import Matcher, load_builtin, parse_pack
from runwatch.yamlfile import load_text

ACTIONS = ["CLICK", "TYPE", "WAIT", "SCROLL", "HOTKEY", "DONE"]


def dense_log(seed: int, lines: int = 6000) -> bytes:
    rng = random.Random(seed)
    out = []
    task = 0
    if seed % 2:                                  # steps before any task: the tracker's first event
        out += [f"Step {i}: CLICK" for i in range(40)]
    for _i in range(lines):
        r = rng.random()
        if r < 0.01:
            task += 1
            out.append(f"2026-11-24 10:00:00,000 INFO runner: Task {task}/60: t{task}")
        elif r < 0.012:
            out.append("ERROR: boom")
        elif r < 0.014:
            out.append(f"Task t{task}: {'SUCCESS' if rng.random() < 0.5 else 'FAIL'}")
        elif r < 0.02:
            out.append("Step 99999999999999999999999: CLICK")     # an index out of range: dropped
        else:
            out.append(f"Step {rng.randint(0, 40)}: {rng.choice(ACTIONS)}")
    return ("\n".join(out) + "\n").encode()


def blocks(data: bytes, size: int):
    framer = LineFramer(64 * 1024)
    for k in range(0, len(data), size):
        b = framer.push(data[k:k + size])
        if b:
            yield b
    b = framer.flush()
    if b:
        yield b


def both(matcher_packs, data: bytes, size: int):
    """(the compact events per block, the same blocks' events as Events)"""
    compact, plain = [], []
    m1, m2 = Matcher(matcher_packs), Matcher(matcher_packs)
    for b in blocks(data, size):
        c: list = []
        m1.match_block(b, 7.0, c, True)
        p: list = []
        m2.match_block(b, 7.0, p)
        compact.append(c)
        plain.append(p)
    return compact, plain


@pytest.mark.parametrize("seed", range(4))
def test_compact_steps_make_the_run_the_events_make(seed):
    packs = [load_builtin("waa"), load_builtin("python")]
    compact, plain = both(packs, dense_log(seed), 20_000 + 7_000 * seed)
    assert any(type(e) is StepRun for c in compact for e in c), "the compact form was not taken"
    for c, p in zip(compact, plain, strict=True):
        assert expand(c) == p
    one, batch = RunState(), RunState()
    t_one, t_batch = Timeline(), Timeline()
    for c, p in zip(compact, plain, strict=True):
        for e in p:
            one.apply(e)
        if p:
            t_one.record(p, 7.0)
        batch.apply_all(c)
        if c:
            t_batch.record(c, 7.0)
    assert batch.to_dict() == one.to_dict()
    assert batch.snapshot(5000.0) == one.snapshot(5000.0)
    assert t_batch.events_view() == t_one.events_view()


def test_actions_past_the_label_cap_fold_as_one_by_one():
    pack = parse_pack(load_text("pack: p\nrules:\n  - name: s\n    match: 'S (?P<index>\\d+) (?P<action>\\S*)'\n"
                                "    emit: step\n", "p.yaml"), "p.yaml", "p")
    rng = random.Random(3)
    lines = [f"S {i} a{rng.randint(0, 3 * MAX_LABEL_VALUES)}" for i in range(3000)]
    lines[5:5] = ["S 1 ", "S 2 other", "S 3 " + "w" * 400]         # no action, "other" itself, a long one
    compact, plain = both([pack], ("\n".join(lines) + "\n").encode(), 9_000)
    one, batch = RunState(), RunState()
    for c, p in zip(compact, plain, strict=True):
        for e in p:
            one.apply(e)
        batch.apply_all(c)
    assert one.labels_folded > 0
    assert batch.to_dict() == one.to_dict()
    assert batch.steps == one.steps and batch.task_steps == one.task_steps


def test_a_step_run_splits_where_the_tracker_first_looks():
    m = Matcher([load_builtin("waa")])
    c: list = []
    m.match_block(b"".join(b"Step %d: WAIT\n" % i for i in range(600)), 3.0, c, True)
    assert len(c) == 1 and type(c[0]) is StepRun and len(c[0]) == 600
    one, batch = RunState(), RunState()
    for e in expand(c):
        one.apply(e)
    batch.apply_all(c)
    assert batch.to_dict() == one.to_dict()
    assert batch.current_task_steps == 600 and len(batch.task_steps) == 200


def test_a_repeated_task_start_keeps_the_step_list_a_new_one_drops_it():
    from runwatch.events import Event
    steps = [Event("step", {"action": "CLICK", "index": i}, 2.0) for i in range(30)]
    events = ([Event("task_started", {"task": "a"}, 1.0)] + steps
              + [Event("task_started", {"task": "a", "repeat": True}, 2.0)] + steps
              + [Event("task_started", {"task": "b"}, 3.0)] + steps[:5]
              + [Event("task_started", {"task": "b", "repeat": True}, 3.0)])
    one, batch = RunState(), RunState()
    for e in events:
        one.apply(e)
    batch.apply_all(events)
    assert batch.to_dict() == one.to_dict()
    assert len(batch.task_steps) == 5 and batch.current_task == "b"


def test_the_kept_events_are_the_last_ones_whoever_reads_them_when():
    """A batch that alone fills the ring is made into its entries only when read: reading after
    every batch, now and then, or once at the end gives what recording one event at a time does."""
    packs = [load_builtin("waa"), load_builtin("python")]
    for seed in range(3):
        data = dense_log(seed, 9000)
        compact = []
        for size in (300, 2_000, 40_000, 1_000, 90_000, 500):     # batches below and above MAX_EVENTS
            compact += both(packs, data[:size * 3], size)[0]
        rng = random.Random(seed)
        one, lazy, every = Timeline(), Timeline(), Timeline()
        for c in compact:
            if not c:
                continue
            for e in expand(c):
                one.record([e], 7.0)
            lazy.record(c, 7.0)
            every.record(c, 7.0)
            assert every.events_view() == one.events_view()
            if rng.random() < 0.3:
                assert lazy.events_view() == one.events_view()
        assert lazy.events_view() == one.events_view()
        assert one.events_view()["events_dropped"] > 0
