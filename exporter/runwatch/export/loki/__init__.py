"""Ship every line to Loki: in order, exactly once, through slow and absent Lokis.

The line path (`Shipper.ship`, the `Ingest.on_block` hook) only stamps a block
of lines with its timestamps and appends it to a bounded in-memory queue; one
background thread batches, encodes and pushes (`POST /loki/api/v1/push`, JSON,
gzip). When the memory queue is full (Loki slow or down), blocks go to a disk
spool in the data directory instead, bounded in bytes; the spool survives a
restart and is read back first, in order.

Order: a record is a block of lines with the timestamp of its first line;
line i of it has timestamp first+i ns. Timestamps are clamped per stream to be
strictly increasing, so Loki (which keeps one copy of identical
timestamp+line pairs) keeps every line and shows them in order. Once anything
is in the spool, new blocks go to the spool too until it is drained, so the
sequence memory -> spool is always oldest first. One push is in flight at a
time; a batch is retried until it is accepted or dropped, then the next.

Retries (jittered exponential backoff) happen only on 429 (Retry-After is
honoured), 5xx, connection errors and timeouts. Other 4xx drop the batch; every
dropped line is counted in runwatch_loki_entries_dropped_total{reason}.

`close()` (SIGTERM, end of `runwatch run`) pushes what is pending for at most
`flush_timeout` seconds, then writes the rest to the front of the spool.

Stream labels (few, bounded): service_name="runwatch", kind, source, host.
Structured metadata per line: run_id, phase, level.
"""
from __future__ import annotations

import base64
import collections
import errno
import fcntl
import gzip
import http.client
import json
import logging
import os
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, unquote

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ...retry import retry_after_seconds
from ...settings import LOKI_SPOOL, data_dir, parse_size  # noqa: F401 - parse_size is part of this module's surface

log = logging.getLogger("runwatch.loki")

PUSH_PATH = "/loki/api/v1/push"
DEFAULT_BATCH_WAIT = 1.0
DEFAULT_BATCH_BYTES = 1 << 20
DEFAULT_QUEUE_BYTES = 32 << 20
DEFAULT_SPOOL_BYTES = 1 << 30
SEGMENT_BYTES = 8 << 20
DROP_REASONS = ("bad_request", "unauthorized", "too_old", "spool_full", "queue_full", "shutdown", "spool_corrupt")
PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class LokiConfig:
    url: str
    tenant: str | None = None
    auth: str | None = None            # "USER:PASSWORD", "Bearer TOKEN" / "bearer:TOKEN", "@FILE"
    spool_dir: str | None = None       # None: no spool (memory only; overflow dropped as queue_full)
    spool_max_bytes: int = DEFAULT_SPOOL_BYTES
    queue_max_bytes: int = DEFAULT_QUEUE_BYTES
    batch_wait: float = DEFAULT_BATCH_WAIT
    batch_max_bytes: int = DEFAULT_BATCH_BYTES
    timeout: float = 10.0
    flush_timeout: float = 5.0
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0
    max_age: float = 7 * 86400.0       # older entries are dropped (too_old): Loki would reject them
    host: str | None = None
    gzip_level: int = 1


