"""Pattern packs: named YAML rules that turn log lines into events.

A pack is a YAML file (format: docs/packs.md). Built-in packs live in
`runwatch/packs/*.yaml`, in exactly the format users write their own.

Matching is built for throughput. For each rule, the literal text that every
match must contain is derived from its regex (`Task ` in `Task (\\d+)/(\\d+)`);
`Matcher.match_block` finds those literals in a whole block of lines with
`bytes.find` (C speed) and runs regexes only on the few lines that contain one.
A rule whose regex has no usable literal makes the matcher look at every line:
correct, only slower.

Regexes run on RE2 (linear time, see linear_regex.py) unless they need what
only Python's backtracking `re` has (lookarounds, backreferences);
`runwatch check` names such rules.

Within a pack the first matching rule wins; every pack sees every line.
"""
from __future__ import annotations

import bisect
import functools
import gc
import itertools
import operator
import os
import re
from typing import Any

from .. import events as ev
from ..events import Event, StepRun
from . import linear_regex
from .builtin import BUILTIN_DIR, builtin_names
from .textsearch import KeywordSet, rarity
from ..yamlfile import ConfigError, Map, Seq, check_keys, expect, load_file, suggest

try:  # Python 3.11+
    import re._constants as _c
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore

PACK_KEYS = ("pack", "description", "rules", "timestamp")
RULE_KEYS = ("name", "description", "match", "emit", "ignore_case", "prefilter")
_REPEATS = tuple(getattr(_c, n) for n in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
                 if hasattr(_c, n))


# ---------------------------------------------------------------- literals

def required_literals(pattern: str, flags: int = 0) -> tuple[str, ...] | None:
    """Strings of which every match contains at least one, or None if unknown.

    >>> required_literals(r"Task (\\d+)/(\\d+):")
    ('Task ',)
    >>> required_literals(r"\\b(ERROR|CRITICAL)\\b")
    ('CRITICAL', 'ERROR')
    """
    try:
        parsed = linear_regex.parse(pattern, flags)
    except re.error:
        return None
    if (flags | parsed.state.flags) & re.IGNORECASE:
        return None
    found = _required(parsed.data)
    return tuple(sorted(found)) if found else None


def _required(items) -> set[str] | None:
    options: list[set[str]] = []
    run: list[str] = []

    def close_run():
        if run:
            options.append({"".join(run)})
            run.clear()

    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        close_run()
        if op is _c.SUBPATTERN:
            _group, add_flags, _del, sub = av
            if not add_flags & re.IGNORECASE:
                found = _required(sub.data)
                if found:
                    options.append(found)
        elif op is _c.BRANCH:
            alts = [_required(b.data) for b in av[1]]
            if alts and all(alts):
                options.append(set().union(*alts))
        elif op in _REPEATS:
            lo, _hi, sub = av
            if lo >= 1:
                found = _required(sub.data)
                if found:
                    options.append(found)
    close_run()
    if not options:
        return None
    # Each literal costs one pass over the block: prefer long literals, then few of them.
    return max(options, key=lambda s: (min(map(len, s)) >= 3, min(map(len, s)), -len(s)))


def minimal_keywords(literals: set[str]) -> list[bytes]:
    """Drop literals that contain another one: finding the shorter finds both."""
    keep = [w for w in literals if not any(o != w and o in w for o in literals)]
    return sorted(w.encode("utf-8") for w in keep)


def _implied(prefilter, pattern: str, flags: int) -> bool:
    """Does every match of the pattern contain one of the prefilter strings?"""
    try:
        parsed = linear_regex.parse(pattern, flags)
    except re.error:
        return False
    runs: list[str] = []
    _literal_runs(parsed.data, runs)
    return any(p in r for p in prefilter for r in runs)


def _literal_runs(items, out: list) -> None:
    """The literal texts every match contains in full (top-level runs of literals, through groups)."""
    run: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        if op is _c.SUBPATTERN and not av[1] and not av[2]:
            sub: list[str] = []
            _literal_runs(av[3].data, sub)
            out.append("".join(run))
            out.extend(sub)
            run = []
            continue
        if op is not _c.AT:
            out.append("".join(run))
            run = []
    out.append("".join(run))


