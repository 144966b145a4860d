"""Packs: the YAML format, its errors, literal prefilters, and matching."""
import random

import pytest

from runwatch.parse.textsearch import KeywordFinder, KeywordSet
from runwatch.parse.packs import (Matcher, builtin_names, load_builtin, load_pack_file, parse_pack,
                            required_literals)
from runwatch.yamlfile import ConfigError, load_text


def pack(text, name="p.yaml"):
    return parse_pack(load_text(text, name), name, "p")


def events(packs, text):
    out = []
    Matcher(packs).match_block(text.encode() + b"\n" if not text.endswith("\n") else text.encode(), 1.0, out)
    return [(e.type, e.fields) for e in out]


@pytest.mark.parametrize("pattern,want", [
    (r"Task (\d+)/(\d+):", ("Task ",)),
    (r"\b(?:ERROR|CRITICAL)\b", ("CRITICAL", "ERROR")),
    (r"^Traceback \(most recent call last\):", ("Traceback (most recent call last):",)),
    (r"(?i)error", None),                   # case-insensitive: no literal prefilter
    (r"\d+%", ("%",)),
    (r"(a|\d)x", ("x",)),
    (r".*", None),
])
def test_required_literals(pattern, want):
    assert required_literals(pattern) == want


def test_every_builtin_pack_loads_and_each_rule_has_a_prefilter():
    for name in builtin_names():
        p = load_builtin(name)
        assert p.rules, name
        for r in p.rules:
            assert r.literals, f"{name}.{r.name} would make every line a candidate"


def test_rule_fields_constants_and_templates():
    p = pack("""
rules:
  - name: banner
    match: '=== (?P<model>\\w+) Position (?P<current>\\d+) ==='
    emit:
      - phase: {phase: "{model} position {current}"}
      - progress: {level: outer}
""")
    assert events([p], "=== XGB Position 2 ===") == [
        ("phase", {"phase": "XGB position 2"}), ("progress", {"current": 2, "level": "outer"})]


def test_first_matching_rule_in_a_pack_wins_and_every_pack_sees_the_line():
    a = pack("rules:\n  - {name: one, match: 'x(?P<action>\\w)', emit: step}\n"
             "  - {name: two, match: 'xy', emit: error}\n")
    b = pack("rules:\n  - {name: three, match: 'y', emit: {phase: {phase: b}}}\n")
    assert events([a, b], "xy") == [("step", {"action": "y"}), ("phase", {"phase": "b"})]


def test_one_line_is_at_most_one_error_across_packs():
    # both packs read this line as an error (docker's failed_to_solve, python's error_line)
    got = events([load_builtin("docker"), load_builtin("python")], "ERROR: failed to solve: process failed")
    assert [t for t, _ in got].count("error") == 1
    # BuildKit repeats a step's "#7 ERROR: ..." in "failed to solve": the docker pack claims the line
    # (it opens the build's failure report, counting nothing) so python's error_line does not count it
    got = events([load_builtin("docker"), load_builtin("python")], "#7 ERROR: process failed")
    assert [f.get("build_report") for t, f in got if t == "error"] == [True]


@pytest.mark.parametrize("text,line,reason", [
    ("rules:\n  - name: r\n    match: 'Task (\\d+'\n    emit: step\n", 3, "regex does not compile"),
    ("rules:\n  - name: r\n    match: x\n    emit: stepp\n", 4, 'unknown event type \'stepp\' (did you mean "step"?)'),
    ("rules:\n  - name: r\n    macth: x\n    emit: step\n", 3,
     'unknown key \'macth\' in a rule (did you mean "match"?)'),
    ("rules:\n  - name: r\n    match: x\n    emit: phase\n", 4, "needs field 'phase'"),
    ("rules:\n  - name: r\n    match: x\n    emit: {phase: {phase: '{nope}'}}\n", 4, "names group(s) nope"),
    ("rules:\n  - name: r\n    match: x\n    emit: {step: {acton: a}}\n", 4, "'acton' is not a field of 'step'"),
    ("rules: [\n", 2, "invalid YAML"),
    ("rules:\n  - {name: r, match: x, emit: step}\n  - {name: r, match: y, emit: step}\n", 3, "duplicate rule name"),
])
def test_pack_errors_name_file_line_and_rule(text, line, reason):
    with pytest.raises(ConfigError) as e:
        pack(text, "mypack.yaml")
    assert e.value.file == "mypack.yaml"
    assert e.value.line == line
    assert reason in str(e.value)


