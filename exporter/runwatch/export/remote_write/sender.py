"""Push every series runwatch exports to Prometheus remote-write receivers.

`Pusher` collects the families `/metrics` renders once per interval (and once
more in `close()`), turns them into one WriteRequest (series.py), compresses it
with raw snappy and hands the same body to each `Endpoint`.

An Endpoint delivers requests one at a time, oldest first, each until it is
accepted or dropped. Requests wait in a bounded memory queue; when it is full
(the receiver is slow or down) they go to the disk spool (spool.py) instead,
and once anything is in the spool new requests go there too until it is
drained, so the order memory -> spool is always oldest first and a store that
rejects out-of-order samples sees none. `close()` pushes what is pending for
at most flush_timeout seconds and writes the rest to the front of the spool;
the next start sends it before anything new.

Retries (jittered exponential backoff) happen only on 5xx, 429 (Retry-After
honoured) and connection errors or timeouts; any other 4xx drops the request
and counts its samples in runwatch_remote_write_samples_dropped_total{reason}.
"""
from __future__ import annotations

import collections
import hashlib
import http.client
import logging
import os
import random
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from ..families import CounterMetricFamily, GaugeMetricFamily

from ...retry import retry_after_seconds
from ...settings import REMOTE_WRITE_SPOOL, data_dir
from .config import EndpointConfig, RemoteWriteConfig, auth_headers, safe_url
from .series import SeriesWriter
from .spool import Spool, SpoolCorrupt

log = logging.getLogger("runwatch.remote_write")

MAX_ANSWER = 64 << 10
DROP_REASONS = ("bad_request", "unauthorized", "spool_full", "shutdown", "spool_corrupt")
HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "runwatch"}


def snappy_compressor():
    """cramjam's raw (block) snappy; a clear error when the `push` extra is missing."""
    try:
        import cramjam
    except ImportError:
        raise ValueError("remote-write needs the snappy codec from cramjam: pip install 'runwatch[push]'") from None
    compress = cramjam.snappy.compress_raw
    return lambda data: bytes(compress(data))


