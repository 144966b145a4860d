"""The `runwatch` command line. Each subcommand's work lives in its own module;
this file only parses arguments (every flag has a RUNWATCH_* environment twin)
and imports what the subcommand needs, so `runwatch --help` stays instant."""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .settings import DEFAULT_LISTEN, DEFAULT_MAX_LINE, DEFAULT_URL, default_data_dir, parse_listen, parse_size

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


def _opt(p: argparse.ArgumentParser, flag: str, *, env: bool = True, aliases=(), **kw) -> None:
    """An option whose default comes from its RUNWATCH_* twin (`help=` as for add_argument)."""
    name = _env_name(flag)
    text: str = kw.pop("help")
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
        text += f" [env {name}]"
    if "default" in kw and kw.get("action") not in ("store_true", "append") and kw["default"] is not None:
        text += f" (default: {kw['default']})"
    p.add_argument(flag, *aliases, help=text, **kw)


def _listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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


def _usd(value: str) -> float:
    """A cost or budget: a finite number, not negative."""
    x = float(value)
    if x != x or x in (float("inf"), float("-inf")) or x < 0:
        raise argparse.ArgumentTypeError("must be a finite amount, not negative")
    return x


def _positive_seconds(value: str) -> float:
    x = float(value)
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return x


def data_dir_option(p) -> None:
    """--data-dir DIR with its RUNWATCH_DATA_DIR twin (None when neither is given).
    Idempotent: several features (state, Loki spool) may ask for it on one parser."""
    if "--data-dir" in p._option_string_actions:
        return
    _opt(p, "--data-dir", default=None, metavar="DIR",
         help=f"where runwatch keeps state and history between runs (default: {default_data_dir()})")


def _common_lines(p):
    _opt(p, "--max-line-bytes", type=_positive_int, default=DEFAULT_MAX_LINE, metavar="N",
         help="cut longer lines to N bytes (counted in runwatch_lines_cut_total)")


def _common_listen(p):
    _opt(p, "--listen", type=_listen, default=DEFAULT_LISTEN, metavar="HOST:PORT",
         help="where to serve /metrics and the status page; loopback unless you say otherwise")


def _common_packs(p, default=None):
    _opt(p, "--pack", action="append", dest="packs", metavar="P", default=default,
         help="built-in pack to apply; repeat for several (docker, pip, pytest, python, tqdm, "
              "trials, waa); without --pack, every built-in pack applies")
    _opt(p, "--rules", action="append", default=None, metavar="FILE",
         help="your own pack file (YAML, see docs/packs.md); repeatable")