# ---------------------------------------------------------------- rules

class Emit:
    """How one event is built from a match: fields from groups, constants, templates.

    Compiled at pack load into a plan, `build(m, ts)`: one `m.groups()` call, then for
    each group-fed field its group by index and its converter written inline where the
    group's text makes the schema's check a slice (a text field cut to its limit) or int()
    and a range check (a count), the constants copied, and only the required fields the
    constants do not give checked. The result is what events.SCHEMA's converters make of
    the same text (tests/test_emit_plan.py). The plan is Python code written from the
    emit's own validated parts (field names are those of events.SCHEMA)."""

    __slots__ = ("etype", "from_groups", "consts", "templates", "required", "build", "build_groups",
                 "action_at", "action")

    def __init__(self, etype, from_groups, consts, templates, required, groupindex=None, always=frozenset()):
        self.etype, self.from_groups, self.consts = etype, from_groups, consts
        self.templates, self.required = templates, required
        groupindex = groupindex or {}
        # build_groups(m.groups(), ts): the same event from the groups alone (None with templates,
        # which read the match); what events.StepRun keeps of a step line
        self.build, self.build_groups = _plan(etype, from_groups, consts, templates, required, groupindex, always)
        # a step's action: the index of its group, or (action_at None) the constant or None
        self.action_at = next((int(groupindex[g]) - 1 for f, g, _c in from_groups if f == "action"), None)
        self.action = consts.get("action")


# What an emit's converter does to a group's text, the way a plan can do it inline. A group's
# text is a slice of a line decoded from bytes with errors="replace" (valid Unicode: no lone
# surrogates), so of events.text only the cut is left: a slice, which gives back the very string
# when it is short enough. A count is int() and a range check the plan makes after the dict.
_TRUSTED_TEXT = {ev._str: ev.MAX_TEXT, ev._word: ev.MAX_WORD}
_TRUSTED_INT = {ev._count: 0, ev._int: ev.INT_MIN}


def _trusted_count(v: str) -> int:
    """events._count of a group's text: int() (which takes what _int's str path takes: digits,
    blanks around them, a sign) held to 0..INT_MAX."""
    n = int(v)
    if 0 <= n <= ev.INT_MAX:
        return n
    raise ValueError(f"out of range: {n}")


def _trusted_int(v: str) -> int:
    n = int(v)
    if ev.INT_MIN <= n <= ev.INT_MAX:
        return n
    raise ValueError(f"out of range: {n}")


_TRUSTED_CALL = {ev._count: _trusted_count, ev._int: _trusted_int}


def _plan(etype, from_groups, consts, templates, required, groupindex, always=frozenset()):
    """The build functions of one emit (see Emit): from the match, and from its groups (None
    with templates). `always`: the groups that take part in every match; when every group-fed
    field has one and there are no templates, the fields are one dict display (text cut by a
    slice, counts by int() checked in range after it), and a value that the fast way refuses
    falls back to the general plan, which drops that field."""
    general, general_groups = _general_plan(etype, from_groups, consts, templates, required, groupindex)
    if templates or not from_groups or not all(g in always for _f, g, _c in from_groups):
        return general, general_groups
    names = {"Event": Event, "_etype": etype, "_general": general_groups}
    items, checks = [], []
    for k, (field, value) in enumerate(consts.items()):
        names[f"_k{k}"] = value
        items.append(f"{field!r}: _k{k}")
    for k, (field, group, conv) in enumerate(from_groups):
        v = f"g[{int(groupindex[group]) - 1}]"
        if conv in _TRUSTED_TEXT:
            v = f"{v}[:{int(_TRUSTED_TEXT[conv])}]"
        elif conv in _TRUSTED_INT:
            v = f"int({v})"
            checks.append(f"{int(_TRUSTED_INT[conv])} <= f[{field!r}] <= {int(ev.INT_MAX)}")
        else:
            names[f"_c{k}"] = conv
            v = f"_c{k}({v})"
        items.append(f"{field!r}: {v}")
    body = ["    try:", "        f = {" + ", ".join(items) + "}",
            "    except (TypeError, ValueError, OverflowError):", "        return _general(g, ts)"]
    if checks:
        body += [f"    if not ({' and '.join(checks)}):", "        return _general(g, ts)"]
    body.append("    return Event(_etype, f, ts)")
    code = ["def build(m, ts):", "    g = m.groups()"] + body + ["def build_groups(g, ts):"] + body
    exec("\n".join(code), names)      # the code written above, from validated names only
    return names["build"], names["build_groups"]


