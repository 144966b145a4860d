"""A local stand-in for Loki's push API, for tests and the benchmark.

It answers `POST /loki/api/v1/push` the way Loki does: the body is JSON
(`Content-Type: application/json`), gzip-compressed when `Content-Encoding:
gzip` says so; it must hold `streams`, each with a `stream` of valid label
names and string values, and `values` of `[ "<ns as a string>", "<line>" ]` or
`[ ts, line, {structured metadata: strings} ]`. A good push gets 204; a bad
one 400 with a reason. Then it can misbehave on purpose:

    srv.respond(429, retry_after="0.1", count=5)   # the next 5 pushes
    srv.respond(500)                               # until told otherwise
    srv.respond("hang") / srv.respond("reset")     # no answer / TCP RST
    srv.go_away(); srv.come_back()                 # close the port, reopen it
    srv.respond(None)                              # behave again
    srv.slow(per_byte=1e-6)                        # a slow Loki: each good push takes this long
                                                   # per byte of its (decompressed) JSON body

Accepted entries are kept in arrival order: `srv.entries` holds
(labels, ts_ns, line, metadata) tuples. Like Loki, an entry identical to one
already stored (same stream, timestamp and line: a push resent after a timeout
that Loki had in fact accepted) is ignored; `srv.duplicates` counts them. A
slow push whose client gave up waiting is still stored, as Loki may well do.

Run it alone: python tests/support/loki_double.py [PORT]
"""
from __future__ import annotations

import gzip
import json
import re
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class BadPush(Exception):
    pass


def validate(body: dict) -> list[tuple]:
    """Entries of a push body, or BadPush with Loki-like reasons."""
    if not isinstance(body, dict) or not isinstance(body.get("streams"), list):
        raise BadPush("missing streams")
    out = []
    for s in body["streams"]:
        labels = s.get("stream") if isinstance(s, dict) else None
        if not isinstance(labels, dict) or not labels:
            raise BadPush("error parsing labels: stream has no labels")
        for k, v in labels.items():
            if not LABEL_NAME.match(k) or k.startswith("__"):
                raise BadPush(f"invalid label name {k!r}")
            if not isinstance(v, str):
                raise BadPush(f"label {k} value must be a string")
        values = s.get("values")
        if not isinstance(values, list):
            raise BadPush("values must be a list")
        key = tuple(sorted(labels.items()))
        for v in values:
            if not isinstance(v, list) or len(v) not in (2, 3):
                raise BadPush("each value is [ts, line] or [ts, line, metadata]")
            ts, line = v[0], v[1]
            if not isinstance(ts, str) or not ts.isdigit():
                raise BadPush(f"timestamp must be a string of nanoseconds, got {ts!r}")
            if not isinstance(line, str):
                raise BadPush("line must be a string")
            meta = {}
            if len(v) == 3:
                meta = v[2]
                if not isinstance(meta, dict) or not all(isinstance(a, str) and isinstance(b, str)
                                                         for a, b in meta.items()):
                    raise BadPush("structured metadata must be an object of strings")
            out.append((key, int(ts), line, meta))
    return out


class LokiServer:
    def __init__(self, port: int = 0, require_headers: dict | None = None):
        self.lock = threading.Lock()
        self.entries: list[tuple] = []
        self.requests = 0
        self.statuses: list = []
        self.headers_seen: list[dict] = []
        self.require_headers = require_headers or {}
        self.mode = None            # None, int status, "hang", "reset"
        self.mode_count = None      # None: until changed
        self.retry_after = None
        self.body_text = ""
        self.hang_release = threading.Event()
        self.delay_per_byte = 0.0
        self.last_ts: dict = {}
        self.out_of_order = 0
        self.seen: set = set()
        self.duplicates = 0
        self.httpd = None
        self.port = port
        self._start()

    # ------------------------------------------------------------ control

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def respond(self, mode, *, count: int | None = None, retry_after: str | None = None, body: str = ""):
        with self.lock:
            self.mode, self.mode_count, self.retry_after, self.body_text = mode, count, retry_after, body
            if mode != "hang":
                self.hang_release.set()
            else:
                self.hang_release.clear()

    def slow(self, per_byte: float):
        """Take `per_byte` seconds per byte of JSON to store a good push (0: full speed)."""
        with self.lock:
            self.delay_per_byte = per_byte

    def go_away(self):
        """Close the listening socket (and so refuse connections)."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def come_back(self):
        self._start()

    def stop(self):
        self.hang_release.set()
        self.go_away()

    def lines(self, run_id: str | None = None) -> list[str]:
        with self.lock:
            return [e[2] for e in self.entries if run_id is None or e[3].get("run_id") == run_id]

    # ------------------------------------------------------------ internals

    def _start(self):
        handler = type("H", (_Handler,), {"loki": self})
        ThreadingHTTPServer.allow_reuse_address = True
        for _ in range(50):
            try:
                self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"cannot listen on {self.port}")
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True,
                         name="loki-double").start()  # stop() within 20 ms, not the default 0.5 s

    def _mode(self):
        with self.lock:
            self.requests += 1
            mode = self.mode
            if mode is not None and self.mode_count is not None:
                self.mode_count -= 1
                if self.mode_count <= 0:
                    self.mode, self.mode_count = None, None
            return mode, self.retry_after, self.body_text

    def _accept(self, entries):
        with self.lock:
            for e in entries:
                key, ts, line, meta = e
                if (key, ts, line) in self.seen:
                    self.duplicates += 1
                    continue
                self.seen.add((key, ts, line))
                if ts < self.last_ts.get(key, 0):
                    self.out_of_order += 1
                self.last_ts[key] = ts
                self.entries.append(e)


class _Handler(BaseHTTPRequestHandler):
    loki: LokiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _reply(self, code: int, text: str = "", headers: dict | None = None):
        body = text.encode()
        try:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):     # the client stopped waiting
            self.close_connection = True
            return
        self.loki.statuses.append(code)

    def do_POST(self):
        loki = self.loki
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        mode, retry_after, text = loki._mode()
        if mode == "hang":
            loki.hang_release.wait(30)
            self.close_connection = True
            return
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if isinstance(mode, int):
            return self._reply(mode, text or f"status {mode}\n",
                               {"Retry-After": retry_after} if retry_after else None)
        if self.path.split("?")[0] != "/loki/api/v1/push":
            return self._reply(404, "404 page not found\n")
        for k, v in loki.require_headers.items():
            if self.headers.get(k) != v:
                return self._reply(401 if k == "Authorization" else 400, f"missing or wrong {k}\n")
        with loki.lock:
            loki.headers_seen.append(dict(self.headers))
        if (self.headers.get("Content-Type") or "").split(";")[0] != "application/json":
            return self._reply(415, "unsupported Content-Type (the double speaks JSON only)\n")
        if self.headers.get("Content-Encoding") == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as e:
                return self._reply(400, f"gzip: {e}\n")
        try:
            entries = validate(json.loads(raw))
        except (ValueError, BadPush) as e:
            return self._reply(400, f"{e}\n")
        if loki.delay_per_byte:
            time.sleep(loki.delay_per_byte * len(raw))
        loki._accept(entries)
        self._reply(204)


if __name__ == "__main__":
    srv = LokiServer(int(sys.argv[1]) if len(sys.argv) > 1 else 3100)
    print(f"Loki double on {srv.url}; Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(5)
            print(f"{len(srv.entries)} entries, {srv.requests} pushes", flush=True)
    except KeyboardInterrupt:
        pass
