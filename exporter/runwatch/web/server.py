"""The HTTP endpoint: /metrics, /healthz, the status page, the JSON and events API.

A ThreadingHTTPServer from the standard library: a scrape never waits for
another, and nothing here blocks the line path (the collector copies a
snapshot under the registry lock and renders outside it).

Routes (docs/events.md has the details):

    GET  /                          the status page (static/index.html, self-contained)
    GET  /metrics                   Prometheus / OpenMetrics, gzip when asked
    GET  /healthz                   "ok"
    GET  /api/runs                  every run as JSON
    GET  /api/runs/{id}             one run, with its last 50 output lines (redacted)
    GET  /api/stream                Server-Sent Events: all runs, pushed on change
    POST /api/events                events (JSON, JSON array or NDJSON)   token; only with --events
    POST /api/runs/{id}/events      the same, run_id from the path        token; only with --events
    POST /api/runs/{id}/cancel      stop a run `runwatch run` launched    token
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .. import __version__
from . import api
from ..events import TERMINAL_STATES
from ..export.collector import RunwatchCollector
from ..export.exposition import render
from ..model.runs import Registry

log = logging.getLogger("runwatch.web")

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")
DEFAULT_MAX_BODY = 1 << 20          # bytes of one events request
DEFAULT_RATE = 50.0                 # events requests per second (average), bursts of 2x
SSE_MIN_GAP = 0.2                   # coalesce: at most 5 pushes a second per client
SSE_REFRESH = 5.0                   # with no change: refresh ETA/cost every 5 s, or a heartbeat comment
SSE_MAX_CLIENTS = 32

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
SHUTDOWN_POLL = 0.05                # seconds: how soon stop() ends the HTTP thread


class Canceller:
    """How to stop one run that this process launched (set by `runwatch run`)."""

    def __init__(self, pid: int, cancel, grace_seconds: float):
        self.pid, self.cancel, self.grace_seconds = pid, cancel, grace_seconds

    def info(self) -> dict:
        return {"pid": self.pid, "kill_after_seconds": self.grace_seconds}


class Server:
    """Serves one Registry; `start()` runs it on a daemon thread.

    events: accept POST /api/events (off by default). token: the bearer token
    every write needs (events, cancel); without one, writes are refused."""

    def __init__(self, registry: Registry, listen: tuple[str, int], *,
                 events: bool = False, token: str | None = None, max_body: int = DEFAULT_MAX_BODY,
                 rate: float = DEFAULT_RATE, burst: float | None = None, shipper=None, redactor=True,
                 health=()):
        """shipper: the Loki shipper, if any: its health goes on /metrics and log
        lines posted to the events API are shipped like every other line.
        health: collect() functions of other components whose self-metrics go on
        /metrics (the remote-write sender).
        redactor: what the command's own line path uses (runs.Ingest), so posted
        lines lose the same secrets (built-in rules plus --redact / redact:)."""
        self.registry = registry
        extra = ([shipper.collect] if shipper else []) + list(health) + [self.api_metrics]
        self.collector = RunwatchCollector(registry, extra=extra)
        self.log_lines = api.LogLines(registry, on_block=shipper.ship if shipper else None, redactor=redactor)
        self.prom = CollectorRegistry(auto_describe=False)
        self.prom.register(self.collector)
        self.events_enabled = events
        self.token = token or None
        self.max_body = max_body
        self.rate = api.RateLimit(rate, burst)
        self.cancellers: dict[str, Canceller] = {}
        self.closing = threading.Event()
        self.sse_slots = threading.BoundedSemaphore(SSE_MAX_CLIENTS)
        self.events_applied = 0
        self.events_rejected = 0
        self._count_lock = threading.Lock()
        self.page = _load_page()
        handler = type("Handler", (_Handler,), {"server_ref": self})
        ThreadingHTTPServer.daemon_threads = True
        ThreadingHTTPServer.allow_reuse_address = True
        try:
            self.httpd = ThreadingHTTPServer(listen, handler)
        except OSError as e:
            raise SystemExit(f"runwatch: cannot listen on {listen[0]}:{listen[1]}: {e.strerror}") from None
        # serve_forever checks for shutdown every poll_interval: 0.5 s by default, which every
        # `runwatch run` paid on exit, after its command had ended
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL},
                                       name="runwatch-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def start(self) -> "Server":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        with self.registry.changed:          # wake the event streams so they end
            self.registry.changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_canceller(self, run_id: str, canceller: Canceller) -> None:
        self.cancellers[run_id] = canceller

    def api_metrics(self):
        """The events API's own counters (scraped with everything else)."""
        from prometheus_client.core import CounterMetricFamily
        yield CounterMetricFamily("runwatch_api_events_applied", "Events the events API applied.",
                                  value=self.events_applied)
        yield CounterMetricFamily("runwatch_api_events_rejected", "Events the events API rejected as invalid.",
                                  value=self.events_rejected)