def _general_plan(etype, from_groups, consts, templates, required, groupindex):
    names = {"Event": Event, "_Groups": _Groups, "_consts": dict(consts), "_etype": etype}
    body = ["    f = _consts.copy()" if consts else "    f = {}"]
    for k, (field, group, conv) in enumerate(from_groups):
        body.append(f"    v = g[{int(groupindex[group]) - 1}]")
        body.append("    if v is not None:")
        if conv in _TRUSTED_TEXT:
            body.append(f"        f[{field!r}] = v[:{int(_TRUSTED_TEXT[conv])}]")
        else:
            names[f"_c{k}"] = _TRUSTED_CALL.get(conv, conv)
            body += ["        try:", f"            f[{field!r}] = _c{k}(v)",
                     "        except (TypeError, ValueError, OverflowError):", "            pass"]
    if templates:
        body.append("    gd = _Groups(m)")
    for k, (field, template, conv) in enumerate(templates):
        names[f"_t{k}"], names[f"_tc{k}"] = template, conv
        body += ["    try:", f"        f[{field!r}] = _tc{k}(_t{k}.format_map(gd))",
                 "    except (TypeError, ValueError, KeyError, IndexError):", "        pass"]
    for field in required:
        if field not in consts:
            body.append(f"    if {field!r} not in f:")
            body.append("        return None")
    body.append("    return Event(_etype, f, ts)")
    code = ["def build(m, ts):"] + (["    g = m.groups()"] if from_groups else []) + body
    if not templates:
        code += ["def build_groups(g, ts):"] + body
    exec("\n".join(code), names)      # the code written above, from validated names only
    return names["build"], names.get("build_groups")


class _Groups(dict):
    def __init__(self, m: re.Match):
        super().__init__((k, v if v is not None else "") for k, v in m.groupdict().items())


class Rule:
    __slots__ = ("name", "pack", "rx", "search", "literals", "lit1", "emits", "file", "line",
                 "fast", "prefilter")

    def __init__(self, name, pack, rx, literals, emits, file, line, fast=None, prefilter=None):
        self.name, self.pack, self.rx, self.emits = name, pack, rx, emits
        # fast: linear_regex.LineSafe when the pattern's shape proves it linear on Python's re
        # (cheaper per call than RE2); the same matches line by line and over a whole block
        self.fast = fast
        self.search = fast.rx.search if fast is not None else rx.search
        self.literals = literals
        self.lit1 = literals[0] if literals and len(literals) == 1 else None
        self.prefilter = prefilter      # a `prefilter:` the regex does not imply, checked per line
        self.file, self.line = file, line


class Pack:
    def __init__(self, name: str, description: str, rules: list[Rule], file: str, timestamp=None):
        self.name, self.description, self.rules, self.file = name, description, rules, file
        self.timestamp = timestamp      # backfill.TimestampFormat or None: where lines keep their time

    def __repr__(self) -> str:
        return f"Pack({self.name!r}, {len(self.rules)} rules)"


