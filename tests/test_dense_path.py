"""The matcher's two ways through a block give the same events.

Where most lines are candidates, `Matcher` runs each rule over the whole block
(`_match_dense`, Python's re on patterns whose shape proves them linear, see
parse/linear_regex.py `line_safe`) instead of line by line; the events, their
order, the one-error-per-line rule and a pack's first-rule-wins must not change.
Checked on every recorded log of the project (golden files, real tools' output)
and on lines made to catch the merge out.
"""
from __future__ import annotations

import glob
import os
import re

import pytest

from runwatch.parse import linear_regex
from runwatch.parse.framing import LineFramer
from runwatch.parse.packs import Matcher, builtin_names, load_builtin, parse_pack
from runwatch.yamlfile import load_text

TESTS = os.path.dirname(os.path.abspath(__file__))
LOGS = sorted(glob.glob(os.path.join(TESTS, "golden", "*.log")) + glob.glob(os.path.join(TESTS, "real", "*", "log")))


def both_ways(matcher: Matcher, data: bytes) -> tuple[list, list]:
    framer = LineFramer(64 * 1024)
    block = framer.push(data) + framer.flush()
    by_line: list = []
    for raw in block.split(b"\n")[:-1]:
        matcher.match_line(raw.decode("utf-8", "replace"), 1.0, by_line)
    dense: list = []
    matcher._match_dense(block, 1.0, dense)
    return by_line, dense


def test_there_are_logs_and_line_safe_rules():
    assert len(LOGS) > 20
    fast = [r.name for n in builtin_names() for r in load_builtin(n).rules if r.fast is not None]
    assert {"step", "task_started", "classic_step", "traceback"} <= set(fast)


@pytest.mark.parametrize("log", LOGS, ids=lambda p: os.path.relpath(p, TESTS))
def test_recorded_logs_give_the_same_events_both_ways(log):
    with open(log, "rb") as f:
        data = f.read()
    everything = Matcher([load_builtin(n) for n in builtin_names()])
    by_line, dense = both_ways(everything, data)
    assert dense == by_line
    for n in builtin_names():
        by_line, dense = both_ways(Matcher([load_builtin(n)]), data)
        assert dense == by_line, n


TRICKY = "\n".join([
    "Task 1/3: notepad_1 Step 4: CLICK",           # two waa rules: the first wins, the step is not counted
    "Step 2/5 : RUN make Step 9: TYPE",            # docker and waa each take it
    "ERROR: failed to solve: boom Traceback (most recent call last):",   # two packs, one error
    "#5 ERROR: exit 2 ERROR here too",
    "xStep 3: CLICK",                               # no word boundary
    "éStep 3: CLICK",                               # Python's \\b: é is a word character
    "Step 3:\u3000WAIT",                            # a Unicode space
    "Step ٣: CLICK",                                # an Arabic-Indic digit is a digit
    "Step 3:",                                      # no action
    "Task notepad_2: SUCCESS",
    "Task notepad_3 failed with error: TimeoutError('x')",
    "Step Step Step 7: DONE Step 8: WAIT",
    "The above exception was the direct cause of the following exception:",
    "Traceback (most recent call last):",
    "\x1b[31mERROR\x1b[0m bad",
    "Step 1/2 : FROM x",
    "Successfully built abc",
    "Step 5: CL\udcffICK",
    "",
    "Step 6: \tSCROLL",
]) + "\n"


def test_lines_made_to_catch_the_merge_out():
    data = TRICKY.encode("utf-8", "surrogateescape") * 3 + b"Trial 1 pruned\nPosition 2/6\n"
    everything = Matcher([load_builtin(n) for n in builtin_names()])
    by_line, dense = both_ways(everything, data)
    assert dense == by_line
    assert len(dense) > 20
    for n in ("waa", "docker", "python", "trials"):
        by_line, dense = both_ways(Matcher([load_builtin(n)]), data)
        assert dense == by_line, n


def test_a_prefilter_the_regex_does_not_imply_is_checked_on_each_line():
    pack = parse_pack(load_text("pack: p\nrules:\n  - name: r\n    match: 'Step (?P<index>\\d+)'\n"
                                "    prefilter: [GO]\n    emit: step\n", "p.yaml"), "p.yaml", "p")
    m = Matcher([pack])
    by_line, dense = both_ways(m, b"Step 1\nGO Step 2\nStep 3 GO\n")
    assert dense == by_line and [e.fields["index"] for e in dense] == [2, 3]


def test_the_matcher_takes_the_dense_way_and_back():
    m = Matcher([load_builtin("waa")])
    dense_block = b"".join(b"Step %d: CLICK\n" % i for i in range(2000))
    sparse_block = b"noise line without any event in it at all, long enough\n" * 2000
    out: list = []
    m.match_block(dense_block, 1.0, out)
    assert m.dense and len(out) == 2000
    m.match_block(sparse_block + b"Step 1: WAIT\n", 1.0, out)
    assert not m.dense and len(out) == 2001


