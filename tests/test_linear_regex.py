"""The regex engine: RE2 where a pattern allows, with Python's meaning; Python re otherwise."""
from __future__ import annotations

import re

import pytest

from runwatch.parse import linear_regex
from runwatch.parse.packs import builtin_names, load_builtin
from runwatch.parse.redact import BUILTIN

# (pattern, flags, texts): RE2's answer must equal Python's on each text.
SAME_AS_PYTHON = [
    (r"(?P<n>\d+)/(?P<m>\d+)", 0, ["Task 3/10", "٣/٤ arabic-indic digits", "x/y", ""]),
    (r"\s+(?P<w>\w+)", 0, ["a\u00a0\u2003héllo", "tab\there", "\x1cfile-sep word", "none"]),
    (r"[^\S\n]+end", 0, ["a \t end", "a\n end", "a\u3000end"]),
    (r"\bStep (?P<i>\d+):\s+(?P<a>[A-Za-z_]+)", 0, ["Step 4: CLICK", "xStep 4: CLICK", "Step 4:\x0bTYPE"]),
    (r"error$", 0, ["an error", "an error\n", "error here"]),
    (r"^=+ (?P<m>.+?) Position (?P<c>\d+) =+", 0, ["=== XGB Position 1 ===", "== a Position 2 == b Position 3 =="]),
    (r"x{,3}y", 0, ["xxxxy", "y", "x{,3}y"]),
    (r"(?i)task (?P<t>[a-z]+)", 0, ["TASK Abc", "Task ÀB", "tAsK z9"]),
    (r"(?i:ab)c", 0, ["ABc", "ABC", "abc"]),
    (r"a.c", re.DOTALL, ["a\nc", "abc"]),
    (r"(?m)^b$", 0, ["a\nb\nc", "b"]),
    (r"caf\u00e9|\u00fcber", 0, ["café", "über", "cafe"]),
    (r"(a)|(b)", 0, ["b", "a", "c"]),
    (r"\Aab\Z", 0, ["ab", "ab\n", "xab"]),
    (rb"(?i)(sig=)[^&\s]+", 0, [b"SIG=abc&x", b"sig=\xff\xfe x", b"s\xc9g=1"]),
    (rb"(?i)\xe9t\xc9", 0, [b"\xe9t\xc9", b"\xc9T\xe9", b"\xe9T\xc9"]),      # bytes: ASCII-only case folding
    (rb"[^\w-]key\s*=", 0, [b".key =", b"-key=", b"\xffkey\x0b="]),
    (rb"(.*?)(END|$)", 0, [b"abc\n", b"abcEND", b""]),
]


@pytest.mark.parametrize("pattern,flags,texts", SAME_AS_PYTHON, ids=[str(p[0]) for p in SAME_AS_PYTHON])
def test_re2_gives_the_groups_python_gives(pattern, flags, texts):
    ours = linear_regex.compile(pattern, flags)
    assert ours.engine == "re2", ours.fallback_reason
    py = re.compile(pattern, flags)
    assert ours.groups == py.groups and ours.groupindex == dict(py.groupindex)
    for t in texts:
        a, b = ours.search(t), py.search(t)
        assert (a is None) == (b is None), (pattern, t)
        if a is not None:
            assert a.span() == b.span() and a.groups() == b.groups() and a.groupdict() == b.groupdict(), (pattern, t)
        assert [m.span() for m in ours.finditer(t)] == [m.span() for m in py.finditer(t)], (pattern, t)
        repl = (lambda m: b"<" + m.group(0) + b">") if isinstance(t, bytes) else (lambda m: "<" + m.group(0) + ">")
        assert ours.sub(repl, t) == py.sub(repl, t), (pattern, t)


@pytest.mark.parametrize("pattern,reason", [
    (r"(?<=a)b", "lookahead or lookbehind"),
    (r"(?<!a)b", "negative lookahead or lookbehind"),
    (r"(a)\1", "backreference"),
    (r"(a)?(?(1)b|c)", "conditional"),
    (r"(?>ab)", "atomic"),
    (r"a++", "possessive"),
    (r"a{2000}", "above 1000"),
])
def test_what_re2_cannot_run_falls_back_to_python_with_the_reason(pattern, reason):
    rx = linear_regex.compile(pattern)
    assert rx.engine == "re" and reason in rx.fallback_reason
    py = re.compile(pattern)
    for t in ("ab", "aab", "b", "c", "a" * 2001):
        assert bool(rx.search(t)) == bool(py.search(t))


def test_a_pattern_python_rejects_raises_pythons_error():
    with pytest.raises(re.error):
        linear_regex.compile(r"(unclosed")


def test_lone_surrogates_in_text_are_matched_not_an_error():
    rx = linear_regex.compile(r"phase (?P<p>.+)")
    m = rx.search("phase a\udcffb")
    assert m.group("p") == "a\udcffb"


# Shipped rules that need a lookaround would run on Python's backtracking engine: there are none,
# and a new one fails here.
STILL_BACKTRACKING: set[str] = set()


def test_every_rule_runwatch_ships_runs_on_re2():
    shipped = [(f"pack {n} rule {r.name}", r.rx) for n in builtin_names() for r in load_builtin(n).rules]
    shipped += [(f"redaction rule {i}: {rx.pattern[:40]!r}", rx) for i, (rx, _) in enumerate(BUILTIN)]
    backtracking = {what for what, rx in shipped if rx.engine != "re2"}
    assert backtracking == STILL_BACKTRACKING, [(w, rx.fallback_reason) for w, rx in shipped if rx.engine != "re2"]
    assert len(shipped) > 30