def _compile_emit(item: Any, parent, key, rx: re.Pattern, where: str) -> list[Emit]:
    file = getattr(parent, "file", "<string>")
    line = parent.line_of(key) if hasattr(parent, "line_of") else None
    if isinstance(item, list):
        out = []
        for i, sub in enumerate(item):
            out.extend(_compile_emit(sub, item, i, rx, where))
        return out
    if isinstance(item, str):
        etype, given = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        etype, given = next(iter(item.items()))
        given = given or {}
        if not isinstance(given, dict):
            raise ConfigError(file, line, f"{where}: fields of {etype!r} must be a mapping, got {given!r}")
        if isinstance(item, Map):
            line = item.line_of(etype)
    else:
        raise ConfigError(file, line, f"{where}: emit must be an event type, "
                                      f"a mapping {{type: {{field: value}}}}, or a list of them")
    if etype not in ev.SCHEMA:
        raise ConfigError(file, line, f"{where}: unknown event type {etype!r}"
                                      f"{suggest(etype, ev.SCHEMA)}; known: {', '.join(ev.SCHEMA)}")
    spec = ev.SCHEMA[etype]
    groups = set(rx.groupindex)
    consts, templates, from_groups = {}, [], []
    for field, value in given.items():
        if field not in spec:
            raise ConfigError(file, line, f"{where}: {field!r} is not a field of {etype!r}"
                                          f"{suggest(field, spec)}; fields: {', '.join(spec)}")
        conv = spec[field][0]
        if isinstance(value, str) and "{" in value:
            names = set(re.findall(r"{(\w+)}", value))
            missing = names - groups
            if missing:
                raise ConfigError(file, line, f"{where}: template {value!r} names group(s) "
                                              f"{', '.join(sorted(missing))} the regex does not have")
            templates.append((field, value, conv))
        else:
            try:
                consts[field] = conv(value)
            except (TypeError, ValueError) as e:
                raise ConfigError(file, line, f"{where}: {etype}.{field}: {e}") from None
    for field in spec:
        if field in groups and field not in consts and not any(t[0] == field for t in templates):
            from_groups.append((field, field, spec[field][0]))
    provided = set(consts) | {t[0] for t in templates} | {g[0] for g in from_groups}
    required = tuple(f for f, (_, req) in spec.items() if req)
    for field in required:
        if field not in provided:
            raise ConfigError(file, line, f"{where}: event {etype!r} needs field {field!r}: "
                                          f"add a named group (?P<{field}>…) or set it in the emit")
    return [Emit(etype, tuple(from_groups), consts, tuple(templates), required, rx.groupindex,
                 _groups_in_every_match(rx.pattern, rx.flags))]


def _groups_in_every_match(pattern, flags: int) -> frozenset[str]:
    """Names of the groups that take part in every match (not under a branch, an optional
    part or a repeat that may run zero times)."""
    try:
        parsed = linear_regex.parse(pattern, flags & ~re.UNICODE if isinstance(pattern, str) else flags)
    except re.error:
        return frozenset()
    names = {i: n for n, i in parsed.state.groupdict.items()}
    found: set[str] = set()

    def walk(items):
        for op, av in items:
            if op is _c.SUBPATTERN:
                if av[0] in names:
                    found.add(names[av[0]])
                walk(av[3].data)
            elif op in _REPEATS and av[0] >= 1:
                walk(av[2].data)
    walk(parsed.data)
    return frozenset(found)


