"""The remote-write disk spool: one file per compressed WriteRequest, oldest first.

Files are `<seq>.rws` (16-digit sequence; the lowest is the oldest), written to
a temporary name and renamed, so a crash leaves whole requests or nothing.
Several runwatch processes may share a data directory: each takes the first
slot directory `<dir>/<k>` whose lock it can get (flock), and the next process
on that slot resends what an earlier one left. The spool is bounded in bytes.
"""
from __future__ import annotations

import os
import struct
import time

from ..slots import take_slot
from ...settings import private_opener

_HEAD = struct.Struct("<4sII")          # magic, samples, body length
_MAGIC = b"RWS1"
FIRST_SEQ = 10 ** 12                    # room below for requests put back in front
MAX_ASIDE = 3                           # unreadable requests kept per slot for a look


class SpoolCorrupt(Exception):
    pass


class Spool:
    def __init__(self, base: str, max_bytes: int):
        self.max_bytes = max_bytes
        self.dir, self.lock_fd = take_slot(base)
        d = self.dir
        for f in os.listdir(d):
            if f.endswith(".tmp"):
                os.unlink(os.path.join(d, f))
        self.seqs: list[int] = sorted(int(f[:-4]) for f in os.listdir(d) if f.endswith(".rws") and f[:-4].isdigit())
        self.sizes = {s: os.path.getsize(self.path(s)) for s in self.seqs}
        self.bytes = sum(self.sizes.values())

    def __len__(self) -> int:
        return len(self.seqs)

    def path(self, seq: int) -> str:
        return os.path.join(self.dir, f"{seq:016d}.rws")

    def _write(self, seq: int, body: bytes, samples: int) -> None:
        p = self.path(seq)
        with open(p + ".tmp", "wb", opener=private_opener) as f:
            f.write(_HEAD.pack(_MAGIC, samples, len(body)))
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(p + ".tmp", p)
        self.sizes[seq] = _HEAD.size + len(body)
        self.bytes += _HEAD.size + len(body)

    def fits(self, body: bytes) -> bool:
        return self.bytes + _HEAD.size + len(body) <= self.max_bytes

    def append(self, body: bytes, samples: int) -> bool:
        """Add a request as the newest; False (nothing written) when the bound would be passed."""
        if not self.fits(body):
            return False
        seq = self.seqs[-1] + 1 if self.seqs else FIRST_SEQ
        self._write(seq, body, samples)
        self.seqs.append(seq)
        return True

    def put_front(self, records) -> tuple[int, int]:
        """Put requests (oldest first) back before everything spooled; returns
        (samples written, samples that did not fit)."""
        fitting, dropped, size = [], 0, self.bytes
        for body, samples in records:
            if size + _HEAD.size + len(body) <= self.max_bytes:
                fitting.append((body, samples))
                size += _HEAD.size + len(body)
            else:
                dropped += samples
        first = self.seqs[0] if self.seqs else FIRST_SEQ
        start = first - len(fitting)
        for i, (body, samples) in enumerate(fitting):
            self._write(start + i, body, samples)
        self.seqs[:0] = range(start, first)
        return sum(s for _, s in fitting), dropped

    def oldest(self) -> tuple[int, bytes, int] | None:
        """(seq, body, samples) of the oldest request; SpoolCorrupt(seq, why, samples
        it held if its header says) when its file is unreadable."""
        if not self.seqs:
            return None
        seq = self.seqs[0]
        try:
            with open(self.path(seq), "rb") as f:
                data = f.read()
        except OSError as e:
            raise SpoolCorrupt(seq, str(e)) from None
        if len(data) < _HEAD.size:
            self._set_aside(seq)
            raise SpoolCorrupt(seq, "short file", 0)
        magic, samples, blen = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            self._set_aside(seq)
            raise SpoolCorrupt(seq, "bad header", 0)
        if len(data) != _HEAD.size + blen:
            self._set_aside(seq)
            raise SpoolCorrupt(seq, "truncated", samples)
        return seq, data[_HEAD.size:], samples

    def _set_aside(self, seq: int) -> None:
        """Keep an unreadable request beside the spool as `<seq>.rws.bad-<time>` (never read
        again; the newest MAX_ASIDE are kept) before the sender drops it from the spool."""
        p = self.path(seq)
        try:
            os.link(p, f"{p}.bad-{time.strftime('%Y%m%dT%H%M%S')}")
        except OSError:
            return
        old = sorted((f for f in os.listdir(self.dir) if ".rws.bad-" in f),
                     key=lambda f: os.path.getmtime(os.path.join(self.dir, f)))
        for f in old[:-MAX_ASIDE]:
            try:
                os.unlink(os.path.join(self.dir, f))
            except OSError:
                pass

    def remove(self, seq: int) -> None:
        try:
            os.unlink(self.path(seq))
        except FileNotFoundError:
            pass
        self.bytes -= self.sizes.pop(seq, 0)
        if seq in self.seqs:
            self.seqs.remove(seq)

    def close(self) -> None:
        os.close(self.lock_fd)
