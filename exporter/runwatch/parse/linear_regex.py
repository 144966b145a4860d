"""Regular expressions that run in time linear in the line, whatever the line.

Python's `re` backtracks: a rule like `[\\w.-]*?apikey` takes quadratic time on a
long line of dots, and a line is text from outside. RE2 (the `google-re2`
package) runs in linear time, but it speaks a slightly different dialect. So a
pattern is parsed with Python's own parser and written out again as RE2 syntax
with Python's meaning kept:

- `\\d`, `\\w`, `\\s` of a str pattern are Python's Unicode classes, spelled out
  as code point ranges (unicode_classes.py: the ones re itself takes, kept for one Unicode
  version, found afresh for another); of a bytes pattern, the ASCII classes (`\\s`
  includes `\\v`, which RE2's does not).
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
import operator
import re
import unicodedata

import re2
from re2 import _re2

from . import unicode_classes

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


@functools.lru_cache(maxsize=4096)
def parse(pattern: str | bytes, flags: int = 0):
    """Python's own parse of a pattern (re._parser), kept: loading a pack reads each rule's
    parse several times (its RE2 form, its literals, its line-safe form). Callers must not
    change what it returns."""
    return _p.parse(pattern, flags)


class Unsupported(Exception):
    """A construct RE2 has no linear-time equivalent for."""


# ------------------------------------------------------------ character sets

@functools.cache
def _unicode_set(category: str) -> tuple[tuple[int, int], ...]:
    """Python's \\d ("digit"), \\w ("word") or \\s ("space") of str patterns, as ranges: the
    tables kept for this Python's Unicode version, or found afresh (unicode_classes.classes)."""
    if unicodedata.unidata_version == unicode_classes.UNIDATA_VERSION:
        return getattr(unicode_classes, category.upper())
    return _found_classes()[category]


@functools.cache
def _found_classes() -> dict[str, tuple[tuple[int, int], ...]]:
    return unicode_classes.classes()


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
    return _class_text(tuple(map(tuple, ranges)), negate)


@functools.lru_cache(maxsize=1024)
def _class_text(ranges: tuple, negate: bool) -> str:
    """A class's RE2 text, kept: the big Unicode classes (\\d, \\w, \\s) recur in many rules."""
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
        return _charset_text(tuple(items), self.is_bytes, flags & (re.IGNORECASE | re.ASCII))

    def _charset(self, items, flags: int) -> str:
        negate, ranges = _class_items(items, lambda cat: self.category_set(cat, flags))
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


@functools.lru_cache(maxsize=1024)
def _charset_text(items: tuple, is_bytes: bool, flags: int) -> str:
    """A class's RE2 text, kept: the same classes (\\d+, [^\\s:]) recur in many rules, and the
    big Unicode ones cost a sort and a merge of hundreds of ranges each time."""
    return _Writer(is_bytes, 0, {})._charset(items, flags)


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
    parsed = parse(pattern, flags)
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


def compile(pattern: str | bytes, flags: int = 0, *, deferred: bool = False):   # noqa: A001 - the drop-in for re.compile, called as linear_regex.compile
    """RE2 where the pattern allows it, else Python re. Raises re.error for a
    pattern Python's re rejects (so error messages stay Python's).

    deferred=True: the same, translated and compiled at first use (see DeferredPattern)."""
    rx = re.compile(pattern, flags)
    if deferred:
        return DeferredPattern(pattern, flags, rx)
    try:
        return LinearPattern(pattern, flags)
    except Unsupported as e:
        return BacktrackingPattern(rx, str(e))


class DeferredPattern:
    """compile()'s result, built when first used. A pack rule reads only the names of its
    groups at load (from Python's compile, the same as RE2's); translating it and compiling it
    for RE2 (a millisecond or more for a rule with Unicode classes) waits for the first line
    that holds its literal, which most rules of most packs never meet in a given log, and a
    rule that runs on its LineSafe form may never need it. Anything else (`engine`,
    `fallback_reason`, ...) builds the pattern and is the built one's."""

    def __init__(self, pattern: str | bytes, flags: int, rx: re.Pattern):
        self.pattern, self.flags = pattern, flags
        self.is_bytes = isinstance(pattern, bytes)
        self.groups, self.groupindex = rx.groups, dict(rx.groupindex)
        self._built = None

    def built(self):
        """The LinearPattern (or BacktrackingPattern) this stands for."""
        if self._built is None:
            self._built = compile(self.pattern, self.flags)
        return self._built

    def search(self, text):
        return (self._built or self.built()).search(text)

    def match(self, text):
        return (self._built or self.built()).match(text)

    def finditer(self, text):
        return (self._built or self.built()).finditer(text)

    def sub(self, repl, text, count: int = 0):
        return (self._built or self.built()).sub(repl, text, count)

    def __getattr__(self, name):           # only for what the class and __init__ do not have
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.built(), name)

    def __repr__(self) -> str:
        return f"linear_regex.compile({self.pattern!r}, deferred=True)"