def parse_pack(data: Any, file: str, default_name: str) -> Pack:
    if not isinstance(data, Map):
        raise ConfigError(file, getattr(data, "line", None) or 1,
                          "a pack is a mapping with keys pack, description, rules")
    check_keys(data, PACK_KEYS, "a pack")
    name = str(data.get("pack", default_name))
    rules_in = data.get("rules")
    if not isinstance(rules_in, Seq) or not rules_in:
        raise ConfigError(file, data.line_of("rules"), "a pack needs a non-empty list under 'rules'")
    rules, seen = [], set()
    for i, r in enumerate(rules_in):
        if not isinstance(r, Map):
            raise ConfigError(file, rules_in.line_of(i), "each rule is a mapping with name, match, emit")
        check_keys(r, RULE_KEYS, "a rule")
        rname = r.get("name") or f"rule{i + 1}"
        where = f"pack {name!r}, rule {rname!r}"
        if rname in seen:
            raise ConfigError(file, r.line_of("name"), f"{where}: duplicate rule name")
        seen.add(rname)
        for k in ("match", "emit"):
            if k not in r:
                raise ConfigError(file, r.line, f"{where}: missing {k!r}")
        pattern = expect(r["match"], str, r, "match", f"{where}: match")
        flags = re.IGNORECASE if r.get("ignore_case") else 0
        # a rule whose shape proves Python's re linear on it runs on re (its LineSafe form); the
        # RE2 form of any rule is built when first used (a line holding its literal, `check`)
        fast = linear_regex.line_safe(pattern, flags)
        try:
            rx = linear_regex.compile(pattern, flags, deferred=True)      # .engine says which
        except re.error as e:
            raise ConfigError(file, r.line_of("match"),
                              f"{where}: regex does not compile: {e.msg} at position {e.pos}") from None
        emits = _compile_emit(r["emit"], r, "emit", rx, where)
        if "prefilter" in r:
            pre = r["prefilter"]
            pre = [pre] if isinstance(pre, str) else pre
            if not isinstance(pre, list) or not all(isinstance(p, str) and p for p in pre):
                raise ConfigError(file, r.line_of("prefilter"),
                                  f"{where}: prefilter is a string or a list of non-empty strings")
            literals = tuple(pre) if not flags else None
            prefilter = None if literals is None or _implied(literals, pattern, flags) else literals
        else:
            literals = required_literals(pattern, flags)
            prefilter = None
        rules.append(Rule(rname, name, rx, literals, emits, file, r.line_of("match"), fast, prefilter))
    timestamp = None
    if "timestamp" in data:     # optional: how `runwatch scan --timestamps` reads this log's times
        from .timestamps import parse_timestamp_key     # (its import compiles regexes: only when asked)
        timestamp = parse_timestamp_key(data["timestamp"], data, file, name)
    return Pack(name, str(data.get("description", "")), rules, file, timestamp)


@functools.cache
def load_pack_file(path: str) -> Pack:
    default = os.path.splitext(os.path.basename(path))[0]
    # the packs runwatch ships are read with libyaml: a third of the start-up otherwise
    return parse_pack(load_file(path, fast=os.path.dirname(path) == BUILTIN_DIR), path, default)


def load_builtin(name: str, file: str = "<command line>", line: int | None = None) -> Pack:
    path = os.path.join(BUILTIN_DIR, f"{name}.yaml")
    if not name or os.sep in name or not os.path.exists(path):
        names = builtin_names()
        raise ConfigError(file, line, f"no built-in pack {name!r}{suggest(name, names)}; "
                                      f"built-in packs: {', '.join(names)}")
    return load_pack_file(path)


def load_packs(names: list[str], rule_files: list[str]) -> list[Pack]:
    # Loading makes tens of thousands of small objects (parse trees, YAML nodes) and no garbage
    # cycles to speak of: the cyclic collector, walking them again and again, took 10-20% of it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        packs = [load_builtin(n) for n in names]
        packs += [load_pack_file(os.path.abspath(f)) for f in rule_files]
    finally:
        if collecting:
            gc.enable()
    return packs


# ---------------------------------------------------------------- matching

