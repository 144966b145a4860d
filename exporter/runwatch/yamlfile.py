"""YAML loading that remembers where every value came from.

Config and pack errors must name the file, the line and the reason. PyYAML's
SafeLoader knows each node's position; this loader keeps it on the mappings and
lists it builds, so a validator can say `runwatch.yaml:12: unknown key "pakcs"
(did you mean "packs"?)` long after parsing.
"""
from __future__ import annotations

import difflib
import math
from typing import Any
from collections.abc import Iterable

import yaml


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


def _loader_for(file: str):
    class Loader(yaml.SafeLoader):
        pass

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
    return Loader


def load_text(text: str, file: str) -> Any:
    """Parse YAML text; syntax errors become ConfigError with the line."""
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


def load_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    return load_text(text, path)


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the nearest choice, or ''."""
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