@pytest.mark.parametrize("pattern, linear", [
    (r"\bStep (?P<index>\d+):\s+(?P<action>[A-Za-z_]+)", True),
    (r"Task (?P<task>[^\s:]+):\s+(?P<result>SUCCESS|FAIL(?:ED|URE)?)\b", True),
    (r"^#(?P<vertex>\d+) ERROR:? (?P<message>.*)", True),
    (r"a[a-z]+:", False),            # the run holds the leading literal: "aaaa…" is quadratic
    (r"Step \d+\d+x", False),        # two runs of one class
    (r"Step (?:\d+ )+x", False),     # a repeated group
    (r"Step .*x", False),            # . can hold the literal, and x
    (r"\d+:", False),                # no leading literal
    (r"Step (?=x)", False),          # a lookaround
    (r"(?i)step \d+", False),        # flags are not taken
])
def test_line_safe_takes_only_the_shapes_it_can_prove(pattern, linear):
    assert (linear_regex.line_safe(pattern) is not None) == linear


@pytest.mark.parametrize("pattern", [r"Step (?P<n>\d+):\s+(?P<a>\S+)", r"^Task (?P<t>[^\s:]+):\s*(?P<r>\w+)$",
                                     r"\bE(?P<x>\s)", r"Go [\s,]+(?P<y>[a-z!])", r"Go (?P<y>[^a-z])"])
def test_line_safe_matches_what_re_matches(pattern):
    ls = linear_regex.line_safe(pattern)
    assert ls is not None
    rx = re.compile(pattern)
    lines = ["Step 3:  CLICK", "Step 3:\nCLICK", "Task a: ok", "Task a:ok x", "xE\n", "E1", "E\u3000",
             "Go , \t!", "Go ,\n!", "Step ٣: x", "Task é: ü"]
    for line in lines:
        for part in line.split("\n"):
            want, got = rx.search(part), ls.rx.search(part)
            assert (want and (want.span(), want.groups())) == (got and (got.span(), got.groups())), (pattern, part)
        got = ls.rx.search(line)
        assert got is None or "\n" not in got.group(0), (pattern, line)
    if ls.lines_rx is not None:          # over a block: the first match of each line, run on to its end
        block = "\n".join(lines) + "\n"
        want = [(m.groups(), m.start()) for _start, part in _lines(block) if (m := rx.search(part))]
        got = [(m.groups(), m.start() - start) for m in ls.lines_rx.finditer(block)
               for start in [block.rfind("\n", 0, m.start()) + 1]]
        assert want == got and all(block[m.end()] == "\n" for m in ls.lines_rx.finditer(block))


def _lines(block: str):
    start = 0
    for part in block.split("\n")[:-1]:
        yield start, part
        start += len(part) + 1


@pytest.mark.parametrize("pattern", [r"\bStep (\d+)", r"\B:x(\d)", r"\b:y(\d)", r"\BSt(\d)"])
def test_a_leading_word_boundary_written_as_a_lookbehind_means_the_same(pattern):
    ls = linear_regex.line_safe(pattern)
    rx = re.compile(pattern)
    text = "Step 1\nxStep 2\n Step 3\na:x4\n :x5\n:x6\nb:y7\n :y8\nSt9\naSt0\n_Step 5\néStep 6\n"
    want = [m.group(1) for _, part in _lines(text) if (m := rx.search(part))]
    assert [m.group(1) for m in ls.lines_rx.finditer(text)] == want and want


def test_the_rule_with_most_hits_merges_with_the_others_in_line_and_pack_order():
    """One rule's hits are taken as runs between the other rules' (and packs'): a line two packs
    take comes in pack order whichever of them has the most hits, errors once per line."""
    lines = []
    for i in range(400):
        lines.append(f"Step {i}: CLICK")
        if i % 37 == 0:
            lines.append(f"Step {i}/9 : RUN make Step {i}: TYPE")    # docker's and waa's
        if i % 53 == 0:
            lines.append("ERROR: failed to solve: boom Traceback (most recent call last):")
        if i % 61 == 0:
            lines.append(f"Task {i}/400: notepad_{i}")
    data = ("\n".join(lines) + "\n").encode()
    for names in (("docker", "waa", "python"), ("waa", "docker", "python"), ("python", "waa", "docker")):
        m = Matcher([load_builtin(n) for n in names])
        by_line, dense = both_ways(m, data)
        assert dense == by_line, names
        assert sum(e.type == "build_step" for e in dense) == 11
