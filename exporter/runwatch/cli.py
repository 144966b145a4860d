"""The `runwatch` command line. Each subcommand's work lives in its own module;
this file only parses arguments (every flag has a RUNWATCH_* environment twin)
and imports what the subcommand needs, so `runwatch --help` stays instant."""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__

DEFAULT_LISTEN = "127.0.0.1:9897"
DEFAULT_MAX_LINE = 64 * 1024

EPILOG = """\
examples:
  runwatch demo                                   # sample runs, live at http://127.0.0.1:9897/
  runwatch run --pack docker -- docker build .    # watch a command you launch
  runwatch serve -c runwatch.yaml                 # follow many runs (files, stdin) from a config
  runwatch scan --pack waa eval.log               # print the metrics a log yields, then exit
  runwatch check -c runwatch.yaml                 # validate a config and its packs

Every flag has an environment twin: --listen is RUNWATCH_LISTEN, --pack is
RUNWATCH_PACK (comma-separated), and so on. Docs: README.md, docs/packs.md.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _env_name(flag: str) -> str:
    return "RUNWATCH_" + flag.lstrip("-").replace("-", "_").upper()


def _opt(p: argparse.ArgumentParser, flag: str, *, help: str, env: bool = True, **kw) -> None:
    """An option whose default comes from its RUNWATCH_* twin."""
    name = _env_name(flag)
    if env and name in os.environ:
        raw = os.environ[name]
        if kw.get("action") == "append":
            kw["default"] = [x.strip() for x in raw.split(",") if x.strip()]
        elif kw.get("action") == "store_true":
            kw["default"] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            conv = kw.get("type", str)
            try:
                kw["default"] = conv(raw)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
                sys.exit(f"runwatch: {name}={raw!r}: {e}")
    if env:
        help += f" [env {name}]"
    if "default" in kw and kw.get("action") not in ("store_true", "append") and kw["default"] is not None:
        help += f" (default: {kw['default']})"
    p.add_argument(flag, help=help, **kw)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT like 127.0.0.1:9897, got {value!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _seconds(value: str) -> float:
    x = float(value)
    if x < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return x


def _common_lines(p):
    _opt(p, "--max-line-bytes", type=_positive_int, default=DEFAULT_MAX_LINE, metavar="N",
         help="cut longer lines to N bytes (counted in runwatch_lines_cut_total)")


def _common_listen(p):
    _opt(p, "--listen", type=_listen, default=DEFAULT_LISTEN, metavar="HOST:PORT",
         help="where to serve /metrics and the status page; loopback unless you say otherwise")


def _common_packs(p, default=None):
    _opt(p, "--pack", action="append", dest="packs", metavar="P", default=default,
         help="built-in pack to apply; repeat for several (waa, docker, trials, tqdm, python)")
    _opt(p, "--rules", action="append", default=None, metavar="FILE",
         help="your own pack file (YAML, see docs/packs.md); repeatable")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="runwatch", formatter_class=_Formatter, epilog=EPILOG,
        description="Live Prometheus metrics for long-running ML and ops jobs: phase, progress, "
                    "ETA, cost, errors.")
    ap.add_argument("--version", action="version", version=f"runwatch {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", formatter_class=_Formatter, help="run a command and export its progress",
                       description="Run CMD, pass its output through unchanged, export metrics while it runs "
                                   "and for a grace period after; exit with its exit code.",
                       epilog="""examples:
  runwatch run --pack docker -- docker build -t app .
  runwatch run --pack waa --pack python --run-id eval-7 -- python run_eval.py --tasks 10
  runwatch run --pack waa -- az ml job stream --name JOB     # follow an Azure ML job's log
  some_job | runwatch run --stdin --pack tqdm                # watch a pipe
