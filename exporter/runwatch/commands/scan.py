"""`runwatch scan`: read logs once, print the metrics they yield, exit.

Like `mtail --one_shot`: the way users test their packs, and the way the
benchmark runs. Each file is one run (run_id = file name unless --run-id).

A large file is split at line boundaries into one byte range per CPU; forked
workers frame and match their range and send back the events (a dense log's
steps compact, as events.StepRun's groups), and the parent applies them in file
order (its own first range block by block as it reads it).
The reducer only sees events in order, so the result is exactly that of a
single pass.
"""
from __future__ import annotations

import gc
import marshal
import os
import pickle
import sys
import time

from ..events import Event, StepRun
from ..parse.framing import FramedReader, file_range, stream_chunks
from ..export.collector import RunwatchCollector
from ..export.exposition import render
from ..parse.packs import Matcher, builtin_names, load_packs
from ..model.runs import Registry, RunSpec

PARALLEL_MIN_BYTES = 16 << 20      # below this, forking costs more than it saves


class RangeResult:
    """What one byte range yields: its events (unless a sink took them block by block) and counts."""

    __slots__ = ("events", "lines", "cut", "bad")

    def __init__(self):
        self.events, self.lines, self.cut, self.bad = [], 0, 0, 0


def scan_range(fd: int, start: int, end: int | None, matcher: Matcher, max_line: int,
               last: bool, ts: float, sink=None) -> RangeResult:
    """Frame and match bytes [start, end) of fd (end None: to EOF)."""
    return _scan_chunks(file_range(fd, start, end), matcher, max_line, last, ts, sink)


def scan_range_stream(stream, matcher: Matcher, max_line: int, ts: float, sink=None) -> RangeResult:
    return _scan_chunks(stream_chunks(stream), matcher, max_line, True, ts, sink)


def _scan_chunks(chunks, matcher: Matcher, max_line: int, flush: bool, ts: float, sink) -> RangeResult:
    """sink(lines, events, cut, bad) per block, or None: the events are kept in the result."""
    res = RangeResult()
    reader = FramedReader(max_line)
    match = matcher.match_block
    lines = cut = bad = 0
    for block in reader.blocks(chunks, flush):
        if sink is None:
            match(block, ts, res.events, True)
            continue
        events: list = []
        match(block, ts, events, True)
        sink(reader.lines - lines, events, reader.lines_cut - cut, reader.decode_errors - bad)
        lines, cut, bad = reader.lines, reader.lines_cut, reader.decode_errors
    res.lines, res.cut, res.bad = reader.lines - lines, reader.lines_cut - cut, reader.decode_errors - bad
    return res


def _split_points(fd: int, size: int, parts: int) -> list[int]:
    """Offsets just after a newline, so no line straddles two ranges."""
    points = [0]
    for k in range(1, parts):
        target = max(size * k // parts, points[-1])
        pos = target
        while pos < size:
            buf = os.pread(fd, 65536, pos)
            if not buf:
                break
            i = buf.find(b"\n")
            if i >= 0:
                pos += i + 1
                break
            pos += len(buf)
        if pos >= size:
            break
        points.append(pos)
    return points


def _run_parallel(fd: int, size: int, matcher: Matcher, max_line: int, jobs: int, ts: float,
                  sink) -> list[RangeResult]:
    points = _split_points(fd, size, jobs)
    bounds = [(points[i], points[i + 1] if i + 1 < len(points) else None) for i in range(len(points))]
    children = []
    for a, b in bounds[1:]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                   # worker
            try:
                os.close(r)
                res = scan_range(fd, a, b, matcher, max_line, (b is None), ts)
                # all events share ts: type and fields are enough (the parent knows ts); a StepRun
                # goes as (None, (its emit's number, its groups))
                index = matcher.emit_index
                payload = _encode(([(e.type, e.fields) if type(e) is not StepRun else
                                    (None, (index[id(e.emit)], e.groups)) for e in res.events],
                                   res.lines, res.cut, res.bad))
                with os.fdopen(w, "wb") as out:
                    out.write(payload)
                os._exit(0)
            except BaseException:                       # noqa: BLE001 - report and leave
                import traceback
                traceback.print_exc()
                os._exit(70)
        os.close(w)
        children.append((pid, r))
    # the first range is the parent's: applied block by block while the workers run
    first = scan_range(fd, bounds[0][0], bounds[0][1], matcher, max_line, (bounds[0][1] is None), ts, sink)
    results = [first]
    for pid, r in children:
        with os.fdopen(r, "rb") as inp:
            data = inp.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            raise RuntimeError(f"scan worker {pid} failed (status {status})")
        evs, lines, cut, bad = _decode(data)
        res = RangeResult()
        emits = matcher.emits
        res.events = [Event(t, f, ts) if t is not None else StepRun(f[1], emits[f[0]], ts) for t, f in evs]
        res.lines, res.cut, res.bad = lines, cut, bad
        results.append(res)
    return results


def _encode(result) -> bytes:
    """A worker's result for the parent: marshal (several times faster than pickle for the
    plain strings, numbers and dicts events are made of), pickle if a field holds anything else."""
    try:
        return b"m" + marshal.dumps(result)
    except ValueError:
        return b"p" + pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)


