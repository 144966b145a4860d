"""Records (blocks of lines on their way to Loki) and the disk spool that keeps them while Loki is away.

A record is a block of complete lines of one stream and run, with the
timestamp of its first line; line i has timestamp first_ns + i. The spool is a
directory of segment files, each a sequence of encoded records, oldest first.

Segment format (little endian), one record after another:

    b"RWL1"  u32 meta length  u32 block length  i64 first_ns  u32 lines
    meta: JSON [kind, source, run_id, phase]      block: the lines' bytes

A torn record at the end of a segment (a crash while writing) ends the read;
its bytes are reported so the caller can count them. A record that is whole but
would poison a push (a stream label or phase that is not a string of valid
Unicode, a line count that does not match its block) ends the read the same
way, and the segment is first set aside as `<seq>.seg.bad-<time>` (the newest
MAX_ASIDE per slot are kept) with a warning.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import time
from typing import NamedTuple

from ...events import unicode_error
from ..slots import take_slot
from ...settings import private_opener

log = logging.getLogger("runwatch.loki")

SEGMENT_BYTES = 8 << 20


class Record(NamedTuple):
    stream: tuple          # (kind, source): the Loki stream it belongs to
    run_id: str
    phase: str             # the run's phase when the block was read ("" before any)
    first_ns: int          # timestamp of the first line; line i has first_ns + i
    block: bytes           # complete lines, each ending in b"\n"
    lines: int             # number of lines in block
    queued_at: float       # time.monotonic() when queued (read back: when read), for batch_wait

    def split(self, cut: int, lines: int) -> tuple["Record", "Record"]:
        """The first `lines` lines (the first `cut` bytes) and the rest, each with its own timestamps."""
        return (self._replace(block=self.block[:cut], lines=lines),
                self._replace(first_ns=self.first_ns + lines, block=self.block[cut:], lines=self.lines - lines))


_HEAD = struct.Struct("<4sIIqI")     # magic, meta length, block length, first ts (ns), lines
_MAGIC = b"RWL1"


def encode_record(rec: Record) -> bytes:
    meta = json.dumps([rec.stream[0], rec.stream[1], rec.run_id, rec.phase], separators=(",", ":")).encode("utf-8")
    return _HEAD.pack(_MAGIC, len(meta), len(rec.block), rec.first_ns, rec.lines) + meta + rec.block


MAX_ASIDE = 3          # poisoned segments kept per slot for a look


def _poison(meta, block: bytes, n: int) -> str | None:
    """Why a whole record must not be pushed, or None."""
    if not (isinstance(meta, list) and len(meta) == 4):
        return "its labels are not [kind, source, run_id, phase]"
    for name, v in zip(("kind", "source", "run_id", "phase"), meta, strict=True):
        if not isinstance(v, str):
            return f"{name} is {type(v).__name__}, not a string"
        why = unicode_error(v)
        if why:
            return f"{name}: {why}"
    held = block.count(b"\n")
    if n != held:
        return f"it says {n} lines and holds {held}"
    return None


def set_aside(path: str, why: str) -> None:
    """Keep a poisoned segment beside the spool (not read again), with a warning."""
    aside = f"{path}.bad-{time.strftime('%Y%m%dT%H%M%S')}"
    try:
        os.link(path, aside)
    except OSError as e:
        log.warning("loki: spool segment %s cannot be pushed (%s) and cannot be set aside (%s)",
                    path, why, e.strerror)
        return
    log.warning("loki: spool segment %s cannot be pushed (%s); set it aside as %s", path, why, aside)
    d = os.path.dirname(path)
    old = sorted((f for f in os.listdir(d) if ".seg.bad-" in f), key=lambda f: os.path.getmtime(os.path.join(d, f)))
    for f in old[:-MAX_ASIDE]:
        try:
            os.unlink(os.path.join(d, f))
        except OSError:
            pass


def read_segment(path: str) -> tuple[list[Record], int]:
    """Records of a spool segment, and the bytes at its end that were unreadable (a torn
    record) or could not be pushed (a poisoned one: the segment is set aside first)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:            # not a file any more (a directory, no permission): moved out of the way
        aside = f"{path}.bad-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            os.replace(path, aside)
            log.warning("loki: spool segment %s cannot be read (%s); set it aside as %s", path, e.strerror, aside)
        except OSError as e2:
            log.warning("loki: spool segment %s cannot be read (%s) nor set aside (%s)", path, e.strerror,
                        e2.strerror)
        return [], 0
    out = []
    pos, size = 0, len(data)
    now = time.monotonic()
    while pos + _HEAD.size <= size:
        magic, mlen, blen, ts, n = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + mlen + blen
        if magic != _MAGIC or end > size:
            break
        try:
            meta = json.loads(data[pos + _HEAD.size:pos + _HEAD.size + mlen])
        except (ValueError, RecursionError):
            break
        block = data[end - blen:end]
        why = _poison(meta, block, n)
        if why is not None:
            set_aside(path, f"record at byte {pos}: {why}")
            break
        kind, source, rid, phase = meta
        out.append(Record((kind, source), rid, phase, ts, block, n, now))
        pos = end
    return out, size - pos