then: curl -s localhost:9897/metrics | grep runwatch_""")
    _common_listen(p)
    _common_packs(p)
    _opt(p, "--run-id", metavar="ID", default=None, help="run_id label (default: the command's name)")
    _opt(p, "--kind", default="job", help="what the run is, for runwatch_run_info{kind}")
    _opt(p, "--grace", type=_seconds, default=60.0, metavar="SECONDS",
         help="keep serving metrics this long after the command ends; Ctrl-C ends it early")
    _opt(p, "--stdin", action="store_true", default=False, help="read the output from stdin instead of a command")
    _opt(p, "--cost-per-hour", type=float, default=None, metavar="USD", help="billing rate while the run runs")
    _opt(p, "--budget", type=float, default=None, metavar="USD", help="the run's budget (runwatch_cost_budget_usd)")
    _common_lines(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run")

    p = sub.add_parser("serve", formatter_class=_Formatter, help="follow the runs a config names",
                       description="The long-running exporter: follow every run in the config "
                                   "(files it tails, stdin) and serve their metrics.",
                       epilog="""example runwatch.yaml:
  runs:
    - id: train-42
      file: /var/log/train.log     # followed by name across rotation and truncation
      packs: [tqdm, python]
      labels: {team: vision}
  see README.md for every key; validate with: runwatch check -c runwatch.yaml""")
    p.add_argument("-c", "--config", metavar="FILE", default=os.environ.get("RUNWATCH_CONFIG"),
                   help="the config file [env RUNWATCH_CONFIG]")
    p.add_argument("--listen", type=_listen, default=None, metavar="HOST:PORT",
                   help=f"overrides the config's listen (default {DEFAULT_LISTEN}) [env RUNWATCH_LISTEN]")

    p = sub.add_parser("scan", formatter_class=_Formatter, help="print the metrics a log yields, then exit",
                       description="Read log files once and print the metrics they yield in the Prometheus "
                                   "text format (like mtail --one_shot). Time-dependent metrics (timestamps, "
                                   "ETA, cost) are left out: they would only say when the scan ran.",
                       epilog="""examples:
  runwatch scan --pack docker build.log
  runwatch scan --rules mypack.yaml --pack python train.log
  cat eval.log | runwatch scan --pack waa -""")
    _common_packs(p)
    _opt(p, "--run-id", metavar="ID", default=None, help="one run for all files (default: one per file, named after it)")
    _opt(p, "--jobs", type=_positive_int, default=None, metavar="N",
         help="worker processes for large files (default: one per CPU)")
    _common_lines(p)
    p.add_argument("files", nargs="+", metavar="FILE", help="log files; - is stdin")

    p = sub.add_parser("demo", formatter_class=_Formatter, help="replay bundled sample runs, live",
                       description="Replay sample runs of every kind (agent evaluation, docker build, "
                                   "hyper-parameter search, a failing training run) at a watchable pace, "
                                   "looping. Nothing else needed.",
                       epilog="""examples:
  runwatch demo                        # then open http://127.0.0.1:9897/ or curl .../metrics
  runwatch demo --speed 10             # ten times faster (tests, impatient people)""")
    _common_listen(p)
    _opt(p, "--speed", type=float, default=1.0, metavar="X", help="replay speed factor")
    _opt(p, "--once", action="store_true", default=False, help="play each sample once instead of looping")

    p = sub.add_parser("check", formatter_class=_Formatter, help="validate a config or pack files",
                       description="Validate a config and compile its packs; exit 1 with file:line: reason "
                                   "of the first problem.",
                       epilog="""examples:
  runwatch check -c runwatch.yaml
  runwatch check --rules mypack.yaml""")
    p.add_argument("-c", "--config", metavar="FILE", default=os.environ.get("RUNWATCH_CONFIG"),
                   help="the config file [env RUNWATCH_CONFIG]")
    _opt(p, "--rules", action="append", default=None, metavar="FILE", help="pack files to check")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 2
    from .yamlfile import ConfigError
    try:
        if args.command == "scan":
            return cmd_scan(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "run":
            from .runcmd import cmd_run
            return cmd_run(args, ap)
        if args.command == "serve":
            from .serve import cmd_serve
            return cmd_serve(args, ap)
        if args.command == "demo":
            from .demo import cmd_demo
            return cmd_demo(args)
    except ConfigError as e:
        print(f"runwatch: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def cmd_scan(args) -> int:
    from prometheus_client import CollectorRegistry, generate_latest

    from .collector import RunwatchCollector
    from .packs import Matcher, load_packs
    from .scan import scan

    packs = load_packs(args.packs or [], args.rules or [])
    if not packs:
        print("runwatch scan: no packs given; use --pack NAME (waa, docker, trials, tqdm, python) "
              "or --rules FILE", file=sys.stderr)
        return 2
    for f in args.files:
        if f != "-" and not os.path.isfile(f):
            print(f"runwatch scan: {f}: no such file", file=sys.stderr)
            return 2
    registry = scan(args.files, Matcher(packs), run_id=args.run_id, max_line=args.max_line_bytes,
                    jobs=args.jobs)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RunwatchCollector(registry, wall_clock=False, self_metrics=False))
    sys.stdout.buffer.write(generate_latest(reg))
    return 0


def cmd_check(args) -> int:
    from .packs import load_pack_file

    if not args.config and not args.rules:
        print("runwatch check: give a config (-c FILE) or pack files (--rules FILE)", file=sys.stderr)
        return 2
    n_runs = 0
    if args.config:
        from .config import load_config
        cfg = load_config(args.config)
        n_runs = len(cfg.runs)
    for f in args.rules or []:
        load_pack_file(os.path.abspath(f))
    what = []
    if args.config:
        what.append(f"{args.config}: {n_runs} run(s)")
    if args.rules:
        what.append(f"{len(args.rules)} pack file(s)")
    print("ok: " + ", ".join(what))
    return 0
