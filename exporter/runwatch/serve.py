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


def follow_file(registry: Registry, run: Run, rc: RunConfig, ingest: Ingest, poll_interval: float,
                stop: threading.Event) -> None:
    follower = FileFollower(rc.file, ingest, poll_interval=poll_interval, from_start=rc.from_start)
    last_error = None
    try:
        while not stop.is_set():
            try:
                got = follower.poll()
            except Exception:   # a bug in a pack or the sink must not kill the source
                log.exception("run %s: error while reading %s", run.spec.id, rc.file)
                got = False
            registry.set_source_up(run, "file", follower.up)
            if follower.error != last_error:
                last_error = follower.error
                if last_error:
                    log.warning("run %s: %s", run.spec.id, last_error)
                else:
                    log.info("run %s: reading %s", run.spec.id, rc.file)
            if not got:
                stop.wait(poll_interval)
    finally:
        follower.close()


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
    for rc in cfg.runs:
        run = registry.add(rc.spec)
        ingest = Ingest(registry, run, Matcher(rc.packs), cfg.max_line_bytes)
        if rc.file == "-":
            t = threading.Thread(target=follow_stdin, args=(registry, run, ingest), daemon=True,
                                 name=f"stdin-{rc.spec.id}")
        else:
            t = threading.Thread(target=follow_file, name=f"file-{rc.spec.id}", daemon=True,
                                 args=(registry, run, rc, ingest, cfg.poll_interval, stop))
        threads.append(t)
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