class Spool:
    """Segment files `<seq>.seg` in a directory; the lowest sequence is the oldest.

    Several runwatch processes may share a data directory: each takes the
    first slot directory `<dir>/<k>` whose lock it can get (flock), and a new
    process on that slot resends what an earlier one left.
    """

    def __init__(self, base: str, max_bytes: int):
        self.max_bytes = max_bytes
        self.dir, self.lock_fd = take_slot(base)
        d = self.dir
        self.segments: list[int] = sorted(int(f[:-4]) for f in os.listdir(d)
                                          if f.endswith(".seg") and f[:-4].lstrip("-").isdigit())
        self.bytes = sum(os.path.getsize(self.path(s)) for s in self.segments)
        self.next_seq = (self.segments[-1] + 1) if self.segments else 10 ** 12
        self.active = None          # (seq, file) being appended to
        self.active_bytes = 0

    def path(self, seq: int) -> str:
        return os.path.join(self.dir, f"{seq:016d}.seg")

    def append(self, rec: Record) -> bool:
        data = encode_record(rec)
        if self.bytes + len(data) > self.max_bytes:
            return False
        if self.active is None or self.active_bytes >= SEGMENT_BYTES:
            self._rotate()
            seq = self.next_seq
            self.next_seq += 1
            self.active = (seq, open(self.path(seq), "ab", opener=private_opener))
            self.segments.append(seq)
            self.active_bytes = 0
        self.active[1].write(data)
        self.active_bytes += len(data)
        self.bytes += len(data)
        return True

    def _rotate(self) -> None:
        if self.active is not None:
            self.active[1].close()
            self.active = None

    def flush(self) -> None:
        if self.active is not None:
            self.active[1].flush()

    def take_oldest(self) -> int | None:
        """The oldest segment to read (closing the active one if it is the only one)."""
        if not self.segments:
            return None
        seq = self.segments[0]
        if self.active is not None and self.active[0] == seq:
            if self.active_bytes == 0:
                return None
            self._rotate()
        return seq

    def remove(self, seq: int) -> None:
        p = self.path(seq)
        try:
            self.bytes -= os.path.getsize(p)
            os.unlink(p)
        except FileNotFoundError:
            pass
        if seq in self.segments:
            self.segments.remove(seq)
        self.bytes = max(self.bytes, 0)

    def write_front(self, records) -> tuple[int, int]:
        """Write records as the new oldest segment; returns (lines written, lines dropped)."""
        seq = (self.segments[0] - 1) if self.segments else self.next_seq
        if not self.segments:
            self.next_seq += 1
        written = dropped = 0
        tmp = self.path(seq) + ".tmp"
        size = 0
        with open(tmp, "wb", opener=private_opener) as f:
            for rec in records:
                data = encode_record(rec)
                if self.bytes + size + len(data) > self.max_bytes:
                    dropped += rec.lines
                    continue
                f.write(data)
                size += len(data)
                written += rec.lines
            f.flush()
            os.fsync(f.fileno())
        if size:
            os.replace(tmp, self.path(seq))
            self.segments.insert(0, seq)
            self.bytes += size
        else:
            os.unlink(tmp)
        return written, dropped

    def close(self) -> None:
        if self.active is not None:
            f = self.active[1]
            f.flush()
            os.fsync(f.fileno())
            self._rotate()
        if self.active_bytes == 0 and self.segments:
            p = self.path(self.segments[-1])
            if os.path.exists(p) and os.path.getsize(p) == 0:
                self.remove(self.segments[-1])
        os.close(self.lock_fd)
