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

from ..config import load_config
from ..parse.packs import Matcher
from ..model.runs import Ingest, Registry, Run
from ..sources.command import pump_stream
from ..sources.files import FilePoller
from ..settings import STATE_DB, data_dir
from ..web.server import Server

log = logging.getLogger("runwatch")


def follow_stdin(registry: Registry, run: Run, ingest: Ingest) -> None:
    registry.set_source_up(run, "stdin", True)
    pump_stream(sys.stdin.buffer, ingest, passthrough_fd=None)
    registry.set_source_up(run, "stdin", False)


def cmd_serve(args, ap) -> int:
    if not args.config:
        ap.error("serve: give a config with -c FILE (see `runwatch serve --help`)")
    logging.basicConfig(level=logging.INFO, format="runwatch: %(message)s", stream=sys.stderr)
    cfg = load_config(args.config)
    listen = args.listen or cfg.listen
    from ..model.history import History
    from ..model.persist import Checkpointer, StateDB
    ddir = data_dir(args.data_dir or cfg.data_dir)
    history = History.in_dir(ddir)
    statedb = StateDB(os.path.join(ddir, STATE_DB))
    registry = Registry(grace_seconds=cfg.grace_seconds, history=history)
    checkpoints = Checkpointer(statedb, registry, cfg.path, cfg.checkpoint_seconds)
    from ..export.loki.config import LokiConfig, from_args, spool_dir_for
    from ..parse.redact import redactor_from
    try:
        redactor = redactor_from(cfg.redact)
        lbase = cfg.loki or (LokiConfig(url="") if args.loki_url else None)
        if lbase is not None and not lbase.spool_dir:
            lbase.spool_dir = spool_dir_for(ddir)
        shipper = from_args(args, lbase)         # None without a Loki URL
        from ..export import remote_write
        pusher = remote_write.pusher_from(remote_write.from_args(args, cfg.remote_write), ddir)
    except ValueError as e:
        ap.error(f"serve: {e}")
    if shipper:
        log.info("shipping lines to Loki at %s", shipper.url_for_humans)
    stop = threading.Event()
    threads = []
    files = FilePoller(registry, cfg.poll_interval, watch=cfg.file_watch == "inotify")
    cloud = []                                   # (run, RunConfig, Ingest) with azureml_job/azure_vm/wandb
    if statedb.ok:
        files.after_poll = checkpoints.maybe
    for rc in cfg.runs:
        run = registry.add(rc.spec)
        ingest = Ingest(registry, run, Matcher(rc.packs), cfg.max_line_bytes,
                        on_block=shipper.ship if shipper else None, redactor=redactor)
        if rc.cloud:
            cloud.append((run, rc, ingest))
        if rc.file is None:                      # cloud sources only: persist the state alone
            checkpoints.attach(run, None, None, None, checkpoints.resume_for(run, None)[1])
        elif rc.file == "-":
            threads.append(threading.Thread(target=follow_stdin, args=(registry, run, ingest), daemon=True,
                                            name=f"stdin-{rc.spec.id}"))
        else:
            resume, saved = checkpoints.resume_for(run, rc.file)
            follower = files.add(run, rc.file, ingest, from_start=rc.from_start, resume=resume)
            how = checkpoints.attach(run, rc.file, ingest, follower, saved)
            if saved is not None:
                log.info("run %s: %s", rc.spec.id, how)
    if files.items:
        threads.append(threading.Thread(target=files.run, args=(stop,), name="runwatch-files", daemon=True))
    from ..sources.errors import SourceError
    from ..sources.poller import cloud_pollers
    try:
        pollers = cloud_pollers(registry, cloud, ddir)   # imports the cloud SDKs only if the config needs them
    except SourceError as e:
        log.error("%s", e)
        return 2
    from ..web.startup import api_token, given_token, server_options
    try:
        given, source = given_token(args)
    except ValueError as e:
        ap.error(f"serve: {e}")
    # never logged: a generated token goes to a 0600 file in the data directory, the log gets its path
    token = api_token(given, needed=args.events, say=log.info, source=source, data_dir=ddir)
    server = Server(registry, listen, events=args.events, token=token, shipper=shipper, redactor=redactor,
                    health=[pusher.collect] if pusher else (), warn=log.warning, **server_options(args)).start()
    if pusher:
        pusher.start(server.collector.collect, server.port)
        log.info("pushing metrics every %g s to %s", pusher.cfg.interval, ", ".join(pusher.urls))
    for t in threads:
        t.start()
    for p in pollers:
        p.start(stop)
    log.info("serving %d run(s) from %s at %smetrics", len(cfg.runs), cfg.path, server.url)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, f: stop.set())
    while not stop.wait(5.0):
        registry.expire(time.time())
        checkpoints.checkpoint(files=False)      # runs without a file; file runs: in their reader thread
    for t in threads:
        t.join(timeout=2)
    if pusher:
        pusher.close()           # the last push ends every series (stale markers); spools what is left
    if shipper:
        shipper.close()          # pushes what is pending for ≤ flush_timeout, spools the rest
    server.stop()
    checkpoints.checkpoint(files=False)
    statedb.close()
    history.close()
    log.info("stopped")
    return 0
