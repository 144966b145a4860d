"""Follow a log file by name, like ``tail -F``, across rotation and truncation.

:class:`FileFollower` polls one path and hands the raw bytes it reads to a
:class:`Sink`.  It does not split lines: the consumer frames lines per
*stream*, where a stream is one incarnation of the file (one inode, or one
life of an inode between truncations).  When the follower is done with an
incarnation it calls ``sink.end(stream)`` so the consumer can flush a partial
last line.

Polling, not inotify: the package is stdlib-only, and polling also works on
network and overlay filesystems where inotify is silent.  When nothing
happens a poll costs exactly one ``os.stat`` of the path.

What is handled
---------------
* **Missing path** – waited for (``up`` False, ``error`` says so); read from
  offset 0 once it appears.
* **Rename rotation** (logrotate ``create`` and ``nocreate``, or delete and
  re-create): noticed when the ``(st_dev, st_ino)`` behind the path changes or
  the path vanishes.  The old descriptor is drained to EOF, then kept open for
  ``rotate_grace`` seconds and drained again on every poll *before* the new
  file is read, because a writer that keeps its file open goes on writing to
  the renamed file until it reopens (SIGHUP, ``postrotate``).  Then the old
  stream is ended and closed.
* **Truncation** (``copytruncate``, ``: > file``, a writer reopening with
  ``O_TRUNC``): same inode, but smaller than the read offset.  The current
  stream is ended and a new stream reads from 0.  A truncation followed by
  enough new writes to grow the file past the old offset before the next poll
  cannot be seen from the size; it is caught by re-reading the last bytes
  delivered (up to 64) in front of the offset whenever the file has grown and
  comparing them (one extra small ``pread`` per poll that has new data).

Ordering
--------
Each poll stats the path *first*, then drains older incarnations to EOF, and
only then reads the current file, and only up to the size seen by that first
stat.  For a single writer this keeps the global order of its writes: every
byte of the new file read in a poll was written before the stat, so
everything that writer wrote to the old file before it was written too, and
was drained just before.

Known limits (inherent to following by name)
---------------------------------------------
* **copytruncate race**: bytes written between the follower's last read and
  the truncation exist only in the copy (``file.1``); the follower never
  sees them.  The window is at most one poll interval plus the time the copy
  takes.  Prefer rename rotation (``create``) where the writer can reopen.
* A truncation followed, before the next poll, by writes that bring the file
  back to exactly the old size is seen only when the file grows again; one
  that recreates byte for byte the same last bytes in front of the old offset
  is indistinguishable from no truncation.
* A writer that does *not* use ``O_APPEND`` keeps writing at its old offset
  after a copytruncate, leaving a sparse file that starts with NUL bytes; the
  follower delivers those NULs (the consumer bounds line length).
* Two rotations between two polls: the middle file is never opened.
* Bytes written to a rotated-away file after ``rotate_grace`` has run out are
  not read.
* Only regular files (or symlinks to them) are followed; retargeting a symlink
  counts as rotation.

Errors (``EACCES``, ``EISDIR``, ``EIO``…) never escape :meth:`FileFollower.poll`:
they set ``up = False`` and ``error``, and the next poll retries.  Exceptions
raised by the sink are the consumer's bugs and do propagate; the bytes of a
``data()`` call that raised are offered again by the next poll.
"""

from __future__ import annotations

import os
import stat as _stat
import threading
import time
from dataclasses import dataclass
from typing import Protocol
from collections.abc import Callable

__all__ = ["FileFollower", "Sink"]

# How many bytes before the read offset are re-read to notice a truncation
# that was followed by growth past the old offset.
_TAIL_CHECK = 64

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class Sink(Protocol):
    """Consumer of a follower's bytes."""

    def data(self, stream: int, chunk: bytes) -> None:
        """Bytes of ``stream``, in file order; a chunk may end mid-line."""

    def end(self, stream: int) -> None:
        """No more data for ``stream``: flush its partial last line."""


