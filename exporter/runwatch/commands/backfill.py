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

import os
import sys
import time

from ..parse.framing import FramedReader, stream_chunks
from ..model.runs import Registry, RunSpec
from ..parse.timestamps import LineClock

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
        from ..export.collector import RunwatchCollector
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
                  max_line: int, every: float, plan: int | None = None) -> tuple[int, int]:
    """Replay one log into `samples`; returns (lines, lines with a timestamp). `plan`: the run's
    planned units of the outermost level (--total)."""
    year = None
    if path != "-":
        try:
            year = time.gmtime(os.stat(path).st_mtime).tm_year
        except OSError:
            pass
    clock = LineClock(packs, year)
    registry = Registry()
    run = registry.add(RunSpec(id=run_id, kind=kind, source="file" if path != "-" else "stdin",
                               total=plan), now=0.0)
    st = run.state
    pending: list[str] = []
    stamped = 0
    last_ts: float | None = None
    next_grid: float | None = None
    reader = FramedReader(max_line)

    def feed(line: str, ts: float) -> None:
        events: list = []
        matcher.match_line(line, ts, events)
        st.lines_seen(1, ts)
        for e in events:
            st.apply(e)

    f = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        for block in reader.blocks(stream_chunks(f)):
            run.decode_errors = reader.decode_errors
            for raw in block.split(b"\n")[:-1]:
                line = raw.decode("utf-8", "replace")
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
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    total = reader.lines
    run.lines_cut = reader.lines_cut
    if last_ts is not None:
        samples.scrape(registry, last_ts)            # the final state, at the last line's time
    return total, stamped


def cmd_backfill(args, packs, matcher) -> int:
    every = float(args.sample_every or 15.0)      # 0 would never advance the sample grid
    samples = Samples()
    out_path = args.output
    for path in args.files:
        rid = args.run_id or ("stdin" if path == "-" else os.path.basename(path))
        total, stamped = backfill_file(path, rid, "log", matcher, packs, samples,
                                       max_line=args.max_line_bytes, every=every, plan=args.total)
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