class Matcher:
    """Runs packs over blocks of lines (see framing.py) and collects events.

    Two ways through a block, with the same events: where few lines can match, the lines
    holding a rule's literal are found at memchr speed and matched one by one; where most
    lines are candidates (a chatty job, an agent's steps), each rule is run over the whole
    block instead (`_match_dense`) and the hits merged in line order. Which one a block
    takes follows how many candidates the previous block had."""

    def __init__(self, packs: list[Pack]):
        self.packs = packs
        self.rule_lists = [tuple(p.rules) for p in packs if p.rules]
        literals: set[str] = set()
        self.scan_all = False
        for p in packs:
            for r in p.rules:
                if r.literals is None:
                    self.scan_all = True
                else:
                    literals.update(r.literals)
        self.keywords = minimal_keywords(literals)
        self.keyword_set = KeywordSet(self.keywords)
        self.dense = False      # a hint only: both ways give the same events
        # every emit by number: how a scan worker names a StepRun's emit to its parent
        self.emits = [e for p in packs for r in p.rules for e in r.emits]
        self.emit_index = {id(e): k for k, e in enumerate(self.emits)}

    def match_block(self, block: bytes, ts: float, out: list, compact: bool = False) -> None:
        """Append the events of every line in `block` (complete lines, b"\n"-terminated).
        compact: a run of steps one rule made may come as an events.StepRun (for a caller that
        hands the events to model/ only: RunState.apply_all and Timeline.record take them)."""
        if not self.rule_lists:
            return
        match_line = self.match_line
        if self.scan_all:
            for raw in block.split(b"\n")[:-1]:
                match_line(raw.decode("utf-8", "replace"), ts, out)
            return
        if not block.endswith(b"\n"):          # not a framed block: line by line
            for raw in block.split(b"\n"):
                match_line(raw.decode("utf-8", "replace"), ts, out)
            return
        if self.dense:
            if self._match_dense(block, ts, out, compact) < len(block) >> DENSE_SHIFT + 1:
                self.dense = False
            return
        find = block.find
        starts: list[int] = []
        self.keyword_set.find_lines(block, starts)
        if not starts:
            return
        if len(starts) > len(block) >> DENSE_SHIFT:
            self.dense = True                    # this block and the next: rule by rule
            self._match_dense(block, ts, out, compact)
            return
        if len(self.keywords) > 1:
            starts = sorted(set(starts))         # a line found by two keywords is matched once
        for s in starts:
            match_line(block[s:find(b"\n", s)].decode("utf-8", "replace"), ts, out)

    def match_line(self, line: str, ts: float, out: list) -> None:
        had_error = False    # one line is at most one error, however many packs know it
        for rules in self.rule_lists:
            for rule in rules:
                lit = rule.lit1
                if lit is not None:
                    if lit not in line:
                        continue
                elif rule.literals is not None:
                    for x in rule.literals:      # a loop, not any(): no generator per rule and line
                        if x in line:
                            break
                    else:
                        continue
                m = rule.search(line)
                if m is not None:
                    for emit in rule.emits:
                        e = emit.build(m, ts)
                        if e is not None:
                            if e.type == "error":
                                if had_error:
                                    continue
                                had_error = True
                            out.append(e)
                    break

    def _match_dense(self, block: bytes, ts: float, out: list, compact: bool = False) -> int:
        """match_block rule by rule over the whole block; returns the lines that matched.

        A rule none of whose literals (or none of whose prefilter words) the block holds is
        skipped at once. A rule with a LineSafe form is searched over the block at once: its
        leading literal found, the pattern matched there (no match crosses a line), the rest of
        the line skipped. Other rules are searched on the lines holding one of their literals,
        as match_line does. Within a pack a line goes to its first matching rule. Each rule's
        hits come in line order; they are then taken in line order, pack order, as match_line
        takes them: the rule with the most hits as runs between the others' (bisect), each run's
        events built in one C-level pass when its rule makes one event and no error (compact: a
        long run of steps kept as an events.StepRun, the matches' groups)."""
        text = block.decode("utf-8", "replace")
        present: dict = {}                   # literal -> whether the block holds it
        chars: dict = {}                     # character -> whether the block holds it (memchr)
        lit_ends: dict = {}                  # literal -> the ends of the lines that hold it
        lists: list = []                     # (pack index, rule, ends, matches), each in line order
        for pi, rules in enumerate(self.rule_lists):
            taken: list = []                 # the ends lists of this pack's earlier rules
            for rule in rules:
                fast = rule.fast
                # a literal the rule's own search looks for first needs no search of its own
                own = fast.lead if fast is not None else None if rule.literals is None else rule.literals
                if not _holds(text, rule.literals, present, chars, own):
                    continue
                pre = rule.prefilter
                if pre is not None and not _holds(text, pre, present, chars, None):
                    continue
                ends, ms = _rule_hits(rule, text, pre, lit_ends)
                if ends and taken:
                    ends, ms = _drop_taken(ends, ms, taken)
                if ends:
                    taken.append(ends)
                    lists.append((pi, rule, ends, ms))
        if not lists:
            return 0
        err = [-1, compact]                  # the line end of the last error (one error per line); compact
        if len(lists) == 1:
            _pi, rule, ends, ms = lists[0]
            _emit_run(rule, ends, ms, ts, out, err)
            return len(ends)
        big = max(lists, key=lambda x: len(x[2]))
        bpi, brule, bends, bms = big
        # (line, pack) is unique, so the sort never compares a rule or a match
        small = sorted((e, pi, rule, m) for x in lists if x is not big
                       for pi, rule, ends, ms in (x,) for e, m in zip(ends, ms, strict=True))
        j = 0
        for e, pi, rule, m in small:
            k = bisect.bisect_right(bends, e, j) if bpi < pi else bisect.bisect_left(bends, e, j)
            if k > j:
                _emit_run(brule, bends[j:k], bms[j:k], ts, out, err)
                j = k
            _emit_run(rule, (e,), (m,), ts, out, err)
        if j < len(bends):
            _emit_run(brule, bends[j:], bms[j:], ts, out, err)
        return len(bends) + len(small)