def _size(value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _common_loki(p, redact: bool = True):
    """Shipping lines to Loki (docs/loki.md) and redaction of secrets."""
    _opt(p, "--loki-url", default=None, metavar="URL",
         help="push every line to this Loki (e.g. http://loki:3100); secrets are redacted first")
    _opt(p, "--loki-tenant", default=None, metavar="ID", help="X-Scope-OrgID tenant header for Loki")
    _opt(p, "--loki-auth", default=None, metavar="AUTH",
         help="Loki credentials: USER:PASSWORD (basic), 'Bearer TOKEN', or @FILE holding one of those "
              "(prefer @FILE or the env twin: a flag shows in ps)")
    _opt(p, "--loki-spool-max-bytes", type=_size, default=None, metavar="SIZE",
         help="bound of the disk spool used while Loki is slow or down (default 1GiB)")
    _opt(p, "--loki-flush-timeout", type=_seconds, default=None, metavar="SECONDS",
         help="at exit, push pending lines for at most this long, then spool the rest (default 5)")
    if redact:
        _opt(p, "--redact", action="append", default=None, metavar="REGEX",
             help="extra pattern to redact from lines (group 1 only, if it has one); repeatable")
    data_dir_option(p)


def _common_remote_write(p):
    """Pushing every series by Prometheus remote-write (docs/remote-write.md)."""
    _opt(p, "--remote-write", action="append", default=None, metavar="URL",
         help="push every series to this remote-write receiver (e.g. http://prometheus:9090/api/v1/write); "
              "repeatable; needs runwatch[push]")
    _opt(p, "--remote-write-interval", type=_seconds, default=None, metavar="SECONDS",
         help="how often to push (default 15); once more at exit, when every series ends with a stale marker")
    _opt(p, "--external-label", action="append", default=None, metavar="NAME=VALUE",
         help="label added to every pushed series (default job=runwatch, instance=host name); repeatable")
    _opt(p, "--remote-write-tenant", default=None, metavar="ID", help="X-Scope-OrgID tenant header (Mimir, Cortex)")
    _opt(p, "--remote-write-auth", default=None, metavar="AUTH",
         help="remote-write credentials: USER:PASSWORD (basic), 'Bearer TOKEN', or @FILE holding one of those "
              "(prefer @FILE or the env twin: a flag shows in ps)")
    _opt(p, "--remote-write-ca-file", default=None, metavar="FILE", help="CA bundle to verify an https receiver")
    _opt(p, "--remote-write-cert-file", default=None, metavar="FILE",
         help="TLS client certificate (with --remote-write-key-file)")
    _opt(p, "--remote-write-key-file", default=None, metavar="FILE", help="TLS client key")
    _opt(p, "--remote-write-spool-max-bytes", type=_size, default=None, metavar="SIZE",
         help="bound of the disk spool used while a receiver is slow or down (default 1GiB)")
    _opt(p, "--remote-write-flush-timeout", type=_seconds, default=None, metavar="SECONDS",
         help="at exit, push pending samples for at most this long, then spool the rest (default 5)")
    data_dir_option(p)


def _common_http(p):
    """The HTTP server: TLS and basic auth, allowed Host names, timeouts and limits (docs/security.md)."""
    _opt(p, "--web-config-file", default=None, metavar="FILE", aliases=("--web.config.file",),
         help="TLS and basic auth from a web config in the Prometheus exporter-toolkit format "
              "(tls_server_config, basic_auth_users; docs/security.md)")
    _opt(p, "--allowed-host", action="append", default=None, metavar="NAME",
         help="a name the Host header may carry besides localhost, 127.0.0.1, ::1 and the listen address "
              "(a DNS-rebinding guard on loopback); repeatable; '*' turns the check off")
    _opt(p, "--http-read-timeout", type=_positive_seconds, default=None, metavar="SECONDS",
         help="a request head (and a body) must arrive within this, else 408 and close (default 10)")
    _opt(p, "--http-idle-timeout", type=_positive_seconds, default=None, metavar="SECONDS",
         help="close a keep-alive connection idle this long (default 60)")
    _opt(p, "--http-max-connections", type=_positive_int, default=None, metavar="N",
         help="open connections at most; the oldest idle one is closed for a new one (default 512, "
              "lowered to fit the open-files limit)")
    _opt(p, "--http-max-requests", type=_positive_int, default=None, metavar="N",
         help="requests answered at once besides scrapes and streams; more get 503 (default 32)")
    _opt(p, "--http-max-streams", type=_positive_int, default=None, metavar="N",
         help="status-page event streams at once; more get 503 (default 32)")


def _common_api(p, open_flag: bool = True):
    _opt(p, "--events", action="store_true", default=False,
         help="accept events over HTTP: POST /api/events (docs/events.md); needs the API token")
    _opt(p, "--token", default=None, metavar="TOKEN", env=False,
         help="bearer token for writes (events, cancel); discouraged: a flag shows in ps, use "
              "RUNWATCH_TOKEN or --token-file. Without one, a token is generated when needed: shown once "
              "on a terminal (run), else written to DATA_DIR/api-token (mode 0600)")
    _opt(p, "--token-file", default=None, metavar="FILE",
         help="read the bearer token for writes from FILE (one line)")
    _common_http(p)
    if open_flag:
        _opt(p, "--open", action="store_true", default=False, help="open the status page in your browser")


TOTAL_HELP = ("the planned units of the run's outermost level (epochs, boosting rounds: XGBoost's "
              "num_boost_round) for a tool that prints a position but no total: progress = units done / N "
              "(a total the tool prints wins)")


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
    _opt(p, "--cost-per-hour", type=_usd, default=None, metavar="USD", help="billing rate while the run runs")
    _opt(p, "--budget", type=_usd, default=None, metavar="USD", help="the run's budget (runwatch_cost_budget_usd)")
    _opt(p, "--total", type=_positive_int, default=None, metavar="N", help=TOTAL_HELP)
    _opt(p, "--kill-after", type=_seconds, default=10.0, metavar="SECONDS",
         help="when the run is canceled (runwatch cancel): SIGKILL this long after SIGTERM")
    _opt(p, "--pty", action="store_true", default=False,
         help="give the command a pseudo-terminal even when runwatch's output is no terminal "
              "(by default it gets one exactly when runwatch's stdout is a terminal)")
    _opt(p, "--no-pty", action="store_true", default=False,
         help="give the command a pipe even when runwatch's output is a terminal")
    _common_api(p)
    _common_loki(p)
    _common_remote_write(p)
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
    _opt(p, "--listen", type=_listen, default=None, metavar="HOST:PORT",
         help=f"overrides the config's listen (default {DEFAULT_LISTEN})")
    data_dir_option(p)
    _common_api(p, open_flag=False)
    _common_loki(p, redact=False)
    _common_remote_write(p)

    p = sub.add_parser("scan", formatter_class=_Formatter, help="print the metrics a log yields, then exit",
                       description="Read log files once and print the metrics they yield in the Prometheus "
                                   "text format (like mtail --one_shot). Time-dependent metrics (timestamps, "
                                   "ETA, cost) are left out: they would only say when the scan ran. With --timestamps, "
                                   "every sample gets the time of its log line instead (backfill).",
                       epilog="""examples:
  runwatch scan --pack docker build.log
  runwatch scan train.log                          # every built-in pack
  runwatch scan --rules mypack.yaml --pack python train.log
  cat eval.log | runwatch scan --pack waa -""")
    _common_packs(p)
    _opt(p, "--run-id", metavar="ID", default=None,
         help="one run for all files (default: one per file, named after it)")
    _opt(p, "--jobs", type=_positive_int, default=None, metavar="N",
         help="worker processes for large files (default: one per CPU)")
    _opt(p, "--total", type=_positive_int, default=None, metavar="N", help=TOTAL_HELP)
    _opt(p, "--timestamps", action="store_true", default=False,
         help="backfill: take each sample's time from the log line's own timestamp and write OpenMetrics "
              "with timestamps for `promtool tsdb create-blocks-from openmetrics` (docs/time-and-money.md)")
    _opt(p, "--sample-every", type=_seconds, default=15.0, metavar="SECONDS",
         help="with --timestamps: one sample per series every SECONDS of log time, like a scrape interval")
    _opt(p, "--output", default=None, metavar="FILE",
         help="with --timestamps: write to FILE instead of stdout")
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
    _common_api(p)
    _common_loki(p, redact=False)

    p = sub.add_parser("cancel", formatter_class=_Formatter, help="stop a run that `runwatch run` launched",
                       description="Ask a runwatch to cancel a run it launched with `runwatch run`: SIGTERM "
                                   "to the command, SIGKILL after --kill-after seconds; the run ends as "
                                   "canceled. Runs runwatch did not launch cannot be stopped (409).",
                       epilog="""examples:
  RUNWATCH_TOKEN=... runwatch run --run-id eval-7 -- python run_eval.py
  RUNWATCH_TOKEN=... runwatch cancel eval-7
  runwatch cancel eval-7 --url http://127.0.0.1:9897 --token TOKEN""")
    p.add_argument("run_id", metavar="RUN_ID", help="the run to stop")
    _opt(p, "--url", default=DEFAULT_URL, metavar="URL", help="the runwatch that launched the run")
    _opt(p, "--token", default=None, metavar="TOKEN",
         help="the API token that runwatch printed at start (prefer the env twin: a flag shows in ps)")
    _opt(p, "--token-file", default=None, metavar="FILE",
         help="read the API token from FILE, e.g. the api-token file in runwatch's data directory")
    _opt(p, "--timeout", type=_seconds, default=10.0, metavar="SECONDS", help="HTTP timeout")

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


TOKEN_FROM_FLAG = "RUNWATCH_TOKEN_FROM_FLAG"     # set by _hide_token for the re-executed process


def _secret_flags(args) -> dict[str, tuple[str, str]]:
    """The secrets given as flags on this command line: flag -> (its value, the RUNWATCH_*
    variable that takes it instead). A Loki or remote-write URL counts when it holds a
    user:password@; an auth value when it is the secret itself, not @FILE."""
    out = {}
    if getattr(args, "token", None):
        out["--token"] = (args.token, "RUNWATCH_TOKEN")
    url = getattr(args, "loki_url", None)
    if url and _has_userinfo(url):
        out["--loki-url"] = (url, _env_name("--loki-url"))
    urls = getattr(args, "remote_write", None) or []
    # every receiver moves together (the env twin is one comma-separated list); a URL holding a
    # comma cannot go into that list, and then all stay where they are
    if any(_has_userinfo(u) for u in urls) and not any("," in u for u in urls):
        out["--remote-write"] = (",".join(urls), _env_name("--remote-write"))
    for flag in ("--loki-auth", "--remote-write-auth"):
        v = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if v and not v.startswith("@"):
            out[flag] = (v, _env_name(flag))
    return out


def _has_userinfo(url: str) -> bool:
    return "@" in url.split("//", 1)[-1].split("/", 1)[0]


def _hide_token(argv: list[str] | None, args) -> None:
    """Secrets on the command line (--token, a --loki-url or --remote-write with user:password@,
    --loki-auth, --remote-write-auth): run runwatch again (exec: same process id) with them moved into its
    environment, so /proc/PID/cmdline and `ps` no longer show them for as long as runwatch runs.
    Only the moment before this exec is exposed; RUNWATCH_TOKEN, --token-file or an auth @FILE
    avoid even that."""
    if argv is not None or args.command not in ("run", "serve", "demo"):
        return
    secrets = _secret_flags(args)
    if not secrets:
        return
    given = sys.argv[1:]
    tail = len(getattr(args, "cmd", None) or [])     # run's command and its arguments are not ours
    head, rest = given[:len(given) - tail], given[len(given) - tail:]
    kept, i = [], 0
    while i < len(head):
        a = head[i]
        if a == "--":
            kept += head[i:]
            break
        if a in secrets and i + 1 < len(head):
            i += 2
            continue
        if a.split("=", 1)[0] in secrets and "=" in a:
            i += 1
            continue
        kept.append(a)
        i += 1
    if kept == head:
        return
    env = dict(os.environ, **{var: value for value, var in secrets.values()})
    if "--token" in secrets:
        env[TOKEN_FROM_FLAG] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", "runwatch", *kept, *rest], env)
    except OSError:
        pass            # carry on with the secrets where they are; the warning at start says so


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 2
    _hide_token(argv, args)
    from .yamlfile import ConfigError
    try:
        if args.command == "scan":
            from .commands.scan import cmd_scan
            return cmd_scan(args)
        if args.command == "check":
            from .commands.check import cmd_check
            return cmd_check(args)
        if args.command == "run":
            from .commands.run import cmd_run
            return cmd_run(args, ap)
        if args.command == "serve":
            from .commands.serve import cmd_serve
            return cmd_serve(args, ap)
        if args.command == "demo":
            from .commands.demo import cmd_demo
            return cmd_demo(args)
        if args.command == "cancel":
            from .commands.cancel import cmd_cancel
            return cmd_cancel(args)
    except ConfigError as e:
        print(f"runwatch: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2
