"""Tests for runwatch.sources.tail.FileFollower.

Modelled on grok_exporter's / mtail's tailer tests: a matrix of rotation
methods x writer modes, each run under every combination of "poll here or
not" at the adversarial points of the scenario.  poll() is driven directly
and rotate_grace runs on a fake clock, so nothing sleeps except the one test
of run() in a thread.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import tracemalloc
from pathlib import Path

import pytest

from runwatch.sources.tail import FileFollower



def _can_read_mode_000() -> bool:
    """True for root (CAP_DAC_OVERRIDE): chmod 000 does not stop it."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "probe"
        p.write_bytes(b"")
        p.chmod(0)
        try:
            os.close(os.open(p, os.O_RDONLY))
        except PermissionError:
            return False
        return True


CAN_READ_MODE_000 = _can_read_mode_000()
GRACE = 2.0


# -- helpers --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def expire(self) -> None:
        """Move past any rotate_grace started so far."""
        self.t += GRACE + 1


class LineSink:
    """Frames lines per stream, like the real consumer; checks the contract."""

    def __init__(self) -> None:
        self.bufs: dict[int, bytearray] = {}
        self.lines: list[str] = []
        self.ended: list[int] = []
        self.streams: list[int] = []  # streams in order of first data
        self.max_chunk = 0

    def data(self, stream: int, chunk: bytes) -> None:
        assert stream not in self.ended, f"data for ended stream {stream}"
        assert chunk, "empty chunk"
        if stream not in self.streams:
            self.streams.append(stream)
        self.max_chunk = max(self.max_chunk, len(chunk))
        buf = self.bufs.setdefault(stream, bytearray())
        buf += chunk
        *complete, rest = bytes(buf).split(b"\n")
        self.lines.extend(line.decode() for line in complete)
        self.bufs[stream] = bytearray(rest)

    def end(self, stream: int) -> None:
        assert stream not in self.ended, f"end({stream}) twice"
        self.ended.append(stream)
        rest = self.bufs.pop(stream, b"")
        if rest:
            self.lines.append(rest.decode())


class CountingSink:
    """For big inputs: counts bytes, keeps nothing."""

    def __init__(self) -> None:
        self.total = 0
        self.max_chunk = 0
        self.chunks = 0
        self.ended: list[int] = []

    def data(self, stream: int, chunk: bytes) -> None:
        self.total += len(chunk)
        self.chunks += 1
        self.max_chunk = max(self.max_chunk, len(chunk))

    def end(self, stream: int) -> None:
        self.ended.append(stream)


def line(i: int) -> str:
    return f"line {i:05d}"  # fixed width: equal sizes make truncation adversarial


def lines(a: int, b: int) -> bytes:
    """Lines a..b inclusive."""
    return "".join(line(i) + "\n" for i in range(a, b + 1)).encode()


def expected(n: int) -> list[str]:
    return [line(i) for i in range(1, n + 1)]


class Writer:
    """A log writer: keeps an O_APPEND fd open, or opens-appends-closes per line."""

    def __init__(self, path: Path, keep_open: bool) -> None:
        self.path = path
        self.keep_open = keep_open
        self.fd = -1
        if keep_open:
            self.reopen()

    def reopen(self, truncate: bool = False) -> None:
        """What a logger does on SIGHUP (keep-open writers only)."""
        if self.fd >= 0:
            os.close(self.fd)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_TRUNC if truncate else 0)
        self.fd = os.open(self.path, flags, 0o644)

    def write(self, data: bytes, truncate: bool = False) -> None:
        """Append data one line per write() call."""
        for chunk in data.splitlines(keepends=True):
            if self.keep_open:
                os.write(self.fd, chunk)
            else:
                with open(self.path, "wb" if truncate else "ab") as f:
                    f.write(chunk)
                truncate = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def make(path: Path, **kw):
    sink = LineSink()
    clock = FakeClock()
    kw.setdefault("rotate_grace", GRACE)
    f = FileFollower(str(path), sink, clock=clock, **kw)
    return f, sink, clock


def settle(f: FileFollower, clock: FakeClock) -> None:
    """Read everything, let every grace period run out, read again."""
    while f.poll():
        pass
    clock.expire()
    while f.poll():
        pass


# -- the rotation matrix -----------------------------------------------------

N = 20  # lines before rotation
K = 5  # keep-open writers, rename rotations: lines written to the old fd after the rename
M = 40  # lines after rotation (M/2 == N: the file regrows to exactly the old size)