def test_unknown_builtin_pack_suggests_the_nearest():
    with pytest.raises(ConfigError, match='no built-in pack \'dokcer\' \\(did you mean "docker"\\?\\)'):
        load_builtin("dokcer")


def test_prefiltered_matching_equals_a_plain_per_line_loop():
    """The fast path (keyword search over a block) finds exactly what a naive loop finds."""
    packs = [load_builtin(n) for n in builtin_names()]
    rng = random.Random(11)
    pieces = ["Task 3/10: notepad_3", "Task notepad_3: FAIL", "Step 4: CLICK", "Step 5/12 : RUN x",
              "#5 [2/7] RUN a", "#5 DONE 1.0s", "#5 CACHED", "ERROR: failed to solve: x", "CRITICAL: y",
              "Traceback (most recent call last):", "  Trial 2/5: Score=0.5 [BEST]", "Position 2/4",
              " 45%|####5     | 450/1000 [00:12<00:15, 36.1it/s]", "noise ERRORS", "plain line",
              "Successfully built abc", "Trial 7 pruned.", "TaskStep", "#x", "üñí ERROR ünïcode"]
    lines = [rng.choice(["", "2026-11-24 INFO x: ", "[w] "]) + rng.choice(pieces) + rng.choice(["", " tail"])
             for _ in range(3000)]
    block = ("\n".join(lines) + "\n").encode()
    fast = []
    Matcher(packs).match_block(block, 0.0, fast)
    slow = []
    m = Matcher(packs)
    for line in lines:
        m.match_line(line, 0.0, slow)
    assert fast == slow and len(fast) > 1000


def test_keyword_finder_falls_back_when_its_byte_is_common():
    f = KeywordFinder(b"ERROR")
    assert f.byte == b"R"
    block = b"RRRR RRRR no match here\n" * 1000 + b"an ERROR line\n"
    starts = []
    f.find_lines(block, starts)
    assert [block[s:block.find(b"\n", s)] for s in starts] == [b"an ERROR line"]
    assert f.mode_find      # too many false hits: plain find for a while


def test_user_pack_file_with_prefilter(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("pack: mine\nrules:\n  - name: epoch\n    match: 'epoch (?P<current>\\d+)/(?P<total>\\d+)'\n"
                 "    prefilter: epoch\n    emit: progress\n")
    mine = load_pack_file(str(p))
    assert mine.name == "mine" and mine.rules[0].literals == ("epoch",)
    assert events([mine], "train epoch 3/10 loss=1") == [("progress", {"current": 3, "total": 10})]


def test_keyword_set_shares_passes_and_finds_exactly_the_lines_a_naive_search_finds():
    words = [b"Key", b"KEY", b"AKIA", b"key", b"Token", b"TOKEN", b"secret", b"#"]
    ks = KeywordSet(words)
    assert len({f.byte for f in ks.finders if not f.mode_find}) < len(words)   # some share a byte
    rng = random.Random(4)
    alphabet = ["Key", "KEY", "AKIA", "key", "Token", "TOKEN", "secret", "#", "K", "KK", "x", "e", "s", " ", "T"]
    for density in (2, 30):          # sparse and byte-heavy blocks (the latter trips the fallback)
        lines = [b"".join(rng.choice(alphabet).encode() for _ in range(rng.randint(0, density)))
                 for _ in range(2000)]
        block = b"\n".join(lines) + b"\n"
        starts = []
        ks.find_lines(block, starts)
        got = sorted(set(starts))
        want, pos = [], 0
        for line in lines:
            if any(w in line for w in words):
                want.append(pos)
            pos += len(line) + 1
        assert got == want
