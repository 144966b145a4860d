"""A command runwatch launches: its merged output, passed through unchanged.

When runwatch's own stdout is a terminal the child writes to a pseudo-terminal,
so it keeps its colours, its `\\r` progress-bar redraws and its terminal displays
(docker's BuildKit frames; programs turn those off when they see a pipe), with the
terminal's size (followed on SIGWINCH); otherwise it writes to a pipe. `use_pty`
forces either (`runwatch run --pty / --no-pty`). stdout and stderr are merged, as a
person watching the terminal sees them.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
import subprocess
import termios
import threading
import time

from ..settings import child_environ

READ_SIZE = 1 << 16          # each read allocates this much first: at 128 KiB and more, malloc maps fresh pages
HANDOFF_BYTES = 64 << 20     # how far the reader may run ahead of the parser
GATHER_BYTES = 1 << 20       # the parser waits for this much output to parse it as one block …
GATHER_SECONDS = 0.02        # … or this long after the first chunk, whichever comes first


def _copy_winsize(src_fd: int | None, dst_fd: int) -> None:
    """The terminal's size for the pty; without a terminal to copy (--pty with runwatch's output
    redirected) COLUMNS x LINES, else 80 x 24: a program that draws for a terminal of size 0 x 0
    draws nothing (BuildKit's display drops lines narrower than 12 columns)."""
    try:
        if src_fd is None:
            raise OSError
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        rows, cols = struct.unpack("HHHH", size)[:2]
        if not rows or not cols:
            raise OSError
    except OSError:
        size = struct.pack("HHHH", _env_int("LINES", 24), _env_int("COLUMNS", 80), 0, 0)
    try:
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _env_int(name: str, default: int) -> int:
    try:
        n = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return n if 0 < n < 10000 else default


F_SETPIPE_SZ = 1031                  # Linux: fcntl.F_SETPIPE_SZ (Python 3.10+ names it)
PIPE_BYTES = 1 << 20


def _grow_pipe(fd: int) -> None:
    """A 1 MiB pipe instead of 64 KiB: a chatty child fills it less often and waits less for us."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", F_SETPIPE_SZ), PIPE_BYTES)
    except OSError:
        pass                              # over /proc/sys/fs/pipe-max-size, or not Linux: keep the default


class Command:
    """Launch argv; `pump(sink)` copies its output to `passthrough_fd` and the sink."""

    def __init__(self, argv: list[str], *, use_pty: bool | None = None, passthrough_fd: int | None = 1):
        self.argv = argv
        self.passthrough_fd = passthrough_fd
        if use_pty is None:
            use_pty = passthrough_fd is not None and os.isatty(passthrough_fd)
        self.use_pty = use_pty
        if use_pty:
            master, slave = os.openpty()
            _copy_winsize(passthrough_fd, slave)
            try:
                self.proc = subprocess.Popen(argv, stdout=slave, stderr=slave, start_new_session=True,
                                             env=child_environ())
            finally:
                os.close(slave)
            self.out_fd = master
        else:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=child_environ())
            self.out_fd = self.proc.stdout.fileno()
            _grow_pipe(self.out_fd)
        self.pid = self.proc.pid

    def pump(self, sink, stream: int = 0) -> None:
        """Read until the child's output ends (EOF, or EIO on a pty)."""
        fd, out = self.out_fd, self.passthrough_fd
        while True:
            try:
                chunk = os.read(fd, READ_SIZE)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if e.errno == errno.EIO:      # pty: the child and its children closed it
                    break
                raise
            if not chunk:
                break
            if out is not None:
                _write_all(out, chunk)
            sink.data(stream, chunk)
        sink.end(stream)

    def resize(self) -> None:
        """The terminal runwatch writes to changed size (SIGWINCH): the child's pty follows, and
        the child's process group is told (the pty is not its controlling terminal, so the
        kernel does not tell it)."""
        if self.use_pty:
            _copy_winsize(self.passthrough_fd, self.out_fd)
            try:
                os.killpg(self.pid, signal.SIGWINCH)
            except (ProcessLookupError, PermissionError):
                pass

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        rc = self.proc.wait()
        return 128 - rc if rc < 0 else rc      # killed by signal N -> 128+N, as shells say

    def close(self) -> None:
        if self.use_pty:
            try:
                os.close(self.out_fd)
            except OSError:
                pass
        elif self.proc.stdout:
            self.proc.stdout.close()


def pump_stream(fileobj, sink, passthrough_fd: int | None = 1, stream: int = 0) -> None:
    """stdin as a source: read, pass through, feed the sink, until EOF."""
    fd = fileobj.fileno()
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except InterruptedError:
            continue
        if not chunk:
            break
        if passthrough_fd is not None:
            _write_all(passthrough_fd, chunk)
        sink.data(stream, chunk)
    sink.end(stream)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            n = os.write(fd, data)
            data = data[n:]
    except BrokenPipeError:
        pass
    except OSError:
        pass


class Handoff:
    """A sink that hands chunks to a parser thread, so the reader never waits on parsing.

    The reader (`Command.pump`, `pump_stream`) passes output through and calls
    `data()`, which only appends the chunk to a queue; the parser thread takes
    everything queued at once, joins a stream's consecutive chunks into one
    block and feeds the real sink: while the parser works on one block the
    reader goes on, and the parser sees fewer, larger blocks the faster the job
    writes. The queue is bounded (`max_bytes`): a reader more than that far
    ahead waits for the parser, so memory stays bounded and nothing is lost.
    `close()` feeds what is queued and stops the thread.
    """

    def __init__(self, sink, *, max_bytes: int = HANDOFF_BYTES, name: str = "runwatch-parser"):
        self.sink, self.max_bytes = sink, max_bytes
        self._items: list[tuple[int, bytes | None]] = []     # (stream, chunk); None ends the stream
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def data(self, stream: int, chunk: bytes) -> None:
        with self._cond:
            while self._bytes >= self.max_bytes and not self._closed:
                self._cond.wait()
            if self._closed:                  # late output after close: feed it here, in order
                self.sink.data(stream, chunk)
                return
            self._items.append((stream, chunk))
            self._bytes += len(chunk)
            if len(self._items) == 1 or self._bytes >= GATHER_BYTES:
                self._cond.notify_all()      # in between, the parser is gathering: let it sleep

    def end(self, stream: int) -> None:
        with self._cond:
            if self._closed:
                self.sink.end(stream)
                return
            self._items.append((stream, None))
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                # A block of many chunks costs less per line than many small blocks (each pays
                # its redaction pass, its keyword searches, its registry update), so the parser
                # gives a chatty writer a moment to fill one; a quiet one waits GATHER_SECONDS.
                deadline = time.monotonic() + GATHER_SECONDS
                while (self._bytes < GATHER_BYTES and not self._closed
                       and (self._items and self._items[-1][1] is not None)):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                items, self._items = self._items, []
                if not items and self._closed:
                    return
            run_stream, run_chunks = None, []
            for stream, chunk in items:
                if chunk is not None and stream == run_stream:
                    run_chunks.append(chunk)
                    continue
                if run_chunks:
                    self._feed(run_stream, run_chunks)
                run_stream, run_chunks = stream, []
                if chunk is None:
                    self.sink.end(stream)
                    run_stream = None
                else:
                    run_chunks.append(chunk)
            if run_chunks:
                self._feed(run_stream, run_chunks)

    def _feed(self, stream: int, chunks: list[bytes]) -> None:
        block = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            self.sink.data(stream, block)
        finally:
            with self._cond:
                self._bytes -= block.__len__()
                self._cond.notify_all()


def start_thread(target, *args, name: str) -> threading.Thread:
    t = threading.Thread(target=target, args=args, name=name, daemon=True)
    t.start()
    return t

