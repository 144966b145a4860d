"""`runwatch scan --timestamps`: a finished run's whole history, at the log's own times.

Each line's time is read from the line itself (a pack's `timestamp:` format
first, then the built-in ones: ISO-8601 / RFC 3339, Python logging's
`2026-11-24 10:00:00,123`, syslog's `Nov 24 10:00:00`, epoch seconds or
milliseconds at the start of a line); a line without one (a traceback, a
progress bar) takes the time of the line before it. The run state is fed
line by line with those times and "scraped" every `--sample-every` seconds of
log time, like Prometheus would have scraped it live; the samples are written
as OpenMetrics with timestamps, ending in `# EOF`, grouped by metric family
and series, ready for

    promtool tsdb create-blocks-from openmetrics run.om ./data

Naive timestamps (no zone) are taken as UTC unless the pack's format says
otherwise (`%z`).
"""
from __future__ import annotations

import calendar
import datetime as _dt
import os
import re
import sys
import time

from .framing import LineFramer, count_decode_errors
from .runs import Registry, RunSpec
from .yamlfile import ConfigError, Map, check_keys

CHUNK = 1 << 20
MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                      "Nov", "Dec"), 1)}
HEAD = 120          # timestamps are looked for in the first HEAD characters of a line


# ---------------------------------------------------------------- timestamp formats

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
    """A pack's `timestamp: {regex: '…', format: '…'}` (packs.py calls this)."""
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


# ---------------------------------------------------------------- replay and sample

class _At:
    """A registry as seen at one instant (the collector asks for snapshot(now))."""

    def __init__(self, registry: Registry, t: float):
        self.registry, self.t = registry, t

    def snapshot(self, now=None):
        return self.registry.snapshot(self.t)


class Samples:
    """Metric families -> series -> [(t, value)], in first-seen order."""

    def __init__(self):
        self.families: dict[str, list] = {}   # name -> [type, help, unit, {series: [(t, v)]}]

    def scrape(self, registry: Registry, t: float) -> None:
        from .collector import RunwatchCollector
        col = RunwatchCollector(_At(registry, t), wall_clock=True, self_metrics=False)
        for fam in col.collect():
            entry = self.families.setdefault(fam.name, [fam.type, fam.documentation, fam.unit, {}])
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                entry[3].setdefault(key, []).append((t, s.value))

    def write(self, out) -> int:
        n = 0
        for name, (typ, doc, unit, series) in self.families.items():
            if not series:
                continue
            out.write(f"# HELP {name} {_esc_help(doc)}\n# TYPE {name} {typ}\n")
            if unit:
                out.write(f"# UNIT {name} {unit}\n")
            for (sname, labels), points in series.items():
                lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
                head = f"{sname}{{{lab}}}" if lab else sname
                last = None
                for t, v in points:
                    if last is not None and t <= last:
                        continue                  # one sample per series and instant, in order
                    last = t
                    out.write(f"{head} {_num(v)} {t:.3f}\n")
                    n += 1
        out.write("# EOF\n")
        return n


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _esc_help(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n")


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def backfill_file(path: str, run_id: str, kind: str, matcher, packs, samples: Samples, *,
                  max_line: int, every: float) -> tuple[int, int]:
    """Replay one log into `samples`; returns (lines, lines with a timestamp)."""
    year = None
    if path != "-":
        try:
            year = time.gmtime(os.stat(path).st_mtime).tm_year
        except OSError:
            pass
    clock = LineClock(packs, year)
    registry = Registry()
    run = registry.add(RunSpec(id=run_id, kind=kind, source="file" if path != "-" else "stdin"), now=0.0)
    st = run.state
    pending: list[str] = []
    stamped = total = 0
    last_ts: float | None = None
    next_grid: float | None = None
    framer = LineFramer(max_line)

    def feed(line: str, ts: float) -> None:
        events: list = []
        matcher.match_line(line, ts, events)
        st.lines_seen(1, ts)
        for e in events:
            st.apply(e)

    def lines_of(block: bytes):
        nonlocal total
        if not block:
            return
        run.decode_errors += count_decode_errors(block)
        for raw in block.split(b"\n")[:-1]:
            total += 1
            yield raw.decode("utf-8", "replace")

    f = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        while True:
            chunk = f.read(CHUNK)
            blocks = [framer.push(chunk)] if chunk else [framer.push(b""), framer.flush()]
            for block in blocks:
                for line in lines_of(block):
                    ts = clock(line)
                    if ts is None:
                        if last_ts is None:
                            pending.append(line)      # before the first timestamp: wait for it
                            continue
                        ts = last_ts
                    else:
                        stamped += 1
                        if last_ts is not None and ts < last_ts:
                            ts = last_ts             # interleaved writers: time does not go back
                    if next_grid is None:
                        next_grid = ts
                    while next_grid < ts:            # scrape every `every` s of log time, as live
                        samples.scrape(registry, next_grid)
                        next_grid += every
                    if pending:
                        for p in pending:
                            feed(p, ts)
                        pending.clear()
                    feed(line, ts)
                    last_ts = ts
            if not chunk:
                break
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    run.lines_cut = framer.lines_cut
    if last_ts is not None:
        samples.scrape(registry, last_ts)            # the final state, at the last line's time
    return total, stamped


def cmd_backfill(args, packs, matcher) -> int:
    every = float(getattr(args, "sample_every", 15.0) or 15.0)
    samples = Samples()
    out_path = getattr(args, "output", None)
    for path in args.files:
        rid = args.run_id or ("stdin" if path == "-" else os.path.basename(path))
        total, stamped = backfill_file(path, rid, getattr(args, "kind", None) or "log", matcher, packs, samples,
                                       max_line=args.max_line_bytes, every=every)
        if total and not stamped:
            print(f"runwatch scan --timestamps: {path}: no line has a timestamp runwatch can read; give "
                  "the pack a 'timestamp: {regex, format}' (docs/time-and-money.md)", file=sys.stderr)
            return 1
        print(f"runwatch scan --timestamps: {path}: {total} lines, {stamped} with a timestamp",
              file=sys.stderr)
    out = open(out_path, "w", encoding="utf-8") if out_path else sys.stdout
    try:
        n = samples.write(out)
    finally:
        if out_path:
            out.close()
    print(f"runwatch scan --timestamps: {n} samples written (OpenMetrics)", file=sys.stderr)
    return 0
