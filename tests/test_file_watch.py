"""serve's file poller woken by inotify: changes are seen at once without a timer,
rotation keeps every line in order, and where inotify cannot help (a remote
filesystem, no inotify) files are polled as before."""
from __future__ import annotations

import os
import threading

import pytest

from support.waits import wait_for
from runwatch.model.runs import Ingest, Registry, RunSpec
from runwatch.parse.packs import Matcher, load_builtin
from runwatch.sources import watch
from runwatch.sources.files import FilePoller

NEVER = 3600.0      # a timer that never fires within a test: only inotify can wake the poller

pytestmark = pytest.mark.skipif(not watch.Watcher().available, reason="no inotify on this platform")


def test_watcher_names_the_changed_path_only(tmp_path):
    w = watch.Watcher()
    a, b = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    assert w.watch(a) and w.watch(b)
    with open(a, "w") as f:
        f.write("x\n")
    got = wait_for(lambda: w.wait(1.0), 10, what="an event for a.log")
    assert got == {a}
    os.rename(a, str(tmp_path / "a.log.1"))           # rotation away from the name
    assert wait_for(lambda: w.wait(1.0), 10, what="an event for the rename") == {a}
    with open(tmp_path / "other.txt", "w") as f:      # a file nobody follows
        f.write("y")
    assert w.wait(0.2) == set()
    w.close()


def test_a_watched_directory_that_goes_away_asks_for_a_full_look(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    p = str(d / "x.log")
    w = watch.Watcher()
    assert w.watch(p)
    d.rmdir()
    assert wait_for(lambda: w.wait(1.0) is None, 10, what="the directory's removal")
    assert w.take_lost() == {p}
    assert not w.watch(p)                             # gone: it is polled until it comes back
    w.close()


def test_files_on_remote_filesystems_are_polled_not_watched(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
                    "40 22 0:50 / /mnt/shared\\040data rw,relatime - nfs4 srv:/export rw\n")
    mounts = watch.mount_types(str(info))
    assert watch.fs_type(b"/mnt/shared data/run", mounts) == "nfs4"
    assert watch.fs_type(b"/var/log", mounts) == "ext4"
    assert watch.fs_type(b"/mnt/shared data", mounts) == "nfs4"
    assert watch.fs_type(b"/mnt/shared", mounts) == "ext4"           # a prefix of the name is not the mount


def _poller(tmp_path, paths, *, watch_files=True, poll_interval=NEVER, rescan=NEVER):
    registry = Registry()
    matcher = Matcher([load_builtin("python")])
    fp = FilePoller(registry, poll_interval, watch=watch_files, rescan=rescan)
    runs = []
    for p in paths:
        run = registry.add(RunSpec(id=os.path.basename(p), kind="log", source="file"))
        fp.add(run, p, Ingest(registry, run, matcher))
        runs.append(run)
    stop = threading.Event()
    t = threading.Thread(target=fp.run, args=(stop,), daemon=True)
    t.start()
    return fp, runs, stop, t


def test_a_line_is_read_when_it_is_written_with_no_timer_at_all(tmp_path):
    p = str(tmp_path / "train.log")
    open(p, "w").close()
    fp, (run,), stop, t = _poller(tmp_path, [p])
    try:
        assert fp.watching
        wait_for(lambda: run.state.lines == 0 and fp.items[0][1].up, 10, what="the file opened")
        with open(p, "a") as f:
            f.write("ERROR first\n")
        wait_for(lambda: run.state.lines == 1, 10, what="the line, woken by inotify alone")
        assert run.state.errors == 1
    finally:
        stop.set()
        t.join(10)


def test_rename_rotation_keeps_every_line_in_order(tmp_path):
    p = str(tmp_path / "app.log")
    with open(p, "w") as f:
        f.write("".join(f"line {i}\n" for i in range(100)))
    # a short poll interval: the old file is drained at that pace during its grace
    fp, (run,), stop, t = _poller(tmp_path, [p], poll_interval=0.05)
    try:
        wait_for(lambda: run.state.lines == 100, 10, what="the first 100 lines")
        with open(p, "a") as old:
            os.rename(p, p + ".1")
            old.write("".join(f"line {i}\n" for i in range(100, 150)))   # the writer has not reopened yet
            old.flush()
            with open(p, "w") as new:
                new.write("".join(f"line {i}\n" for i in range(150, 200)))
        wait_for(lambda: run.state.lines == 200, 10, what="all 200 lines across the rotation")
    finally:
        stop.set()
        t.join(10)


def test_a_file_created_later_in_a_missing_directory_is_found_by_the_rescan(tmp_path):
    d = tmp_path / "later"
    p = str(d / "job.log")
    fp, (run,), stop, t = _poller(tmp_path, [p], poll_interval=0.05, rescan=0.2)
    try:
        d.mkdir()
        with open(p, "w") as f:
            f.write("hello\n")
        wait_for(lambda: run.state.lines == 1, 10, what="the line of a file whose directory came later")
    finally:
        stop.set()
        t.join(10)


def test_without_inotify_files_are_polled_on_the_interval(tmp_path):
    p = str(tmp_path / "plain.log")
    open(p, "w").close()
    fp, (run,), stop, t = _poller(tmp_path, [p], watch_files=False, poll_interval=0.02)
    try:
        assert not fp.watching
        with open(p, "a") as f:
            f.write("a\nb\n")
        wait_for(lambda: run.state.lines == 2, 10, what="lines read by polling")
    finally:
        stop.set()
        t.join(10)