METHODS = ["create", "nocreate", "copytruncate", "truncate"]
MODES = ["keep_open", "per_line"]


def scenario(tmp: Path, method: str, keep_open: bool):
    """Return (path, writer, steps, total lines).

    Each step is a callable; the caller decides after which steps to poll.
    Steps named "catch_up" are always followed by a full poll: the lines
    written before an in-place truncation are only in the copy otherwise
    (the documented copytruncate race).
    """
    path = tmp / "app.log"
    path.touch()  # the follower has seen the file before it is rotated
    w = Writer(path, keep_open)
    steps: list[tuple[str, object]] = [
        ("write first half", lambda: w.write(lines(1, N // 2))),
        ("write second half", lambda: w.write(lines(N // 2 + 1, N))),
    ]
    n = N
    if method in ("create", "nocreate"):

        def rotate() -> None:
            os.rename(path, tmp / "app.log.1")
            if method == "create":
                path.touch(0o644)

        steps.append(("rename", rotate))
        if keep_open:
            steps.append(("write to old fd", lambda: w.write(lines(N + 1, N + K))))
            steps.append(("reopen", w.reopen))
            n += K
    elif method == "copytruncate":

        def copytruncate() -> None:
            shutil.copyfile(path, tmp / "app.log.1")
            os.truncate(path, 0)

        steps.append(("catch_up", None))
        steps.append(("copytruncate", copytruncate))
    else:  # the writer truncates the file itself (O_TRUNC), e.g. a restart
        steps.append(("catch_up", None))
        if keep_open:
            steps.append(("reopen with O_TRUNC", lambda: w.reopen(truncate=True)))
    first = n + 1
    truncate_first = method == "truncate" and not keep_open
    steps.append(
        ("write after rotation", lambda: w.write(lines(first, first + M // 2 - 1), truncate=truncate_first))
    )
    steps.append(("write rest", lambda: w.write(lines(first + M // 2, first + M - 1))))
    return path, w, steps, n + M


@pytest.mark.parametrize("keep_open", [True, False], ids=MODES)
@pytest.mark.parametrize("method", METHODS)
def test_rotation_matrix(tmp_path: Path, method: str, keep_open: bool) -> None:
    """Every interleaving of polls delivers exactly lines 1..N+M, in order."""
    (tmp_path / "probe").mkdir()
    _, probe_writer, steps, _ = scenario(tmp_path / "probe", method, keep_open)
    probe_writer.close()
    optional = [i for i, (name, _) in enumerate(steps) if name != "catch_up"]
    # Also try letting the grace period run out right after the writer
    # reopened (or right after the rotation for per-line writers).
    expire_points = [None] + [
        i for i, (name, _) in enumerate(steps) if name in ("reopen", "write after rotation")
    ][:1]
    runs = 0
    for expire_at in expire_points:
        for mask in range(1 << len(optional)):
            poll_after = {optional[b] for b in range(len(optional)) if mask >> b & 1}
            d = tmp_path / f"r{runs}"
            d.mkdir()
            path, w, steps, total = scenario(d, method, keep_open)
            f, sink, clock = make(path)
            try:
                f.poll()
                for i, (name, step) in enumerate(steps):
                    if step is not None:
                        step()
                    if i == expire_at:
                        clock.expire()
                    if name == "catch_up":
                        while f.poll():
                            pass
                    elif i in poll_after:
                        f.poll()
                settle(f, clock)
                where = (f"{method}/{'keep_open' if keep_open else 'per_line'} polls after {sorted(poll_after)} "
                         f"expire at {expire_at}")
                assert sink.lines == expected(total), where
                assert f.up and f.error is None, where
                live = f._cur.stream
                f.close()
                assert sorted(sink.ended) == sorted(set(sink.ended)), where
                assert live in sink.ended, where
                assert not any(sink.bufs.values()), where
            finally:
                f.close()
                w.close()
            runs += 1
    assert runs >= 32


def test_keep_open_writer_lines_after_rename_come_before_new_file(tmp_path: Path) -> None:
    """Old fd is drained before the new file on every poll, within grace."""
    path = tmp_path / "app.log"
    w = Writer(path, keep_open=True)
    f, sink, clock = make(path)
    w.write(lines(1, 3))
    assert f.poll()
    os.rename(path, tmp_path / "app.log.1")
    path.touch()
    assert not f.poll()  # new file empty, old one drained
    assert f.up
    clock.t += GRACE / 2
    w.write(lines(4, 6))  # still going to the renamed file
    assert f.poll()
    assert sink.lines == expected(6)
    w.reopen()
    w.write(lines(7, 8))
    w.close()
    settle(f, clock)
    assert sink.lines == expected(8)
    assert sink.ended == [0]  # old stream ended after grace; stream 1 live
    assert f.inode == (os.stat(path).st_dev, os.stat(path).st_ino)
    f.close()
    assert sink.ended == [0, 1]


def test_two_rotations_within_grace(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    w = Writer(path, keep_open=True)
    f, sink, clock = make(path)
    n = 0
    for r in (1, 2):
        w.write(lines(n + 1, n + 3))
        f.poll()
        os.rename(path, tmp_path / f"app.log.{r}")
        w.write(lines(n + 4, n + 5))  # to the renamed file
        f.poll()  # path missing (nocreate)
        assert not f.up and "waiting for" in f.error
        w.reopen()
        n += 5
    w.write(lines(n + 1, n + 2))
    f.poll()
    assert len(f._old) == 2
    w.close()
    settle(f, clock)
    assert sink.lines == expected(n + 2)
    assert sink.ended == [0, 1]


def test_order_kept_when_old_file_needs_several_polls(tmp_path: Path) -> None:
    """A per-poll read budget never lets the new file overtake the old one."""
    path = tmp_path / "app.log"
    w = Writer(path, keep_open=True)
    f, sink, clock = make(path, chunk_size=7)
    f.max_chunks_per_poll = 2
    w.write(lines(1, 10))
    assert f.poll()  # reads 14 of 110 bytes, then the file is rotated
    os.rename(path, tmp_path / "app.log.1")
    w.write(lines(11, 20))
    w.reopen()
    w.write(lines(21, 30))
    w.close()
    polls = 0
    while f.poll():
        polls += 1
        assert sink.max_chunk <= 7
    assert polls > 10
    assert sink.lines == expected(30)
    settle(f, clock)
    assert sink.lines == expected(30)


def test_writer_acting_between_old_drain_and_new_read_keeps_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new file is read only up to the size stat saw *before* the old one was drained.

    The writer is made to act at the worst moment: right after the old fd was
    read to EOF and before the new file is read.  It writes line 4 to the old
    fd, reopens, writes line 5 to the new file.  Reading the new file to EOF
    there would deliver 5 before 4.
    """
    path = tmp_path / "app.log"
    w = Writer(path, keep_open=True)
    f, sink, clock = make(path)
    w.write(lines(1, 3))
    f.poll()
    os.rename(path, tmp_path / "app.log.1")
    path.touch()
    f.poll()  # old retired and drained, new (empty) file opened
    old_fd = f._old[0].fd
    real_pread = os.pread
    fired = []

    def pread(fd, n, off):
        data = real_pread(fd, n, off)
        if fd == old_fd and not data and not fired:
            fired.append(True)
            w.write(lines(4, 4))
            w.reopen()
            w.write(lines(5, 5))
        return data

    monkeypatch.setattr(os, "pread", pread)
    f.poll()
    assert fired
    monkeypatch.setattr(os, "pread", real_pread)
    w.close()
    settle(f, clock)
    assert sink.lines == expected(5)


def test_old_file_read_error_blocks_new_file_until_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.log"
    w = Writer(path, keep_open=True)
    f, sink, clock = make(path)
    w.write(lines(1, 2))
    f.poll()
    os.rename(path, tmp_path / "app.log.1")
    w.write(lines(3, 4))  # old fd, unread
    w.reopen()
    w.write(lines(5, 6))
    w.close()
    old_fd = f._cur.fd
    real_pread = os.pread

    def pread(fd, n, off):
        if fd == old_fd:
            raise OSError(errno.EIO, "Input/output error")
        return real_pread(fd, n, off)

    monkeypatch.setattr(os, "pread", pread)
    assert not f.poll()
    assert not f.up and f.error.startswith("read error on")
    assert sink.lines == expected(2)  # new file held back: it would overtake 3, 4
    monkeypatch.setattr(os, "pread", real_pread)
    assert f.poll()
    assert f.up and sink.lines == expected(6)


# -- lines and streams --------------------------------------------------------


def test_late_file_creation(tmp_path: Path) -> None:
    path = tmp_path / "late.log"
    f, sink, _ = make(path)
    assert not f.poll()
    assert f.up is False
    assert f.error == f"waiting for {path} to appear"
    assert f.offset == 0 and f.inode is None
    path.write_bytes(lines(1, 2))
    assert f.poll()
    assert f.up is True and f.error is None
    assert sink.lines == expected(2)
    assert f.offset == len(lines(1, 2))


def test_missing_parent_directory_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "later" / "x.log"
    f, sink, _ = make(path)
    assert not f.poll()
    assert "waiting for" in f.error
    path.parent.mkdir()
    path.write_bytes(b"a\n")
    assert f.poll()
    assert sink.lines == ["a"]


def test_partial_line_held_until_newline(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    path.write_bytes(b"abc")
    f, sink, _ = make(path)
    assert f.poll()
    assert sink.lines == []
    with open(path, "ab") as fh:
        fh.write(b"def")
    assert f.poll()
    assert sink.lines == []
    with open(path, "ab") as fh:
        fh.write(b"\nnext\n")
    assert f.poll()
    assert sink.lines == ["abcdef", "next"]
    assert sink.ended == []


def test_partial_line_flushed_by_end_on_rotation(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    path.write_bytes(b"one\ntwo-no-newline")
    f, sink, clock = make(path)
    f.poll()
    assert sink.lines == ["one"]
    os.rename(path, tmp_path / "p.log.1")
    path.write_bytes(b"three\n")
    f.poll()
    # The old stream is still in grace: its writer might finish the line.
    assert sink.lines == ["one", "three"]
    assert sink.ended == []
    clock.expire()
    f.poll()
    assert sink.ended == [0]
    assert sink.lines == ["one", "three", "two-no-newline"]


def test_rotate_grace_zero_ends_old_stream_at_once(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    path.write_bytes(b"a\nb")
    f, sink, _ = make(path, rotate_grace=0)
    f.poll()
    os.rename(path, tmp_path / "p.log.1")
    path.write_bytes(b"c\n")
    f.poll()
    assert sink.ended == [0]
    assert sink.lines == ["a", "b", "c"]  # drained and flushed before the new file


def test_truncation_to_shorter_file(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(lines(1, 10) + b"partial")
    f, sink, _ = make(path)
    f.poll()
    inode = f.inode
    with open(path, "wb") as fh:  # O_TRUNC, same inode
        fh.write(b"new 1\nnew 2\n")
    assert f.poll()
    assert f.inode == inode
    assert sink.ended == [0]
    assert sink.streams == [0, 1]
    assert sink.lines == expected(10) + ["partial", "new 1", "new 2"]
    assert f.offset == len(b"new 1\nnew 2\n")


def test_truncation_then_regrowth_past_offset_is_detected(tmp_path: Path) -> None:
    """Truncated and rewritten longer between two polls: caught by the tail check."""
    path = tmp_path / "t.log"
    path.write_bytes(lines(1, 5))
    f, sink, _ = make(path)
    f.poll()
    os.truncate(path, 0)
    with open(path, "ab") as fh:
        fh.write(lines(6, 15))
    assert os.path.getsize(path) > f.offset
    f.poll()
    assert sink.lines == expected(15)
    assert sink.ended == [0]


def test_copytruncate_race_is_documented(tmp_path: Path) -> None:
    """Lines written after the last read and before the truncate are only in the copy."""
    path = tmp_path / "c.log"
    w = Writer(path, keep_open=True)
    f, sink, clock = make(path)
    w.write(lines(1, 3))
    f.poll()
    w.write(lines(4, 5))  # not read yet ...
    shutil.copyfile(path, tmp_path / "c.log.1")
    os.truncate(path, 0)  # ... and now gone from the followed file
    w.write(lines(6, 9))
    settle(f, clock)
    assert sink.lines == [line(i) for i in (1, 2, 3, 6, 7, 8, 9)]
    assert (tmp_path / "c.log.1").read_bytes().endswith(lines(4, 5))
    w.close()


def test_deleted_and_recreated(tmp_path: Path) -> None:
    path = tmp_path / "d.log"
    path.write_bytes(lines(1, 3))
    f, sink, clock = make(path)
    f.poll()
    old_inode = f.inode
    path.unlink()
    assert not f.poll()
    assert f.up is False and f.error == f"waiting for {path} to appear"
    assert f.inode is None
    assert sink.ended == []  # still in grace
    path.write_bytes(lines(4, 6))
    assert f.poll()
    assert f.up and f.error is None
    assert f.inode != old_inode
    assert sink.lines == expected(6)
    clock.expire()
    f.poll()
    assert sink.ended == [0]


def test_deleted_and_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "d.log"
    path.write_bytes(b"a\nb")
    f, sink, clock = make(path)
    f.poll()
    path.unlink()
    f.poll()
    clock.expire()
    f.poll()
    assert sink.ended == [0]
    assert sink.lines == ["a", "b"]
    assert not f.up and "waiting for" in f.error
    assert f._old == [] and f._cur is None


def test_renamed_back_is_not_read_twice(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    path.write_bytes(lines(1, 3))
    f, sink, clock = make(path)
    f.poll()
    os.rename(path, tmp_path / "r.log.tmp")
    f.poll()
    os.rename(tmp_path / "r.log.tmp", path)
    with open(path, "ab") as fh:
        fh.write(lines(4, 4))
    f.poll()
    settle(f, clock)
    assert sink.lines == expected(4)
    assert sink.streams == [0] and sink.ended == []


def test_symlink_retarget_counts_as_rotation(tmp_path: Path) -> None:
    a, b, link = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "current.log"
    a.write_bytes(b"a1\n")
    b.write_bytes(b"b1\n")
    link.symlink_to(a)
    f, sink, clock = make(link)
    f.poll()
    tmp_link = tmp_path / "tmp.link"
    tmp_link.symlink_to(b)
    os.replace(tmp_link, link)
    f.poll()
    settle(f, clock)
    assert sink.lines == ["a1", "b1"]
    assert sink.ended == [0]


# -- errors -------------------------------------------------------------------


def test_directory_at_path_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.mkdir()
    f, sink, _ = make(path)
    assert not f.poll()
    assert f.up is False
    assert f.error == f"is a directory: {path}"
    path.rmdir()
    path.write_bytes(b"ok\n")
    assert f.poll()
    assert f.up is True and f.error is None
    assert sink.lines == ["ok"]


def test_file_replaced_by_directory(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a\n")
    f, sink, clock = make(path)
    f.poll()
    path.unlink()
    path.mkdir()
    f.poll()
    assert not f.up and "is a directory" in f.error
    clock.expire()
    f.poll()
    path.rmdir()
    path.write_bytes(b"b\n")
    f.poll()
    assert f.up and sink.lines == ["a", "b"] and sink.ended == [0]


@pytest.mark.skipif(CAN_READ_MODE_000, reason="running as root: mode 000 files stay readable")
def test_unreadable_file_chmod_000(tmp_path: Path) -> None:
    path = tmp_path / "secret.log"
    path.write_bytes(b"hidden\n")
    path.chmod(0)
    f, sink, _ = make(path)
    try:
        assert not f.poll()
        assert f.up is False
        assert f.error == f"permission denied: {path}"
        path.chmod(0o644)
        assert f.poll()
        assert f.up and f.error is None
        assert sink.lines == ["hidden"]
    finally:
        path.chmod(0o644)


def test_permission_denied_on_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same as chmod 000, for root too: open() fails with EACCES, then succeeds."""
    path = tmp_path / "secret.log"
    path.write_bytes(b"hidden\n")
    real_open = os.open

    def denying_open(p, *a, **kw):
        if os.fspath(p) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, *a, **kw)

    monkeypatch.setattr(os, "open", denying_open)
    f, sink, _ = make(path)
    assert not f.poll()
    assert not f.poll()
    assert f.up is False and f.error == f"permission denied: {path}"
    monkeypatch.setattr(os, "open", real_open)
    assert f.poll()
    assert f.up and f.error is None and sink.lines == ["hidden"]


def test_io_error_on_read_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "io.log"
    path.write_bytes(b"a\n")
    f, sink, _ = make(path)
    f.poll()
    with open(path, "ab") as fh:
        fh.write(b"b\n")
    real_pread = os.pread

    def failing_pread(*a):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pread", failing_pread)
    assert not f.poll()
    assert f.up is False
    assert f.error == f"read error on {path}: Input/output error"
    monkeypatch.setattr(os, "pread", real_pread)
    assert f.poll()
    assert f.up and f.error is None
    assert sink.lines == ["a", "b"]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    f, _, _ = make(path)
    assert not f.poll()
    assert not f.up and f.error == f"not a regular file: {path}"


# -- from_start, big files, cost, threads, close --------------------------------


def test_from_start_false_reads_only_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    path.write_bytes(lines(1, 5))
    f, sink, clock = make(path, from_start=False)
    with open(path, "ab") as fh:  # appended after startup, before the first poll
        fh.write(lines(6, 7))
    assert f.poll()
    assert sink.lines == [line(6), line(7)]
    # A file that appears later (here: after rotation) is read from 0.
    os.rename(path, tmp_path / "s.log.1")
    path.write_bytes(lines(8, 9))
    f.poll()
    assert sink.lines == [line(i) for i in (6, 7, 8, 9)]


def test_from_start_false_idle_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    path.write_bytes(lines(1, 5))
    f, sink, _ = make(path, from_start=False)
    assert not f.poll()
    assert f.up and f.offset == len(lines(1, 5))
    assert sink.lines == []


def test_from_start_false_missing_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    f, sink, _ = make(path, from_start=False)
    f.poll()
    path.write_bytes(lines(1, 2))
    f.poll()
    assert sink.lines == expected(2)


def test_from_start_false_file_replaced_before_first_poll(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    path.write_bytes(lines(1, 5))
    f, sink, _ = make(path, from_start=False)
    os.rename(path, tmp_path / "s.log.1")
    path.write_bytes(lines(6, 7))
    f.poll()
    assert sink.lines == [line(6), line(7)]


def test_huge_file_without_newline_is_read_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    size = 20 << 20
    block = b"x" * (1 << 20)
    with open(path, "wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)
    del block
    sink = CountingSink()
    chunk = 1 << 20
    f = FileFollower(str(path), sink, chunk_size=chunk)
    tracemalloc.start()
    try:
        while f.poll():
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.total == size
    assert sink.max_chunk <= chunk
    assert sink.chunks >= size // chunk
    assert peak < 4 * chunk, f"peak {peak} bytes"
    assert f.offset == size
    f.close()
    assert sink.ended == [0]


def test_idle_poll_costs_one_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "idle.log"
    path.write_bytes(b"a\n")
    f, _, _ = make(path)
    f.poll()
    calls: dict[str, int] = {}
    for name in ("stat", "fstat", "open", "pread", "read", "lseek"):
        real = getattr(os, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*a, **kw)

        monkeypatch.setattr(os, name, counted)
    for _ in range(10):
        assert not f.poll()
    assert calls == {"stat": 10}


def test_run_in_thread_latency_and_stop(tmp_path: Path) -> None:
    path = tmp_path / "live.log"
    path.write_bytes(b"")
    got = threading.Event()

    class Notify(LineSink):
        def data(self, stream: int, chunk: bytes) -> None:
            super().data(stream, chunk)
            got.set()

    sink = Notify()
    f = FileFollower(str(path), sink)
    stop = threading.Event()
    t = threading.Thread(target=f.run, args=(stop,), daemon=True)
    t.start()
    try:
        with open(path, "ab", buffering=0) as fh:
            for i in range(1, 21):
                got.clear()
                fh.write(f"{line(i)}\n".encode())
                assert got.wait(2.0), f"line {i} not seen"      # latency figures: bench/bench_core.py
    finally:
        stop.set()
        t.join(2.0)
    assert not t.is_alive()
    assert sink.lines == expected(20)
    f.close()


def test_close_ends_every_stream_once_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(b"a\nold-partial")
    f, sink, _ = make(path)
    f.poll()
    os.rename(path, tmp_path / "c.log.1")
    path.write_bytes(b"b\nnew-partial")
    f.poll()
    f.close()
    f.close()
    assert sorted(sink.ended) == [0, 1]
    assert sink.lines == ["a", "b", "old-partial", "new-partial"]
    assert not f.poll()
    assert f.up is False
    stop = threading.Event()
    f.run(stop)  # returns at once when closed


def test_context_manager_closes(tmp_path: Path) -> None:
    path = tmp_path / "cm.log"
    path.write_bytes(b"x")
    sink = LineSink()
    with FileFollower(str(path), sink) as f:
        f.poll()
    assert sink.ended == [0] and sink.lines == ["x"]


def test_invalid_arguments(tmp_path: Path) -> None:
    sink = LineSink()
    for kw in ({"poll_interval": 0}, {"chunk_size": 0}, {"rotate_grace": -1}):
        with pytest.raises(ValueError):
            FileFollower(str(tmp_path / "x"), sink, **kw)
