"""A command runwatch launches: its merged output, passed through unchanged.

When runwatch's own stdout is a terminal the child writes to a pseudo-terminal,
so it keeps its colours, its `\\r` progress-bar redraws and its terminal displays
(docker's BuildKit frames; programs turn those off when they see a pipe), with the
terminal's size (followed on SIGWINCH); otherwise it writes to a pipe. `use_pty`
forces either (`runwatch run --pty / --no-pty`). stdout and stderr are merged, as a
person watching the terminal sees them. `Relay` passes the output through in a
process of its own and hands it to the parser behind it.
"""
from __future__ import annotations

import collections
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time

from ..settings import child_environ

READ_SIZE = 1 << 16          # each read allocates this much first: at 128 KiB and more, malloc maps fresh pages
RELAY_BYTES = 64 << 20       # how far the relay may run ahead of the parser (held in its memory)
GATHER_BYTES = 1 << 20       # the parser waits for this much output to parse it as one block …
GATHER_SECONDS = 0.02        # … or this long after the first chunk, whichever comes first
# After a short read the relay pauses this long before the next: a job writing line by line
# (python -u, a line-buffered stdout) would otherwise wake it for every line, and the job
# pays for each wake-up too (a million lines: ~3 s of system time, the job's and ours). What
# "short" means depends on what a read can give: a pipe holds 1 MiB, a pty's buffer 4 KiB.
COALESCE_SECONDS = 0.001
SHORT_PIPE_READ = 16 << 10
SHORT_PTY_READ = 1 << 10
# In a pipe of 1 MiB the pause can be longer and follow every read that did not fill the buffer:
# at 60 MB/s (a job printing a million lines in under 2 s) 4 ms is 240 KB, which the pipe holds,
# so the job never waits and its writes wake nobody (the relay sleeps on a timer, not in read()).
# The job's own time wrapped went from 1.5x to 1.04x of its time alone. Output reaches the
# terminal at most 4 ms later. Smaller pipes (a shell's 64 KiB stdin) keep the 1 ms pause.
BIG_PIPE_COALESCE_SECONDS = 0.004


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


def _pipe_bytes(fd: int) -> int:
    """What the pipe `fd` holds at most (0: not a pipe, or not known)."""
    try:
        return fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", F_SETPIPE_SZ + 1))
    except OSError:
        return 0


class Command:
    """Launch argv with its output on a pipe or a pty (`out_fd`), for a `Relay` to read."""

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


def _write_all(fd: int, data) -> bool:
    """Write everything (waiting on a non-blocking fd); False if the reader is gone (or the write failed)."""
    try:
        while data:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                p = select.poll()
                p.register(fd, select.POLLOUT)
                p.poll()
                continue
            data = data[n:]
    except OSError:
        return False
    return True