def _load_page() -> bytes:
    try:
        with open(os.path.join(STATIC_DIR, "index.html"), "rb") as f:
            return f.read()
    except OSError:
        return (b"<!doctype html><title>runwatch</title><p>runwatch " + __version__.encode() +
                b": status page missing from this install; see <a href=/metrics>/metrics</a>"
                b" and <a href=/api/runs>/api/runs</a>.")


RUN = r"(?P<run_id>[^/]+)"
ROUTES = [
    ("GET", re.compile(r"^/$"), "_page"),
    ("GET", re.compile(r"^/index\.html$"), "_page"),
    ("GET", re.compile(r"^/metrics$"), "_metrics"),
    ("GET", re.compile(r"^/healthz$"), "_healthz"),
    ("GET", re.compile(r"^/api/runs/?$"), "_runs"),
    ("GET", re.compile(rf"^/api/runs/{RUN}/?$"), "_run"),
    ("GET", re.compile(r"^/api/stream$"), "_stream"),
    ("POST", re.compile(r"^/api/events$"), "_events"),
    ("POST", re.compile(rf"^/api/runs/{RUN}/events$"), "_events"),
    ("POST", re.compile(rf"^/api/runs/{RUN}/cancel$"), "_cancel"),
]


class _Handler(BaseHTTPRequestHandler):
    server_ref: Server
    server_version = f"runwatch/{__version__}"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: a scrape every few seconds is not news
        log.debug("%s " + fmt, self.address_string(), *args)

    # ------------------------------------------------------------ routing

    def _route(self, method: str):
        path = urlsplit(self.path).path
        allowed = []
        for m, rx, name in ROUTES:
            mt = rx.match(path)
            if mt is None:
                continue
            if m != method and not (method == "HEAD" and m == "GET"):
                allowed.append(m)
                continue
            kw = {k: unquote(v) for k, v in mt.groupdict().items()}
            try:
                return getattr(self, name)(**kw)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return None
        if allowed:
            return self._json(405, {"error": f"{method} not allowed here; use {', '.join(sorted(set(allowed)))}"},
                              {"Allow": ", ".join(sorted(set(allowed)))})
        if path.startswith("/api/"):
            return self._json(404, {"error": f"no such endpoint: {path}"})
        self._send(404, b"not found; try /, /metrics, /healthz or /api/runs\n", TEXT)

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._body_read = False
        self._route("POST")

    # ------------------------------------------------------------ reads

    def _page(self):
        self._send(200, self.server_ref.page, "text/html; charset=utf-8", {
            "Cache-Control": "no-cache",
            "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                       "script-src 'unsafe-inline'; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff",
        })

    def _healthz(self):
        self._send(200, b"ok\n", TEXT)

    def _metrics(self):
        _, content_type = choose_encoder(self.headers.get("Accept"))    # negotiation as prometheus_client does it
        body = render(self.server_ref.prom.collect(), content_type.startswith("application/openmetrics-text"))
        headers = {}
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, content_type, headers)

    def _cancel_info(self) -> dict:
        return {rid: c.info() for rid, c in self.server_ref.cancellers.items()}

    def _runs(self):
        srv = self.server_ref
        self._json(200, {"runs": api.runs_view(srv.registry, cancellable=self._cancel_info()),
                         "version": __version__})

    def _run(self, run_id: str):
        srv = self.server_ref
        runs = api.runs_view(srv.registry, with_lines=True, cancellable=self._cancel_info(), only=run_id)
        if not runs:
            return self._json(404, {"error": f"no run {run_id!r}"})
        self._json(200, runs[0])

    def _stream(self):
        """Server-Sent Events: `event: runs` with every run (and its recent
        lines) whenever the registry changes, at most every SSE_MIN_GAP seconds;
        a refresh every SSE_REFRESH seconds while runs are active, else a
        heartbeat comment. EventSource reconnects by itself (retry: 1000)."""
        srv = self.server_ref
        reg = srv.registry
        if not srv.sse_slots.acquire(blocking=False):
            return self._json(503, {"error": f"too many status page clients (at most {SSE_MAX_CLIENTS})"},
                              {"Retry-After": "5"})
        try:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            if self.command == "HEAD":
                return
            self._write(b"retry: 1000\n\n")
            last_v = None
            last_send = 0.0
            active = False
            while not srv.closing.is_set():
                with reg.changed:
                    if reg.version == last_v:
                        reg.changed.wait(SSE_REFRESH)
                    v = reg.version
                if srv.closing.is_set():
                    break
                if v == last_v and not active:
                    self._write(b": heartbeat\n\n")
                    continue
                gap = SSE_MIN_GAP - (time.monotonic() - last_send)
                if gap > 0 and srv.closing.wait(gap):
                    break
                with reg.lock:
                    v = reg.version
                cancel = self._cancel_info()
                runs = api.runs_view(reg, with_lines=True, cancellable=cancel)
                active = any(r["state"] not in TERMINAL_STATES for r in runs)
                data = json.dumps({"version": v, "now": time.time(), "runs": runs,
                                   "server": {"version": __version__, "events": srv.events_enabled}},
                                  separators=(",", ":"))
                self._write(f"id: {v}\nevent: runs\ndata: {data}\n\n".encode())
                last_v, last_send = v, time.monotonic()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            pass
        finally:
            srv.sse_slots.release()

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    # ------------------------------------------------------------ writes

    def _authorized(self) -> bool:
        srv = self.server_ref
        if not srv.token:
            self._json(403, {"error": "writes are disabled: this runwatch has no API token "
                                      "(start it with --token or --events)"})
            return False
        if not api.token_ok(self.headers.get("Authorization"), srv.token):
            missing = not self.headers.get("Authorization")
            self._json(401, {"error": "missing bearer token" if missing else "wrong bearer token",
                             "hint": "send Authorization: Bearer TOKEN (printed when runwatch started)"},
                       {"WWW-Authenticate": 'Bearer realm="runwatch"'})
            return False
        return True

    def _read_body(self) -> bytes | None:
        srv = self.server_ref
        if self.headers.get("Transfer-Encoding"):
            self._json(411, {"error": "send a Content-Length (chunked bodies are not accepted)"})
            return None
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._json(411, {"error": "Content-Length required"})
            return None
        if n < 0:
            self._json(400, {"error": "bad Content-Length"})
            return None
        if n > srv.max_body:
            self._json(413, {"error": f"body of {n} bytes is over the limit of {srv.max_body}; "
                                      f"send smaller batches"})
            return None
        self._body_read = True
        return self.rfile.read(n)

    def _events(self, run_id: str | None = None):
        srv = self.server_ref
        if not srv.events_enabled:
            self.close_connection = True
            return self._json(404, {"error": "the events API is off; start runwatch with --events "
                                             "(or RUNWATCH_EVENTS=1)"})
        if not self._authorized():
            return
        wait = srv.rate.take()
        if wait:
            self.close_connection = True
            return self._json(429, {"error": "too many requests; batch events and slow down"},
                              {"Retry-After": str(max(1, int(wait + 0.999)))})
        body = self._read_body()
        if body is None:
            return
        try:
            items = api.parse_body(body)
        except api.BodyError as e:
            return self._json(400, {"error": f"body: {e}", "field": "body", "reason": str(e),
                                    "applied": 0, "rejected": 1, "errors": []})
        res = api.apply_body(srv.registry, items, run_id, log_lines=srv.log_lines)
        with srv._count_lock:
            srv.events_applied += res["applied"]
            srv.events_rejected += res["rejected"]
        if not res["rejected"]:
            return self._json(200, res)
        first = res["errors"][0]
        res["error"] = (f"{first['field']}: {first['reason']}" if len(items) == 1 else
                        f"{res['rejected']} of {len(items)} events rejected (first, at index {first['index']}: "
                        f"{first['field']}: {first['reason']}); the other {res['applied']} were applied")
        res["field"], res["reason"] = first["field"], first["reason"]
        self._json(400, res)

    def _cancel(self, run_id: str):
        srv = self.server_ref
        if not self._authorized():
            return
        if self.headers.get("Content-Length") and self._read_body() is None:
            return
        run = srv.registry.get(run_id)
        if run is None:
            return self._json(404, {"error": f"no run {run_id!r}"})
        canceller = srv.cancellers.get(run_id)
        if canceller is None:
            return self._json(409, {
                "error": f"run {run_id!r} cannot be canceled: runwatch did not launch it "
                         f"(source {run.spec.source!r}); only runs started with `runwatch run -- CMD` "
                         f"can be stopped from here", "run_id": run_id, "state": run.state.state})
        state = run.state.state
        if state in TERMINAL_STATES:
            return self._json(409, {"error": f"run {run_id!r} already ended ({state})",
                                    "run_id": run_id, "state": state})
        canceller.cancel()
        self._json(202, {"run_id": run_id, "state": "canceling", "pid": canceller.pid,
                         "kill_after_seconds": canceller.grace_seconds,
                         "message": f"sent SIGTERM; SIGKILL after {canceller.grace_seconds:g} s if still running"})

    # ------------------------------------------------------------ out

    def _json(self, code: int, obj, headers: dict | None = None):
        body = (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
        self._send(code, body, JSON, dict(headers or {}, **{"Cache-Control": "no-store"}))

    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None):
        if self.command == "POST" and not getattr(self, "_body_read", True):
            self.close_connection = True     # an unread body must not be taken for the next request
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def api_token(given: str | None, needed: bool, say) -> str | None:
    """The token writes need: the one given (--token / RUNWATCH_TOKEN), or a new
    random one when something needs it (events on, a cancellable run), printed
    once through `say` so the user can pass it to clients and `runwatch cancel`."""
    if given:
        say("API token: the one from --token / RUNWATCH_TOKEN")
        return given
    if not needed:
        return None
    import secrets
    token = secrets.token_urlsafe(24)
    say(f"API token (for events and cancel; set RUNWATCH_TOKEN to choose one): {token}")
    return token


def open_page(url: str, say) -> None:
    """--open: the status page in the user's browser, never a text browser in this terminal."""
    import sys
    import webbrowser
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        say(f"--open: no graphical session (DISPLAY unset); open {url} yourself")
        return

    def go():
        try:
            if not webbrowser.open(url, new=2):
                say(f"--open: no browser found; open {url} yourself")
        except Exception as e:   # a broken browser setup must not stop the run
            say(f"--open: could not start a browser ({e}); open {url} yourself")
    threading.Thread(target=go, name="runwatch-open", daemon=True).start()
