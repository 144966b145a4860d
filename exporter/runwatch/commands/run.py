"""`runwatch run`: launch a command, watch its output, export its progress.

The command's output goes to the terminal unchanged; metrics are served while
it runs and for a grace period after (Ctrl-C ends the grace early). SIGINT,
SIGTERM and SIGHUP are forwarded to the command; runwatch exits with the
command's exit code (128+N if a signal N killed it).

Cancel: `POST /api/runs/{id}/cancel` (or `runwatch cancel ID`) sends SIGTERM
to the command's process group, SIGKILL after --kill-after seconds if it is
still there; the run ends as `canceled` and runwatch exits with the command's
code (143 if the command exited 0 after being asked to stop).

The command starts as early as it can: everything that can refuse the run (the arguments, the
user's pack files and redact patterns, Loki and remote-write settings, the web config, the token
file, the listening socket) is settled first, then the command starts with the relay passing
its output through, and only then does runwatch load its parser and its server (about 0.2 s
of imports and pack compiling, which the command no longer waits for). The built-in packs are
compiled behind the start: they cannot fail (the suite compiles every one); a name that is
not one of them is refused before.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from ..settings import RUN_ID_RE, data_dir
from ..sources.command import Command, Relay, start_thread
from ..web import startup

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


class _Settled:
    """What cmd_run settles before the command starts (each step can refuse the run)."""

    def __init__(self, args, ap):
        from ..parse.builtin import builtin_names
        builtin = builtin_names()
        names = args.packs if args.packs is not None else builtin
        self.packs = None                # built-in packs only: compiled once the command has started
        if args.rules or not set(names) <= set(builtin):
            from ..parse.packs import load_packs     # the user's files, and a name that is no built-in pack (its error)
            self.packs = load_packs(names, args.rules or [])
        self.pack_names = names if self.packs is None else [p.name for p in self.packs]
        self.shipper = self.pusher = None
        try:
            self.given, self.token_source = startup.given_token(args)
            self.redactor = None
            if args.redact:                          # the user's patterns compile now; the built-in rules later
                from ..parse.redact import redactor_from
                self.redactor = redactor_from(args.redact)
            if getattr(args, "loki_url", None):     # the shipper's modules load only when it ships
                from ..export import loki
                self.shipper = loki.from_args(args)
            if getattr(args, "remote_write", None):  # its modules (http.client, prometheus_client) load only to push
                from ..export import remote_write
                self.pusher = remote_write.pusher_from(remote_write.from_args(args), args.data_dir)
        except ValueError as e:
            ap.error(f"run: {e}")
        self.web = startup.web_config(args)
        # a new token is shown once on a terminal, else written to a 0600 file in the data directory
        self.token = startup.api_token(self.given, needed=not args.stdin or args.events, say=say,
                                       source=self.token_source, data_dir=data_dir(args.data_dir),
                                       tty=sys.stderr.isatty())
        self.sock = startup.bind(args.listen)
        self.url = startup.url_of(self.sock, self.web)


class _Watch:
    """The parser and the server, built once the command has started."""

    def __init__(self, args, settled: _Settled, run_id: str, source: str, started: float):
        from ..model.history import History
        from ..model.runs import Ingest, Registry, RunSpec
        from ..parse.packs import Matcher, load_packs
        from ..web.server import Server
        self.settled = settled
        packs = settled.packs if settled.packs is not None else load_packs(settled.pack_names, [])
        if settled.redactor is None:
            from ..parse.redact import default_redactor
            settled.redactor = default_redactor()
        self.history = History.in_dir(data_dir(args.data_dir))   # earlier runs of this kind: an ETA from the start
        self.registry = Registry(history=self.history)
        spec = RunSpec(id=run_id, kind=args.kind, source=source,
                       cost_rate=args.cost_per_hour, budget=args.budget, total=args.total)
        self.run = self.registry.add(spec, started)
        shipper, pusher = settled.shipper, settled.pusher
        self.ingest = Ingest(self.registry, self.run, Matcher(packs), args.max_line_bytes,
                             on_block=shipper.ship if shipper else None, redactor=settled.redactor)
        self.server = Server(self.registry, args.listen, events=args.events, token=settled.token, shipper=shipper,
                             redactor=settled.redactor, health=[pusher.collect] if pusher else (), warn=say,
                             sock=settled.sock, **startup.server_options(args, settled.web)).start()
        if shipper:
            say(f"shipping lines to Loki at {shipper.url_for_humans}")
        if pusher:
            pusher.start(self.server.collector.collect, self.server.port)
            say(f"pushing metrics every {pusher.cfg.interval:g} s to {', '.join(pusher.urls)}")
        if args.open:
            startup.open_page(self.server.url, say)

    def status(self, state: str, reason: str | None = None, ts: float | None = None) -> None:
        from ..events import Event
        self.registry.apply(self.run, [Event("status", {"state": state, **({"reason": reason} if reason else {})},
                                             time.time() if ts is None else ts)])

    def shutdown(self) -> None:
        if self.settled.pusher:
            self.settled.pusher.close()      # the last push ends every series (stale markers); spools what is left
        if self.settled.shipper:
            self.settled.shipper.close()     # pushes what is pending for ≤ 5 s, spools the rest
        self.server.stop()
        self.history.close()


def _abandon(settled: _Settled) -> None:
    """Nothing was watched (the command did not start): release what was settled."""
    settled.sock.close()
    if settled.pusher:
        settled.pusher.close()
    if settled.shipper:
        settled.shipper.close()


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
    settled = _Settled(args, ap)
    say(f"watching {run_id!r} with packs {', '.join(settled.pack_names)}; "
        f"status page at {settled.url}, metrics at {settled.url}metrics")
    if args.stdin:
        return _run_stdin(args, settled, run_id)
    return _run_command(args, settled, run_id, cmd)


def _run_stdin(args, settled: _Settled, run_id: str) -> int:
    relay = Relay(sys.stdin.fileno(), 1)     # the input is passed through first, parsed behind it
    w = _Watch(args, settled, run_id, "stdin", time.time())
    w.registry.set_source_up(w.run, "stdin", True)
    reader = start_thread(relay.pump, w.ingest, name="runwatch-parser")
    try:
        reader.join()
    except KeyboardInterrupt:
        relay.stop()                          # Ctrl-C: what was read so far is still parsed
        reader.join()
    relay.close()
    w.registry.set_source_up(w.run, "stdin", False)
    w.status("succeeded", "end of input")
    return _grace(args, w, 0)


def _run_command(args, settled: _Settled, run_id: str, cmd: list[str]) -> int:
    try:
        child = Command(cmd, use_pty=True if getattr(args, "pty", False) else
                        False if getattr(args, "no_pty", False) else None)
    except (FileNotFoundError, PermissionError) as e:
        say(f"cannot run {cmd[0]!r}: {e.strerror}")
        _abandon(settled)
        return 127 if isinstance(e, FileNotFoundError) else 126
    started = time.time()
    previous = {sig: signal.signal(sig, lambda s, _f: child.signal(s)) for sig in FORWARDED}
    if child.use_pty:           # the user's terminal changed size: so does the child's
        previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda _s, _f: child.resize())
    # the child's output is passed through first (by the relay process, forked while this process
    # is still small and has no threads), parsed behind it
    relay = Relay(child.out_fd, child.passthrough_fd)
    try:
        w = _Watch(args, settled, run_id, "command", started)
    except BaseException:
        # runwatch could not watch (a bug, an interrupt while loading): the command must not run unwatched
        _signal_group(child, signal.SIGTERM)
        child.wait()
        relay.discard()
        child.close()
        for sig, h in previous.items():
            signal.signal(sig, h)
        _abandon(settled)
        raise
    w.registry.set_source_up(w.run, "command", True)
    w.status("running", ts=started)
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

    from ..web.server import Canceller
    w.server.add_canceller(run_id, Canceller(child.pid, cancel, kill_after))
    reader = start_thread(relay.pump, w.ingest, name="runwatch-parser")
    code = child.wait()
    exited.set()
    if not relay.input_ended(timeout=5):      # a grandchild holding the output open must not hang us
        relay.stop()
    reader.join()               # what was read is parsed: the last lines count
    relay.close()
    child.close()
    for sig, h in previous.items():
        signal.signal(sig, h)
    w.registry.set_source_up(w.run, "command", False)
    if canceled.is_set():
        state, reason = "canceled", f"canceled through the API; exit code {code}"
        code = code or 143
    else:
        state, reason = ("succeeded" if code == 0 else "failed"), f"exit code {code}"
    w.status(state, reason)
    say(f"{cmd[0]} exited with code {code}; run {state}")
    return _grace(args, w, code)


def _grace(args, w: _Watch, code: int) -> int:
    if args.grace > 0:
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda s, f: done.set())
        say(f"serving final metrics for {args.grace:g} s more (Ctrl-C to quit now)")
        done.wait(args.grace)
    w.shutdown()
    return code
