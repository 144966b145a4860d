"""The connection front of the HTTP server: accepting, TLS handshakes, reading
request heads, timeouts and limits, on one thread that never blocks.

Why not `ThreadingHTTPServer`: it gives every connection a thread that blocks
in `readline()` with no timeout, so a few hundred idle or half-sent
connections are a few hundred threads and nothing bounds them. Here one
selector thread (`runwatch-http`) owns every connection while nothing is to be
done for it: during the TLS handshake, while a request head arrives, and
between the requests of a keep-alive connection. Only a request whose head is
complete goes to a thread of its own, and only as many at once as the limits
allow; the standard library's `BaseHTTPRequestHandler` then parses and answers
it (server.py). Idle and half-sent connections cost a file descriptor and a
buffer of at most `max_header_bytes`, never a thread.

The limits (`Limits`, flags `--http-*`):

- a request head must be complete `read_timeout` seconds after its first byte
  (or after the connection was accepted); else 408 and close. A body must
  arrive within `read_timeout` too (server.py);
- a keep-alive connection with no new request for `idle_timeout` is closed;
- a client that does not take its answer for `write_timeout` is dropped;
- at most `max_connections` open connections (lowered to fit the open-files
  limit): at the bound the oldest connection that is not being answered is
  closed to make room (counted as evicted), so idle connections cannot lock
  out a scrape; if every connection is being answered, the new one gets 503;
- at most `max_requests` requests answered at once, and apart from them
  `SCRAPE_SLOTS` for /metrics and /healthz, so a flood of API calls does not
  starve Prometheus; at most `max_streams` status-page event streams. Beyond
  either: 503 with Retry-After;
- a head over `max_header_bytes`: 431; a request line that is not
  `METHOD TARGET HTTP/1.x`: 400 (HTTP/0.9 is not served), other versions 505.

Everything refused or dropped is counted (`Stats`, on /metrics as
`runwatch_http_refused_total{reason}` and `runwatch_http_dropped_total{reason}`).
"""
from __future__ import annotations

import collections
import errno
import logging
import re
import resource
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("runwatch.web")

SCRAPE_PATHS = ("/metrics", "/healthz")
STREAM_PATH = "/api/stream"
SCRAPE_SLOTS = 8                    # requests for SCRAPE_PATHS answered at once, apart from max_requests
FD_RESERVE = 64                     # open files kept for everything but connections (followed files, DBs, spools)
_REQUEST_LINE = re.compile(rb"([A-Z]{1,20}) (\S{1,8192}) HTTP/(\d)\.(\d)\r?\n")

REFUSED_REASONS = ("connections", "busy", "streams", "header_too_large", "bad_request", "host", "auth")
DROPPED_REASONS = ("evicted", "request_timeout", "idle_timeout", "write_timeout", "tls_handshake")


@dataclass
class Limits:
    read_timeout: float = 10.0       # seconds: a request head (and a body) must arrive within this
    idle_timeout: float = 60.0       # seconds: a keep-alive connection without a new request
    write_timeout: float = 30.0      # seconds: a client that does not read its answer
    max_connections: int = 512       # open connections (lowered to fit RLIMIT_NOFILE)
    max_requests: int = 32           # requests answered at once (besides scrapes and streams)
    max_streams: int = 32            # status-page event streams (/api/stream)
    max_header_bytes: int = 32 * 1024

    def effective_max_connections(self) -> int:
        try:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (OSError, ValueError):
            soft = resource.RLIM_INFINITY
        if soft == resource.RLIM_INFINITY or soft <= 0:
            return self.max_connections
        return max(8, min(self.max_connections, soft - FD_RESERVE))


class Stats:
    """What the front refused or dropped, and what is open now."""

    def __init__(self):
        self.lock = threading.Lock()
        self.refused = dict.fromkeys(REFUSED_REASONS, 0)
        self.dropped = dict.fromkeys(DROPPED_REASONS, 0)
        self.connections = 0
        self.streams = 0

    def refuse(self, reason: str) -> None:
        with self.lock:
            self.refused[reason] += 1

    def drop(self, reason: str) -> None:
        with self.lock:
            self.dropped[reason] += 1


