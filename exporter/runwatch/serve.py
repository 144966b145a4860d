"""`runwatch serve`: the long-running exporter for the runs a config names.

One thread per source (a followed file, stdin), the HTTP server on another;
SIGTERM or Ctrl-C stops it cleanly, flushing partial last lines.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from .config import RunConfig, load_config
from .packs import Matcher
from .runs import Ingest, Registry, Run
from .sources.command import pump_stream
from .sources.tail import FileFollower
from .web import Server

log = logging.getLogger("runwatch")


class FilePoller:
    """Polls every followed file from one thread: 1,000 runs cost 1,000 stat
    calls per interval, not 1,000 threads."""

    def __init__(self, registry: Registry, poll_interval: float):
        self.registry, self.poll_interval = registry, poll_interval
        self.items: list[tuple[Run, FileFollower]] = []
        self.errors: dict[str, str | None] = {}

    def add(self, run: Run, rc: RunConfig, ingest: Ingest) -> FileFollower:
        f = FileFollower(rc.file, ingest, poll_interval=self.poll_interval, from_start=rc.from_start)
        self.items.append((run, f))
        return f

    def poll_all(self) -> bool:
        busy = False
        for run, f in self.items:
            try:
                busy |= f.poll()
            except Exception:   # a bug in a pack or the sink must not stop the other sources
                log.exception("run %s: error while reading %s", run.spec.id, f.path)
            self.registry.set_source_up(run, "file", f.up)
            if f.error != self.errors.get(run.spec.id):
                self.errors[run.spec.id] = f.error
                if f.error:
                    log.warning("run %s: %s", run.spec.id, f.error)
                else:
                    log.info("run %s: reading %s", run.spec.id, f.path)
        return busy

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                if not self.poll_all():
                    stop.wait(self.poll_interval)
        finally:
            for _, f in self.items:
                f.close()


def follow_stdin(registry: Registry, run: Run, ingest: Ingest) -> None:
    registry.set_source_up(run, "stdin", True)
    pump_stream(sys.stdin.buffer, ingest, passthrough_fd=None)
    registry.set_source_up(run, "stdin", False)


def cmd_serve(args, ap) -> int:
    if not args.config:
        ap.error("serve: give a config with -c FILE (see `runwatch serve --help`)")
    logging.basicConfig(level=logging.INFO, format="runwatch: %(message)s", stream=sys.stderr)
    cfg = load_config(args.config)
    listen = args.listen or (_env_listen() or cfg.listen)
    registry = Registry(grace_seconds=cfg.grace_seconds)
    stop = threading.Event()
    threads = []
    files = FilePoller(registry, cfg.poll_interval)
    for rc in cfg.runs:
        run = registry.add(rc.spec)
        ingest = Ingest(registry, run, Matcher(rc.packs), cfg.max_line_bytes)
        if rc.file == "-":
            threads.append(threading.Thread(target=follow_stdin, args=(registry, run, ingest), daemon=True,
                                            name=f"stdin-{rc.spec.id}"))
        else:
            files.add(run, rc, ingest)
    if files.items:
        threads.append(threading.Thread(target=files.run, args=(stop,), name="runwatch-files", daemon=True))
    server = Server(registry, listen).start()
    for t in threads:
        t.start()
    log.info("serving %d run(s) from %s at http://%s/metrics", len(cfg.runs), cfg.path, server.address)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, f: stop.set())
    while not stop.wait(5.0):
        registry.expire(time.time())
    for t in threads:
        t.join(timeout=2)
    server.stop()
    log.info("stopped")
    return 0


def _env_listen():
    from .cli import _listen
    v = os.environ.get("RUNWATCH_LISTEN")
    return _listen(v) if v else None
