"""The HTTP endpoint: /metrics, /healthz and a landing page at /.

A ThreadingHTTPServer from the standard library: a scrape never waits for
another, and nothing here blocks the line path (the collector copies a
snapshot under the registry lock and renders outside it).
"""
from __future__ import annotations

import gzip
import html
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from . import __version__
from .collector import RunwatchCollector
from .runs import Registry

log = logging.getLogger("runwatch.web")


class Server:
    """Serves one Registry; `start()` runs it on a daemon thread."""

    def __init__(self, registry: Registry, listen: tuple[str, int], *, extra_collect=None):
        self.registry = registry
        self.collector = RunwatchCollector(registry, extra=extra_collect)
        self.prom = CollectorRegistry(auto_describe=False)
        self.prom.register(self.collector)
        self.started = time.time()
        handler = type("Handler", (_Handler,), {"server_ref": self})
        ThreadingHTTPServer.daemon_threads = True
        ThreadingHTTPServer.allow_reuse_address = True
        try:
            self.httpd = ThreadingHTTPServer(listen, handler)
        except OSError as e:
            raise SystemExit(f"runwatch: cannot listen on {listen[0]}:{listen[1]}: {e.strerror}") from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="runwatch-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "Server":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_ref: Server
    server_version = f"runwatch/{__version__}"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: a scrape every few seconds is not news
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self):  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/metrics":
            return self._metrics()
        if path == "/healthz":
            return self._send(200, b"ok\n", "text/plain; charset=utf-8")
        if path == "/":
            return self._send(200, self._landing().encode("utf-8"), "text/html; charset=utf-8")
        self._send(404, b"not found; try /metrics, /healthz or /\n", "text/plain; charset=utf-8")

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def _metrics(self):
        encoder, content_type = choose_encoder(self.headers.get("Accept"))
        body = encoder(self.server_ref.prom)
        headers = {}
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, content_type, headers)

    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _landing(self) -> str:
        rows = []
        now = time.time()
        for run, s in self.server_ref.registry.snapshot(now):
            p = s["progress"]
            eta = s["eta"]
            age = now - s["last_line_ts"] if s["last_line_ts"] else None
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
                run.spec.id, run.spec.kind, s["state"], s["phase"] or "",
                f"{p:.0%}" if p is not None else "", f"{eta:.0f} s" if eta is not None else "",
                f"${s['cost']:.2f}" if s["cost"] is not None else "",
                f"{age:.0f} s ago" if age is not None else "")) + "</tr>")
        return (f"<!doctype html><html><head><meta charset=utf-8><title>runwatch</title>"
                f"<style>body{{font:14px system-ui,sans-serif;margin:2em}}td,th{{padding:4px 10px;"
                f"text-align:left}}tr:nth-child(even){{background:#f4f4f4}}</style></head><body>"
                f"<h1>runwatch {__version__}</h1><p><a href=/metrics>/metrics</a> · "
                f"<a href=/healthz>/healthz</a></p><table><tr><th>run</th><th>kind</th><th>state</th>"
                f"<th>phase</th><th>progress</th><th>ETA</th><th>cost</th><th>last output</th></tr>"
                + "".join(rows) + "</table></body></html>")