def _holds(text: str, words, present: dict, chars: dict, own) -> bool:
    """Whether text may hold one of words (a rule's literals or prefilter words; None: any
    text). A word one of whose characters the block lacks is absent: one memchr per character,
    the rarest first. A word whose characters are all there is searched for, unless it is in
    `own` (the rule's own search starts by finding it: a search here would be a second one)."""
    if words is None:
        return True
    for w in words:
        v = present.get(w)
        if v is None:
            v = True
            for c in _rarest_first(w):
                h = chars.get(c)
                if h is None:
                    h = chars[c] = c in text
                if not h:
                    v = False
                    break
            if not v:
                present[w] = False
            elif own is None or (w != own and w not in own):
                v = present[w] = w in text
        if v:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _rarest_first(word: str) -> tuple[str, ...]:
    """The distinct characters of word, the rarest in log text first (textsearch.rarity)."""
    return tuple(sorted(set(word), key=lambda c: rarity(ord(c)) if ord(c) < 0x80 else 100))


def _rule_hits(rule: Rule, text: str, pre, lit_ends: dict) -> tuple[list, list]:
    """The ends of the lines of text the rule matches (where their newline is) and its matches,
    in line order."""
    fast = rule.fast
    if fast is not None and fast.lines_rx is not None:
        at = _lead_at(text, fast.lead, lit_ends)
        if at is None:                           # a common lead: re's own scan over the block
            ms = list(fast.lines_rx.finditer(text))
        else:                                    # a rare one (found once for every rule it leads)
            ms, match, end = [], fast.lines_rx.match, -1
            for i in at:
                if i >= end:                     # a match runs to its line's end: one per line
                    m = match(text, i)
                    if m is not None:
                        ms.append(m)
                        end = m.end()
        if pre is None:
            return list(map(_END, ms)), ms      # the common case
        rfind = text.rfind
        ms = [m for m in ms if any(p in text[rfind("\n", 0, m.end()) + 1:m.end()] for p in pre)]
        return list(map(_END, ms)), ms
    find, rfind = text.find, text.rfind
    ends: list = []
    ms = []
    if fast is not None:
        lead, match, at_start = fast.lead, fast.rx.match, fast.at_line_start
        nlead = "\n" + lead
        if at_start:                             # ^Step: only where a line starts with it
            i = 0 if text.startswith(lead) else find(nlead) + 1 or -1
        else:
            i = find(lead)
        while i >= 0:
            m = match(text, i)
            if m is None:
                i = (find(nlead, i) + 1 or -1) if at_start else find(lead, i + 1)
                continue
            e = find("\n", m.end())             # a line is known by where it ends
            if pre is None or any(p in text[rfind("\n", 0, i) + 1:e] for p in pre):
                ends.append(e)
                ms.append(m)
            i = (find(nlead, e) + 1 or -1) if at_start else find(lead, e + 1)
        return ends, ms
    lines: set = set()
    for lit in rule.literals:
        got = lit_ends.get(lit)
        if got is None:
            got = lit_ends[lit] = []
            i = find(lit)
            while i >= 0:
                e = find("\n", i)
                got.append(e)
                i = find(lit, e + 1)
        lines.update(got)
    search = rule.search
    for e in sorted(lines):
        line = text[rfind("\n", 0, e) + 1:e]
        if pre is not None and not any(p in line for p in pre):
            continue
        m = search(line)
        if m is not None:
            ends.append(e)
            ms.append(m)
    return ends, ms


