"""Lines built to make one regex backtrack, derived from the regex itself.

Shared by tests/test_linear_time.py (each shipped rule must stay linear) and
bench/bench_regex.py (worst µs per KiB per rule). For a pattern, `witness()`
writes a short string the pattern matches (the first branch, the fewest repeats,
a representative character of each class); the hostile lines are then, up to
the line limit: the witness without its last character repeated (near-matches
with the terminator missing), long runs of every character the pattern's
classes and literals accept, alone and after half a witness, and each literal
of the pattern repeated.
"""
from __future__ import annotations

import functools
import re

try:  # Python 3.11+
    import re._constants as _c
    import re._parser as _p
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore
    import sre_parse as _p  # type: ignore

LINE_LIMIT = 64 * 1024
_PROBES = "a9 .-_=:\"'/x%|[]#"
_CATEGORY_CHAR = {
    _c.CATEGORY_DIGIT: "7", _c.CATEGORY_NOT_DIGIT: "a", _c.CATEGORY_WORD: "a", _c.CATEGORY_NOT_WORD: ".",
    _c.CATEGORY_SPACE: " ", _c.CATEGORY_NOT_SPACE: "a",
}


def _set_char(items) -> str:
    """A character the class [items] accepts (never a newline)."""
    negate = any(op is _c.NEGATE for op, _ in items)
    pos = [(op, av) for op, av in items if op is not _c.NEGATE]

    def accepted(ch: str) -> bool:
        o = ord(ch)
        hit = False
        for op, av in pos:
            if op is _c.LITERAL and av == o or op is _c.RANGE and av[0] <= o <= av[1]:
                hit = True
            elif op is _c.CATEGORY:
                hit = hit or re.fullmatch({
                    _c.CATEGORY_DIGIT: r"\d", _c.CATEGORY_NOT_DIGIT: r"\D", _c.CATEGORY_WORD: r"\w",
                    _c.CATEGORY_NOT_WORD: r"\W", _c.CATEGORY_SPACE: r"\s", _c.CATEGORY_NOT_SPACE: r"\S",
                }[av], ch) is not None
        return hit != negate

    if not negate:
        for op, av in pos:
            if op is _c.LITERAL and av != 10:
                return chr(av)
            if op is _c.RANGE:
                return chr(av[0])
            if op is _c.CATEGORY:
                return _CATEGORY_CHAR[av]
    for ch in _PROBES:
        if accepted(ch):
            return ch
    return "z"


def _witness(items) -> str:
    out = []
    for op, av in items:
        if op is _c.LITERAL:
            out.append(chr(av))
        elif op is _c.NOT_LITERAL:
            out.append("a" if av != ord("a") else "b")
        elif op is _c.ANY:
            out.append("a")
        elif op is _c.IN:
            out.append(_set_char(av))
        elif op is _c.BRANCH:
            out.append(_witness(av[1][0].data))
        elif op is _c.SUBPATTERN:
            out.append(_witness(av[3].data))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT) or op is getattr(_c, "POSSESSIVE_REPEAT", None):
            lo, _hi, sub = av
            out.append(_witness(sub.data) * max(lo, 1 if lo == 0 and op is _c.MAX_REPEAT else lo))
        # anchors, lookarounds, backreferences: nothing to write
    return "".join(out)


def _chars(items, acc: set) -> None:
    for op, av in items:
        if op is _c.LITERAL:
            acc.add(chr(av))
        elif op is _c.IN:
            acc.add(_set_char(av))
            for sub_op, sub_av in av:
                if sub_op is _c.LITERAL and sub_av != 10:
                    acc.add(chr(sub_av))
                elif sub_op is _c.CATEGORY:
                    acc.add(_CATEGORY_CHAR[sub_av])
        elif op is _c.ANY or op is _c.NOT_LITERAL:
            acc.update(".a ")
        elif op is _c.BRANCH:
            for b in av[1]:
                _chars(b.data, acc)
        elif op is _c.SUBPATTERN:
            _chars(av[3].data, acc)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT) or op is getattr(_c, "POSSESSIVE_REPEAT", None):
            _chars(av[2].data, acc)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            _chars(av[1].data, acc)


def _literals(items, acc: set) -> None:
    run: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        if len(run) >= 2:
            acc.add("".join(run))
        run = []
        if op is _c.BRANCH:
            for b in av[1]:
                _literals(b.data, acc)
        elif op is _c.SUBPATTERN:
            _literals(av[3].data, acc)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            _literals(av[2].data, acc)
    if len(run) >= 2:
        acc.add("".join(run))


def _text(pattern) -> str:
    return pattern.decode("latin-1") if isinstance(pattern, bytes) else pattern


def witness(pattern, flags: int = 0) -> str:
    return _witness(_p.parse(_text(pattern), flags).data)


