"""A command runwatch launches: its merged output, passed through unchanged.

When runwatch's own stdout is a terminal the child writes to a pseudo-terminal,
so it keeps its colours and its `\\r` progress-bar redraws (programs turn
those off when they see a pipe); otherwise it writes to a pipe. stdout and
stderr are merged, as a person watching the terminal sees them.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import termios
import threading

READ_SIZE = 1 << 16


def _copy_winsize(src_fd: int, dst_fd: int) -> None:
    try:
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass


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
                self.proc = subprocess.Popen(argv, stdout=slave, stderr=slave, start_new_session=True)
            finally:
                os.close(slave)
            self.out_fd = master
        else:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            self.out_fd = self.proc.stdout.fileno()
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


def start_thread(target, *args, name: str) -> threading.Thread:
    t = threading.Thread(target=target, args=args, name=name, daemon=True)
    t.start()
    return t

