"""Bytes in, complete bounded lines out.

A source hands raw chunks of any size; `LineFramer.push` returns one *block*:
bytes holding only complete lines, each ending in b"\\n". Lines end at "\\n",
"\\r\\n" or a lone "\\r" (progress bars redraw with it; a lone "\\r" becomes
"\\n" in the block). A line longer than `max_line` bytes is cut to that length
and the rest of it up to its newline is discarded, so memory stays bounded even
for a 50 MB line with no newline. A partial last line is held until its newline
arrives or `flush` is called (end of file, rotation).

Working on blocks instead of single lines is what keeps the hot path fast: the
common case (ASCII, no "\\r", no overlong line) costs a few C-level scans per
chunk and no per-line Python work at all.

`FramedReader` is the read loop of the one-shot commands (`scan`, `scan
--timestamps`): a file, a byte range of one or a stream, framed and counted.
"""
from __future__ import annotations

import os
from typing import BinaryIO
from collections.abc import Iterable, Iterator

from ..settings import DEFAULT_MAX_LINE

READ_CHUNK = 1 << 20     # bytes per read of the one-shot readers (scan, backfill)


def has_long_line(block: bytes, max_line: int) -> bool:
    """True if some line in `block` (lines end in b"\\n") is longer than max_line bytes."""
    n, pos = len(block), 0
    while n - pos > max_line:
        j = block.rfind(b"\n", pos, pos + max_line + 1)
        if j < 0:
            return True
        pos = j + 1
    return False


def count_decode_errors(block: bytes) -> int:
    """Invalid UTF-8 sequences in block (0 for the common all-ASCII block)."""
    if block.isascii():
        return 0
    try:
        block.decode("utf-8")
        return 0
    except UnicodeDecodeError:
        replaced = block.decode("utf-8", "replace").count("\ufffd")
        return replaced - block.count(b"\xef\xbf\xbd")


class LineFramer:
    __slots__ = ("max_line", "carry", "dropping", "lines_cut", "skip_lf")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE):
        if max_line < 1:
            raise ValueError("max_line must be at least 1 byte")
        self.max_line = max_line
        self.carry = b""        # partial last line, never longer than max_line
        self.dropping = False   # inside the discarded tail of a cut line
        self.lines_cut = 0
        self.skip_lf = False    # the last chunk ended in "\r": a "\n" next is its other half

    def push(self, chunk: bytes) -> bytes:
        if self.skip_lf and chunk:
            self.skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self.dropping:
            nl = _first_break(chunk)
            if nl < 0:
                return b""
            if chunk[nl:nl + 2] == b"\r\n":
                chunk = chunk[nl + 2:]
            else:
                # a "\r" that ends the chunk may be the first half of a "\r\n": skip a "\n" next
                self.skip_lf = nl + 1 == len(chunk) and chunk[nl:] == b"\r"
                chunk = chunk[nl + 1:]
            self.dropping = False
        data = self.carry + chunk if self.carry else chunk
        if b"\r" in data:
            # "\r\n" and a lone "\r" both end a line; a "\r" at the very end ends it now
            # (a progress bar must not wait for the next redraw) and a "\n" after it is skipped.
            self.skip_lf = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = data.rfind(b"\n")
        if cut < 0:
            block, rest = b"", data
        else:
            block, rest = data[:cut + 1], data[cut + 1:]
        if len(rest) > self.max_line:
            block += rest[:self.max_line] + b"\n"
            self.lines_cut += 1
            rest, self.dropping = b"", True
        self.carry = rest
        if block and len(block) > self.max_line and has_long_line(block, self.max_line):
            block = self._cut_lines(block)
        return block

    def flush(self) -> bytes:
        """End of stream: the held partial line becomes a line."""
        rest = self.carry
        self.carry, self.dropping, self.skip_lf = b"", False, False
        return rest + b"\n" if rest else b""

    def _cut_lines(self, block: bytes) -> bytes:
        out = []
        m = self.max_line
        for line in block[:-1].split(b"\n"):
            if len(line) > m:
                line = line[:m]
                self.lines_cut += 1
            out.append(line)
        return b"\n".join(out) + b"\n"


class FramedReader:
    """The one-shot read loop of `scan` and `scan --timestamps`: chunks in, framed blocks
    out, counting what both report (lines, invalid UTF-8 sequences, lines cut).

    `blocks(file_range(...))` or `blocks(stream_chunks(...))`; flush=False leaves a partial
    last line unframed (a byte range that another range continues)."""

    __slots__ = ("framer", "lines", "decode_errors")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE):
        self.framer = LineFramer(max_line)
        self.lines = 0
        self.decode_errors = 0

    @property
    def lines_cut(self) -> int:
        return self.framer.lines_cut

    def blocks(self, chunks: Iterable[bytes], flush: bool = True) -> Iterator[bytes]:
        for chunk in chunks:
            block = self.framer.push(chunk)
            if block:
                yield self._counted(block)
        if flush:
            block = self.framer.flush()
            if block:
                yield self._counted(block)

    def _counted(self, block: bytes) -> bytes:
        self.lines += block.count(b"\n")
        self.decode_errors += count_decode_errors(block)
        return block


def file_range(fd: int, start: int = 0, end: int | None = None, size: int = READ_CHUNK) -> Iterator[bytes]:
    """Bytes [start, end) of an open file descriptor (end None: to EOF), in chunks (pread:
    the offset of fd is not moved, so forked readers can share it)."""
    pos = start
    while end is None or pos < end:
        chunk = os.pread(fd, size if end is None else min(size, end - pos), pos)
        if not chunk:
            return
        pos += len(chunk)
        yield chunk


def stream_chunks(stream: BinaryIO, size: int = READ_CHUNK) -> Iterator[bytes]:
    """A binary stream (a file, stdin) to its end, in chunks."""
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk


def _first_break(chunk: bytes) -> int:
    nl, cr = chunk.find(b"\n"), chunk.find(b"\r")
    if nl < 0:
        return cr
    if cr < 0:
        return nl
    return min(nl, cr)