def hostile_lines(pattern, flags: int = 0, limit: int = LINE_LIMIT) -> list[tuple[str, str]]:
    """(what, line) pairs, each line at most `limit` characters, no newline in it."""
    data = _p.parse(_text(pattern), flags).data
    w = _witness(data).replace("\n", " ")
    chars: set[str] = set()
    _chars(data, chars)
    chars.discard("\n")
    lits: set[str] = set()
    _literals(data, lits)
    out: list[tuple[str, str]] = []

    def fill(what: str, unit: str, head: str = "", tail: str = ""):
        if unit:
            n = max(1, (limit - len(head) - len(tail)) // len(unit))
            out.append((what, (head + unit * n + tail)[:limit]))

    near = w[:-1] if len(w) > 1 else w
    fill("near-matches back to back", near)
    fill("near-matches, spaced", near + " ")
    for ch in sorted(chars):
        fill(f"run of {ch!r}", ch)
        fill(f"half a witness, then a run of {ch!r}", ch, head=w[: len(w) // 2])
        fill(f"run of {ch!r} ending in a near-match", ch, tail=near)
        fill(f"near-match, then a run of {ch!r}", ch, head=near)
    for lit in sorted(lits):
        fill(f"literal {lit!r} repeated", lit)
        fill(f"literal {lit!r} spaced", lit + " ")
    return out


def plain_lines(pattern, flags: int = 0, limit: int = LINE_LIMIT) -> list[tuple[str, str]]:
    """Ordinary long lines for the reference: log text, and a match followed by log text."""
    text = "2024-05-01 12:00:01,123 INFO runner: epoch 3 step 120 loss 0.4127 lr 3e-4 ok; "
    w = witness(pattern, flags).replace("\n", " ")
    return [("plain log text", (text * (limit // len(text) + 1))[:limit]),
            ("a match, then log text", (w + " " + text * (limit // len(text) + 1))[:limit])]


def as_input(pattern, line: str):
    """The line as the rule gets it: bytes for a bytes pattern (Latin-1, byte per character)."""
    return line.encode("latin-1", "replace") if isinstance(pattern, bytes) else line


# ------------------------------------------------------------ measuring

def shipped_rules() -> list[tuple[str, object, object]]:
    """(name, compiled pattern, how the rule is applied to one line) for every rule runwatch ships."""
    from runwatch.parse.packs import builtin_names, load_builtin
    from runwatch.parse.redact import _PEM_BEGIN, BUILTIN

    from runwatch.parse.packs import Matcher, Pack

    out = []
    for n in builtin_names():
        for r in load_builtin(n).rules:
            out.append((f"pack {n}/{r.name}", r.rx, r.rx.search))
            if r.fast is not None:       # proven linear on Python re: line by line, and over a block
                out.append((f"pack {n}/{r.name} (re, line-safe)", r.rx, r.fast.rx.search))
                out.append((f"pack {n}/{r.name} (re, block)", r.rx, _as_block(Matcher([Pack(n, "", [r], r.file)]))))
    for i, (rx, repl) in enumerate(BUILTIN):
        out.append((f"redact #{i} {_text(rx.pattern)[:48]!r}", rx, functools.partial(rx.sub, repl)))
    out.append(("redact PEM begin", _PEM_BEGIN, _PEM_BEGIN.search))
    return out


def _as_block(matcher):
    """The matcher's whole-block way on one line (as a block of one line)."""
    return lambda s: matcher._match_dense(s.encode("utf-8", "surrogatepass") + b"\n", 0.0, [])


def backtracking_example() -> list[tuple[str, object, object]]:
    """The key=value rule as it was (lookbehind, Python re): quadratic, for showing the check bites."""
    from runwatch.parse.redact import _NAMES, _VALUE
    rx = re.compile(rb"(?i)(?<![\w-])([\w.-]*?" + _NAMES + rb")([\"']?\s*[:=]\s*)" + _VALUE)
    return [("old key=value rule on Python re", rx, lambda s: rx.sub(b"x", s))]


def timed(fn, arg, repeat: int = 2) -> float:
    import time
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str]) -> int:
    """Child of tests/test_linear_time.py: one JSON object per line, flushed before each match,
    so the parent can kill a match that stalls and name it."""
    import json
    import sys
    limit = int(argv[argv.index("--limit") + 1]) if "--limit" in argv else LINE_LIMIT
    rules = backtracking_example() if "--backtracking-example" in argv else shipped_rules()

    def say(**kw):
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    for name, rx, apply in rules:
        ref = max(timed(apply, as_input(rx.pattern, line), 3) for _, line in plain_lines(rx.pattern, 0, limit))
        say(rule=name, ref=ref)
        for what, line in hostile_lines(rx.pattern, 0, limit):
            data = as_input(rx.pattern, line)
            say(start=what, length=len(data))
            say(done=what, seconds=timed(apply, data))
    say(end=True)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