class Endpoint:
    def __init__(self, ep: EndpointConfig, cfg: RemoteWriteConfig, spool_dir: str | None):
        self.cfg = cfg
        p = urlsplit(ep.url)
        self.https = p.scheme == "https"
        self.host, self.port = p.hostname, p.port or (443 if self.https else 80)
        self.path = (p.path or "/") + (f"?{p.query}" if p.query else "")
        self.url = safe_url(ep.url)
        self.headers = dict(HEADERS)
        self.headers.update(auth_headers(ep.auth, ep.url))
        if ep.tenant:
            self.headers["X-Scope-OrgID"] = ep.tenant
        self.tls = None
        if self.https:
            self.tls = ssl.create_default_context(cafile=ep.ca_file)
            if ep.cert_file:
                self.tls.load_cert_chain(ep.cert_file, ep.key_file)

        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.q: collections.deque = collections.deque()     # (body, samples), oldest first
        self.q_bytes = self.q_samples = 0
        self.spool = None
        if spool_dir:
            try:
                self.spool = Spool(spool_dir, cfg.spool_max_bytes)
            except OSError as e:
                log.warning("remote-write: cannot use the spool in %s (%s); requests that do not fit in memory "
                            "while %s is down will be dropped", spool_dir, e.strerror or e, self.url)
        self.spooling = bool(self.spool and len(self.spool))
        self.stopping = False
        self.closed = False
        self.stop_deadline = 0.0
        self.wake = threading.Event()
        self.conn = None

        self.sent = self.failed = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.requests: dict[str, int] = {}
        self.last_success = None
        self.up = None                  # None until the first answer
        self._last_problem = None
        self.thread = threading.Thread(target=self._worker, name="runwatch-remote-write", daemon=True)

    # ------------------------------------------------------------ queue

    def enqueue(self, body: bytes, samples: int) -> None:
        with self.lock:
            if self.closed:
                self._spill(body, samples)
                return
            if self.spooling or self.q_bytes + len(body) > self.cfg.queue_max_bytes:
                self._spill(body, samples)
                return
            self.q.append((body, samples))
            self.q_bytes += len(body)
            self.q_samples += samples
            self.cond.notify()

    def _spill(self, body: bytes, samples: int) -> None:
        """Under the lock: to the spool, or dropped (counted) when there is none or it is full."""
        if self.spool is None:
            self.dropped["spool_full" if not self.closed else "shutdown"] += samples
            return
        try:
            ok = self.spool.append(body, samples)
        except OSError as e:
            log.warning("remote-write: cannot write the spool: %s", e)
            ok = False
        if ok:
            self.spooling = True
            self.cond.notify()
        else:
            self.dropped["spool_full"] += samples

    def _next(self):
        """Under the lock: ('q', body, samples), ('spool', seq, body, samples) or None."""
        if self.q:
            body, samples = self.q[0]
            return ("q", None, body, samples)
        if self.spool is not None and len(self.spool):
            try:
                seq, body, samples = self.spool.oldest()
            except SpoolCorrupt as e:
                seq, why, samples = e.args
                log.warning("remote-write: dropping unreadable spool file %s (%s)", self.spool.path(seq), why)
                self.spool.remove(seq)
                self.dropped["spool_corrupt"] += samples
                return self._next()
            return ("spool", seq, body, samples)
        self.spooling = False
        return None

    def _done(self, item) -> None:
        if self.closed:                 # close() gave up waiting and spooled it: it is sent again, identical
            return
        where, seq, body, samples = item
        if where == "q":
            self.q.popleft()
            self.q_bytes -= len(body)
            self.q_samples -= samples
        else:
            self.spool.remove(seq)

    def _worker(self) -> None:
        while True:
            with self.cond:
                item = self._next()
                while item is None and not self.stopping:
                    self.cond.wait(1.0)
                    item = self._next()
                if item is None:
                    break
            if not self._push(item[2], item[3]):
                break                       # stopping and out of time: close() spools the rest
            with self.lock:
                self._done(item)
        self._final_spool()

    # ------------------------------------------------------------ HTTP

    def _push(self, body: bytes, samples: int) -> bool:
        """Push one request until accepted or dropped (True), or the stop deadline passes (False)."""
        attempt = 0
        while True:
            timeout = self.cfg.timeout
            if self.stopping:
                left = self.stop_deadline - time.monotonic()
                if left <= 0.05:
                    return False
                timeout = min(timeout, left)
            status, headers, text = self._post(body, timeout)
            if status is not None and 200 <= status < 300:
                self.sent += samples
                self.last_success = time.time()
                self.up = True
                if self._last_problem:
                    log.info("remote-write: pushing again to %s", self.url)
                    self._last_problem = None
                return True
            self.up = False
            if status is None or status == 429 or status >= 500:
                self.failed += samples
                delay = None
                if status == 429:
                    delay = retry_after_seconds(headers.get("Retry-After"), cap=self.cfg.max_retry_after)
                if delay is None:
                    d = min(self.cfg.max_backoff, self.cfg.min_backoff * (2 ** min(attempt, 30)))
                    delay = d / 2 + random.uniform(0, d / 2)
                attempt += 1
                problem = text if status is None else f"HTTP {status}"
                if problem != self._last_problem:
                    log.warning("remote-write: push to %s failed (%s); retrying with backoff", self.url, problem)
                    self._last_problem = problem
                if not self._sleep(delay):
                    return False
                continue
            reason = "unauthorized" if status in (401, 403) else "bad_request"
            self.dropped[reason] += samples
            log.warning("remote-write: %s rejected a request of %d samples (HTTP %d: %s); dropped", self.url,
                        samples, status, text[:300].strip())
            return True

    def _sleep(self, delay: float) -> bool:
        end = time.monotonic() + delay
        while True:
            now = time.monotonic()
            if self.stopping:
                end = min(end, self.stop_deadline)
                if now >= self.stop_deadline - 0.05:
                    return False
            if now >= end:
                return True
            self.wake.wait(min(end - now, 1.0))

    def _post(self, body: bytes, timeout: float):
        try:
            if self.conn is None:
                if self.https:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.tls)
                else:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            conn = self.conn
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            conn.request("POST", self.path, body, self.headers)
            resp = conn.getresponse()
            data = resp.read(MAX_ANSWER)        # a receiver's error text; never all of a huge body
            status, headers = resp.status, resp.headers
            if resp.will_close or not resp.isclosed():
                self._drop_conn()
            text = data[:1000].decode("utf-8", "replace")
            key = str(status)
        except (OSError, http.client.HTTPException) as e:
            self._drop_conn()
            status, headers = None, {}
            text = type(e).__name__ + (f": {e.strerror}" if getattr(e, "strerror", None) else "")
            key = "error"
        self.requests[key] = self.requests.get(key, 0) + 1
        return status, headers, text

    def _drop_conn(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None

    # ------------------------------------------------------------ shutdown

    def stop(self, deadline: float) -> None:
        with self.cond:
            self.stopping = True
            self.stop_deadline = deadline
            self.cond.notify_all()
        self.wake.set()

    def join(self) -> None:
        left = self.stop_deadline - time.monotonic()
        if self.thread.is_alive():
            self.thread.join(max(left, 0) + 0.5)
        if self.thread.is_alive():          # stuck in a request: cut it short
            sock = getattr(self.conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.thread.join(2.0)
        self._final_spool()

    def _final_spool(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            rest = list(self.q)             # older than anything spooled (see the module doc)
            self.q.clear()
            self.q_bytes = self.q_samples = 0
            samples = sum(s for _, s in rest)
            if self.spool is None:
                if samples:
                    self.dropped["shutdown"] += samples
                    log.warning("remote-write: %d samples not pushed to %s before exit (no spool)", samples, self.url)
            elif rest:
                try:
                    written, dropped = self.spool.put_front(rest)
                except OSError as e:
                    log.warning("remote-write: cannot write the spool at exit: %s", e)
                    written, dropped = 0, samples
                self.dropped["spool_full"] += dropped
                if written:
                    log.info("remote-write: %d samples not yet pushed to %s are spooled in %s; the next start "
                             "sends them", written, self.url, self.spool.dir)
        self._drop_conn()

    def release(self) -> None:
        with self.lock:
            if self.spool is not None:
                self.spool.close()
                self.spool = None


class Pusher:
    """Collects once per interval and feeds every endpoint; `start(collect)` with
    the `/metrics` collector's collect()."""

    def __init__(self, cfg: RemoteWriteConfig, spool_base: str | None):
        self.cfg = cfg
        self.compress = snappy_compressor()
        self.writer = None
        self.endpoints = []
        for ep in cfg.endpoints:
            d = None
            if spool_base:
                d = os.path.join(spool_base, hashlib.sha256(safe_url(ep.url).encode()).hexdigest()[:12])
            self.endpoints.append(Endpoint(ep, cfg, d))
        self.collect_fn = None
        self.lock = threading.Lock()          # one write at a time: the ticker's or close()'s
        self.stop_event = threading.Event()
        self.closed = False
        self.writes = 0
        self.thread = threading.Thread(target=self._ticker, name="runwatch-remote-write-tick", daemon=True)

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self.endpoints]

    def start(self, collect, port: int | None = None) -> "Pusher":
        """collect: the /metrics collector's collect(). port: that of the /metrics
        listener: the default instance is HOST:PORT, what a scrape of it would say,
        so two runwatch processes on one machine push distinct series."""
        instance = self.cfg.instance or (socket.gethostname() + (f":{port}" if port else ""))
        base = {"job": self.cfg.job, "instance": instance}
        base.update(self.cfg.external_labels)
        self.writer = SeriesWriter(base)
        self.collect_fn = collect
        for e in self.endpoints:
            if e.spooling:
                log.info("remote-write: resending %d spooled request(s) (%d bytes) to %s first",
                         len(e.spool), e.spool.bytes, e.url)
            e.thread.start()
        self.thread.start()
        return self

    def _ticker(self) -> None:
        next_at = time.monotonic()
        while True:
            next_at += self.cfg.interval
            if self.stop_event.wait(max(next_at - time.monotonic(), 0)):
                return
            try:
                self.write_once()
            except Exception:               # a bug in a collector must not end pushing
                log.exception("remote-write: collecting failed")
            if time.monotonic() > next_at + self.cfg.interval:
                next_at = time.monotonic()    # fell behind (suspended machine): no burst to catch up

    def write_once(self, final: bool = False) -> int:
        with self.lock:
            if self.closed:
                return 0
            families = list(self.collect_fn())
            body, samples = self.writer.write(families, final=final)
            if final:
                self.closed = True
            data = self.compress(body)
            for e in self.endpoints:
                e.enqueue(data, samples)
            self.writes += 1
            return samples

    def close(self, timeout: float | None = None) -> None:
        """The last write (every series ends with a stale marker), then push what is
        pending for at most `timeout` (default flush_timeout) s; spool the rest."""
        timeout = self.cfg.flush_timeout if timeout is None else timeout
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        if self.collect_fn is not None:
            try:
                self.write_once(final=True)
            except Exception:
                log.exception("remote-write: the last collection failed")
        deadline = time.monotonic() + timeout
        for e in self.endpoints:
            e.stop(deadline)
        for e in self.endpoints:
            e.join()
            e.release()

    # ------------------------------------------------------------ metrics

    def collect(self):
        eps = self.endpoints
        lab = ["url"]
        sent = CounterMetricFamily("runwatch_remote_write_samples_sent", "Samples a remote-write receiver accepted.",
                                   labels=lab)
        failed = CounterMetricFamily("runwatch_remote_write_samples_failed",
                                     "Samples in push attempts that failed and are retried (5xx, 429, no answer).",
                                     labels=lab)
        dropped = CounterMetricFamily("runwatch_remote_write_samples_dropped",
                                      "Samples given up on, by reason (bad_request, unauthorized, spool_full, …).",
                                      labels=lab + ["reason"])
        reqs = CounterMetricFamily("runwatch_remote_write_requests",
                                   "Push requests by HTTP status ('error': no answer).", labels=lab + ["code"])
        queue = GaugeMetricFamily("runwatch_remote_write_queue_samples", "Samples waiting in the in-memory queue.",
                                  labels=lab)
        spool = GaugeMetricFamily("runwatch_remote_write_spool_bytes", "Bytes of requests spooled on disk.",
                                  labels=lab)
        last = GaugeMetricFamily("runwatch_remote_write_last_success_timestamp_seconds",
                                 "When a receiver last accepted a push; absent before the first.", labels=lab)
        up = GaugeMetricFamily("runwatch_push_up", "1 while the remote-write receiver accepts pushes, 0 while it "
                               "fails; absent before its first answer.", labels=lab)
        for e in eps:
            sent.add_metric([e.url], e.sent)
            failed.add_metric([e.url], e.failed)
            for reason, v in sorted(e.dropped.items()):
                dropped.add_metric([e.url, reason], v)
            for code, v in sorted(e.requests.items()):
                reqs.add_metric([e.url, code], v)
            queue.add_metric([e.url], e.q_samples)
            spool.add_metric([e.url], e.spool.bytes if e.spool is not None else 0)
            if e.last_success is not None:
                last.add_metric([e.url], e.last_success)
            if e.up is not None:
                up.add_metric([e.url], 1.0 if e.up else 0.0)
        return [f for f in (sent, failed, dropped, reqs, queue, spool, last, up) if f.samples]


def spool_dir_for(directory: str) -> str:
    return os.path.join(directory, REMOTE_WRITE_SPOOL)


def pusher_from(cfg: RemoteWriteConfig | None, data_directory: str | None) -> Pusher | None:
    """A Pusher (not started) for a config; None without one. ValueError for a
    missing snappy codec or a bad TLS file."""
    if cfg is None:
        return None
    base = cfg.spool_dir or spool_dir_for(data_dir(data_directory))
    try:
        return Pusher(cfg, base)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"remote-write: {e}") from None