def _decode(data: bytes):
    return marshal.loads(data[1:]) if data[:1] == b"m" else pickle.loads(data[1:])


def scan_file(path: str, matcher: Matcher, max_line: int, jobs: int, sink=None) -> list[RangeResult]:
    """The file's ranges in order; with a sink, the first range's blocks go to it as they are
    matched (the parent's own share), and the results carry what is left."""
    ts = time.time()
    if path == "-":
        return [scan_range_stream(sys.stdin.buffer, matcher, max_line, ts, sink)]
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if jobs > 1 and size >= PARALLEL_MIN_BYTES and hasattr(os, "fork"):
            return _run_parallel(fd, size, matcher, max_line, jobs, ts, sink)
        return [scan_range(fd, 0, None, matcher, max_line, True, ts, sink)]
    finally:
        os.close(fd)


def scan(paths: list[str], matcher: Matcher, *, run_id: str | None = None, kind: str = "log",
         max_line: int, jobs: int | None = None, total: int | None = None) -> Registry:
    """Scan files into a fresh Registry (one run per file, or one run if run_id); `total`: the
    runs' planned units of the outermost level (--total)."""
    jobs = jobs or os.cpu_count() or 1
    registry = Registry(timelines=False)          # nothing here reads the status page's samples
    # Events hold no reference cycles, and a dense log makes millions of them: the cyclic
    # collector would walk every live one again and again (a third of a dense scan's time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for path in paths:
            rid = run_id or ("stdin" if path == "-" else os.path.basename(path))
            run = registry.add(RunSpec(id=rid, kind=kind, source="file" if path != "-" else "stdin",
                                       total=total))

            def sink(lines, events, cut, bad, run=run):
                registry.account(run, lines, events, cut, bad, time.time())

            for res in scan_file(path, matcher, max_line, jobs, sink):
                registry.account(run, res.lines, res.events, res.cut, res.bad, time.time())
    finally:
        if collecting:
            gc.enable()
    return registry


def cmd_scan(args) -> int:
    # as `run` does: without --pack, every built-in pack (and the --rules files on top)
    packs = load_packs(args.packs if args.packs is not None else builtin_names(), args.rules or [])
    for f in args.files:
        if f != "-" and not os.path.isfile(f):
            print(f"runwatch scan: {f}: no such file", file=sys.stderr)
            return 2
    if args.timestamps:
        from .backfill import cmd_backfill
        return cmd_backfill(args, packs, Matcher(packs))
    registry = scan(args.files, Matcher(packs), run_id=args.run_id, max_line=args.max_line_bytes,
                    jobs=args.jobs, total=args.total)
    collector = RunwatchCollector(registry, wall_clock=False, self_metrics=False)
    sys.stdout.buffer.write(render(collector.collect(), openmetrics=False))
    return 0
