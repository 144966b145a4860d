"""Timestamps in log lines: the formats `runwatch scan --timestamps` reads, and
a pack's `timestamp:` key.

Each line's time is read from the line itself (a pack's `timestamp:` format
first, then the built-in ones: ISO-8601 / RFC 3339, Python logging's
`2026-11-24 10:00:00,123`, syslog's `Nov 24 10:00:00`, epoch seconds or
milliseconds at the start of a line). Naive timestamps (no zone) are taken as
UTC unless the pack's format says otherwise (`%z`).
"""
from __future__ import annotations

import calendar
import datetime as _dt
import re
import time

from ..yamlfile import ConfigError, Map, check_keys

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                      "Nov", "Dec"), 1)}
HEAD = 120          # timestamps are looked for in the first HEAD characters of a line


def _frac(s: str | None) -> float:
    return float("0." + s) if s else 0.0


def _tz(s: str | None) -> int:
    if not s or s == "Z":
        return 0
    sign = -1 if s[0] == "-" else 1
    s = s[1:].replace(":", "")
    return sign * (int(s[:2]) * 3600 + int(s[2:4]) * 60)


_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s?(Z|[+-]\d{2}:?\d{2})?")
_SYSLOG = re.compile(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})\b")
_EPOCH = re.compile(r"^\[?(\d{10}(?:\.\d{1,9})?|\d{13})(?=[\]\s,;|]|$)")


class TimestampFormat:
    """A regex that finds the timestamp and how to read it.

    format: a strptime format (`%Y-%m-%d %H:%M:%S,%f`), or one of iso8601,
    syslog, epoch, epoch_ms. The regex's group `ts` (else group 1, else the
    whole match) is the timestamp text."""

    def __init__(self, regex: str | re.Pattern, fmt: str, year: int | None = None):
        self.rx = re.compile(regex) if isinstance(regex, str) else regex
        self.fmt = fmt
        self.year = year or time.gmtime().tm_year

    def parse(self, line: str) -> float | None:
        m = self.rx.search(line, 0, HEAD) if self.fmt in ("iso8601", "syslog") else self.rx.search(line)
        if m is None:
            return None
        try:
            return self._convert(m)
        except (ValueError, OverflowError):
            return None

    def _convert(self, m: re.Match) -> float:
        f = self.fmt
        if f == "iso8601" and self.rx is _ISO:
            y, mo, d, h, mi, s, frac, tz = m.groups()
            return calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s))) + _frac(frac) - _tz(tz)
        if f == "syslog" and self.rx is _SYSLOG:
            mon, d, h, mi, s = m.groups()
            return float(calendar.timegm((self.year, MONTHS[mon], int(d), int(h), int(mi), int(s))))
        text = m.group("ts") if "ts" in self.rx.groupindex else (m.group(1) if self.rx.groups else m.group(0))
        if f == "epoch":
            return float(text)
        if f == "epoch_ms":
            return float(text) / 1000.0
        if f == "iso8601":
            mm = _ISO.search(text)
            if mm is None:
                raise ValueError(text)
            return TimestampFormat(_ISO, "iso8601")._convert(mm)
        if f == "syslog":
            mm = _SYSLOG.search(text)
            if mm is None:
                raise ValueError(text)
            return TimestampFormat(_SYSLOG, "syslog", self.year)._convert(mm)
        d = _dt.datetime.strptime(text, f)
        if d.tzinfo is None:
            d = d.replace(tzinfo=_dt.timezone.utc)
        return d.timestamp()


def builtin_formats(year: int | None = None) -> list[TimestampFormat]:
    return [TimestampFormat(_ISO, "iso8601"), TimestampFormat(_SYSLOG, "syslog", year),
            TimestampFormat(_EPOCH, "epoch_auto")]


def _epoch_auto(fmt: TimestampFormat, m: re.Match) -> float:
    text = m.group(1)
    return float(text) / 1000.0 if len(text) == 13 and "." not in text else float(text)


class LineClock:
    """Finds each line's time: the format that worked last is tried first."""

    def __init__(self, packs, year: int | None = None):
        self.formats = [p.timestamp for p in packs if getattr(p, "timestamp", None) is not None]
        self.formats += builtin_formats(year)
        self.last: TimestampFormat | None = None

    def __call__(self, line: str) -> float | None:
        if self.last is not None:
            ts = self._try(self.last, line)
            if ts is not None:
                return ts
        for f in self.formats:
            if f is self.last:
                continue
            ts = self._try(f, line)
            if ts is not None:
                self.last = f
                return ts
        return None

    @staticmethod
    def _try(f: TimestampFormat, line: str) -> float | None:
        if f.fmt == "epoch_auto":
            m = f.rx.search(line)
            return _epoch_auto(f, m) if m else None
        return f.parse(line)


def parse_timestamp_key(value, parent, file: str, pack: str) -> TimestampFormat:
    """A pack's `timestamp: {regex: '…', format: '…'}` (the pack loader calls this)."""
    line = parent.line_of("timestamp") if hasattr(parent, "line_of") else None
    where = f"pack {pack!r}: timestamp"
    if not isinstance(value, dict):
        raise ConfigError(file, line, f"{where} is a mapping with 'regex' and 'format' "
                                      "(a strptime format, or iso8601, syslog, epoch, epoch_ms)")
    if isinstance(value, Map):
        check_keys(value, ("regex", "format"), "a pack's timestamp")
    fmt = str(value.get("format", "iso8601"))
    regex = value.get("regex")
    if regex is None:
        regex = {"iso8601": _ISO.pattern, "syslog": _SYSLOG.pattern, "epoch": r"(\d+(?:\.\d+)?)",
                 "epoch_ms": r"(\d{13})"}.get(fmt)
        if regex is None:
            raise ConfigError(file, line, f"{where}: a strptime format needs a 'regex' that finds the text")
    try:
        rx = re.compile(str(regex))
    except re.error as e:
        raise ConfigError(file, line, f"{where}: regex does not compile: {e.msg} at position {e.pos}") from None
    if fmt not in ("iso8601", "syslog", "epoch", "epoch_ms") and "%" not in fmt:
        raise ConfigError(file, line, f"{where}: format {fmt!r} is neither a strptime format nor one of "
                                      "iso8601, syslog, epoch, epoch_ms")
    return TimestampFormat(rx, fmt)
