"""Regular expressions that run in time linear in the line, whatever the line.

Python's `re` backtracks: a rule like `[\\w.-]*?apikey` takes quadratic time on a
long line of dots, and a line is text from outside. RE2 (the `google-re2`
package) runs in linear time, but it speaks a slightly different dialect. So a
pattern is parsed with Python's own parser and written out again as RE2 syntax
with Python's meaning kept:

- `\\d`, `\\w`, `\\s` of a str pattern are Python's Unicode classes, spelled out
  as code point ranges taken from `str.isdecimal` / `str.isalnum` / `str.isspace`;
  of a bytes pattern, the ASCII classes (`\\s` includes `\\v`, which RE2's does not).
- bytes patterns run in RE2's Latin-1 mode (one byte, one character, as in
  Python), with ASCII-only case folding, as Python's bytes patterns have.
- `$` is `(?m:$)`: on one line, with or without its newline, the same as Python's
  "end, or before a final newline".
- `{,n}`, `\\Z`, flags in groups: translated.

What RE2 cannot do falls back to Python `re`, with the reason: backreferences,
lookahead and lookbehind, conditional groups, atomic groups and possessive
repeats, counts above 1000, LOCALE. Known differences that remain: `\\b` and
`\\B` look at ASCII word characters only (Python's str patterns also count
letters such as `é`), a repeated empty match is skipped as RE2 skips it, and
case folding of non-ASCII letters in str patterns follows RE2's Unicode tables.

`compile(pattern, flags)` returns an object with the part of the `re.Pattern`
interface runwatch uses (search, match, finditer, sub, groups, groupindex,
pattern) and `.engine` ("re2" or "re") and `.fallback_reason`.
"""
from __future__ import annotations

import functools
import re

import re2
from re2 import _re2

try:  # Python 3.11+
    import re._constants as _c
    import re._parser as _p
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore
    import sre_parse as _p  # type: ignore

MAX_COUNT = 1000            # RE2's limit on {n,m}
MAX_MEM = 8 << 20           # RE2's memory budget per pattern (its default): past it, a DFA gives way
                            # to the NFA, slower but still linear, so no line can grow memory

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START
_NULL = (-1, -1)


class Unsupported(Exception):
    """A construct RE2 has no linear-time equivalent for."""


# ------------------------------------------------------------ character sets

def _ranges(pred, top: int) -> tuple[tuple[int, int], ...]:
    out, start = [], None
    for cp in range(top + 1):
        if pred(chr(cp)):
            if start is None:
                start = cp
        elif start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, top))
    return tuple(out)


@functools.cache
def _unicode_set(category: str) -> tuple[tuple[int, int], ...]:
    # No decimal digit, letter or numeral is assigned above U+3FFFF, no space above U+3000.
    if category == "digit":
        return _ranges(str.isdecimal, 0x3FFFF)
    if category == "word":
        return _ranges(lambda ch: ch.isalnum() or ch == "_", 0x3FFFF)
    return _ranges(str.isspace, 0x3000)