def test_a_case_insensitive_group_over_ascii_text_runs_on_re_with_the_same_matches():
    import re

    from runwatch.parse.linear_regex import line_safe
    pattern = r"\bStep (?P<index>\d+):\s+(?P<action>(?i:click|kill|type))(?:\s|$)"
    fast = line_safe(pattern)
    assert fast is not None
    for text in ("Step 4: CLICK", "Step 4: Click now", "Step 12: type", "xStep 1: click", "Step 1: \u212aill",
                 "Step 2: clicks", "Step 3:  TYPE\t"):
        want = re.search(pattern, text)
        got = fast.rx.search(text)
        assert (want and want.groupdict()) == (got and got.groupdict()), text
    assert line_safe(r"\bStep (?i:[a-z]+)") is None           # a folded class: left to RE2
    assert line_safe(r"\bStep (?s:.+)") is None               # other flags: left to RE2


# ------------------------------------------------------------ start-up: what loading a pack computes

def test_the_kept_unicode_classes_are_pythons_own():
    import unicodedata

    from runwatch.parse import unicode_classes
    if unicodedata.unidata_version != unicode_classes.UNIDATA_VERSION:
        pytest.skip("another Unicode version: the classes are found afresh (see the next test)")
    assert unicode_classes.classes() == {"digit": unicode_classes.DIGIT, "word": unicode_classes.WORD,
                                         "space": unicode_classes.SPACE}
    # and classes() finds what re itself takes, code point by code point
    digit, word, space = (re.compile(c) for c in (r"\d", r"\w", r"\s"))
    for kind, rx in (("digit", digit), ("word", word), ("space", space)):
        inside = {cp for lo, hi in getattr(unicode_classes, kind.upper()) for cp in range(lo, hi + 1)}
        top = unicode_classes.TOPS[kind]
        assert inside == {cp for cp in range(top + 1) if rx.match(chr(cp))}, kind
        assert not any(rx.match(chr(cp)) for cp in range(top + 1, 0x110000, 97)), kind   # none above the top


def test_another_unicode_version_finds_the_classes_afresh(monkeypatch):
    from runwatch.parse import unicode_classes
    monkeypatch.setattr(unicode_classes, "UNIDATA_VERSION", "0.0")
    linear_regex._unicode_set.cache_clear()
    try:
        assert linear_regex._unicode_set("word") == unicode_classes.classes()["word"]
        assert linear_regex._found_classes.cache_info().currsize == 1
    finally:
        linear_regex._unicode_set.cache_clear()
        linear_regex._found_classes.cache_clear()


def test_the_ascii_case_table_is_every_case_mapping_onto_an_ascii_letter():
    want = {cp: {cp, ord(chr(cp).swapcase())} for cp in range(0x41, 0x7B) if chr(cp).isalpha()}
    for x in range(0x80, 0x2200):
        for form in (chr(x).lower()[:1], chr(x).upper()[:1], chr(x).casefold()[:1]):
            if form.isascii() and ord(form) in want:
                want[ord(form)].add(x)
                want[ord(form.swapcase())].add(x)
    assert linear_regex._ascii_case_table() == {cp: tuple(sorted(v)) for cp, v in want.items()}
    assert 0x212A in linear_regex._ascii_case_table()[ord("k")]        # the Kelvin sign


def test_a_deferred_pattern_is_built_at_first_use_and_is_then_the_same():
    d = linear_regex.compile(r"Task (?P<i>\d+)/(?P<n>\d+)", deferred=True)
    assert d._built is None and d.groups == 2 and d.groupindex == {"i": 1, "n": 2}
    assert d.engine == "re2" and d._built is not None
    m = d.search("x Task 3/10")
    assert m.groupdict() == {"i": "3", "n": "10"} and m.span() == (2, 11)
    assert linear_regex.compile(r"(a)\1", deferred=True).fallback_reason == "a backreference"
    with pytest.raises(re.error):
        linear_regex.compile(r"(unclosed", deferred=True)          # refused at once, as compile does


def test_loading_a_pack_translates_no_rule_and_a_rule_at_its_first_use_once(monkeypatch):
    from runwatch.parse.packs import BUILTIN_DIR, Matcher, parse_pack
    from runwatch.yamlfile import load_file
    translated = []
    real = linear_regex.translate
    monkeypatch.setattr(linear_regex, "translate", lambda p, f=0: translated.append(p) or real(p, f))
    rules = [r for n in builtin_names() for r in parse_pack(load_file(f"{BUILTIN_DIR}/{n}.yaml"), n, n).rules]
    assert translated == [] and len(rules) > 30
    docker = parse_pack(load_file(f"{BUILTIN_DIR}/docker.yaml"), "docker", "docker")
    out: list = []
    m = Matcher([docker])
    for _ in range(2):
        m.match_block(b"#5 [builder 2/7] RUN make\n#5 DONE 1.2s\nnothing here\n", 0.0, out)
    kinds = [e.type for e in out if e.type != "phase"]
    assert kinds == ["build_step", "build_step_done"] * 2
    on_re2 = {r.rx.pattern for r in docker.rules if r.fast is None and "#" in (r.literals or ())}
    assert set(translated) <= on_re2 and len(translated) == len(set(translated)) > 0     # each once, when met
    for r in rules:                     # every rule's RE2 form exists, built when asked for
        assert r.rx.engine == "re2" and r.rx.groupindex == (r.fast.rx.groupindex if r.fast else r.rx.groupindex)