def _lead_at(text: str, lead: str, cache: dict) -> list | None:
    """Where lead occurs in text, or None when it occurs more than RARE_LEAD times (then
    finditer, which finds it in C, is the cheaper way). Kept in cache (keyed (lead,)) for the
    other rules of the block with the same lead."""
    key = (lead,)
    if key in cache:
        return cache[key]
    at: list | None = []
    find = text.find
    i = find(lead)
    while i >= 0:
        at.append(i)
        if len(at) > RARE_LEAD:
            at = None
            break
        i = find(lead, i + 1)
    cache[key] = at
    return at


RARE_LEAD = 64              # a LineSafe lead found at most this often in a block: matched where it is
_END = re.Match.end
_GROUPS = re.Match.groups
_groups = operator.methodcaller("groups")       # a match of RE2's
STEP_RUN_MIN = 8            # steps of one rule in a row from which they are kept as a StepRun


def _drop_taken(ends: list, ms: list, taken: list) -> tuple[list, list]:
    """ends and ms without the lines an earlier rule of the pack took (first rule wins)."""
    if sum(map(len, taken)) < len(ends):     # few taken: look each up in the sorted ends
        drop = set()
        n = len(ends)
        for t in taken:
            for e in t:
                i = bisect.bisect_left(ends, e)
                if i < n and ends[i] == e:
                    drop.add(i)
        if not drop:
            return ends, ms
        keep = [i for i in range(n) if i not in drop]
    else:
        seen = set().union(*taken)
        keep = [i for i, e in enumerate(ends) if e not in seen]
        if len(keep) == len(ends):
            return ends, ms
    return [ends[i] for i in keep], [ms[i] for i in keep]


def _emit_run(rule: Rule, ends, ms, ts: float, out: list, err: list) -> None:
    """The events of a rule's matches, in order; err[0]: the line of the last error taken,
    err[1]: whether a run of steps may be an events.StepRun."""
    emits = rule.emits
    if len(emits) == 1 and emits[0].etype != "error":     # most rules: one event, not an error
        emit = emits[0]
        if err[1] and len(ms) >= STEP_RUN_MIN and emit.etype == "step" and emit.build_groups is not None:
            out.append(StepRun(list(map(_GROUPS if rule.fast is not None else _groups, ms)), emit, ts))
            return
        out.extend(filter(None, map(emit.build, ms, itertools.repeat(ts, len(ms)))))
        return
    add = out.append
    for s, m in zip(ends, ms, strict=True):
        for emit in emits:
            e = emit.build(m, ts)
            if e is not None:
                if e.type == "error":
                    if err[0] == s:
                        continue
                    err[0] = s
                add(e)


# A block with more candidate lines than one per 2**DENSE_SHIFT bytes is dense (the bench's
# dense log: one per 67 bytes; its sparse one: one per ~3 KiB). Rule by rule over the block
# wins from about one candidate per 2 KiB: an agent evaluation's log with a step every tenth
# line (one per ~1 KiB) takes 1.44 s of CPU per 1M lines on the line path that way, 2.06 s
# line by line.
DENSE_SHIFT = 11

