"""`runwatch run`: launch a command, watch its output, export its progress.

The command's output goes to the terminal unchanged; metrics are served while
it runs and for a grace period after (Ctrl-C ends the grace early). SIGINT,
SIGTERM and SIGHUP are forwarded to the command; runwatch exits with the
command's exit code (128+N if a signal N killed it).

Cancel: `POST /api/runs/{id}/cancel` (or `runwatch cancel ID`) sends SIGTERM
to the command's process group, SIGKILL after --kill-after seconds if it is
still there; the run ends as `canceled` and runwatch exits with the command's
code (143 if the command exited 0 after being asked to stop).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from ..events import Event
from ..parse.packs import Matcher, builtin_names, load_packs
from ..parse.redact import redactor_from
from ..model.runs import RUN_ID_RE, Ingest, Registry, RunSpec
from ..sources.command import Command, Relay, start_thread
from ..settings import data_dir
from ..web.server import Canceller, Server
from ..web.startup import api_token, given_token, open_page, server_options

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def say(msg: str) -> None:
    print(f"runwatch: {msg}", file=sys.stderr, flush=True)


def default_run_id(cmd: list[str]) -> str:
    name = os.path.basename(cmd[0]) if cmd else "stdin"
    rid = "".join(c if c.isalnum() or c in "_.:-" else "-" for c in name).strip("-.") or "run"
    return rid[:100]


def _signal_group(child: Command, sig: int) -> None:
    """The command runs in its own session: signal its whole process group."""
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        child.signal(sig)


def cmd_run(args, ap) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if getattr(args, "pty", False) and getattr(args, "no_pty", False):
        ap.error("--pty and --no-pty contradict each other")
    if args.stdin and cmd:
        ap.error("run: give either --stdin or a command after --, not both")
    if not args.stdin and not cmd:
        ap.error("run: no command; usage: runwatch run [OPTIONS] -- CMD ARGS…   (or --stdin)")
    run_id = args.run_id or default_run_id(cmd)
    if not RUN_ID_RE.match(run_id):
        ap.error(f"run: --run-id {run_id!r}: use letters, digits and _ . : - (at most 128)")
    packs = load_packs(args.packs if args.packs is not None else builtin_names(), args.rules or [])

    from ..model.history import History
    history = History.in_dir(data_dir(args.data_dir))   # earlier runs of this kind: an ETA from the start
    registry = Registry(history=history)
    spec = RunSpec(id=run_id, kind=args.kind, source="stdin" if args.stdin else "command",
                   cost_rate=args.cost_per_hour, budget=args.budget, total=args.total)
    run = registry.add(spec)
    try:
        given, source = given_token(args)
        redactor = redactor_from(args.redact)
        shipper = None
        if getattr(args, "loki_url", None):     # the shipper's modules load only when it ships
            from ..export import loki
            shipper = loki.from_args(args)
        pusher = None
        if getattr(args, "remote_write", None):  # its modules (http.client, prometheus_client) load only to push
            from ..export import remote_write
            pusher = remote_write.pusher_from(remote_write.from_args(args), args.data_dir)
    except ValueError as e:
        ap.error(f"run: {e}")
    # a new token is shown once on a terminal, else written to a 0600 file in the data directory
    token = api_token(given, needed=not args.stdin or args.events, say=say, source=source,
                      data_dir=data_dir(args.data_dir), tty=sys.stderr.isatty())
    server = Server(registry, args.listen, events=args.events, token=token, shipper=shipper, redactor=redactor,
                    health=[pusher.collect] if pusher else (), warn=say, **server_options(args)).start()
    if shipper:
        say(f"shipping lines to Loki at {shipper.url_for_humans}")
    if pusher:
        pusher.start(server.collector.collect, server.port)
        say(f"pushing metrics every {pusher.cfg.interval:g} s to {', '.join(pusher.urls)}")
    say(f"watching {run_id!r} with packs {', '.join(p.name for p in packs)}; "
        f"status page at {server.url}, metrics at {server.url}metrics")
    if args.open:
        open_page(server.url, say)

    def shutdown() -> None:
        if pusher:
            pusher.close()           # the last push ends every series (stale markers); spools what is left
        if shipper:
            shipper.close()          # pushes what is pending for ≤ 5 s, spools the rest
        server.stop()
        history.close()
    ingest = Ingest(registry, run, Matcher(packs), args.max_line_bytes,
                    on_block=shipper.ship if shipper else None,
                    redactor=redactor)
    source = spec.source

    if args.stdin:
        registry.set_source_up(run, source, True)
        relay = Relay(sys.stdin.fileno(), 1)     # the input is passed through first, parsed behind it
        reader = start_thread(relay.pump, ingest, name="runwatch-parser")
        try:
            reader.join()
        except KeyboardInterrupt:
            relay.stop()                          # Ctrl-C: what was read so far is still parsed
            reader.join()
        relay.close()
        registry.set_source_up(run, source, False)
        registry.apply(run, [Event("status", {"state": "succeeded", "reason": "end of input"}, time.time())])
        code = 0
    else:
        try:
            child = Command(cmd, use_pty=True if getattr(args, "pty", False) else
                            False if getattr(args, "no_pty", False) else None)
        except (FileNotFoundError, PermissionError) as e:
            say(f"cannot run {cmd[0]!r}: {e.strerror}")
            registry.apply(run, [Event("status", {"state": "failed", "reason": e.strerror}, time.time())])
            shutdown()
            return 127 if isinstance(e, FileNotFoundError) else 126
        registry.set_source_up(run, source, True)
        registry.apply(run, [Event("status", {"state": "running"}, time.time())])
        previous = {sig: signal.signal(sig, lambda s, _f: child.signal(s)) for sig in FORWARDED}
        if child.use_pty:           # the user's terminal changed size: so does the child's
            previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda _s, _f: child.resize())
        canceled, exited = threading.Event(), threading.Event()
        kill_after = args.kill_after

        def cancel() -> None:            # called from an HTTP thread
            if canceled.is_set():
                return
            canceled.set()
            say(f"cancel requested: SIGTERM to {cmd[0]} (pid {child.pid}), SIGKILL in {kill_after:g} s")
            _signal_group(child, signal.SIGTERM)

            def killer():
                if not exited.wait(kill_after):
                    say(f"{cmd[0]} still running {kill_after:g} s after SIGTERM: SIGKILL")
                    _signal_group(child, signal.SIGKILL)
            start_thread(killer, name="runwatch-cancel")

        server.add_canceller(run_id, Canceller(child.pid, cancel, kill_after))
        # the child's output is passed through first (by the relay process), parsed behind it
        relay = Relay(child.out_fd, child.passthrough_fd)
        reader = start_thread(relay.pump, ingest, name="runwatch-parser")
        code = child.wait()
        exited.set()
        if not relay.input_ended(timeout=5):      # a grandchild holding the output open must not hang us
            relay.stop()
        reader.join()               # what was read is parsed: the last lines count
        relay.close()
        child.close()
        for sig, h in previous.items():
            signal.signal(sig, h)
        registry.set_source_up(run, source, False)
        if canceled.is_set():
            state, reason = "canceled", f"canceled through the API; exit code {code}"
            code = code or 143
        else:
            state, reason = ("succeeded" if code == 0 else "failed"), f"exit code {code}"
        registry.apply(run, [Event("status", {"state": state, "reason": reason}, time.time())])
        say(f"{cmd[0]} exited with code {code}; run {state}")

    if args.grace > 0:
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda s, f: done.set())
        say(f"serving final metrics for {args.grace:g} s more (Ctrl-C to quit now)")
        done.wait(args.grace)
    shutdown()
    return code
