"""HTTP server: runwatch's (web/front.py + web/server.py) against the standard
library's ThreadingHTTPServer serving the same /metrics, side by side.

Prints, for each: scrapes per second on one keep-alive connection, on a new
connection each, and with 300 idle plus 100 half-sent connections held open
(plus the threads those cost); then the ratios runwatch / reference.

    .venv/bin/python bench/bench_http.py
"""
from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from runwatch.events import Event
from runwatch.export.exposition import render
from runwatch.model.runs import Registry, RunSpec
from runwatch.web.server import Server

N = 400
IDLE, HALF = 300, 100


def registry() -> Registry:
    reg = Registry()
    now = time.time()
    for i in range(20):
        run = reg.add(RunSpec(id=f"run-{i}", kind="job", source="command"))
        reg.apply(run, [Event("status", {"state": "running"}, now), Event("phase", {"phase": "train"}, now)])
    return reg


def reference(srv: Server) -> ThreadingHTTPServer:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            body = render(srv.prom.collect(), False) if self.path == "/metrics" else b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    class Quiet(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):   # clients that hang up are not news here
            pass
    httpd = Quiet(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def rate(port: int, keep_alive: bool) -> float:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30) if keep_alive else None
    for _ in range(N):
        if not keep_alive:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics", headers={"Host": "127.0.0.1"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        if not keep_alive:
            conn.close()
    if keep_alive:
        conn.close()
    return N / (time.perf_counter() - t0)


def hold(port: int) -> list[socket.socket]:
    held = []
    for i in range(IDLE + HALF):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        if i >= IDLE:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        held.append(s)
    time.sleep(0.5)       # let the server take them all (accept, and a thread each for the reference)
    return held


def measure(name: str, port: int) -> dict:
    base = threading.active_count()
    out = {"keep-alive/s": statistics.median(rate(port, True) for _ in range(3)),
           "new conn/s": statistics.median(rate(port, False) for _ in range(3))}
    held = hold(port)
    out["threads for held"] = threading.active_count() - base
    out["new conn/s, 400 held"] = statistics.median(rate(port, False) for _ in range(3))
    for s in held:
        s.close()
    print(f"{name:>10}: " + ", ".join(f"{k} {v:,.0f}" for k, v in out.items()))
    return out


def main() -> None:
    srv = Server(registry(), ("127.0.0.1", 0)).start()
    ref = reference(srv)
    print(f"{N} scrapes of {len(render(srv.prom.collect(), False)):,} bytes each, median of 3")
    a = measure("runwatch", srv.port)
    b = measure("reference", ref.server_address[1])
    time.sleep(1)
    for k in a:
        if k != "threads for held":
            print(f"ratio {k}: {a[k] / b[k]:.2f}")
    print(f"threads for {IDLE + HALF} held connections: runwatch {a['threads for held']}, "
          f"reference {b['threads for held']}")
    srv.stop()
    ref.shutdown()


if __name__ == "__main__":
    main()
