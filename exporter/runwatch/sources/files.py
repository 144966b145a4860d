"""Every file `serve` follows, read from one thread, woken by inotify.

1,000 followed files cost one thread, not 1,000. Where inotify works
(sources/watch.py), the thread sleeps until a followed file's directory
reports a change and then polls only the followers that change names; every
follower is still polled once per `rescan` seconds (default RESCAN_SECONDS),
which covers filesystems where inotify is silent (NFS, some overlays). A
follower whose directory cannot be watched, or that is draining a rotated-away
file, is polled every `poll_interval` as before. With `watch=False`, or where
inotify is unavailable, every follower is polled every `poll_interval`.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from ..model.runs import Ingest, Registry, Run
from .tail import FileFollower
from .watch import Watcher

log = logging.getLogger("runwatch")

RESCAN_SECONDS = 10.0
STOP_CHECK_SECONDS = 0.25     # how soon a stop is noticed while nothing changes


class FilePoller:
    def __init__(self, registry: Registry, poll_interval: float, *, watch: bool = True,
                 rescan: float = RESCAN_SECONDS):
        self.registry, self.poll_interval = registry, poll_interval
        self.rescan = max(rescan, poll_interval)
        self.items: list[tuple[Run, FileFollower]] = []
        self.errors: dict[str, str | None] = {}
        self.after_poll = None     # persist.Checkpointer.maybe: checkpoints between polls
        self.watcher = Watcher(enabled=watch)
        self._by_path: dict[str, list[tuple[Run, FileFollower]]] = {}
        self._unwatched: list[tuple[Run, FileFollower]] = []
        self._seen: dict[int, tuple] = {}      # id(follower) -> stat signature at its last poll
        # Followers draining a rotated-away file, by id: a follower starts and stops draining only
        # inside its own poll(), so this is kept up to date there and an idle wake scans nothing.
        self._draining: dict[int, tuple[Run, FileFollower]] = {}

    @property
    def watching(self) -> bool:
        """True when changes wake the poller (inotify), False when it polls on a timer."""
        return self.watcher.available

    def add(self, run: Run, path: str, ingest: Ingest, *, from_start: bool = True, resume=None) -> FileFollower:
        f = FileFollower(path, ingest, poll_interval=self.poll_interval, from_start=from_start, resume=resume)
        item = (run, f)
        self.items.append(item)
        self._by_path.setdefault(path, []).append(item)
        if not self.watcher.watch(path):
            self._unwatched.append(item)
        return f

    def poll(self, items) -> list[tuple[Run, FileFollower]]:
        """Poll these followers; return those that read something (they may have more)."""
        busy = []
        for item in items:
            run, f = item
            try:
                if f.poll():
                    busy.append(item)
            except Exception:   # a bug in a pack or the sink must not stop the other sources
                log.exception("run %s: error while reading %s", run.spec.id, f.path)
            if f.draining:
                self._draining[id(f)] = item
            else:
                self._draining.pop(id(f), None)
            self.registry.set_source_up(run, "file", f.up)
            if f.error != self.errors.get(run.spec.id):
                self.errors[run.spec.id] = f.error
                if f.error:
                    log.warning("run %s: %s", run.spec.id, f.error)
                else:
                    log.info("run %s: reading %s", run.spec.id, f.path)
        return busy

    def poll_all(self) -> bool:
        return bool(self.poll(self.items))

    def run(self, stop: threading.Event) -> None:
        try:
            if self.watcher.available:
                self._run_watched(stop)
            else:
                self._run_polling(stop)
        finally:
            if self.after_poll is not None:
                self.after_poll(final=True)      # before close(): partial lines stay partial
            for _, f in self.items:
                f.close()
            self.watcher.close()

    def _run_polling(self, stop: threading.Event) -> None:
        while not stop.is_set():
            busy = self.poll_all()
            if self.after_poll is not None:
                self.after_poll()
            if not busy:
                stop.wait(self.poll_interval)

    def _run_watched(self, stop: threading.Event) -> None:
        next_rescan = 0.0
        todo: list = []
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_rescan:
                self._rewatch()
                todo = self._changed_since_last_poll()
                next_rescan = now + self.rescan
            else:
                if self._unwatched or self._draining:
                    seen = {id(f) for _, f in todo}
                    todo = list(todo) + [it for it in self._unwatched + list(self._draining.values())
                                         if id(it[1]) not in seen]
            busy = self.poll(todo)
            if self.after_poll is not None:
                self.after_poll()
            if busy:
                todo = busy           # more may be waiting behind a full read budget
                continue
            fast = bool(self._unwatched or self._draining)
            timeout = min(next_rescan - time.monotonic(), self.poll_interval if fast else STOP_CHECK_SECONDS)
            changed = self.watcher.wait(timeout)
            if changed is None:
                next_rescan = 0.0     # overflow or a directory gone: look at everything
                todo = []
            else:
                todo = [it for p in changed for it in self._by_path.get(p, ())]
            if stop.is_set():
                break

    def _changed_since_last_poll(self) -> list[tuple[Run, FileFollower]]:
        """The rescan: followers whose path looks different from when they were last polled
        (one stat each; a full poll only for those), plus every follower that is not up."""
        out = []
        for item in self.items:
            f = item[1]
            try:
                st = os.stat(f.path)
                sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                sig = None
            if sig is None or not f.up or f.draining or self._seen.get(id(f)) != sig:
                self._seen[id(f)] = sig
                out.append(item)
        return out

    def _rewatch(self) -> None:
        """Directories that were missing or went away: try to watch them again."""
        for p in self.watcher.take_lost():
            self._unwatched += self._by_path.get(p, [])
        still = []
        for item in self._unwatched:
            if not self.watcher.watch(item[1].path):
                still.append(item)
        self._unwatched = still