_ASCII_SETS = {
    "digit": ((0x30, 0x39),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
}

_CATEGORIES = {
    _c.CATEGORY_DIGIT: ("digit", False), _c.CATEGORY_NOT_DIGIT: ("digit", True),
    _c.CATEGORY_WORD: ("word", False), _c.CATEGORY_NOT_WORD: ("word", True),
    _c.CATEGORY_SPACE: ("space", False), _c.CATEGORY_NOT_SPACE: ("space", True),
}


def _normalize(ranges) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def _complement(ranges, top: int) -> list[tuple[int, int]]:
    out, nxt = [], 0
    for lo, hi in _normalize(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= top:
        out.append((nxt, top))
    return out


def _ascii_fold(ranges) -> list[tuple[int, int]]:
    """Add the other case of every ASCII letter in the ranges (Python's bytes IGNORECASE)."""
    extra = []
    for lo, hi in ranges:
        for a, b, d in ((0x41, 0x5A, 32), (0x61, 0x7A, -32)):
            s, e = max(lo, a), min(hi, b)
            if s <= e:
                extra.append((s + d, e + d))
    return _normalize(list(ranges) + extra)


def _cp(cp: int) -> str:
    ch = chr(cp)
    if ch.isascii() and ch.isalnum():
        return ch
    return f"\\x{{{cp:x}}}"


def _class(ranges, negate: bool = False) -> str:
    parts = "".join(_cp(lo) if lo == hi else f"{_cp(lo)}-{_cp(hi)}" for lo, hi in ranges)
    if not parts:                                   # the empty set: nothing matches
        return "[^\\x{0}-\\x{10ffff}]" if not negate else "(?s:.)"
    return f"[{'^' if negate else ''}{parts}]"


# ------------------------------------------------------------ translation

class _Writer:
    def __init__(self, is_bytes: bool, flags: int, names: dict[int, str]):
        self.is_bytes = is_bytes
        self.top = 0xFF if is_bytes else 0x10FFFF
        self.names = names
        if flags & re.LOCALE:
            raise Unsupported("LOCALE flag")

    def category_set(self, cat, flags: int):
        kind, negated = _CATEGORIES[cat]
        if self.is_bytes or flags & re.ASCII:
            base = _ASCII_SETS[kind]
        else:
            base = _unicode_set(kind)
        return _complement(base, self.top) if negated else list(base)

    def fold_bytes(self, flags: int) -> bool:
        return self.is_bytes and bool(flags & re.IGNORECASE)

    def literal(self, cp: int, flags: int) -> str:
        if self.fold_bytes(flags) and (0x41 <= cp <= 0x5A or 0x61 <= cp <= 0x7A):
            return _class(_ascii_fold([(cp, cp)]))
        return _cp(cp)

    def charset(self, items, flags: int) -> str:
        negate = False
        ranges: list[tuple[int, int]] = []
        for op, av in items:
            if op is _c.NEGATE:
                negate = True
            elif op is _c.LITERAL:
                ranges.append((av, av))
            elif op is _c.RANGE:
                ranges.append(av)
            elif op is _c.CATEGORY:
                ranges.extend(self.category_set(av, flags))
            else:
                raise Unsupported(f"character class item {op}")
        ranges = _normalize(ranges)
        if self.fold_bytes(flags):
            ranges = _ascii_fold(ranges)
            if negate:                   # folded before negating, as Python does
                return _class(_complement(ranges, self.top))
        return _class(ranges, negate)

    def seq(self, items, flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op, av, flags: int) -> str:
        if op is _c.LITERAL:
            return self.literal(av, flags)
        if op is _c.NOT_LITERAL:
            return self.charset([(_c.NEGATE, None), (_c.LITERAL, av)], flags)
        if op is _c.ANY:
            return "(?s:.)" if flags & re.DOTALL else "."
        if op is _c.IN:
            return self.charset(av, flags)
        if op is _c.BRANCH:
            return "(?:" + "|".join(self.seq(b.data, flags) for b in av[1]) + ")"
        if op is _c.SUBPATTERN:
            group, add, delete, sub = av
            inner_flags = (flags | add) & ~delete
            if inner_flags & re.LOCALE:
                raise Unsupported("LOCALE flag")
            body = self.seq(sub.data, inner_flags)
            if not self.is_bytes and (flags ^ inner_flags) & re.IGNORECASE:
                body = ("(?i:" if inner_flags & re.IGNORECASE else "(?-i:") + body + ")"
            if group is None:
                return "(?:" + body + ")"
            name = self.names.get(group)
            return f"(?P<{name}>{body})" if name else f"({body})"
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, hi, sub = av
            if lo > MAX_COUNT or (hi != _c.MAXREPEAT and hi > MAX_COUNT):
                raise Unsupported(f"a repeat count above {MAX_COUNT}")
            if hi == _c.MAXREPEAT:
                q = "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
            elif lo == 0 and hi == 1:
                q = "?"
            elif lo == hi:
                q = f"{{{lo}}}"
            else:
                q = f"{{{lo},{hi}}}"
            if op is _c.MIN_REPEAT:
                q += "?"
            return "(?:" + self.seq(sub.data, flags) + ")" + q
        if op is _c.AT:
            return self.at(av, flags)
        raise Unsupported(_UNSUPPORTED.get(op, f"{op}"))

    def at(self, av, flags: int) -> str:
        multi = flags & re.MULTILINE
        if av is _c.AT_BEGINNING:
            return "(?m:^)" if multi else "\\A"
        if av is _c.AT_BEGINNING_STRING:
            return "\\A"
        if av is _c.AT_END:
            return "(?m:$)"
        if av is _c.AT_END_STRING:
            return "\\z"
        if av is _c.AT_BOUNDARY:
            return "\\b"
        if av is _c.AT_NON_BOUNDARY:
            return "\\B"
        raise Unsupported(f"anchor {av}")


_UNSUPPORTED = {
    _c.GROUPREF: "a backreference",
    _c.GROUPREF_EXISTS: "a conditional group (?(…)…)",
    _c.ASSERT: "a lookahead or lookbehind",
    _c.ASSERT_NOT: "a negative lookahead or lookbehind",
}
for _name, _why in (("ATOMIC_GROUP", "an atomic group (?>…)"), ("POSSESSIVE_REPEAT", "a possessive repeat")):
    if hasattr(_c, _name):
        _UNSUPPORTED[getattr(_c, _name)] = _why


def translate(pattern: str | bytes, flags: int = 0) -> str:
    """RE2 syntax (a str; Latin-1 code points for a bytes pattern) with the
    pattern's Python meaning; raises Unsupported naming the construct."""
    parsed = _p.parse(pattern, flags)
    all_flags = flags | parsed.state.flags
    names = {i: n for n, i in parsed.state.groupdict.items()}
    w = _Writer(isinstance(pattern, bytes), all_flags, names)
    body = w.seq(parsed.data, all_flags)
    case_insensitive = all_flags & re.IGNORECASE and not w.is_bytes
    return ("(?i)" if case_insensitive else "") + body


# ------------------------------------------------------------ the engine

class Match:
    """What runwatch uses of re.Match, for a match found by RE2."""

    __slots__ = ("re", "string", "_data", "_spans")

    def __init__(self, rx: "LinearPattern", string, data: bytes, spans):
        self.re, self.string, self._data, self._spans = rx, string, data, spans

    def _index(self, g) -> int:
        if isinstance(g, int):
            if 0 <= g <= self.re.groups:
                return g
        else:
            i = self.re.groupindex.get(g)
            if i is not None:
                return i
        raise IndexError("no such group")

    def group(self, *gs):
        if not gs:
            return self[0]
        if len(gs) == 1:
            return self[gs[0]]
        return tuple(self[g] for g in gs)

    def __getitem__(self, g):
        a, b = self._spans[self._index(g)]
        if a < 0:
            return None
        piece = self._data[a:b]
        return piece if self.re.is_bytes else piece.decode("utf-8", "surrogatepass")

    def groups(self, default=None):
        return tuple(default if v is None else v for v in (self[i] for i in range(1, self.re.groups + 1)))

    def groupdict(self, default=None):
        return {n: (default if (v := self[i]) is None else v) for n, i in self.re.groupindex.items()}

    def _offset(self, byte_pos: int) -> int:
        if byte_pos < 0 or self.re.is_bytes:
            return byte_pos
        return len(self._data[:byte_pos].decode("utf-8", "surrogatepass"))

    def start(self, g=0) -> int:
        return self._offset(self._spans[self._index(g)][0])

    def end(self, g=0) -> int:
        return self._offset(self._spans[self._index(g)][1])

    def span(self, g=0) -> tuple[int, int]:
        return self.start(g), self.end(g)

    def __repr__(self) -> str:
        return f"<linear_regex.Match span={self.span()} match={self.group(0)!r}>"


def _options(is_bytes: bool):
    opts = re2.Options()
    opts.max_mem = MAX_MEM
    opts.log_errors = False
    if is_bytes:
        opts.encoding = re2.Options.Encoding.LATIN1
    return opts


class PatternSet:
    """Which of several RE2 patterns (all bytes, or all str) match a text, in one pass."""

    def __init__(self, patterns: list["LinearPattern"]):
        is_bytes = {p.is_bytes for p in patterns}
        if len(is_bytes) > 1:
            raise ValueError("a PatternSet holds bytes patterns or str patterns, not both")
        self.is_bytes = is_bytes.pop() if is_bytes else True
        self._set = _re2.Set(_UNANCHORED, _options(self.is_bytes))
        for p in patterns:
            if self._set.Add(p.raw_syntax) < 0:
                raise ValueError(f"RE2 set refused {p.pattern!r}")
        if patterns and not self._set.Compile():
            raise ValueError("RE2 set does not compile")
        self._n = len(patterns)

    def matching(self, text) -> list[int]:
        """Indices (in the order given) of the patterns that match somewhere in text."""
        if not self._n:
            return []
        data = text if self.is_bytes else text.encode("utf-8", "surrogatepass")
        return sorted(self._set.Match(data))


class LinearPattern:
    """A pattern compiled by RE2, with re.Pattern's interface (the part runwatch uses).

    str text is matched as UTF-8 (lone surrogates kept with surrogatepass);
    bytes text byte for byte."""

    engine = "re2"
    fallback_reason = None

    def __init__(self, pattern: str | bytes, flags: int = 0):
        self.pattern, self.flags = pattern, flags
        self.is_bytes = isinstance(pattern, bytes)
        syntax = translate(pattern, flags)
        self.re2_syntax = syntax
        self.raw_syntax = syntax.encode("latin-1" if self.is_bytes else "utf-8")
        self._rx = _re2.RE2(self.raw_syntax, _options(self.is_bytes))
        if not self._rx.ok():
            raise Unsupported(f"RE2 does not take it: {self._rx.error()}")
        self._match = self._rx.Match
        self.groups = self._rx.NumberOfCapturingGroups()
        self.groupindex = {(n.decode("utf-8") if isinstance(n, bytes) else n): i
                           for n, i in self._rx.NamedCapturingGroups()}

    def _data(self, text) -> bytes:
        if self.is_bytes:
            if not isinstance(text, (bytes, bytearray, memoryview)):
                raise TypeError("cannot use a bytes pattern on a string-like object")
            return bytes(text)
        if not isinstance(text, str):
            raise TypeError("cannot use a string pattern on a bytes-like object")
        return text.encode("utf-8", "surrogatepass")

    def search(self, text):
        data = self._data(text)
        spans = self._match(_UNANCHORED, data, 0, len(data))
        return None if spans[0] == _NULL else Match(self, text, data, spans)

    def match(self, text):
        data = self._data(text)
        spans = self._match(_ANCHOR_START, data, 0, len(data))
        return None if spans[0] == _NULL else Match(self, text, data, spans)

    def _iter(self, text, data: bytes):
        pos, end, match = 0, len(data), self._match
        while pos <= end:
            spans = match(_UNANCHORED, data, pos, end)
            a, b = spans[0]
            if a < 0:
                return
            yield Match(self, text, data, spans)
            if b == a:                       # an empty match: step over one character
                pos = b + 1
                if not self.is_bytes:
                    while pos < end and (data[pos] & 0xC0) == 0x80:
                        pos += 1
            else:
                pos = b

    def finditer(self, text):
        return self._iter(text, self._data(text))

    def sub(self, repl, text, count: int = 0):
        """As re.sub, for a callable repl or a replacement without group references."""
        data = self._data(text)
        if self._match(_UNANCHORED, data, 0, len(data))[0] == _NULL:
            return text                       # the common case: nothing to replace
        out, last, n = [], 0, 0
        for m in self._iter(text, data):
            a, b = m._spans[0]
            out.append(data[last:a])
            r = repl(m) if callable(repl) else repl
            out.append(r if self.is_bytes else r.encode("utf-8", "surrogatepass"))
            last = b
            n += 1
            if count and n >= count:
                break
        out.append(data[last:])
        joined = b"".join(out)
        return joined if self.is_bytes else joined.decode("utf-8", "surrogatepass")

    def __repr__(self) -> str:
        return f"linear_regex.compile({self.pattern!r}, engine='re2')"


class BacktrackingPattern:
    """Python's re, for what RE2 cannot run; `.fallback_reason` says why."""

    engine = "re"

    def __init__(self, rx: re.Pattern, reason: str):
        self._rx = rx
        self.fallback_reason = reason
        self.pattern, self.flags = rx.pattern, rx.flags
        self.is_bytes = isinstance(rx.pattern, bytes)
        self.groups, self.groupindex = rx.groups, dict(rx.groupindex)
        self.search, self.match, self.finditer, self.sub = rx.search, rx.match, rx.finditer, rx.sub

    def __repr__(self) -> str:
        return f"linear_regex.compile({self.pattern!r}, engine='re')"


def compile(pattern: str | bytes, flags: int = 0):   # noqa: A001 - the drop-in for re.compile, called as linear_regex.compile
    """RE2 where the pattern allows it, else Python re. Raises re.error for a
    pattern Python's re rejects (so error messages stay Python's)."""
    rx = re.compile(pattern, flags)
    try:
        return LinearPattern(pattern, flags)
    except Unsupported as e:
        return BacktrackingPattern(rx, str(e))
