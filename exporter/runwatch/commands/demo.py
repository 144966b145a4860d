"""`runwatch demo`: replay bundled sample runs of every kind, live, looping.

Each sample (runwatch/demo/*.yaml) is a script of output lines, tqdm bars
and events with their timing. Lines go through the same path as a real job's
output (framing, packs, run state); events stand for what the cloud sources
would report (VM power state, artifacts). When a sample ends it stays visible
for a while, then starts over as a fresh run.

Script steps:
  {lines: "text\\n…", every: 0.5}     print each line, every N seconds
  {replay: logs/x.log, every: 0.1}     a recorded log (next to the sample), byte for byte, a line
                                       every N seconds
  {bar: {desc: d, total: 100, seconds: 10}}  a tqdm bar redrawn with "\\r"
  {bar: {..., postfix: {loss: [2.9, 2.3]}}}  ... with a postfix ", loss=2.31" going from the
                                       first value to the second (a training bar's metrics)
  {sleep: 20}                          nothing happens (a stall)
  {event: {type: artifact, artifact: x, available: true}}
                                       (an agent event's input / output may be any YAML value)
  {exit: 0}                            the job ends: 0 succeeded, else failed
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time

from ..events import Event, make, payloads_as_text
from ..parse.packs import Matcher, load_builtin
from ..parse.redact import default_redactor
from ..model.runs import Ingest, Registry, RunSpec
from ..web.server import Server
from ..web.startup import api_token, given_token, open_page, server_options
from ..yamlfile import ConfigError, load_file, number

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "demo")


class Sample:
    def __init__(self, path: str):
        data = load_file(path)
        self.path = path
        self.spec = RunSpec(id=data["run_id"], kind=data.get("kind", "job"), source="demo",
                            url=data.get("url", ""), labels=dict(data.get("labels", {})),
                            cost_rate=number(data, "cost_per_hour", None, minimum=0),
                            budget=number(data, "budget_usd", None, minimum=0))
        self.packs = [load_builtin(n, path) for n in data.get("packs", [])]
        self.script = list(data["script"])
        self.linger = float(number(data, "linger_seconds", 20, minimum=0))
        self.replays: dict[str, bytes] = {}
        for step in self.script:      # validate events now, not halfway through the demo
            if "replay" in step:
                name = str(step["replay"])
                full = os.path.realpath(os.path.join(os.path.dirname(path), name))
                if not full.startswith(os.path.realpath(DEMO_DIR) + os.sep) or not os.path.isfile(full):
                    raise ConfigError(path, step.line, f"replay: no log {name!r} in the demo's folder")
                with open(full, "rb") as f:
                    self.replays[name] = f.read()
            if "event" in step:
                fields = dict(step["event"])
                try:
                    make(fields.pop("type"), fields, 0.0)
                except (KeyError, ValueError) as e:
                    raise ConfigError(path, step.line, f"bad demo event: {e}") from None


def load_samples() -> list[Sample]:
    return [Sample(os.path.join(DEMO_DIR, f)) for f in sorted(os.listdir(DEMO_DIR)) if f.endswith(".yaml")]


class Player:
    """Plays one sample into a registry; speed > 1 plays faster."""

    def __init__(self, sample: Sample, registry: Registry, speed: float, stop: threading.Event,
                 on_block=None):
        self.sample, self.registry, self.speed, self.stop = sample, registry, speed, stop
        self.on_block = on_block        # the Loki shipper, with --loki-url

    def sleep(self, seconds: float) -> bool:
        return not self.stop.wait(seconds / self.speed)

    def play_once(self) -> bool:
        reg, s = self.registry, self.sample
        reg.remove(s.spec.id)                      # a fresh run each time round
        run = reg.add(s.spec)
        ingest = Ingest(reg, run, Matcher(s.packs), on_block=self.on_block)
        reg.set_source_up(run, "demo", True)
        for step in s.script:
            if "lines" in step:
                every = float(step.get("every", 0.5))
                for line in str(step["lines"]).splitlines():
                    ingest.data(0, line.encode("utf-8") + b"\n")
                    if not self.sleep(every):
                        return False
            elif "replay" in step:
                every = float(step.get("every", 0.1))
                for line in s.replays[str(step["replay"])].splitlines(keepends=True):
                    ingest.data(0, line)
                    if not self.sleep(every):
                        return False
            elif "bar" in step:
                if not self._bar(ingest, step["bar"]):
                    return False
            elif "sleep" in step:
                if not self.sleep(float(step["sleep"])):
                    return False
            elif "event" in step:      # redacted as posted events are (an agent's payloads too)
                fields = default_redactor().fields(payloads_as_text(dict(step["event"])), skip=("type",))
                reg.apply(run, [make(fields.pop("type"), fields, time.time())])
            elif "exit" in step:
                ingest.end(0)
                code = int(step["exit"])
                state = "succeeded" if code == 0 else "failed"
                reg.apply(run, [Event("status", {"state": state, "reason": f"exit code {code}"}, time.time())])
        ingest.end_all()
        return self.sleep(s.linger)

    def _bar(self, ingest: Ingest, bar) -> bool:
        total, seconds, desc = int(bar.get("total", 100)), float(bar.get("seconds", 10)), bar.get("desc", "")
        frames = max(2, int(bar.get("frames", 20)))
        postfix = {str(name): (float(span[0]), float(span[-1])) for name, span in dict(bar.get("postfix", {})).items()}
        for k in range(frames + 1):
            n = total * k // frames
            elapsed = seconds * k / frames
            rate = n / elapsed if elapsed else 0.0
            left = (total - n) / rate if rate else None
            filled = 10 * n // total
            redraw = (f"{desc}: {100 * n // total:3d}%|{'█' * filled}{' ' * (10 - filled)}| {n}/{total} "
                      f"[{_clock(elapsed)}<{_clock(left) if left is not None else '?'}, {rate:.2f}it/s"
                      + "".join(f", {name}={a + (b - a) * k / frames:.3g}" for name, (a, b) in postfix.items()) + "]")
            ingest.data(0, redraw.encode("utf-8") + (b"\n" if k == frames else b"\r"))
            if k < frames and not self.sleep(seconds / frames):
                return False
        return True

    def loop(self, once: bool) -> None:
        while self.play_once() and not once:
            pass


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def cmd_demo(args) -> int:
    if args.speed <= 0:
        print("runwatch demo: --speed must be positive", file=sys.stderr)
        return 2
    samples = load_samples()
    from ..model.history import History
    scratch = tempfile.TemporaryDirectory(prefix="runwatch-demo-")
    history = History.in_dir(scratch.name)   # the demo's own: a second loop shows history-based ETAs
    registry = Registry(history=history)

    def say(msg: str) -> None:
        print(f"runwatch demo: {msg}", file=sys.stderr, flush=True)

    try:
        given, source = given_token(args)
    except ValueError as e:
        print(f"runwatch demo: {e}", file=sys.stderr)
        return 2
    token = api_token(given, needed=args.events, say=say, source=source, tty=sys.stderr.isatty())
    from ..export import loki
    try:
        shipper = loki.from_args(args)      # None without --loki-url
    except ValueError as e:
        print(f"runwatch demo: {e}", file=sys.stderr)
        return 2
    server = Server(registry, args.listen, events=args.events, token=token,
                    shipper=shipper, warn=say, **server_options(args)).start()
    if shipper:
        say(f"shipping lines to Loki at {shipper.url_for_humans}")
    stop = threading.Event()
    ship = shipper.ship if shipper else None
    players = [threading.Thread(target=Player(s, registry, args.speed, stop, ship).loop, args=(args.once,),
                                name=f"demo-{s.spec.id}", daemon=True) for s in samples]
    for t in players:
        t.start()
    print(f"runwatch demo: {len(samples)} sample runs "
          f"({', '.join(s.spec.id for s in samples)}) {'once' if args.once else 'looping'} "
          f"at {args.speed:g}x\n  status page: {server.url}\n"
          f"  metrics:     {server.url}metrics\nCtrl-C to stop.", file=sys.stderr, flush=True)
    if args.open:
        open_page(server.url, say)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, f: stop.set())
    while not stop.wait(0.5):
        if args.once and not any(t.is_alive() for t in players):
            break
    if shipper:
        shipper.close()
    server.stop()
    history.close()
    scratch.cleanup()
    return 0