class Conn:
    """One client connection: its socket and what was read from it but not yet
    parsed. While a thread answers a request, `readline` and `read` serve the
    handler (from the buffer first, then the socket, with its timeout)."""

    __slots__ = ("sock", "addr", "buf", "state", "deadline", "since", "tls", "kind", "slot")

    def __init__(self, sock, addr, tls: bool):
        self.sock, self.addr, self.tls = sock, addr, tls
        self.buf = bytearray()
        self.state = "handshake" if tls else "head"
        self.since = time.monotonic()
        self.deadline = 0.0
        self.kind = None        # "scrape", "api" or "stream" while a thread has it
        self.slot = None        # the semaphore it holds then

    # the file-like side BaseHTTPRequestHandler reads from
    def readline(self, limit: int = -1) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0 and (limit < 0 or i < limit):
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return out
            if 0 <= limit <= len(self.buf):
                out = bytes(self.buf[:limit])
                del self.buf[:limit]
                return out
            chunk = self.sock.recv(65536)
            if not chunk:
                out = bytes(self.buf)
                self.buf.clear()
                return out
            self.buf += chunk

    def read(self, n: int = -1, deadline: float | None = None) -> bytes:
        """Up to n bytes (fewer only at the end of the stream); TimeoutError when
        a read waits longer than the socket's timeout or the deadline (monotonic) passes."""
        if n is None or n < 0:
            raise ValueError("read() needs a length")
        while len(self.buf) < n:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("deadline passed")
            chunk = self.sock.recv(min(1 << 20, max(65536, n - len(self.buf))))
            if not chunk:
                break
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def raw_response(code: int, reason: str, message: str, headers: dict | None = None) -> bytes:
    """A complete answer the front sends itself before closing (no handler involved)."""
    body = (message + "\n").encode("utf-8", "replace")
    lines = [f"HTTP/1.1 {code} {reason}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close", "X-Content-Type-Options: nosniff",
             "X-Frame-Options: DENY", "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Front:
    """The selector loop. `dispatch(conn)` runs on a new thread for each
    complete request head; it returns True to keep the connection open for
    the next request (then it calls `give_back(conn)`), else closes it."""

    def __init__(self, sock: socket.socket, limits: Limits, dispatch, *, tls: ssl.SSLContext | None = None,
                 stats: Stats | None = None):
        self.sock = sock
        self.limits = limits
        self.dispatch = dispatch
        self.tls = tls
        self.stats = stats or Stats()
        self.max_connections = limits.effective_max_connections()
        self.slots = {"scrape": threading.BoundedSemaphore(SCRAPE_SLOTS),
                      "api": threading.BoundedSemaphore(max(1, limits.max_requests)),
                      "stream": threading.BoundedSemaphore(max(1, limits.max_streams))}
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}          # every open connection, by id()
        self.active = 0                           # of those, the ones a thread has
        self.returned: collections.deque[Conn] = collections.deque()
        self.closing = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sock.setblocking(False)
        self.sel.register(self.sock, selectors.EVENT_READ, "listen")
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._listen_paused_until = 0.0
        self.stopped = threading.Event()

    # ------------------------------------------------------------ from other threads

    def give_back(self, conn: Conn) -> None:
        """A thread finished a request on a keep-alive connection."""
        self.returned.append(conn)
        self._wake()

    def release(self, conn: Conn) -> None:
        """A thread is done with conn (closed or given back): free its slot."""
        if conn.slot is not None:
            conn.slot.release()
            conn.slot = None
            if conn.kind == "stream":
                with self.stats.lock:
                    self.stats.streams -= 1
        conn.kind = None

    def forget(self, conn: Conn) -> None:
        """A thread closed conn."""
        self.returned.append(_Closed(conn))
        self._wake()

    def stop(self) -> None:
        self.closing.set()
        self._wake()
        self.stopped.wait(5)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        try:
            while not self.closing.is_set():
                timeout = self._next_timeout()
                for key, _mask in self.sel.select(timeout):
                    what = key.data
                    if what == "listen":
                        self._accept()
                    elif what == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, OSError):
                            pass
                    else:
                        self._ready(what)
                self._take_returned()
                self._expire()
                if self._listen_paused_until and time.monotonic() >= self._listen_paused_until:
                    self._listen_paused_until = 0.0
                    self.sel.register(self.sock, selectors.EVENT_READ, "listen")
        finally:
            for c in list(self.conns.values()):
                if c.kind is None:
                    c.close()
            self.conns.clear()
            try:
                self.sel.close()
            finally:
                self.sock.close()
                self._wake_r.close()
                self._wake_w.close()
                self.stopped.set()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        t = 1.0
        for c in self.conns.values():
            if c.kind is None and c.deadline:
                t = min(t, c.deadline - now)
        if self._listen_paused_until:
            t = min(t, self._listen_paused_until - now)
        return max(0.0, t)

    def _count(self) -> None:
        with self.stats.lock:
            self.stats.connections = len(self.conns)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # out of file descriptors: stop polling the listener for a moment
                    # instead of spinning on it (the pending connection waits in the backlog)
                    log.warning("cannot accept a connection: %s; pausing for 0.5 s", e.strerror)
                    self.sel.unregister(self.sock)
                    self._listen_paused_until = time.monotonic() + 0.5
                    self._evict_one()
                return
            if len(self.conns) >= self.max_connections and not self._evict_one():
                self.stats.refuse("connections")
                _send_nowait(sock, raw_response(503, "Service Unavailable",
                                                "too many connections being answered; try again",
                                                {"Retry-After": "1"}) if self.tls is None else b"")
                sock.close()
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (ssl.SSLError, OSError):
                    sock.close()
                    continue
            c = Conn(sock, addr, self.tls is not None)
            c.deadline = c.since + self.limits.read_timeout
            self.conns[id(c)] = c
            self.sel.register(sock, selectors.EVENT_READ, c)
            self._count()

    def _evict_one(self) -> bool:
        """Close the oldest connection no thread is answering; False if there is none."""
        idle = [c for c in self.conns.values() if c.kind is None]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.since)
        self.stats.drop("evicted")
        self._close(victim)
        return True

    def _close(self, c: Conn) -> None:
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.conns.pop(id(c), None)
        c.close()
        self._count()

    def _ready(self, c: Conn) -> None:
        if c.state == "handshake":
            try:
                c.sock.do_handshake()
            except ssl.SSLWantReadError:
                self.sel.modify(c.sock, selectors.EVENT_READ, c)
                return
            except ssl.SSLWantWriteError:
                self.sel.modify(c.sock, selectors.EVENT_WRITE, c)
                return
            except (ssl.SSLError, OSError):
                self.stats.drop("tls_handshake")
                self._close(c)
                return
            self.sel.modify(c.sock, selectors.EVENT_READ, c)
            c.state = "head"
        if not self._fill(c):
            return
        self._parse(c)

    def _fill(self, c: Conn) -> bool:
        """Read what the socket has (up to the head limit). False if it closed."""
        room = self.limits.max_header_bytes + 1 - len(c.buf)
        while room > 0:
            try:
                chunk = c.sock.recv(min(65536, room))
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                break
            except (ssl.SSLError, OSError):
                self._close(c)
                return False
            if not chunk:
                self._close(c)
                return False
            if c.state == "idle":
                c.state = "head"
                c.deadline = time.monotonic() + self.limits.read_timeout
            c.buf += chunk
            room -= len(chunk)
            if not (c.tls and c.sock.pending()):
                if len(chunk) < 65536:
                    break
        return True

    def _parse(self, c: Conn) -> None:
        """Dispatch c if its buffer holds a complete request head."""
        while c.buf[:2] == b"\r\n" or c.buf[:1] == b"\n":       # empty lines before a request are allowed
            del c.buf[:2 if c.buf[:2] == b"\r\n" else 1]
        if not c.buf:
            return
        end = _head_end(c.buf)
        limit = self.limits.max_header_bytes
        if end < 0:
            if len(c.buf) > limit:
                self._answer_close(c, 431, "Request Header Fields Too Large",
                                   f"the request head is over {limit} bytes", "header_too_large")
            elif b"\n" in c.buf[:8300] and not _REQUEST_LINE.match(c.buf):
                self._bad_line(c)
            return
        if end > limit:
            return self._answer_close(c, 431, "Request Header Fields Too Large",
                                      f"the request head is over {limit} bytes", "header_too_large")
        m = _REQUEST_LINE.match(c.buf)
        if m is None:
            return self._bad_line(c)
        if m.group(3) != b"1":
            return self._answer_close(c, 505, "HTTP Version Not Supported", "runwatch speaks HTTP/1.0 and 1.1",
                                      "bad_request")
        method, target = m.group(1), m.group(2)
        path = target.split(b"?", 1)[0]
        if path == STREAM_PATH.encode() and method in (b"GET", b"HEAD"):
            kind = "stream"
        elif path in (p.encode() for p in SCRAPE_PATHS) and method in (b"GET", b"HEAD"):
            kind = "scrape"
        else:
            kind = "api"
        slot = self.slots[kind]
        if not slot.acquire(blocking=False):
            if kind == "stream":
                return self._answer_close(c, 503, "Service Unavailable",
                                          f"too many status page clients (at most {self.limits.max_streams}); "
                                          f"close a tab or try again", "streams", {"Retry-After": "5"})
            return self._answer_close(c, 503, "Service Unavailable",
                                      "runwatch is answering as many requests as it takes at once; try again",
                                      "busy", {"Retry-After": "1"})
        if kind == "stream":
            with self.stats.lock:
                self.stats.streams += 1
        c.kind, c.slot = kind, slot
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.active += 1
        try:
            c.sock.setblocking(True)
            c.sock.settimeout(self.limits.write_timeout)
        except OSError:
            self.active -= 1
            self.release(c)
            self._close(c)
            return
        threading.Thread(target=self._run_request, args=(c,), name="runwatch-http-request", daemon=True).start()

    def _bad_line(self, c: Conn) -> None:
        line = bytes(c.buf.split(b"\n", 1)[0]).rstrip(b"\r")
        if len(line.split()) == 2 and not line.endswith(b"HTTP/1.1") and not line.endswith(b"HTTP/1.0"):
            msg = "HTTP/0.9 requests are not served; send METHOD TARGET HTTP/1.1 and a Host header"
        else:
            msg = "malformed request line; expected METHOD TARGET HTTP/1.1"
        self._answer_close(c, 400, "Bad Request", msg, "bad_request")

    def _answer_close(self, c: Conn, code: int, reason: str, message: str, counted: str,
                      headers: dict | None = None) -> None:
        self.stats.refuse(counted)
        _send_nowait(c.sock, raw_response(code, reason, message, headers))
        self._close(c)

    def _run_request(self, c: Conn) -> None:
        keep = False
        try:
            keep = self.dispatch(c)
        except Exception:   # a handler bug must not take the server down
            log.exception("HTTP request from %s failed", c.addr)
        finally:
            self.release(c)
            if keep and not self.closing.is_set():
                self.give_back(c)
            else:
                self.forget(c)

    def _take_returned(self) -> None:
        while self.returned:
            item = self.returned.popleft()
            self.active -= 1
            if isinstance(item, _Closed):
                self.conns.pop(id(item.conn), None)
                item.conn.close()
                self._count()
                continue
            c = item
            try:
                c.sock.setblocking(False)
                self.sel.register(c.sock, selectors.EVENT_READ, c)
            except (OSError, ValueError, KeyError):
                self.conns.pop(id(c), None)
                c.close()
                self._count()
                continue
            c.since = time.monotonic()
            if c.buf:                           # a pipelined request is already here
                c.state = "head"
                c.deadline = c.since + self.limits.read_timeout
                if c.tls and c.sock.pending():
                    self._fill(c)
                if id(c) in self.conns:
                    self._parse(c)
            else:
                c.state = "idle"
                c.deadline = c.since + self.limits.idle_timeout
                if c.tls and c.sock.pending() and self._fill(c):
                    self._parse(c)

    def _expire(self) -> None:
        now = time.monotonic()
        for c in [c for c in self.conns.values() if c.kind is None and c.deadline and c.deadline <= now]:
            if c.state == "idle":
                self.stats.drop("idle_timeout")
            else:
                self.stats.drop("request_timeout")
                if c.buf and c.state == "head":
                    _send_nowait(c.sock, raw_response(408, "Request Timeout",
                                                      f"the request was not complete after "
                                                      f"{self.limits.read_timeout:g} s"))
            self._close(c)


class _Closed:
    __slots__ = ("conn",)

    def __init__(self, conn):
        self.conn = conn


def _head_end(buf: bytearray) -> int:
    """Where the request head ends (just past its blank line), or -1."""
    i = buf.find(b"\r\n\r\n")
    j = buf.find(b"\n\n")
    ends = [x + 4 for x in (i,) if x >= 0] + [x + 2 for x in (j,) if x >= 0]
    return min(ends) if ends else -1


def _send_nowait(sock, data: bytes) -> None:
    """Best effort: what fits in the socket's buffer now; never blocks the loop."""
    if not data:
        return
    try:
        sock.setblocking(False)
        sock.send(data)
    except (OSError, ssl.SSLError, ValueError):
        pass
