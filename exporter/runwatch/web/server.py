"""The HTTP endpoint: /metrics, /healthz, the status page, the JSON and events API.

The connections are handled by front.py (one selector thread: timeouts,
limits, strict request lines; a thread only for a request whose head is
complete); each request is parsed and answered here by the standard library's
`BaseHTTPRequestHandler`. A scrape never waits for another, and nothing here
blocks the line path (the collector copies a snapshot under the registry lock
and renders outside it). docs/security.md has the limits, headers and checks.

Routes (docs/events.md has the details):

    GET  /                          the status page (static/index.html and its scripts)
    GET  /metrics                   Prometheus / OpenMetrics, gzip when asked
    GET  /healthz                   "ok"
    GET  /api/runs                  every run as JSON
    GET  /api/runs/{id}             one run, with its last 50 output lines (redacted)
    GET  /api/runs/{id}/agents/{agent}  one workflow agent: events, payloads, error (the inspector)
    GET  /api/runs/{id}/history     the run's samples over time (progress, cost, metrics), bounded
    GET  /api/runs/{id}/export      ?format=csv|json: the run's events and samples, as a download
    GET  /api/stream                Server-Sent Events: a snapshot, then the runs that changed
    GET  /{name}.js, /{name}.css    the status page's other files (static/: app.js, workflow.js)
    POST /api/events                events (JSON, JSON array or NDJSON)   token; only with --events
    POST /api/runs/{id}/events      the same, run_id from the path        token; only with --events
    POST /api/runs/{id}/cancel      stop a run `runwatch run` launched    token

Every answer carries X-Frame-Options: DENY, X-Content-Type-Options: nosniff
and a Content-Security-Policy (the page's allows its own inline script and
style by their hashes, nothing else). On a loopback address the Host header
must name loopback or the listen address (--allowed-host adds names), so a
DNS-rebinding page cannot read the API. With a web config (webconfig.py) the
server speaks TLS and every read needs basic auth; writes need the bearer token.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
import logging
import os
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from .. import __version__
from . import api
from .front import DROPPED_REASONS, REFUSED_REASONS, Front, Limits
from .startup import bind, hostport as _hostport
from ..events import TERMINAL_STATES
from ..export.collector import RunwatchCollector
from ..export.exposition import render
from ..model.runs import Registry
from ..settings import is_loopback

log = logging.getLogger("runwatch.web")

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")
DEFAULT_MAX_BODY = 1 << 20          # bytes of one events request
DEFAULT_RATE = 50.0                 # events requests per second (average), bursts of 2x
SSE_MIN_GAP = 0.2                   # coalesce: at most 5 pushes a second per client
SSE_REFRESH = 5.0                   # with no change: refresh ETA/cost every 5 s, or a heartbeat comment
SSE_MAX_CLIENTS = Limits.max_streams

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


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
                 health=(), web=None, allowed_hosts=(), limits: Limits | None = None, warn=None, sock=None):
        """shipper: the Loki shipper, if any: its health goes on /metrics and log
        lines posted to the events API are shipped like every other line.
        health: collect() functions of other components whose self-metrics go on
        /metrics (the remote-write sender).
        redactor: what the command's own line path uses (runs.Ingest), so posted
        lines lose the same secrets (built-in rules plus --redact / redact:).
        web: a webconfig.WebConfig (TLS, basic auth, extra headers) or None.
        allowed_hosts: more names the Host header may carry ('*': any).
        limits: front.Limits (timeouts, connection and stream bounds).
        warn: where the exposure warning goes (default: the log).
        sock: a socket listening already (startup.bind: `runwatch run` binds before it starts
        the command); `listen` is then the address that was asked for (the Host check)."""
        self.registry = registry
        extra = ([shipper.collect] if shipper else []) + list(health) + [self.api_metrics]
        self.collector = RunwatchCollector(registry, extra=extra)
        self.log_lines = api.LogLines(registry, on_block=shipper.ship if shipper else None, redactor=redactor)
        self.events_enabled = events
        self.token = token or None
        self.max_body = max_body
        self.rate = api.RateLimit(rate, burst)
        self.cancellers: dict[str, Canceller] = {}
        self.closing = threading.Event()
        self.events_applied = 0
        self.events_rejected = 0
        self._count_lock = threading.Lock()
        self.page = _load_page()
        self.page_csp = page_csp(self.page)
        self.web = web
        self.limits = limits or Limits()
        if sock is None:
            sock = bind(listen)
        self.server_address = sock.getsockname()[:2]
        self.allowed_hosts = _allowed_hosts(listen[0], self.server_address[0], allowed_hosts)
        self.handler = type("Handler", (_Handler,), {"server_ref": self})
        self.front = Front(sock, self.limits, self._dispatch, tls=web.ssl_context if web else None)
        self.stats = self.front.stats
        self.thread = threading.Thread(target=self.front.run, name="runwatch-http", daemon=True)
        msg = exposure_warning(self.server_address[0], web)
        if msg:
            (warn or log.warning)(msg)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self.web is not None and self.web.ssl_context is not None else "http"

    @property
    def address(self) -> str:
        return _hostport(*self.server_address)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}/"

    def start(self) -> "Server":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        with self.registry.changed:          # wake the event streams so they end
            self.registry.changed.notify_all()
        self.front.stop()

    def add_canceller(self, run_id: str, canceller: Canceller) -> None:
        self.cancellers[run_id] = canceller

    def _dispatch(self, conn) -> bool:
        """One request on a thread of its own (front.py calls this); True keeps the connection."""
        h = self.handler(conn)
        try:
            h.handle_one_request()
        except TimeoutError:
            self.stats.drop("write_timeout")
            return False
        except (OSError, ssl.SSLError):
            return False
        return not h.close_connection

    def api_metrics(self):
        """The events API's and the HTTP server's own counters (scraped with everything else)."""
        from ..export.families import CounterMetricFamily, GaugeMetricFamily
        yield CounterMetricFamily("runwatch_api_events_applied", "Events the events API applied.",
                                  value=self.events_applied)
        yield CounterMetricFamily("runwatch_api_events_rejected", "Events the events API rejected as invalid.",
                                  value=self.events_rejected)
        st = self.stats
        with st.lock:
            refused, dropped = dict(st.refused), dict(st.dropped)
            conns, streams = st.connections, st.streams
        yield GaugeMetricFamily("runwatch_http_connections", "HTTP connections open now.", value=conns)
        yield GaugeMetricFamily("runwatch_http_streams", "Status-page event streams open now.", value=streams)
        f = CounterMetricFamily("runwatch_http_refused",
                                "Requests the HTTP server refused, by reason (connections, busy, streams: "
                                "over a limit, 503; header_too_large: 431; bad_request: 400/505; "
                                "host: Host not allowed; auth: basic auth failed).", labels=["reason"])
        for r in REFUSED_REASONS:
            f.add_metric([r], refused[r])
        yield f
        f = CounterMetricFamily("runwatch_http_dropped",
                                "Connections the HTTP server closed without an answer, by reason (evicted: "
                                "oldest idle one at the connection limit; request_timeout, idle_timeout, "
                                "write_timeout; tls_handshake: failed).", labels=["reason"])
        for r in DROPPED_REASONS:
            f.add_metric([r], dropped[r])
        yield f


def _allowed_hosts(listen_host: str, bound: str, extra) -> frozenset[str] | None:
    """The names the Host header may carry, or None for any. On loopback:
    localhost, 127.0.0.1, ::1, the listen address and `extra`; beyond loopback
    only if `extra` names some (then those and the loopback names)."""
    extra = {h.strip().lower().strip("[]").rstrip(".") for h in extra or () if h.strip()}
    if "*" in extra:
        return None
    if not (is_loopback(bound) or is_loopback(listen_host)) and not extra:
        return None
    names = set(LOOPBACK_NAMES) | extra | {listen_host.lower().strip("[]").rstrip("."), bound.lower()}
    return frozenset(n for n in names if n)


def _host_name(value: str) -> str:
    v = value.strip().lower()
    if v.startswith("["):
        return v[1:v.find("]")] if "]" in v else v
    name, sep, port = v.rpartition(":")
    if sep and port.isdigit():
        v = name
    return v.rstrip(".")


def exposure_warning(bound_host: str, web) -> str | None:
    """The warning for a listen address beyond loopback without TLS or basic auth, or None."""
    if is_loopback(bound_host):
        return None
    tls = web is not None and web.ssl_context is not None
    auth = web is not None and bool(web.users)
    if tls and auth:
        return None
    try:
        everyone = ipaddress.ip_address(bound_host).is_unspecified
    except ValueError:
        everyone = False
    where = "every interface" if everyone else bound_host
    missing = "TLS or basic auth" if not (tls or auth) else ("basic auth" if tls else "TLS (passwords go in clear)")
    return (f"warning: listening on {where} without {missing}: anyone who can reach this port reads /metrics, "
            f"/api/runs and the runs' recent output; give --web.config.file with tls_server_config and "
            f"basic_auth_users, or listen on 127.0.0.1 (docs/security.md)")


_INLINE = re.compile(r"<(script|style)(\s[^>]*)?>(.*?)</\1\s*>", re.S | re.I)


def page_csp(page: bytes) -> str:
    """The status page's Content-Security-Policy: its own inline script and style
    blocks by their sha256 (so nothing injected runs), the rest from 'self'."""
    hashes = {"script": [], "style": []}
    for m in _INLINE.finditer(page.decode("utf-8", "replace")):
        if m.group(2) and "src=" in m.group(2).lower():
            continue
        digest = base64.b64encode(hashlib.sha256(m.group(3).encode("utf-8")).digest()).decode()
        hashes[m.group(1).lower()].append(f"'sha256-{digest}'")
    return ("default-src 'self'; script-src 'self' " + " ".join(hashes["script"]) +
            "; style-src 'self' " + " ".join(hashes["style"]) +
            "; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
def _load_static(name: str) -> bytes | None:
    """static/NAME (a .js or .css file the page loads), None when there is none; the route's
    pattern already keeps NAME to one plain file name."""
    try:
        with open(os.path.join(STATIC_DIR, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def _file_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:128] or "run"


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
    ("GET", re.compile(rf"^/api/runs/{RUN}/agents/(?P<agent_id>[^/]+)/?$"), "_agent"),
    ("GET", re.compile(rf"^/api/runs/{RUN}/history$"), "_history"),
    ("GET", re.compile(rf"^/api/runs/{RUN}/export$"), "_export"),
    ("GET", re.compile(r"^/api/stream$"), "_stream"),
    ("GET", re.compile(r"^/(?P<name>[a-z][a-z0-9_-]{0,63}\.(?:js|css))$"), "_static"),
    ("POST", re.compile(r"^/api/events$"), "_events"),
    ("POST", re.compile(rf"^/api/runs/{RUN}/events$"), "_events"),
    ("POST", re.compile(rf"^/api/runs/{RUN}/cancel$"), "_cancel"),
]


class _Writer:
    """wfile for the handler: straight to the socket (sendall, with the write timeout)."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, data) -> int:
        self.sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    server_ref: Server
    server_version = f"runwatch/{__version__}"
    protocol_version = "HTTP/1.1"

    def __init__(self, conn):      # one request of a front.Conn; handle_one_request() answers it
        self.conn = conn
        self.request = self.connection = conn.sock
        self.client_address = conn.addr
        self.server = self.server_ref
        self.rfile = conn
        self.wfile = _Writer(conn.sock)
        self.close_connection = True
        self._csp = None

    def log_message(self, fmt, *args):  # quiet: a scrape every few seconds is not news
        log.debug("%s " + fmt, self.address_string(), *args)

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "-"

    # ------------------------------------------------------------ strict requests

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        srv = self.server_ref
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            return self._refuse(505, "bad_request", "runwatch speaks HTTP/1.0 and 1.1")
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding"):
            return self._refuse(411, "bad_request", "send a Content-Length (chunked bodies are not accepted)")
        if len(lengths) > 1 or (lengths and not lengths[0].strip().isdigit()):
            return self._refuse(400, "bad_request", "one Content-Length with a number of bytes, please")
        if self.command in ("GET", "HEAD") and lengths and int(lengths[0]) > 0:
            return self._refuse(400, "bad_request", f"a {self.command} request has no body")
        host = self.headers.get_all("Host") or []
        if len(host) > 1 or (not host and self.request_version == "HTTP/1.1"):
            return self._refuse(400, "bad_request", "an HTTP/1.1 request needs one Host header")
        allowed = srv.allowed_hosts
        if allowed is not None and host and _host_name(host[0]) not in allowed:
            name = _host_name(host[0])
            return self._refuse(403, "host", f"Host {name!r} is not one this runwatch answers to (it listens on "
                                             f"{srv.address}); if you reach it by that name, start it with "
                                             f"--allowed-host {name}")
        web = srv.web
        if web is not None and web.users:
            auth = self.headers.get("Authorization") or ""
            is_write = self.command == "POST" and auth[:7].lower() == "bearer "
            if not is_write:        # writes are authenticated by the bearer token (checked by the route)
                ok = web.authenticate(auth)
                if ok is None:
                    return self._refuse(429, "auth", "too many password checks at once; try again",
                                        {"Retry-After": "1"})
                if not ok:
                    return self._refuse(401, "auth", "this runwatch needs a user name and password (basic auth)",
                                        {"WWW-Authenticate": 'Basic realm="runwatch", charset="UTF-8"'})
        return True

    def handle_expect_100(self) -> bool:
        """Expect: 100-continue: the 100 goes out only when the body is about to be
        read (_read_body), after the checks, so a refused request is not uploaded."""
        self._expect_100 = True
        return True

    def _refuse(self, code: int, reason: str, message: str, headers: dict | None = None) -> bool:
        self.server_ref.stats.refuse(reason)
        self.close_connection = True
        self._json(code, {"error": message}, headers)
        return False

    def end_headers(self):
        """Every answer (an interim 100 Continue too) gets the security headers; a web config's win."""
        extra = dict(self.server_ref.web.headers) if self.server_ref.web is not None else {}
        csp = extra.pop("Content-Security-Policy", None) or self._csp or DEFAULT_CSP
        super().send_header("Content-Security-Policy", csp)
        super().send_header("X-Frame-Options", extra.pop("X-Frame-Options", "DENY"))
        super().send_header("X-Content-Type-Options", extra.pop("X-Content-Type-Options", "nosniff"))
        for k, v in extra.items():
            super().send_header(k, v)
        super().end_headers()

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
        self._csp = self.server_ref.page_csp
        self._send(200, self.server_ref.page, "text/html; charset=utf-8", {"Cache-Control": "no-cache"})

    def _static(self, name: str):
        body = _load_static(name)
        if body is None:
            return self._send(404, b"not found\n", TEXT)
        self._send(200, body, STATIC_TYPES[os.path.splitext(name)[1]],
                   {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    def _history(self, run_id: str):
        view = api.history_view(self.server_ref.registry, run_id)
        if view is None:
            return self._json(404, {"error": f"no run {run_id!r}"})
        self._json(200, view)

    def _export(self, run_id: str):
        q = parse_qs(urlsplit(self.path).query)
        fmt = (q.get("format") or ["json"])[0]
        if fmt not in api.EXPORT_FORMATS:
            return self._json(400, {"error": f"format must be one of {', '.join(api.EXPORT_FORMATS)}; got {fmt!r}",
                                    "field": "format"})
        got = api.export_run(self.server_ref.registry, run_id, fmt, cancellable=self._cancel_info())
        if got is None:
            return self._json(404, {"error": f"no run {run_id!r}"})
        ctype, body = got
        self._send(200, body, ctype, {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                      "Content-Disposition": f'attachment; filename="{_file_name(run_id)}.{fmt}"'})

    def _agent(self, run_id: str, agent_id: str):
        code, body = api.agent_view(self.server_ref.registry, run_id, agent_id)
        self._json(code, body)

    def _healthz(self):
        self._send(200, b"ok\n", TEXT)

    def _metrics(self):
        # negotiation as prometheus_client does it (its import, ~20 ms, waits for the first scrape)
        from prometheus_client.exposition import choose_encoder
        _, content_type = choose_encoder(self.headers.get("Accept"))
        body = render(self.server_ref.collector.collect(), content_type.startswith("application/openmetrics-text"))
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
        """Server-Sent Events. At connect, `event: snapshot` with every run and its recent
        lines; then `event: diff` with only the runs that changed (and their new lines) and
        the ids of runs that went away, at most SSE_MIN_GAP apart and at most
        api.MAX_RUNS_PER_PUSH runs each; every SSE_REFRESH seconds the running runs again
        (ETA and cost move with time), else a heartbeat comment. EventSource reconnects by
        itself (retry: 1000) and gets a new snapshot."""
        srv = self.server_ref
        reg = srv.registry
        try:         # the front holds this stream's slot (at most Limits.max_streams) until we return
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
            server_info = {"version": __version__, "events": srv.events_enabled}
            stream = api.StreamDiff(reg)
            with reg.lock:
                v = reg.version
            self._push("snapshot", v, dict(stream.snapshot(self._cancel_info()), server=server_info))
            last_v, last_send, last_refresh, more = v, time.monotonic(), time.monotonic(), False
            while not srv.closing.is_set():
                with reg.changed:
                    if reg.version == last_v and not more:
                        reg.changed.wait(SSE_REFRESH)
                    v = reg.version
                if srv.closing.is_set():
                    break
                refresh = time.monotonic() - last_refresh >= SSE_REFRESH
                if v == last_v and not more and not refresh:
                    continue
                gap = SSE_MIN_GAP - (time.monotonic() - last_send)
                if gap > 0 and srv.closing.wait(gap):
                    break
                with reg.lock:
                    v = reg.version
                diff = stream.diff(self._cancel_info(), refresh=refresh)
                if refresh:
                    last_refresh = time.monotonic()
                if diff is None:
                    last_v, more = v, False
                    if refresh:
                        self._write(b": heartbeat\n\n")
                    continue
                more = diff["more"]
                self._push("diff", v, diff)
                last_v, last_send = v, time.monotonic()
        except TimeoutError:            # a client that stopped reading
            srv.stats.drop("write_timeout")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            pass

    def _push(self, event: str, version: int, payload: dict) -> None:
        data = json.dumps(dict(payload, version=version), separators=(",", ":"), allow_nan=False)
        self._write(f"id: {version}\nevent: {event}\ndata: {data}\n\n".encode())

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
        if getattr(self, "_expect_100", False):
            self._expect_100 = False
            self.send_response_only(100)
            self.end_headers()
        sock = self.connection
        sock.settimeout(srv.limits.read_timeout)     # a body that stops arriving is a request timeout
        deadline = time.monotonic() + srv.limits.read_timeout
        chunks, got = [], 0
        try:
            while got < n:
                chunk = self.rfile.read(min(n - got, 1 << 16), deadline)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:
            srv.stats.drop("request_timeout")
            self.close_connection = True
            self._json(408, {"error": f"the body did not arrive within {srv.limits.read_timeout:g} s"})
            return None
        finally:
            sock.settimeout(srv.limits.write_timeout)
        if got < n:
            self.close_connection = True
            return None
        return b"".join(chunks)

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