# ------------------------------------------------------------ proven linear on Python re

# Python's re is 2-5x cheaper per call than RE2 through its binding, which matters when
# nearly every line is an event. It may run a pattern only when the pattern's shape
# proves that no line makes it backtrack more than linearly; `line_safe` decides that
# and writes the pattern out so that no match can cross a newline (a whole block of
# lines can then be searched at once, with the same matches as line by line).
#
# The shape (a sufficient condition, checked on the parsed pattern):
#   * after zero-width anchors (^ $ \b \B), the pattern starts with a literal L0;
#   * every item is an anchor, one character (a literal, a class, `.`), a repeat of one
#     character class X{m,n} (a "run"), or a bounded piece (alternations, optional parts:
#     no run inside, at most MAX_PIECE_WIDTH characters, at most MAX_PIECE_WAYS ways to match);
#   * every run but a last item of the pattern is disjoint from what can follow it, and L0
#     holds a character the run's class does not.
# Then each attempt at a position is deterministic: a run stops at the first character
# outside it, and giving characters back can only offer the next item a character it
# refuses, one step each; an attempt costs the span it reads. Attempts that read past
# their first character start where L0 occurs; L0 cannot lie inside a run, so a span
# holds a bounded number of them, and every character is read by a bounded number of
# attempts: linear in the line, with a constant from the pattern alone.

MAX_PIECE_WIDTH = 256
MAX_PIECE_WAYS = 64
_TOP = 0x10FFFF
_NL = 10
_ALLOWED_AT = None     # set below (needs _c)


def _cat_ranges(cat) -> list[tuple[int, int]]:
    """The code points of a str category, erring on the large side for the analysis:
    above the tables' limit every character may be a digit or a word character."""
    return list(_cat_ranges_kept(cat))


@functools.lru_cache(maxsize=16)
def _cat_ranges_kept(cat) -> tuple[tuple[int, int], ...]:
    kind, negated = _CATEGORIES[cat]
    base = list(_unicode_set(kind))
    if kind != "space":
        base.append((0x40000, _TOP))
    if negated:
        out = _complement(_unicode_set(kind), _TOP)
        if kind != "space":
            out.append((0x40000, _TOP))
        return tuple(_normalize(out))
    return tuple(_normalize(base))


def _set_of(op, av) -> list[tuple[int, int]] | None:
    """The characters one single-character item accepts, or None if it is not one."""
    if op is _c.LITERAL:
        return [(av, av)]
    if op is _c.NOT_LITERAL:
        return _complement([(av, av)], _TOP)
    if op is _c.ANY:
        return _complement([(_NL, _NL)], _TOP)
    if op is _c.IN:
        found = _class_set(tuple(av))
        return None if found is None else list(found)
    return None


def _class_items(items, category) -> tuple[bool, list[tuple[int, int]]]:
    """A character class's items ([...]) as (negated, code point ranges, not yet normalized);
    `category(cat)` gives a category's (\\d, \\w, \\s ...) ranges. Unsupported for any other item."""
    negate, ranges = False, []
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            ranges.append((av, av))
        elif op is _c.RANGE:
            ranges.append(av)
        elif op is _c.CATEGORY:
            ranges.extend(category(av))
        else:
            raise Unsupported(f"character class item {op}")
    return negate, ranges


@functools.lru_cache(maxsize=1024)
def _class_set(av: tuple) -> tuple[tuple[int, int], ...] | None:
    """_set_of a class ([...], \\d, \\s ...), kept: a rule's analysis asks for each class several times."""
    try:
        negate, ranges = _class_items(av, _cat_ranges)
    except Unsupported:
        return None
    ranges = _normalize(ranges)
    return tuple(_complement(ranges, _TOP) if negate else ranges)


def _disjoint(a, b) -> bool:
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return False
    return True