@dataclass
class _Incarnation:
    fd: int
    ident: tuple[int, int]  # (st_dev, st_ino)
    stream: int
    offset: int
    tail: bytes = b""  # last bytes delivered, for the truncate-and-regrow check
    deadline: float | None = None  # set once rotated away


class FileFollower:
    """Follow PATH by name across rotation; hand raw bytes to a sink.

    ``poll()`` does one step and returns True if any bytes were read; ``run()``
    loops it until a stop event is set.  ``close()`` ends every open stream
    without reading further (call ``poll()`` first to pick up the last bytes).

    ``up`` is True while the file is open and readable; ``error`` holds the
    last problem in words, or None.  ``offset`` and ``inode`` describe the
    current file (``0`` and ``None`` when none is open).

    ``from_start=False`` applies to the file present at the path when the
    follower is *constructed*: it is read from the size it had then.  Files
    that appear later (including after rotation) are always read from 0.

    ``clock`` (monotonic seconds) is only there so tests can drive
    ``rotate_grace`` without sleeping.

    ``resume=((dev, ino), offset, fingerprint)`` continues where an earlier
    follower stopped (``checkpoint()`` gives those values; a restart reads
    them from the state database). The file with that inode is looked for at
    the path, then among the other files of its directory (rotated while
    runwatch was down: it is drained from the offset first, then the new
    file is read from 0). It is only resumed if it is still at least
    ``offset`` bytes long and the bytes in front of the offset equal
    ``fingerprint``; otherwise it is treated as a new file. ``resumed`` says
    whether it worked; the resumed incarnation is stream 0. With ``resume``,
    ``from_start`` is ignored.
    """

    #: A poll reads at most this many chunks, so a writer faster than the
    #: reader cannot keep ``poll()`` from returning (``run()`` then polls
    #: again without sleeping).
    max_chunks_per_poll = 64

    def __init__(
        self,
        path: str | os.PathLike[str],
        sink: Sink,
        *,
        poll_interval: float = 0.02,
        from_start: bool = True,
        chunk_size: int = 1 << 20,
        rotate_grace: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        resume: tuple[tuple[int, int], int, bytes] | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if rotate_grace < 0:
            raise ValueError("rotate_grace must be >= 0")
        self.path = os.fspath(path)
        self.poll_interval = poll_interval
        self.chunk_size = chunk_size
        self.rotate_grace = rotate_grace
        self._sink = sink
        self._clock = clock
        self._lock = threading.Lock()
        self._cur: _Incarnation | None = None
        self._old: list[_Incarnation] = []  # rotated away, oldest first
        self._next_stream = 0
        self._closed = False
        self._budget = 0
        self._problem: str | None = None
        self.up = False
        self.error: str | None = None
        # from_start=False: remember which file was there, and how big.
        self._startup: tuple[tuple[int, int], int] | None = None
        self.resumed = False
        if resume is not None:
            self._resume(*resume)
        elif not from_start:
            try:
                st = os.stat(self.path)
            except OSError:
                pass
            else:
                if _stat.S_ISREG(st.st_mode):
                    self._startup = ((st.st_dev, st.st_ino), st.st_size)

    # -- public state ---------------------------------------------------

    @property
    def offset(self) -> int:
        cur = self._cur
        return cur.offset if cur is not None else 0

    @property
    def inode(self) -> tuple[int, int] | None:
        cur = self._cur
        return cur.ident if cur is not None else None

    @property
    def draining(self) -> bool:
        """True while a rotated-away file is still being read (its writes carry another name)."""
        return bool(self._old)

    def checkpoint(self) -> tuple[tuple[int, int], int, bytes, int] | None:
        """``(ident, offset, fingerprint, stream)`` of the current file, for
        ``resume=``; None while a rotated-away file still has unread bytes or
        no file is open (a position then would not say everything). A
        rotated-away file read to its end does not block a checkpoint: what
        its writer adds after it is lost only if runwatch dies within
        ``rotate_grace``, and nothing is ever counted twice."""
        with self._lock:
            cur = self._cur
            if cur is None or self._closed:
                return None
            for inc in self._old:
                try:
                    if os.fstat(inc.fd).st_size != inc.offset:
                        return None
                except OSError:
                    return None
            return cur.ident, cur.offset, cur.tail, cur.stream

    # -- main loop ------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set (or the follower is closed)."""
        while not stop.is_set() and not self._closed:
            if not self.poll():
                stop.wait(self.poll_interval)

    def poll(self) -> bool:
        """Read whatever is new; True if any bytes were read."""
        with self._lock:
            if self._closed:
                return False
            self._budget = self.max_chunks_per_poll * self.chunk_size
            self._problem = None
            got = False

            # 1. Stat the path first: the size seen here bounds what is read
            #    from the current file after older ones are drained.
            st: os.stat_result | None = None
            missing = False
            try:
                st = os.stat(self.path)
            except (FileNotFoundError, NotADirectoryError):
                missing = True
                self._problem = f"waiting for {self.path} to appear"
            except OSError as e:
                self._problem = self._describe(e, "cannot stat")
            now = self._clock()

            # 2. Has the name moved on from the file we have open?
            cur = self._cur
            if cur is not None:
                if missing or (st is not None and (st.st_dev, st.st_ino) != cur.ident):
                    self._retire(cur, now)

            # 3. Drain rotated-away files, oldest first; end them after grace.
            drained = True
            for inc in list(self._old):
                n, eof = self._read(inc, None)
                got = got or n > 0
                assert inc.deadline is not None
                if now >= inc.deadline and (eof or self._budget > 0):
                    # Grace is over (and we are not merely out of budget).
                    self._finish(inc)
                    self._old.remove(inc)
                elif not eof:
                    drained = False
                    break

            # 4. Open the file now at the path.
            if self._cur is None and st is not None:
                self._open(st)

            # 5. Read the current file, unless older data is still pending.
            cur = self._cur
            if cur is not None and drained:
                if st is None:
                    limit = None  # path unstattable but fd fine: read to EOF
                elif (st.st_dev, st.st_ino) != cur.ident:
                    limit = cur.offset  # opened a newer file than stat saw
                else:
                    limit = st.st_size
                    if st.st_size < cur.offset or (
                        st.st_size > cur.offset and self._rewritten(cur)
                    ):
                        self._restart(cur)
                n, _ = self._read(cur, limit)
                got = got or n > 0

            self.up = self._cur is not None and self._problem is None
            self.error = self._problem
            return got

    def close(self) -> None:
        """End every stream and close every descriptor. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = self._old + ([self._cur] if self._cur is not None else [])
            self._old, self._cur = [], None
            self.up = False
            try:
                for inc in pending:
                    self._finish(inc)
            finally:
                for inc in pending:
                    self._close_fd(inc)

    def __enter__(self) -> "FileFollower":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (called with the lock held) ---------------------------

    def _resume(self, ident: tuple[int, int], offset: int, fingerprint: bytes) -> None:
        ident = (int(ident[0]), int(ident[1]))
        candidates = [self.path]
        try:
            at_path = os.stat(self.path)
            moved = (at_path.st_dev, at_path.st_ino) != ident
        except OSError:
            moved = True
        if moved:   # rotated while we were away: look for it next to the path
            d = os.path.dirname(os.path.abspath(self.path))
            try:
                with os.scandir(d) as it:
                    candidates = [e.path for e in it if e.inode() == ident[1]]
            except OSError:
                candidates = []
        for p in candidates:
            try:
                fd = os.open(p, _OPEN_FLAGS)
            except OSError:
                continue
            ok = False
            try:
                fst = os.fstat(fd)
                n = len(fingerprint)
                ok = (_stat.S_ISREG(fst.st_mode) and (fst.st_dev, fst.st_ino) == ident
                      and fst.st_size >= offset and n <= offset and (offset == 0 or n > 0)
                      and (n == 0 or os.pread(fd, n, offset - n) == fingerprint))
            except OSError:
                ok = False
            if not ok:
                os.close(fd)
                continue
            inc = _Incarnation(fd=fd, ident=ident, stream=self._new_stream(), offset=offset,
                               tail=bytes(fingerprint))
            if moved:
                inc.deadline = self._clock() + self.rotate_grace
                self._old.append(inc)
            else:
                self._cur = inc
            self.resumed = True
            return

    def _new_stream(self) -> int:
        stream = self._next_stream
        self._next_stream += 1
        return stream

    def _describe(self, e: OSError, what: str) -> str:
        if isinstance(e, PermissionError):
            return f"permission denied: {self.path}"
        if isinstance(e, IsADirectoryError):
            return f"is a directory: {self.path}"
        return f"{what} {self.path}: {e.strerror or e}"

    def _open(self, st: os.stat_result) -> None:
        if _stat.S_ISDIR(st.st_mode):
            self._problem = f"is a directory: {self.path}"
            return
        if not _stat.S_ISREG(st.st_mode):
            self._problem = f"not a regular file: {self.path}"
            return
        try:
            fd = os.open(self.path, _OPEN_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            self._problem = f"waiting for {self.path} to appear"
            return
        except OSError as e:
            self._problem = self._describe(e, "cannot open")
            return
        try:
            fst = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            self._problem = self._describe(e, "cannot stat")
            return
        if not _stat.S_ISREG(fst.st_mode):
            os.close(fd)
            self._problem = (
                f"is a directory: {self.path}"
                if _stat.S_ISDIR(fst.st_mode)
                else f"not a regular file: {self.path}"
            )
            return
        ident = (fst.st_dev, fst.st_ino)
        # Renamed back while we were still draining it: carry on with it.
        for inc in self._old:
            if inc.ident == ident:
                os.close(fd)
                self._old.remove(inc)
                inc.deadline = None
                self._cur = inc
                return
        offset = 0
        if self._startup is not None:
            start_ident, start_size = self._startup
            if start_ident == ident and fst.st_size >= start_size:
                offset = start_size
        self._startup = None
        self._cur = _Incarnation(fd=fd, ident=ident, stream=self._new_stream(), offset=offset)

    def _retire(self, inc: _Incarnation, now: float) -> None:
        inc.deadline = now + self.rotate_grace
        self._old.append(inc)
        self._cur = None

    def _restart(self, inc: _Incarnation) -> None:
        """Truncated in place: end the stream, read again from 0 as a new one."""
        self._sink.end(inc.stream)
        inc.stream = self._new_stream()
        inc.offset = 0
        inc.tail = b""

    def _rewritten(self, inc: _Incarnation) -> bool:
        """Do the bytes in front of the offset still match what we delivered?"""
        n = len(inc.tail)
        if n == 0 or inc.offset < n:
            return False
        try:
            return os.pread(inc.fd, n, inc.offset - n) != inc.tail
        except OSError:
            return False  # the read below will report it

    def _read(self, inc: _Incarnation, limit: int | None) -> tuple[int, bool]:
        """Read ``inc`` up to ``limit`` (None: to EOF) in chunks.

        Returns (bytes read, whether the limit/EOF was reached).
        """
        total = 0
        while True:
            want = self.chunk_size
            if limit is not None:
                want = min(want, limit - inc.offset)
                if want <= 0:
                    return total, True
            if self._budget <= 0:
                return total, False
            try:
                chunk = os.pread(inc.fd, want, inc.offset)
            except OSError as e:
                self._problem = self._describe(e, "read error on")
                return total, False
            if not chunk:
                return total, True
            self._sink.data(inc.stream, chunk)
            inc.offset += len(chunk)
            inc.tail = (inc.tail + chunk[-_TAIL_CHECK:])[-_TAIL_CHECK:]
            self._budget -= len(chunk)
            total += len(chunk)
            if len(chunk) < want:
                return total, True  # short read of a regular file: at EOF

    def _finish(self, inc: _Incarnation) -> None:
        try:
            self._sink.end(inc.stream)
        finally:
            self._close_fd(inc)

    @staticmethod
    def _close_fd(inc: _Incarnation) -> None:
        if inc.fd >= 0:
            try:
                os.close(inc.fd)
            except OSError:
                pass
            inc.fd = -1
