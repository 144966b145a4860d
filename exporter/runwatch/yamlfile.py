"""YAML loading that remembers where every value came from.

Config and pack errors must name the file, the line and the reason. PyYAML's
SafeLoader knows each node's position; this loader keeps it on the mappings and
lists it builds, so a validator can say `runwatch.yaml:12: unknown key "pakcs"
(did you mean "packs"?)` long after parsing.
"""
from __future__ import annotations

import math
import os
import re
import stat
from typing import Any
from collections.abc import Iterable


#: the limits of every YAML file runwatch reads (config, packs, demo samples; README "Config files")
MAX_FILE_BYTES = 4 << 20      # a bigger file is refused before it is read
MAX_ALIASES = 1000            # YAML aliases (*name) in one file
MAX_NODES = 200_000           # values in one file once its aliases are expanded (an alias bomb has billions)
MAX_DEPTH = 64                # lists and mappings nested in one another
_SURROGATE = re.compile("[\ud800-\udfff]")


class ConfigError(Exception):
    """A problem in a config or pack file, located at file:line."""

    def __init__(self, file: str, line: int | None, reason: str):
        self.file, self.line, self.reason = file, line, reason
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {reason}")


class Map(dict):
    """A dict that knows the file and the line of itself and of each key."""

    file: str = "<string>"
    line: int | None = None
    key_lines: dict

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key, self.line)


class Seq(list):
    """A list that knows the file and the line of itself and of each item."""

    file: str = "<string>"
    line: int | None = None
    item_lines: list

    def line_of(self, index: int) -> int | None:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


def _loader_for(file: str, base=None):
    import yaml
    class Loader(base or yaml.SafeLoader):
        aliases = 0

        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise ConfigError(file, self.peek_event().start_mark.line + 1,
                                      f"more than {MAX_ALIASES} YAML aliases (*name); write the values out")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConfigError(file, self.peek_event().start_mark.line + 1,
                                  f"values nested deeper than {MAX_DEPTH} levels")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_document(self, node):
            _check_expansion(node, file)
            return super().construct_document(node)

    def construct_str(loader, node):
        value = loader.construct_scalar(node)
        m = _SURROGATE.search(value)
        if m:        # a "\udcff" escape: no UTF-8 holds it, no label or scrape can show it
            raise ConfigError(file, node.start_mark.line + 1,
                              f"a lone surrogate U+{ord(m.group()):04X} in a string is not valid Unicode")
        return value

    def construct_map(loader, node):
        loader.flatten_mapping(node)
        m = Map()
        m.file, m.line, m.key_lines = file, node.start_mark.line + 1, {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if key in m:
                raise ConfigError(file, knode.start_mark.line + 1, f"duplicate key {key!r}")
            m[key] = loader.construct_object(vnode, deep=True)
            m.key_lines[key] = knode.start_mark.line + 1
        return m

    def construct_seq(loader, node):
        s = Seq(loader.construct_object(n, deep=True) for n in node.value)
        s.file, s.line = file, node.start_mark.line + 1
        s.item_lines = [n.start_mark.line + 1 for n in node.value]
        return s

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_map)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_seq)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG, construct_str)
    return Loader


def _check_expansion(root, file: str) -> None:
    """ConfigError unless the document, its aliases expanded, has at most MAX_NODES values
    (each node is sized once, so a bomb is found in time linear in the file)."""
    import yaml
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes and not done:
            if sizes[key] < 0:
                raise ConfigError(file, node.start_mark.line + 1, "a recursive YAML alias (a value that holds itself)")
            continue
        children = [] if isinstance(node, yaml.ScalarNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv])
        if not done:
            sizes[key] = -1              # in progress
            stack.append((node, True))
            stack.extend((c, False) for c in children)
            continue
        total = 1 + sum(sizes[id(c)] for c in children)
        if total > MAX_NODES:
            raise ConfigError(file, node.start_mark.line + 1,
                              f"its YAML aliases expand to more than {MAX_NODES} values (an alias bomb?)")
        sizes[key] = total