def _has(ranges, cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


class _Item:
    """One element of the flattened top-level sequence."""
    __slots__ = ("kind", "chars", "nullable", "width", "ways")

    def __init__(self, kind, chars, nullable, width=0, ways=1):
        self.kind, self.chars, self.nullable, self.width, self.ways = kind, chars, nullable, width, ways


def _piece(items) -> tuple[list, bool, int, int]:
    """(first characters, nullable, max width, ways) of a bounded sequence; raises Unsupported."""
    first: list = []
    nullable, width, ways = True, 0, 1
    for op, av in items:
        if op is _c.AT:
            if av not in _ALLOWED_AT:
                raise Unsupported(f"anchor {av}")
            continue
        chars = _set_of(op, av)
        if chars is not None:
            if _has(chars, _NL) and op is not _c.NOT_LITERAL and op is not _c.IN:
                raise Unsupported("a newline in the pattern")
            sub_first, sub_null, sub_w, sub_ways = chars, False, 1, 1
        elif op is _c.SUBPATTERN:
            sub_first, sub_null, sub_w, sub_ways = _piece(_group_items(av))
        elif op is _c.BRANCH:
            sub_first, sub_null, sub_w, sub_ways = [], False, 0, 0
            for b in av[1]:
                f, n, w, k = _piece(b.data)
                sub_first, sub_null = sub_first + f, sub_null or n
                sub_w, sub_ways = max(sub_w, w), sub_ways + k
            sub_first = _normalize(sub_first)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, hi, sub = av
            if hi == _c.MAXREPEAT:
                raise Unsupported("an unbounded repeat inside a bounded piece")
            f, n, w, k = _piece(sub.data)
            sub_first, sub_null, sub_w = f, n or lo == 0, w * hi
            sub_ways = sum(k ** j for j in range(lo, hi + 1))
        else:
            raise Unsupported(_UNSUPPORTED.get(op, f"{op}"))
        if nullable:
            first = _normalize(first + sub_first)
        nullable = nullable and sub_null
        width += sub_w
        ways *= max(sub_ways, 1)
        if width > MAX_PIECE_WIDTH or ways > MAX_PIECE_WAYS:
            raise Unsupported("a bounded piece too wide or with too many ways to match")
    return first, nullable, width, ways



def _group_items(av) -> list:
    """The items of a group, for the shape analysis. A `(?i:...)` group over ASCII text is read
    with each letter as the set of every character re's case-insensitive match takes for it (a
    superset: `k` also takes the Kelvin sign), so the analysis stays conservative; _write keeps
    the flag. Any other flag in a group is not taken."""
    _g, add, delete, sub = av
    if not add and not delete:
        return sub.data
    if add != re.IGNORECASE or delete:
        raise Unsupported("flags in a group")
    return _fold_items(sub.data)


def _fold_items(items) -> list:
    out = []
    for op, av in items:
        if op is _c.LITERAL:
            if av >= 0x80:
                raise Unsupported("a case-insensitive non-ASCII literal")
            variants = _case_variants(av)
            out.append((_c.IN, [(_c.LITERAL, cp) for cp in variants]) if len(variants) > 1 else (op, av))
        elif op is _c.BRANCH:
            out.append((op, (av[0], [_Sub(_fold_items(b.data)) for b in av[1]])))
        elif op is _c.SUBPATTERN:
            g, add, delete, sub = av
            if delete or (add and add != re.IGNORECASE):
                raise Unsupported("flags in a group")
            out.append((op, (g, 0, 0, _Sub(_fold_items(sub.data)))))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, hi, sub = av
            out.append((op, (lo, hi, _Sub(_fold_items(sub.data)))))
        elif op is _c.AT:
            out.append((op, av))
        else:                                    # classes, categories: not folded here
            raise Unsupported("a case-insensitive class")
    return out


class _Sub:
    """A stand-in for sre's SubPattern: the analysis reads only .data."""
    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


def _case_variants(cp: int) -> tuple[int, ...]:
    """cp and every character whose lower or upper case (or case fold) is one of cp's cases."""
    return _ascii_case_table().get(cp, (cp,))


@functools.lru_cache(maxsize=1)
def _ascii_case_table() -> dict[int, tuple[int, ...]]:
    """For each ASCII letter, its case variants (a superset of what re's IGNORECASE takes:
    the Kelvin sign for k, the long s for s, the dotted and dotless i for i): the characters
    up to U+2200 whose lower case, upper case or case fold starts with an ASCII letter, found
    by str methods and re over all of them at once (C speed)."""
    table = {cp: {cp, ord(chr(cp).swapcase())} for cp in range(0x41, 0x7B) if chr(cp).isalpha()}
    chars = [chr(x) for x in range(0x80, 0x2200)]
    first = operator.itemgetter(0)            # no case mapping of a character is empty
    for form in (str.lower, str.upper, str.casefold):
        heads = "".join(map(first, map(form, chars)))
        for m in re.finditer("[A-Za-z]", heads):
            x, letter = 0x80 + m.start(), ord(m.group())
            table[letter].add(x)
            table[ord(chr(letter).swapcase())].add(x)
    return {cp: tuple(sorted(v)) for cp, v in table.items()}


def _flatten(items, out: list) -> None:
    for op, av in items:
        if op is _c.AT:
            if av not in _ALLOWED_AT:
                raise Unsupported(f"anchor {av}")
            out.append(_Item("at", None, True))
            continue
        chars = _set_of(op, av)
        if chars is not None:
            if op is _c.LITERAL and av == _NL:
                raise Unsupported("a newline in the pattern")
            out.append(_Item("lit" if op is _c.LITERAL else "char", chars, False, 1))
        elif op is _c.SUBPATTERN:
            _flatten(_group_items(av), out)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and len(av[2].data) == 1 \
                and _set_of(*av[2].data[0]) is not None:
            lo, hi, sub = av
            out.append(_Item("run", _set_of(*sub.data[0]), lo == 0))
        else:
            f, n, w, k = _piece([(op, av)])
            out.append(_Item("piece", f, n, w, k))


def _check_shape(items: list) -> str:
    """L0, the leading literal, if the flattened pattern has the linear shape; raises Unsupported."""
    i = 0
    while i < len(items) and items[i].kind == "at":
        i += 1
    lead = []
    while i < len(items) and items[i].kind == "lit":
        lead.append(items[i].chars[0][0])
        i += 1
    if not lead:
        raise Unsupported("no literal at the start")
    ways = 1
    for it in items:
        ways *= it.ways
    if ways > MAX_PIECE_WAYS:
        raise Unsupported("bounded pieces with too many ways to match")
    for k, it in enumerate(items):
        if it.kind != "run" or k == len(items) - 1:
            continue
        if all(_has(it.chars, cp) for cp in lead):
            raise Unsupported("a repeat that can hold the leading literal")
        follow: list = []
        for nxt in items[k + 1:]:
            if nxt.kind == "at":
                continue
            follow = _normalize(follow + nxt.chars)
            if not nxt.nullable:
                break
        if not _disjoint(it.chars, follow):
            raise Unsupported("a repeat that overlaps what follows it")
    return "".join(map(chr, lead))


def _u(cp: int) -> str:
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


_CAT_TEXT = {}     # set below


def _write_class(op, av) -> str:
    chars = _set_of(op, av)
    if op is _c.LITERAL:
        return re.escape(chr(av))
    if op is _c.NOT_LITERAL:
        return f"[^{_u(av)}\\n]"
    if op is _c.ANY:
        return "."
    negate = any(iop is _c.NEGATE for iop, _ in av)
    parts = []
    for iop, iav in av:
        if iop is _c.LITERAL:
            parts.append(_u(iav))
        elif iop is _c.RANGE:
            parts.append(f"{_u(iav[0])}-{_u(iav[1])}")
        elif iop is _c.CATEGORY:
            parts.append(_CAT_TEXT[iav])
    if negate:
        return "[^" + "".join(parts) + "\\n]"
    if not _has(chars, _NL):
        return "[" + "".join(parts) + "]"
    # a class that holds the newline (\s, \D, \W, a range over it): written out without it
    exact = []
    for iop, iav in av:
        if iop is _c.LITERAL:
            exact.append((iav, iav))
        elif iop is _c.RANGE:
            exact.append(iav)
        else:
            kind, neg = _CATEGORIES[iav]
            base = _unicode_set(kind)
            exact.extend(_complement(base, _TOP) if neg else base)
    if any(iop is _c.CATEGORY and _CATEGORIES[iav][0] != "space" for iop, iav in av):
        raise Unsupported("a digit or word class holding the newline")   # tables stop at U+3FFFF
    out = _complement(_normalize(exact), _TOP)
    out = _complement(_normalize(out + [(_NL, _NL)]), _TOP)
    return "[" + "".join(_u(lo) if lo == hi else f"{_u(lo)}-{_u(hi)}" for lo, hi in out) + "]"


def _write(items, names: dict[int, str]) -> str:
    out = []
    for op, av in items:
        if op is _c.AT:
            out.append({_c.AT_BEGINNING: "(?m:^)", _c.AT_END: "(?m:$)",
                        _c.AT_BOUNDARY: "\\b", _c.AT_NON_BOUNDARY: "\\B"}[av])
        elif op is _c.SUBPATTERN:
            group, add, _d, sub = av
            body = _write(sub.data, names)
            if group is None:
                out.append(f"(?i:{body})" if add & re.IGNORECASE else f"(?:{body})")
            elif group in names:
                out.append(f"(?P<{names[group]}>{body})")
            else:
                out.append(f"({body})")
        elif op is _c.BRANCH:
            out.append("(?:" + "|".join(_write(b.data, names) for b in av[1]) + ")")
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, hi, sub = av
            if hi == _c.MAXREPEAT:
                q = "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
            elif lo == 0 and hi == 1:
                q = "?"
            elif lo == hi:
                q = f"{{{lo}}}"
            else:
                q = f"{{{lo},{hi}}}"
            out.append("(?:" + _write(sub.data, names) + ")" + q + ("?" if op is _c.MIN_REPEAT else ""))
        else:
            out.append(_write_class(op, av))
    return "".join(out)


class LineSafe:
    """A str pattern proven linear on Python's re, written so no match crosses a newline.

    `rx` searches a line or a whole block of lines (the same matches in both);
    `lead` is the literal every match starts with (after zero-width anchors), so
    a block can be searched by finding `lead` and matching at each place."""

    __slots__ = ("rx", "lead", "pattern", "at_line_start", "_lines_rx")

    def __init__(self, rx: re.Pattern, lead: str, pattern: str, at_line_start: bool = False):
        self.rx, self.lead, self.pattern = rx, lead, pattern
        self.at_line_start = at_line_start     # a leading ^: every match starts a line
        self._lines_rx = None

    @property
    def lines_rx(self) -> re.Pattern | None:
        """The same pattern for finditer over a block (None with a leading ^): at most one match
        per line, each running on to the line's end (m.end() is where its newline is), and the
        first character a literal (a leading \\b written as a lookbehind after it), so re's own
        literal search skips ahead. Compiled at first use: only dense blocks need it."""
        if self._lines_rx is None and not self.at_line_start:
            self._lines_rx = re.compile(self.pattern + "[^\\n]*")
        return self._lines_rx


def line_safe(pattern: str, flags: int = 0) -> LineSafe | None:
    """The LineSafe form of a str pattern, or None if its shape does not prove it linear
    (then it runs on RE2, see compile). Patterns with flags are not taken, except `(?i:...)`
    groups over ASCII text."""
    if not isinstance(pattern, str) or flags:
        return None
    try:
        parsed = parse(pattern, 0)
        if parsed.state.flags & ~(re.UNICODE | re.VERBOSE):
            return None
        items: list = []
        _flatten(parsed.data, items)
        lead = _check_shape(items)
        names = {i: n for n, i in parsed.state.groupdict.items()}
        written = _lines_text(parsed.data, names)
        rx = re.compile(written)
    except (Unsupported, re.error, KeyError, RecursionError):
        return None
    original = re.compile(pattern)
    if rx.groups != original.groups or dict(rx.groupindex) != dict(original.groupindex):
        return None
    at_start = bool(parsed.data) and parsed.data[0] == (_c.AT, _c.AT_BEGINNING)
    return LineSafe(rx, lead, written, at_start)


def _lines_text(data, names) -> str:
    """The pattern written for re (see _write), a leading \\b or \\B moved behind the first
    character as a lookbehind (one character back: constant time), so that the pattern
    starts with a literal and re's search skips ahead to it instead of trying every position."""
    items = list(data)
    if len(items) < 2 or items[0][0] is not _c.AT or items[0][1] not in (_c.AT_BOUNDARY, _c.AT_NON_BOUNDARY) \
            or items[1][0] is not _c.LITERAL:
        return _write(items, names)
    at, c = items[0][1], chr(items[1][1])
    word = c.isalnum() or c == "_"
    # \bc holds where exactly one of the previous character and c is a word character
    want_prev_word = (not word) if at is _c.AT_BOUNDARY else word
    head = re.escape(c) + ("(?<=\\w" if want_prev_word else "(?<!\\w") + re.escape(c) + ")"
    return head + _write(items[2:], names)


_ALLOWED_AT = frozenset({_c.AT_BEGINNING, _c.AT_END, _c.AT_BOUNDARY, _c.AT_NON_BOUNDARY})
_CAT_TEXT = {_c.CATEGORY_DIGIT: "\\d", _c.CATEGORY_NOT_DIGIT: "\\D", _c.CATEGORY_WORD: "\\w",
             _c.CATEGORY_NOT_WORD: "\\W", _c.CATEGORY_SPACE: "\\s", _c.CATEGORY_NOT_SPACE: "\\S"}
