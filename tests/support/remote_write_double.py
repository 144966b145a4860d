"""A local remote-write 1.0 receiver that records what it is sent, for tests and the benchmark.

It decodes what arrives the way a receiver must: the body is raw (block) snappy
(cramjam's decoder, which rejects the framed format) holding a protobuf
WriteRequest, read here by a generic protobuf wire-format reader written
independently of runwatch's encoder. A good push gets 204; a push with the
wrong headers, a framed-snappy or unreadable body, unsorted or duplicate label
names, or a sample older than the newest one already stored for its series
(the out-of-order rule of Prometheus' TSDB) gets 400; a sample equal to the
newest one stored (a resend of a push whose answer was lost) is ignored and
counted in `srv.duplicates`, as Prometheus does. Then it can misbehave:

    srv.respond(429, retry_after="0.2", count=3)   # the next 3 pushes
    srv.respond(503)                               # until told otherwise
    srv.go_away(); srv.come_back()                 # close the port, reopen it
    srv.respond(None)                              # behave again

`srv.samples[series]` is the list of (timestamp ms, value) accepted for a
series (a tuple of sorted label pairs); `srv.requests` the headers of every
request; `srv.metadata` the metric metadata by family name.
"""
from __future__ import annotations

import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cramjam

STALE_BITS = 0x7FF0000000000002
METRIC_TYPES = {0: "unknown", 1: "counter", 2: "gauge", 3: "histogram", 4: "gaugehistogram", 5: "summary",
                6: "info", 7: "stateset"}


class BadRequest(Exception):
    pass


def fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message: ints for varint and
    fixed64 fields (the raw 64 bits), bytes for length-delimited ones."""
    pos, n = 0, len(buf)

    def varint():
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= n:
                raise BadRequest("truncated varint")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise BadRequest("varint too long")

    while pos < n:
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            yield num, wt, varint()
        elif wt == 1:
            if pos + 8 > n:
                raise BadRequest("truncated fixed64")
            yield num, wt, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wt == 2:
            ln = varint()
            if pos + ln > n:
                raise BadRequest("truncated length-delimited field")
            yield num, wt, buf[pos:pos + ln]
            pos += ln
        elif wt == 5:
            pos += 4
        else:
            raise BadRequest(f"wire type {wt}")


def decode_write_request(body: bytes):
    """([(labels as sorted tuple, [(ts, value, is_stale)])], {family: (type, help, unit)})."""
    series, meta = [], {}
    for num, wt, val in fields(body):
        if num == 1 and wt == 2:
            labels, samples = [], []
            for n2, w2, v2 in fields(val):
                if n2 == 1 and w2 == 2:
                    lab = {f: v.decode("utf-8") for f, w, v in fields(v2) if w == 2}
                    labels.append((lab.get(1, ""), lab.get(2, "")))
                elif n2 == 2 and w2 == 2:
                    bits, ts = 0, 0
                    for f, w, v in fields(v2):
                        if f == 1 and w == 1:
                            bits = v
                        elif f == 2 and w == 0:
                            ts = v - (1 << 64) if v >= 1 << 63 else v
                    value = struct.unpack("<d", struct.pack("<Q", bits))[0]
                    samples.append((ts, value, bits == STALE_BITS))
            names = [k for k, _ in labels]
            if names != sorted(names) or len(set(names)) != len(names):
                raise BadRequest(f"labels not sorted or duplicated: {names}")
            if "__name__" not in names:
                raise BadRequest("series without __name__")
            series.append((tuple(labels), samples))
        elif num == 3 and wt == 2:
            m = {}
            for f, _, v in fields(val):
                m[f] = v
            name = m.get(2, b"").decode("utf-8")
            meta[name] = (METRIC_TYPES.get(m.get(1, 0), "?"), m.get(4, b"").decode("utf-8"),
                          m.get(5, b"").decode("utf-8"))
    return series, meta


class RemoteWriteServer:
    def __init__(self, port: int = 0, tls: tuple[str, str] | None = None):
        """tls: (certificate file, key file) to answer https instead of http."""
        self.tls = tls
        self.lock = threading.Lock()
        self.samples: dict[tuple, list[tuple[int, float]]] = {}
        self.stale: dict[tuple, list[int]] = {}
        self.metadata: dict[str, tuple] = {}
        self.last: dict[tuple, tuple] = {}     # series -> (timestamp, value bits) of its newest sample
        self.duplicates = 0
        self.requests: list[dict] = []          # headers of every request, answered or not
        self.accepted = 0
        self.rejected: list[str] = []
        self._mode = None
        self._count = None
        self._retry_after = None
        self._port = port
        self.httpd = None
        self.conns: set = set()
        self.come_back()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._port}/api/v1/write"

    def respond(self, mode, retry_after: str | None = None, count: int | None = None) -> None:
        with self.lock:
            self._mode, self._retry_after, self._count = mode, retry_after, count

    def _misbehave(self):
        with self.lock:
            mode = self._mode
            if mode is None:
                return None
            if self._count is not None:
                self._count -= 1
                if self._count <= 0:
                    self._mode = self._count = None
            return mode, self._retry_after

    def ingest(self, headers, raw: bytes) -> None:
        if headers.get("Content-Encoding") != "snappy":
            raise BadRequest("Content-Encoding must be snappy")
        if headers.get("Content-Type") != "application/x-protobuf":
            raise BadRequest("Content-Type must be application/x-protobuf")
        if headers.get("X-Prometheus-Remote-Write-Version") != "0.1.0":
            raise BadRequest("X-Prometheus-Remote-Write-Version must be 0.1.0")
        try:
            body = bytes(cramjam.snappy.decompress_raw(raw))
        except cramjam.DecompressionError as e:
            raise BadRequest(f"snappy: {e}") from None
        series, meta = decode_write_request(body)
        with self.lock:
            keep = []
            for labels, samples in series:       # the whole request is checked before anything is stored
                last = self.last.get(labels)
                kept = []
                for ts, v, is_stale in samples:
                    bits = struct.pack("<d", v) if not is_stale else b"stale"
                    if last is not None and ts == last[0] and bits == last[1]:
                        self.duplicates += 1      # a resend of what was stored: ignored, as Prometheus does
                        continue
                    if last is not None and ts <= last[0]:
                        raise BadRequest(f"out of order sample: {dict(labels).get('__name__')} at {ts} <= {last[0]}")
                    last = (ts, bits)
                    kept.append((ts, v, is_stale, bits))
                keep.append((labels, kept))
            for labels, kept in keep:
                for ts, v, is_stale, bits in kept:
                    if is_stale:
                        self.stale.setdefault(labels, []).append(ts)
                    else:
                        self.samples.setdefault(labels, []).append((ts, v))
                    self.last[labels] = (ts, bits)
            self.metadata.update(meta)
            self.accepted += 1

    def series(self, name: str, **labels) -> dict[tuple, list]:
        """Accepted samples of the series named `name` whose labels include `labels`."""
        with self.lock:
            return {k: list(v) for k, v in self.samples.items()
                    if dict(k).get("__name__") == name and all(dict(k).get(a) == b for a, b in labels.items())}

    def latest(self, name: str, **labels) -> float | None:
        got = self.series(name, **labels)
        if not got:
            return None
        (_, samples), = got.items() if len(got) == 1 else [max(got.items(), key=lambda kv: kv[1][-1][0])]
        return samples[-1][1]

    # ------------------------------------------------------------ the port

    def come_back(self) -> None:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with srv.lock:
                    srv.conns.add(self.connection)

            def finish(self):
                with srv.lock:
                    srv.conns.discard(self.connection)
                super().finish()

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                with srv.lock:
                    srv.requests.append(dict(self.headers))
                bad = srv._misbehave()
                if bad is not None:
                    code, retry_after = bad
                    self.send_response(code)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self._end(b"misbehaving on purpose\n")
                    return
                if self.path != "/api/v1/write":
                    self.send_response(404)
                    self._end(b"not found\n")
                    return
                try:
                    srv.ingest(self.headers, raw)
                except BadRequest as e:
                    with srv.lock:
                        srv.rejected.append(str(e))
                    self.send_response(400)
                    self._end(str(e).encode() + b"\n")
                    return
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _end(self, body: bytes):
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self.httpd.daemon_threads = True
        if self.tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self._port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def go_away(self) -> None:
        """Close the port: pushes get connection refused until come_back()."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:                  # kept-alive connections go too, as when a process dies
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self.go_away()


if __name__ == "__main__":
    import sys
    import time
    s = RemoteWriteServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(s.url, flush=True)
    while True:
        time.sleep(3600)