def load_text(text: str, file: str, *, fast: bool = False) -> Any:
    """Parse YAML text; syntax errors become ConfigError with the line.

    fast=True reads the text with libyaml (PyYAML's C parser, when it is built), several
    times faster, to the same values with the same lines. Its composer cannot count aliases
    and depth as it goes, so a first pass over libyaml's events does (no recursion); a text
    libyaml refuses, or that breaks a limit, is read again the usual way, whose error says
    where and why in the words it always uses."""
    import yaml         # here, not at the top: a command that reads no YAML does not load PyYAML (~30 ms)
    cloader = getattr(yaml, "CSafeLoader", None)
    if fast and cloader is not None:
        try:
            if _within_limits(text):
                return yaml.load(text, Loader=_loader_for(file, cloader))  # noqa: S506 - CSafeLoader subclass
        except (yaml.YAMLError, ConfigError):
            pass
    try:
        return yaml.load(text, Loader=_loader_for(file))  # noqa: S506 - SafeLoader subclass
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(file, line, f"invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(file, None, f"invalid YAML: {e}") from None


def _within_limits(text: str) -> bool:
    """Does the text stay within MAX_DEPTH and MAX_ALIASES? (libyaml's events, one pass.)"""
    import yaml
    depth = aliases = 0
    for e in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(e, yaml.CollectionStartEvent):
            depth += 1
            if depth >= MAX_DEPTH:          # (its values would be deeper: let the usual way decide)
                return False
        elif isinstance(e, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(e, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                return False
    return True


def file_problem(path: str, limit: int = MAX_FILE_BYTES) -> str | None:
    """Why `path` is not a file runwatch reads (missing, a FIFO, a device, a directory,
    larger than `limit` bytes), or None. Only stats: a FIFO is never opened."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot read: {e.strerror}"
    return _kind_problem(st, limit)


def _kind_problem(st: os.stat_result, limit: int) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file")
        return f"not a regular file ({kind}); give a file"
    if st.st_size > limit:
        return f"{st.st_size} bytes, over the limit of {_size(limit)}"
    return None


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n & ((1 << 20) - 1) else f"{n} bytes"


def read_regular(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; ValueError (the reason, without
    the path) for anything else. Opened without blocking, so a FIFO swapped in after a check
    cannot hang the caller; a file that grows past the limit while read is refused too."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ValueError(f"cannot read: {e.strerror}") from None
    try:
        why = _kind_problem(os.fstat(fd), limit)
        if why:
            raise ValueError(why)
        chunks, n = [], 0
        while True:
            b = os.read(fd, min(1 << 20, limit + 1 - n))
            if not b:
                break
            chunks.append(b)
            n += len(b)
            if n > limit:
                raise ValueError(f"over the limit of {_size(limit)}")
        return b"".join(chunks)
    except OSError as e:
        raise ValueError(f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)


def load_file(path: str, *, fast: bool = False) -> Any:
    """A YAML file of at most MAX_FILE_BYTES, UTF-8, aliases bounded (MAX_ALIASES, MAX_NODES);
    ConfigError(path, line, reason) otherwise. fast: see load_text."""
    try:
        text = read_regular(path).decode("utf-8")
    except ValueError as e:
        if isinstance(e, UnicodeDecodeError):
            raise ConfigError(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
        raise ConfigError(path, None, str(e)) from None
    return load_text(text, path, fast=fast)


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the nearest choice, or ''."""
    import difflib      # only for an error: its import compiles a regex (10 ms of every start)
    near = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{near[0]}"?)' if near else ""


def check_keys(m: Map, allowed: Iterable[str], what: str) -> None:
    """Unknown keys are errors that name the key and the nearest valid one."""
    allowed = list(allowed)
    for key in m:
        if key not in allowed:
            raise ConfigError(m.file, m.line_of(key),
                              f"unknown key {key!r} in {what}{suggest(key, allowed)}; "
                              f"valid keys: {', '.join(allowed)}")


def expect(value: Any, kind: type | tuple, parent: Map | Seq, key, what: str) -> Any:
    """Type-check one value; the error names where it is."""
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        ok = False
    else:
        ok = isinstance(value, kind)
    if not ok:
        names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                 dict: "a mapping", list: "a list", (int, float): "a number"}
        want = names.get(kind, getattr(kind, "__name__", str(kind)))
        line = parent.line_of(key) if hasattr(parent, "line_of") else None
        raise ConfigError(getattr(parent, "file", "<string>"), line,
                          f"{what} must be {want}, got {type(value).__name__} {value!r}")
    return value


def number(m: Map, key: str, default: Any = None, *, what: str | None = None, minimum: float | None = None,
           maximum: float | None = None, integer: bool = False) -> Any:
    """m[key] as a number, or `default` when the key is absent. A ConfigError at the key's
    file:line, naming `what` (default: the key), unless the value is a number (true/false are
    not), finite, within [minimum, maximum] and, with integer=True, an integer."""
    if key not in m:
        return default
    what = what or key
    v = expect(m[key], int if integer else (int, float), m, key, what)
    line = m.line_of(key) if hasattr(m, "line_of") else None
    file = getattr(m, "file", "<string>")
    if not math.isfinite(v):
        raise ConfigError(file, line, f"{what} must be a finite number, got {v}")
    if minimum is not None and v < minimum:
        raise ConfigError(file, line, f"{what} must be at least {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ConfigError(file, line, f"{what} must be at most {maximum}, got {v}")
    return v