def parse_auth(value: str | None) -> dict:
    """HTTP headers for an auth value; raises ValueError (without echoing the secret)."""
    if not value:
        return {}
    if value.startswith("@"):
        try:
            with open(os.path.expanduser(value[1:]), encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as e:
            raise ValueError(f"cannot read the Loki auth file {value[1:]!r}: {e.strerror}") from None
    low = value.lower()
    if low.startswith("bearer ") or low.startswith("bearer:"):
        token = value[7:].strip()
        if not token:
            raise ValueError("Loki auth: empty bearer token")
        return {"Authorization": "Bearer " + token}
    if ":" in value:
        return {"Authorization": "Basic " + base64.b64encode(value.encode("utf-8")).decode("ascii")}
    raise ValueError("Loki auth must be USER:PASSWORD, 'Bearer TOKEN' or @FILE holding one of those")


def safe_url(url: str) -> str:
    """The URL without user:password, for messages."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return f"{p.scheme}://{host}{p.path}"


# ------------------------------------------------------------------ levels

# Case variants spelled out: twice as fast as (?i) on the consumer's per-line path.
_LEVEL_WORDS = {"critical": "critical", "fatal": "critical", "panic": "critical", "error": "error",
                "exception": "error", "traceback": "error", "warning": "warn", "warn": "warn",
                "info": "info", "debug": "debug", "trace": "trace"}
_LEVEL_OF = {}
for _w, _l in _LEVEL_WORDS.items():
    _LEVEL_OF.update({_w: _l, _w.upper(): _l, _w.capitalize(): _l})
_LEVEL_RE = re.compile(r"\b(" + "|".join(sorted(_LEVEL_OF, key=lambda w: (-len(w), w))) + r")\b")
_level_search = _LEVEL_RE.search
_LEVEL_HINTS = (b"crit", b"fatal", b"panic", b"err", b"exception", b"traceback", b"warn", b"info",
                b"debug", b"trace")
DEFAULT_LEVEL = "unknown"
_LEVELS = sorted(set(_LEVEL_WORDS.values())) + [DEFAULT_LEVEL]


def level_of(line: str) -> str:
    """The first level keyword in a line (ERROR, WARNING, INFO, …), else 'unknown'."""
    m = _level_search(line)
    return _LEVEL_OF[m.group(1)] if m else DEFAULT_LEVEL


def _block_may_have_level(block: bytes) -> bool:
    low = block.lower()
    return any(h in low for h in _LEVEL_HINTS)


# ------------------------------------------------------------------ spool

_REC = struct.Struct("<4sIIqI")     # magic, meta length, block length, first ts (ns), lines
_MAGIC = b"RWL1"


def _encode_record(rec) -> bytes:
    skey, rid, phase, ts, block, n, _t = rec
    meta = json.dumps([skey[0], skey[1], rid, phase], separators=(",", ":")).encode("utf-8")
    return _REC.pack(_MAGIC, len(meta), len(block), ts, n) + meta + block


def read_segment(path: str) -> tuple[list, int]:
    """Records of a spool segment, and the bytes at its end that were unreadable."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    pos, size = 0, len(data)
    now = time.monotonic()
    while pos + _REC.size <= size:
        magic, mlen, blen, ts, n = _REC.unpack_from(data, pos)
        end = pos + _REC.size + mlen + blen
        if magic != _MAGIC or end > size:
            break
        try:
            kind, source, rid, phase = json.loads(data[pos + _REC.size:pos + _REC.size + mlen])
        except ValueError:
            break
        out.append(((kind, source), rid, phase, ts, data[end - blen:end], n, now))
        pos = end
    return out, size - pos


class Spool:
    """Segment files `<seq>.seg` in a directory; the lowest sequence is the oldest.

    Several runwatch processes may share a data directory: each takes the
    first slot directory `<dir>/<k>` whose lock it can get (flock), and a new
    process on that slot resends what an earlier one left.
    """

    def __init__(self, base: str, max_bytes: int):
        self.max_bytes = max_bytes
        os.makedirs(base, exist_ok=True)
        k = 0
        while True:
            d = os.path.join(base, str(k))
            os.makedirs(d, exist_ok=True)
            fd = os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                k += 1
        self.dir, self.lock_fd = d, fd
        self.segments: list[int] = sorted(int(f[:-4]) for f in os.listdir(d)
                                          if f.endswith(".seg") and f[:-4].lstrip("-").isdigit())
        self.bytes = sum(os.path.getsize(self.path(s)) for s in self.segments)
        self.next_seq = (self.segments[-1] + 1) if self.segments else 10 ** 12
        self.active = None          # (seq, file) being appended to
        self.active_bytes = 0

    def path(self, seq: int) -> str:
        return os.path.join(self.dir, f"{seq:016d}.seg")

    def append(self, rec) -> bool:
        data = _encode_record(rec)
        if self.bytes + len(data) > self.max_bytes:
            return False
        if self.active is None or self.active_bytes >= SEGMENT_BYTES:
            self._rotate()
            seq = self.next_seq
            self.next_seq += 1
            self.active = (seq, open(self.path(seq), "ab"))
            self.segments.append(seq)
            self.active_bytes = 0
        self.active[1].write(data)
        self.active_bytes += len(data)
        self.bytes += len(data)
        return True

    def _rotate(self) -> None:
        if self.active is not None:
            self.active[1].close()
            self.active = None

    def flush(self) -> None:
        if self.active is not None:
            self.active[1].flush()

    def take_oldest(self) -> int | None:
        """The oldest segment to read (closing the active one if it is the only one)."""
        if not self.segments:
            return None
        seq = self.segments[0]
        if self.active is not None and self.active[0] == seq:
            if self.active_bytes == 0:
                return None
            self._rotate()
        return seq

    def remove(self, seq: int) -> None:
        p = self.path(seq)
        try:
            self.bytes -= os.path.getsize(p)
            os.unlink(p)
        except FileNotFoundError:
            pass
        if seq in self.segments:
            self.segments.remove(seq)
        self.bytes = max(self.bytes, 0)

    def write_front(self, records) -> tuple[int, int]:
        """Write records as the new oldest segment; returns (lines written, lines dropped)."""
        seq = (self.segments[0] - 1) if self.segments else self.next_seq
        if not self.segments:
            self.next_seq += 1
        written = dropped = 0
        tmp = self.path(seq) + ".tmp"
        size = 0
        with open(tmp, "wb") as f:
            for rec in records:
                data = _encode_record(rec)
                if self.bytes + size + len(data) > self.max_bytes:
                    dropped += rec[5]
                    continue
                f.write(data)
                size += len(data)
                written += rec[5]
            f.flush()
            os.fsync(f.fileno())
        if size:
            os.replace(tmp, self.path(seq))
            self.segments.insert(0, seq)
            self.bytes += size
        else:
            os.unlink(tmp)
        return written, dropped

    def close(self) -> None:
        if self.active is not None:
            f = self.active[1]
            f.flush()
            os.fsync(f.fileno())
            self._rotate()
        if self.active_bytes == 0 and self.segments:
            p = self.path(self.segments[-1])
            if os.path.exists(p) and os.path.getsize(p) == 0:
                self.remove(self.segments[-1])
        os.close(self.lock_fd)


# ------------------------------------------------------------------ shipper

class Shipper:
    def __init__(self, cfg: LokiConfig):
        self.cfg = cfg
        p = urlsplit(cfg.url)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise ValueError(f"Loki URL must be http(s)://HOST[:PORT][/PATH], got {safe_url(cfg.url)!r}")
        self.https = p.scheme == "https"
        self.host, self.port = p.hostname, p.port or (443 if self.https else 80)
        path = p.path.rstrip("/")
        self.path = path if path.endswith(PUSH_PATH) else path + PUSH_PATH
        self.headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                        "User-Agent": "runwatch"}
        if p.username is not None:
            self.headers.update(parse_auth(f"{unquote(p.username)}:{unquote(p.password or '')}"))
        self.headers.update(parse_auth(cfg.auth))
        if cfg.tenant:
            self.headers["X-Scope-OrgID"] = cfg.tenant
        self.hostname = cfg.host or socket.gethostname()
        self.url_for_humans = safe_url(cfg.url)

        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.q: collections.deque = collections.deque()
        self.q_bytes = 0
        self.q_lines = 0
        self.last_ts: dict[tuple, int] = {}
        self.spool = Spool(cfg.spool_dir, cfg.spool_max_bytes) if cfg.spool_dir else None
        self.spooling = bool(self.spool and self.spool.segments)
        self.stopping = False
        self.closed = False
        self.stop_deadline = 0.0
        self.wake = threading.Event()

        self.segbuf: collections.deque = collections.deque()   # records read from a spool segment
        self.seg_seq: int | None = None
        self.inflight: list = []
        self.conn = None
        self._metas: dict = {}
        self._labels: dict = {}

        self.sent = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.requests: dict[str, int] = {}
        self.push_buckets = [0] * len(PUSH_BUCKETS)
        self.push_count = 0
        self.push_sum = 0.0
        self._last_problem = None
        self.thread = threading.Thread(target=self._worker, name="runwatch-loki", daemon=True)

    def start(self) -> "Shipper":
        if self.spooling:
            log.info("loki: resending %d spooled segment(s) (%d bytes) from %s first",
                     len(self.spool.segments), self.spool.bytes, self.spool.dir)
        self.thread.start()
        return self

    # ------------------------------------------------------------ line path

    def ship(self, run, block: bytes, ts: float) -> None:
        """`Ingest.on_block`: queue a block of complete (already redacted) lines."""
        spec = run.spec
        n = block.count(b"\n")
        if not n:
            return
        phase = run.state.phase or ""
        self.ship_block((spec.kind, spec.source), spec.id, phase, block, n, ts)

    def ship_block(self, skey: tuple, run_id: str, phase: str, block: bytes, n: int, ts: float) -> None:
        t = int(ts * 1e9)
        with self.lock:
            last = self.last_ts.get(skey, 0)
            if t <= last:
                t = last + 1
            self.last_ts[skey] = t + n - 1
            rec = (skey, run_id, phase, t, block, n, time.monotonic())
            if self.spooling or self.closed or self.q_bytes + len(block) > self.cfg.queue_max_bytes:
                self._spill(rec)
                return
            empty = not self.q
            self.q.append(rec)
            self.q_bytes += len(block)
            self.q_lines += n
            if empty or self.q_bytes >= self.cfg.batch_max_bytes:
                self.cond.notify()

    def _spill(self, rec) -> None:
        """Under the lock: the memory queue is full (or spooling): append to the spool."""
        if self.spool is None:
            self.dropped["shutdown" if self.closed else "queue_full"] += rec[5]
            return
        if not self.spooling:
            self.spooling = True
            log.warning("loki: memory queue full (%d bytes); spooling to %s", self.q_bytes, self.spool.dir)
        try:
            ok = self.spool.append(rec)
        except OSError as e:
            log.warning("loki: cannot write the spool: %s", e)
            ok = False
        if not ok:
            self.dropped["spool_full"] += rec[5]

    # ------------------------------------------------------------ worker

    def _worker(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                if not batch:
                    continue
                self.inflight = batch        # spooled at exit unless accepted or dropped
                if not self._push(batch):
                    break
                self.inflight = []
        except Exception:       # noqa: BLE001 - never lose the queue to a bug silently
            log.exception("loki: shipper thread failed; spooling what is left")
        finally:
            self._final_spool()

    def _next_batch(self):
        """A list of records (≤ batch_max_bytes), [] to come round again, None when done."""
        cfg = self.cfg
        if not self.segbuf and self.seg_seq is not None:     # all of that segment acked or dropped
            with self.lock:
                self.spool.remove(self.seg_seq)
            self.seg_seq = None
        if not self.segbuf:
            seq = None
            with self.lock:
                if not self.q and self.spooling:
                    seq = self.spool.take_oldest()
                    if seq is None:
                        self.spooling = False
                        log.info("loki: spool drained")
            if seq is not None:
                recs, bad = read_segment(self.spool.path(seq))
                if bad:
                    log.warning("loki: %d unreadable bytes at the end of spool segment %s", bad, seq)
                    self.dropped["spool_corrupt"] += 1
                self.segbuf.extend(recs)
                self.seg_seq = seq
                return []
        if self.segbuf:
            return self._take(self.segbuf, None)
        with self.cond:
            while not self.q:
                if self.stopping:
                    return None
                if self.spooling:
                    return []
                self.cond.wait(1.0)
                if self.spool is not None:
                    self.spool.flush()
            first = self.q[0][6]
            while not self.stopping and self.q_bytes < cfg.batch_max_bytes:
                left = first + cfg.batch_wait - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self._take(self.q, self)

    def _take(self, src: collections.deque, mem) -> list:
        """Pop records up to batch_max_bytes (splitting a big one at a line)."""
        cap = self.cfg.batch_max_bytes
        size = 0
        batch = []
        oldest = int((time.time() - self.cfg.max_age) * 1e9)
        while src and size < cap:
            rec = src[0]
            block = rec[4]
            if rec[3] < oldest:
                src.popleft()
                self._unqueue(mem, rec)
                self.dropped["too_old"] += rec[5]
                continue
            if size + len(block) > cap and batch:
                break
            if len(block) > cap:          # split at a line boundary
                cut = block.rfind(b"\n", 0, cap) + 1 or (block.find(b"\n") + 1)
                k = block.count(b"\n", 0, cut)
                head = rec[:3] + (rec[3], block[:cut], k, rec[6])
                src[0] = rec[:3] + (rec[3] + k, block[cut:], rec[5] - k, rec[6])
                self._unqueue(mem, head)
                batch.append(head)
                size += cut
                break
            src.popleft()
            self._unqueue(mem, rec)
            batch.append(rec)
            size += len(block)
        return batch

    def _unqueue(self, mem, rec) -> None:
        if mem is not None:
            self.q_bytes -= len(rec[4])
            self.q_lines -= rec[5]

    # ------------------------------------------------------------ encode & push

    def _labels_of(self, skey):
        lab = self._labels.get(skey)
        if lab is None:
            lab = self._labels[skey] = {"service_name": "runwatch", "kind": skey[0], "source": skey[1],
                                        "host": self.hostname}
        return lab

    def _meta(self, rid, phase, level):
        k = (rid, phase, level)
        m = self._metas.get(k)
        if m is None:
            if len(self._metas) > 10000:
                self._metas.clear()
            m = {"run_id": rid, "level": level}
            if phase:
                m["phase"] = phase
            m = self._metas[k] = m
        return m

    def encode(self, batch) -> bytes:
        streams: dict = {}
        for skey, rid, phase, t, block, n, _ in batch:
            vals = streams.get(skey)
            if vals is None:
                vals = streams[skey] = []
            lines = block.decode("utf-8", "replace").split("\n")
            lines.pop()
            if _block_may_have_level(block):
                ms = {lv: self._meta(rid, phase, lv) for lv in _LEVELS}
                search, of, unknown = _level_search, _LEVEL_OF, ms[DEFAULT_LEVEL]
                for i, ln in enumerate(lines):
                    m = search(ln)
                    vals.append([str(t + i), ln, ms[of[m.group(1)]] if m else unknown])
            else:
                m = self._meta(rid, phase, DEFAULT_LEVEL)
                vals.extend([str(t + i), ln, m] for i, ln in enumerate(lines))
        body = {"streams": [{"stream": self._labels_of(k), "values": v} for k, v in streams.items()]}
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return gzip.compress(raw, compresslevel=self.cfg.gzip_level)

    def _push(self, batch) -> bool:
        """Push one batch until accepted or dropped (True), or the stop deadline passes (False)."""
        n = sum(r[5] for r in batch)
        body = self.encode(batch)
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
                self.sent += n
                if self._last_problem:
                    log.info("loki: pushing again to %s", self.url_for_humans)
                    self._last_problem = None
                return True
            if status is None or status == 429 or status >= 500:
                delay = None
                if status == 429:
                    delay = retry_after_seconds(headers.get("Retry-After"), cap=self.cfg.max_retry_after)
                if delay is None:
                    d = min(self.cfg.max_backoff, self.cfg.min_backoff * (2 ** min(attempt, 30)))
                    delay = d / 2 + random.uniform(0, d / 2)
                attempt += 1
                problem = text if status is None else f"HTTP {status}"
                if problem != self._last_problem:
                    log.warning("loki: push to %s failed (%s); retrying with backoff", self.url_for_humans,
                                problem)
                    self._last_problem = problem
                if not self._sleep(delay):
                    return False
                continue
            reason = ("unauthorized" if status in (401, 403) else
                      "too_old" if ("too old" in text or "too far behind" in text) else "bad_request")
            self.dropped[reason] += n
            log.warning("loki: %s rejected a batch of %d lines (HTTP %d: %s); dropped", self.url_for_humans,
                        n, status, text[:200].strip())
            return True

    def _sleep(self, delay: float) -> bool:
        """Back off; False when stopping and the deadline comes first."""
        end = time.monotonic() + delay
        while True:
            now = time.monotonic()
            if self.stopping:
                end = min(end, self.stop_deadline)
                if now >= self.stop_deadline - 0.05:
                    return False
            if now >= end:
                return True
            if self.spool is not None:
                with self.lock:
                    if self.spool is not None:
                        self.spool.flush()
            if self.stopping:
                time.sleep(min(end - now, 0.05))
            else:
                self.wake.wait(min(end - now, 1.0))

    def _post(self, body: bytes, timeout: float):
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self.conn = cls(self.host, self.port, timeout=timeout)
            conn = self.conn
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            conn.request("POST", self.path, body, self.headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            headers = resp.headers
            if resp.will_close:
                self._drop_conn()
            text = data[:1000].decode("utf-8", "replace")
            key = str(status)
        except (OSError, http.client.HTTPException) as e:
            self._drop_conn()
            status, headers = None, {}
            text = type(e).__name__ + (f": {e.strerror}" if getattr(e, "strerror", None) else "")
            key = "error"
        dt = time.perf_counter() - t0
        self.requests[key] = self.requests.get(key, 0) + 1
        self.push_count += 1
        self.push_sum += dt
        for i, b in enumerate(PUSH_BUCKETS):
            if dt <= b:
                self.push_buckets[i] += 1
        return status, headers, text

    def _drop_conn(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None

    # ------------------------------------------------------------ shutdown

    def close(self, timeout: float | None = None) -> None:
        """Push what is pending for at most `timeout` (default flush_timeout) s, spool the rest."""
        timeout = self.cfg.flush_timeout if timeout is None else timeout
        with self.cond:
            if self.stopping:
                return
            self.stopping = True
            self.stop_deadline = time.monotonic() + timeout
            self.cond.notify_all()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout + 0.5)
        if self.thread.is_alive():          # stuck in a request: cut it short
            conn = self.conn
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.thread.join(2.0)
        self._final_spool()                 # no-op if the worker did it

    def _final_spool(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            rest = list(self.inflight) + list(self.segbuf) + list(self.q)
            self.inflight = []
            self.segbuf.clear()
            self.q.clear()
            self.q_bytes = self.q_lines = 0
            lines = sum(r[5] for r in rest)
            if self.spool is None:
                if lines:
                    self.dropped["shutdown"] += lines
                    log.warning("loki: %d lines not pushed before exit (no spool)", lines)
                return
            try:
                written, dropped = self.spool.write_front(rest) if rest else (0, 0)
                if self.seg_seq is not None:
                    self.spool.remove(self.seg_seq)     # its remainder is in the front segment now
                    self.seg_seq = None
                self.spool.flush()
            except OSError as e:
                log.warning("loki: cannot write the spool at exit: %s", e)
                written, dropped = 0, lines
            self.dropped["spool_full"] += dropped
            if written:
                log.info("loki: %d lines not yet pushed are spooled in %s; the next start sends them",
                         written, self.spool.dir)
        self._drop_conn()

    def release(self) -> None:
        """Close the spool files and free its slot (after close())."""
        with self.lock:
            if self.spool is not None:
                self.spool.close()
                self.spool = None

    # ------------------------------------------------------------ metrics

    def collect(self):
        c = CounterMetricFamily("runwatch_loki_entries_sent", "Log lines Loki accepted.")
        c.add_metric([], self.sent)
        yield c
        d = CounterMetricFamily("runwatch_loki_entries_dropped",
                                "Log lines given up on, by reason (bad_request, spool_full, too_old, …).",
                                labels=["reason"])
        for reason, v in sorted(self.dropped.items()):
            d.add_metric([reason], v)
        yield d
        r = CounterMetricFamily("runwatch_loki_push_requests", "Push requests by HTTP status ('error': no answer).",
                                labels=["code"])
        for code, v in sorted(self.requests.items()):
            r.add_metric([code], v)
        yield r
        g = GaugeMetricFamily("runwatch_loki_queue_entries", "Log lines waiting in the in-memory queue.")
        g.add_metric([], self.q_lines)
        yield g
        s = GaugeMetricFamily("runwatch_loki_spool_bytes", "Bytes of log lines spooled on disk.")
        s.add_metric([], self.spool.bytes if self.spool is not None else 0)
        yield s
        h = HistogramMetricFamily("runwatch_loki_push_duration_seconds", "Duration of push requests to Loki.")
        h.add_metric([], [(str(b), float(c)) for b, c in zip(PUSH_BUCKETS, self.push_buckets)]
                     + [("+Inf", float(self.push_count))], self.push_sum)
        yield h


# ------------------------------------------------------------------ wiring helpers

def spool_dir_for(directory: str) -> str:
    return os.path.join(directory, LOKI_SPOOL)


def from_args(args, base: LokiConfig | None = None) -> Shipper | None:
    """A started Shipper from --loki-* flags over a config's `loki:` (None without a URL).

    The spool goes to <data dir>/loki-spool unless the config names a spool_dir.
    Raises ValueError for a bad URL or auth value (the message holds no secret).
    """
    from dataclasses import replace

    url = getattr(args, "loki_url", None) or (base.url if base else None)
    if not url:
        return None
    cfg = replace(base, url=url) if base else LokiConfig(url=url)
    if getattr(args, "loki_tenant", None):
        cfg.tenant = args.loki_tenant
    if getattr(args, "loki_auth", None):
        cfg.auth = args.loki_auth
    if getattr(args, "loki_spool_max_bytes", None) is not None:
        cfg.spool_max_bytes = args.loki_spool_max_bytes
    if getattr(args, "loki_flush_timeout", None) is not None:
        cfg.flush_timeout = args.loki_flush_timeout
    if not cfg.spool_dir:
        cfg.spool_dir = spool_dir_for(data_dir(getattr(args, "data_dir", None)))
    try:
        shipper = Shipper(cfg)
    except OSError as e:
        log.warning("loki: cannot use the spool in %s (%s); lines that do not fit in memory while Loki is "
                    "down will be dropped", cfg.spool_dir, e.strerror or e)
        cfg.spool_dir = None
        shipper = Shipper(cfg)
    return shipper.start()


def redactor_from(patterns) -> "object":
    """The Ingest redactor: built-in rules plus the user's patterns."""
    from ...parse.redact import Redactor, default_redactor
    return Redactor(patterns) if patterns else default_redactor()


LOKI_KEYS = ("url", "tenant", "auth", "spool_dir", "spool_max_bytes", "queue_max_bytes", "batch_wait_seconds",
             "batch_max_bytes", "timeout_seconds", "flush_timeout_seconds", "min_backoff_seconds",
             "max_backoff_seconds", "max_age_seconds")


def config_from_mapping(m, base_dir: str) -> LokiConfig:
    """The `loki:` mapping of a serve config; ConfigError with file:line on a problem."""
    from ...yamlfile import ConfigError, check_keys, expect

    if not isinstance(m, dict) or not hasattr(m, "line_of"):
        raise ConfigError(getattr(m, "file", "<config>"), getattr(m, "line", None),
                          "loki: must be a mapping with at least 'url'")
    check_keys(m, LOKI_KEYS, "loki")
    if "url" not in m:
        raise ConfigError(m.file, m.line, "loki: needs a 'url' (e.g. http://loki:3100)")
    url = expect(m["url"], str, m, "url", "loki: url")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ConfigError(m.file, m.line_of("url"), f"loki: url must be http(s)://HOST[:PORT], got {safe_url(url)!r}")
    cfg = LokiConfig(url=url)
    if "tenant" in m:
        cfg.tenant = str(m["tenant"])
    if "auth" in m:
        cfg.auth = expect(m["auth"], str, m, "auth", "loki: auth")
        try:
            parse_auth(cfg.auth)
        except ValueError as e:
            raise ConfigError(m.file, m.line_of("auth"), f"loki: {e}") from None
    if "spool_dir" in m:
        cfg.spool_dir = os.path.join(base_dir, os.path.expanduser(expect(m["spool_dir"], str, m, "spool_dir",
                                                                        "loki: spool_dir")))
    for key, attr in (("spool_max_bytes", "spool_max_bytes"), ("queue_max_bytes", "queue_max_bytes"),
                      ("batch_max_bytes", "batch_max_bytes")):
        if key in m:
            try:
                v = parse_size(m[key])
            except ValueError as e:
                raise ConfigError(m.file, m.line_of(key), f"loki: {key}: {e}") from None
            if v < 1024:
                raise ConfigError(m.file, m.line_of(key), f"loki: {key} must be at least 1KiB, got {v}")
            setattr(cfg, attr, v)
    for key, attr in (("batch_wait_seconds", "batch_wait"), ("timeout_seconds", "timeout"),
                      ("flush_timeout_seconds", "flush_timeout"), ("min_backoff_seconds", "min_backoff"),
                      ("max_backoff_seconds", "max_backoff"), ("max_age_seconds", "max_age")):
        if key in m:
            v = expect(m[key], (int, float), m, key, f"loki: {key}")
            if v <= 0:
                raise ConfigError(m.file, m.line_of(key), f"loki: {key} must be positive, got {v}")
            setattr(cfg, attr, float(v))
    return cfg


def redact_from_config(value, m) -> list[str]:
    """The top-level `redact:` list of regexes; ConfigError with the line of a bad one."""
    from ...parse.redact import compile_patterns
    from ...yamlfile import ConfigError

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(m.file, m.line_of("redact"), "redact: must be a list of regular expressions")
    out = []
    for i, p in enumerate(value):
        line = value.line_of(i) if hasattr(value, "line_of") else m.line_of("redact")
        if not isinstance(p, str):
            raise ConfigError(m.file, line, f"redact: each pattern must be a string, got {p!r}")
        try:
            out += compile_patterns([p])
        except ValueError as e:
            raise ConfigError(m.file, line, str(e)) from None
    return out