class Relay:
    """The pass-through in a process of its own; the parser reads behind it, in large blocks.

    A forked process (`_relay_loop`: system calls only, no Python per line) reads the
    output at `in_fd` (a command's pipe or pty, stdin), writes it unchanged to
    `passthrough_fd` at once and relays it through a pipe to this process, where
    `pump(sink)` reads it and feeds the sink in blocks of up to GATHER_BYTES. The two
    never share a lock or an interpreter: however long a block takes to parse, the
    pass-through does not wait for it (a thread in this process would, for the GIL,
    and a pty's small buffer fills in milliseconds). When the parser falls behind,
    the relay keeps up to `max_bytes` in memory and then stops reading (the writer
    waits), so memory stays bounded and nothing is lost.

    The relay ends at the end of the input (EOF, or EIO on a pty whose every writer
    is gone), after relaying what it holds; if the parser is gone (its end of the
    pipe closed) it goes on passing the output through; `stop()` ends it early in the same way
    (a grandchild keeps the output open after the command exited). It ignores the
    terminal's SIGINT and SIGHUP (runwatch forwards those to the command) and ends
    by itself if this process dies (its stop pipe closes).
    """

    def __init__(self, in_fd: int, passthrough_fd: int | None, *, max_bytes: int = RELAY_BYTES):
        rd, wr = os.pipe()
        stop_r, stop_w = os.pipe()         # runwatch -> relay: stop reading (or runwatch is gone)
        ended_r, ended_w = os.pipe()       # relay -> runwatch: closed when the input has ended
        _grow_pipe(wr)
        pid = os.fork()
        if pid == 0:                                   # the relay: nothing but system calls, then _exit
            code = 1
            try:
                for fd in (rd, stop_w, ended_r):
                    os.close(fd)
                _relay_loop(in_fd, passthrough_fd, wr, stop_r, ended_w, max_bytes)
                code = 0
            finally:
                os._exit(code)
        for fd in (wr, stop_r, ended_w):
            os.close(fd)
        self.pid, self.fd, self._stop_w, self._ended_r = pid, rd, stop_w, ended_r
        self._status: int | None = None
        self._lock = threading.Lock()      # stop() (main thread) and wait() (the parser's) share _stop_w

    def pump(self, sink, stream: int = 0) -> None:
        """Feed the sink what the relay passed through, in blocks, until it ends; then reap it."""
        fd = self.fd
        try:
            while True:
                chunks = _gather(fd)
                if not chunks:
                    break
                sink.data(stream, chunks[0] if len(chunks) == 1 else b"".join(chunks))
            sink.end(stream)
        finally:
            os.close(fd)
            self.wait()

    def input_ended(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds for the relay to reach the end of its input (not for
        the parser to catch up); True if it has. Call it from one thread (the one that calls close())."""
        if self._ended_r < 0:
            return True
        poll = select.poll()
        poll.register(self._ended_r, select.POLLIN)
        if not poll.poll(None if timeout is None else timeout * 1000):
            return False
        os.close(self._ended_r)
        self._ended_r = -1
        return True

    def stop(self) -> None:
        """Stop reading the input; what the relay holds is still relayed."""
        with self._lock:
            if self._stop_w >= 0:
                try:
                    os.write(self._stop_w, b"x")
                except OSError:
                    pass

    def discard(self) -> None:
        """Nobody will parse (pump() never ran): stop reading and close this end, so the relay's
        writes fail and it ends; then reap it."""
        self.stop()
        os.close(self.fd)
        self.wait()
        self.close()

    def close(self) -> None:
        """Release what input_ended() watches (after pump() has returned)."""
        if self._ended_r >= 0:
            os.close(self._ended_r)
            self._ended_r = -1

    def wait(self) -> int:
        if self._status is None:
            while True:
                try:
                    self._status = os.waitpid(self.pid, 0)[1]
                    break
                except ChildProcessError:
                    self._status = 0
                    break
                except InterruptedError:
                    continue
            with self._lock:
                if self._stop_w >= 0:
                    os.close(self._stop_w)
                    self._stop_w = -1
        return self._status


def _gather(fd: int) -> list[bytes]:
    """Up to GATHER_BYTES of the relay pipe: block for the first chunk, then take what has
    come for GATHER_SECONDS at most (a chatty job fills a block at once, a quiet one waits
    that long). [] at the end."""
    try:
        first = os.read(fd, READ_SIZE)
    except InterruptedError:
        first = os.read(fd, READ_SIZE)
    if not first:
        return []
    chunks, n = [first], len(first)
    deadline = None
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    while n < GATHER_BYTES:
        if not poll.poll(0):
            if deadline is None:
                deadline = time.monotonic() + GATHER_SECONDS
            left = deadline - time.monotonic()
            if left <= 0 or not poll.poll(left * 1000):
                break
        chunk = os.read(fd, READ_SIZE)
        if not chunk:              # the end: what we have first, the end on the next call
            break
        chunks.append(chunk)
        n += len(chunk)
    return chunks


def _relay_loop(in_fd: int, out_fd: int | None, relay_fd: int, stop_fd: int, ended_fd: int,
                max_bytes: int) -> None:
    """The relay process's loop: input to the pass-through at once, and to the relay pipe
    as fast as the parser takes it (up to max_bytes held here meanwhile)."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)         # the command gets them from runwatch; we go on relaying
    signal.signal(signal.SIGWINCH, signal.SIG_DFL)  # runwatch's handler resizes the pty; once is enough
    keep = sorted({0, 1, 2, in_fd, relay_fd, stop_fd, ended_fd} | ({out_fd} if out_fd is not None else set()))
    lo = 3                                         # nothing else of runwatch's (its listening socket) stays open
    for fd in keep:
        if fd > lo:
            os.closerange(lo, fd)
        lo = max(lo, fd + 1)
    os.closerange(lo, 1 << 16)
    os.set_blocking(relay_fd, False)
    held: collections.deque = collections.deque()    # chunks not yet in the relay pipe
    held_bytes = off = 0                              # off: how much of held[0] is relayed already
    reading, out_ok, relay_ok = True, out_fd is not None, True
    short, nap = SHORT_PTY_READ if os.isatty(in_fd) else SHORT_PIPE_READ, COALESCE_SECONDS
    if short == SHORT_PIPE_READ and _pipe_bytes(in_fd) >= PIPE_BYTES:
        short, nap = READ_SIZE, BIG_PIPE_COALESCE_SECONDS
    pause = time.sleep
    poll = select.poll()
    read, write = os.read, os.write
    poll.register(stop_fd, select.POLLIN)
    in_on = out_on = False
    while reading:
        in_on = _watch(poll, in_fd, select.POLLIN, in_on, held_bytes < max_bytes)      # room to hold more
        out_on = _watch(poll, relay_fd, select.POLLOUT, out_on, bool(held))            # something to relay
        for fd, _ in poll.poll():
            if fd == stop_fd:
                reading = False
            elif fd == in_fd and reading:
                try:
                    chunk = read(in_fd, READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""                   # EIO: a pty whose every writer is gone
                if not chunk:
                    reading = False
                    continue
                if out_ok:
                    out_ok = _write_all(out_fd, chunk)
                if relay_ok:
                    held.append(chunk)
                    held_bytes += len(chunk)
                if len(chunk) < short:
                    pause(nap)                    # let a line-by-line writer fill the pipe a little
        while held:                               # relay what the pipe takes now, without waiting
            chunk = held[0]
            try:
                n = write(relay_fd, memoryview(chunk)[off:] if off else chunk)
            except BlockingIOError:
                break
            except OSError:                       # the parser is gone: pass through on, relay nothing
                held.clear()
                held_bytes = off = 0
                relay_ok = False
                break
            off += n
            if off == len(chunk):
                held.popleft()
                held_bytes -= off
                off = 0
    os.close(ended_fd)                            # the input has ended (or we were told to stop)
    os.set_blocking(relay_fd, True)               # hand over the rest, then close
    for i, chunk in enumerate(held):
        if not _write_all(relay_fd, memoryview(chunk)[off:] if i == 0 and off else chunk):
            return


def _watch(poll, fd: int, events: int, on: bool, want: bool) -> bool:
    """Register fd with poll for events, or unregister it, when `want` changed from `on`; the new state."""
    if want != on:
        if want:
            poll.register(fd, events)
        else:
            poll.unregister(fd)
    return want


def start_thread(target, *args, name: str) -> threading.Thread:
    t = threading.Thread(target=target, args=args, name=name, daemon=True)
    t.start()
    return t

