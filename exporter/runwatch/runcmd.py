"""`runwatch run`: launch a command, watch its output, export its progress.

The command's output goes to the terminal unchanged; metrics are served while
it runs and for a grace period after (Ctrl-C ends the grace early). SIGINT,
SIGTERM and SIGHUP are forwarded to the command; runwatch exits with the
command's exit code (128+N if a signal N killed it).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from .events import Event
from .packs import Matcher, builtin_names, load_packs
from .runs import RUN_ID_RE, Ingest, Registry, RunSpec
from .sources.command import Command, pump_stream, start_thread
from .web import Server

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def say(msg: str) -> None:
    print(f"runwatch: {msg}", file=sys.stderr, flush=True)


def default_run_id(cmd: list[str]) -> str:
    name = os.path.basename(cmd[0]) if cmd else "stdin"
    rid = "".join(c if c.isalnum() or c in "_.:-" else "-" for c in name).strip("-.") or "run"
    return rid[:100]


def cmd_run(args, ap) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if args.stdin and cmd:
        ap.error("run: give either --stdin or a command after --, not both")
    if not args.stdin and not cmd:
        ap.error("run: no command; usage: runwatch run [OPTIONS] -- CMD ARGS…   (or --stdin)")
    run_id = args.run_id or default_run_id(cmd)
    if not RUN_ID_RE.match(run_id):
        ap.error(f"run: --run-id {run_id!r}: use letters, digits and _ . : - (at most 128)")
    packs = load_packs(args.packs if args.packs is not None else builtin_names(), args.rules or [])

    registry = Registry()
    spec = RunSpec(id=run_id, kind=args.kind, source="stdin" if args.stdin else "command",
                   cost_rate=args.cost_per_hour, budget=args.budget)
    run = registry.add(spec)
    server = Server(registry, args.listen).start()
    say(f"watching {run_id!r} with packs {', '.join(p.name for p in packs)}; "
        f"metrics at http://{server.address}/metrics")
    ingest = Ingest(registry, run, Matcher(packs), args.max_line_bytes)
    source = spec.source

    if args.stdin:
        registry.set_source_up(run, source, True)
        try:
            pump_stream(sys.stdin.buffer, ingest)
        except KeyboardInterrupt:
            pass
        registry.set_source_up(run, source, False)
        registry.apply(run, [Event("status", {"state": "succeeded", "reason": "end of input"}, time.time())])
        code = 0
    else:
        try:
            child = Command(cmd)
        except (FileNotFoundError, PermissionError) as e:
            say(f"cannot run {cmd[0]!r}: {e.strerror}")
            registry.apply(run, [Event("status", {"state": "failed", "reason": e.strerror}, time.time())])
            server.stop()
            return 127 if isinstance(e, FileNotFoundError) else 126
        registry.set_source_up(run, source, True)
        registry.apply(run, [Event("status", {"state": "running"}, time.time())])
        previous = {sig: signal.signal(sig, lambda s, _f: child.signal(s)) for sig in FORWARDED}
        reader = start_thread(child.pump, ingest, name="runwatch-reader")
        code = child.wait()
        reader.join(timeout=5)      # a grandchild holding the output open must not hang us
        child.close()
        for sig, h in previous.items():
            signal.signal(sig, h)
        registry.set_source_up(run, source, False)
        state = "succeeded" if code == 0 else "failed"
        registry.apply(run, [Event("status", {"state": state, "reason": f"exit code {code}"}, time.time())])
        say(f"{cmd[0]} exited with code {code}; run {state}")

    if args.grace > 0:
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda s, f: done.set())
        say(f"serving final metrics for {args.grace:g} s more (Ctrl-C to quit now)")
        done.wait(args.grace)
    server.stop()
    return code
