"""The shipper: a bounded queue of records, one thread that batches, pushes and retries, and its self-metrics.

See the package docstring (runwatch.export.loki) for the delivery guarantees.
"""
from __future__ import annotations

import collections
import gzip
import http.client
import json
import logging
import random
import socket
import threading
import time
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ...retry import retry_after_seconds
from .levels import DEFAULT_LEVEL, LEVEL_OF_WORD, LEVELS, block_may_have_level, level_word_search
from .spool import Record, Spool, read_segment

log = logging.getLogger("runwatch.loki")

DROP_REASONS = ("bad_request", "unauthorized", "too_old", "spool_full", "queue_full", "shutdown", "spool_corrupt")
PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MIN_BATCH_BYTES = 16 << 10      # a push that times out is retried as halves, down to this
GROW_AFTER = 4                  # quick accepted pushes in a row before the batch size doubles back


class Answer(NamedTuple):
    """What one POST got: an HTTP status, or None (no answer: connection error or timeout)."""
    status: int | None
    headers: object
    text: str              # the body's start, or the error's name
    seconds: float
    timed_out: bool        # no answer in time after connecting: sending the body or waiting for the answer


# What _push did with a batch.
DONE = "done"              # accepted, or rejected and dropped (counted)
SMALLER = "smaller"        # it timed out: batch_bytes is smaller now; push its records again in smaller batches
STOPPED = "stopped"        # the stop deadline came first; the batch is still in flight


class Shipper:
    """Ships records to the Loki a LokiConfig (runwatch.export.loki.config) names."""

    def __init__(self, cfg: "LokiConfig"):  # noqa: F821 - config.py builds Shippers, so it is not imported here
        self.cfg = cfg
        target = cfg.push_target()          # ValueError for a bad URL or auth value
        self.https, self.host, self.port, self.path = target.https, target.host, target.port, target.path
        self.headers = target.headers
        self.url_for_humans = target.url_for_humans
        self.hostname = cfg.host or socket.gethostname()

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
        self.inflight: collections.deque = collections.deque()   # taken, not yet accepted or dropped
        self.batch_bytes = cfg.batch_max_bytes      # the batch size now: halved on a timeout, grown back after
        self.failures = 0                           # retryable failures in a row, for the backoff
        self.quick = 0                              # accepted pushes in a row quick enough to grow
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
            rec = Record(skey, run_id, phase, t, block, n, time.monotonic())
            if self.spooling or self.closed or self.q_bytes + len(block) > self.cfg.queue_max_bytes:
                self._spill(rec)
                return
            empty = not self.q
            self.q.append(rec)
            self.q_bytes += len(block)
            self.q_lines += n
            if empty or self.q_bytes >= self.batch_bytes:
                self.cond.notify()

    def _spill(self, rec: Record) -> None:
        """Under the lock: the memory queue is full (or spooling): append to the spool."""
        if self.spool is None:
            self.dropped["shutdown" if self.closed else "queue_full"] += rec.lines
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
            self.dropped["spool_full"] += rec.lines

    # ------------------------------------------------------------ worker

    def _worker(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                if not batch:
                    continue
                self.inflight.extend(batch)        # spooled at exit unless accepted or dropped
                if not self._push_inflight():
                    break
        except Exception:
            log.exception("loki: shipper thread failed; spooling what is left")
        finally:
            self._final_spool()

    def _next_batch(self):
        """A list of records (≤ batch_bytes), [] to come round again, None when done."""
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
            first = self.q[0].queued_at
            while not self.stopping and self.q_bytes < self.batch_bytes:
                left = first + cfg.batch_wait - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self._take(self.q, self)

    def _take(self, src: collections.deque, mem) -> list:
        """Pop records up to batch_bytes (splitting a big one at a line)."""
        cap = self.batch_bytes
        size = 0
        batch = []
        oldest = int((time.time() - self.cfg.max_age) * 1e9)
        while src and size < cap:
            rec = src[0]
            block = rec.block
            if rec.first_ns < oldest:
                src.popleft()
                self._unqueue(mem, rec)
                self.dropped["too_old"] += rec.lines
                continue
            if size + len(block) > cap and batch:
                break
            if len(block) > cap:          # split at a line boundary
                cut = block.rfind(b"\n", 0, cap) + 1 or (block.find(b"\n") + 1)
                k = block.count(b"\n", 0, cut)
                head, src[0] = rec.split(cut, k)
                self._unqueue(mem, head)
                batch.append(head)
                size += cut
                break
            src.popleft()
            self._unqueue(mem, rec)
            batch.append(rec)
            size += len(block)
        return batch

    def _unqueue(self, mem, rec: Record) -> None:
        if mem is not None:
            self.q_bytes -= len(rec.block)
            self.q_lines -= rec.lines

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
        for skey, rid, phase, t, block, _, _ in batch:
            vals = streams.get(skey)
            if vals is None:
                vals = streams[skey] = []
            lines = block.decode("utf-8", "replace").split("\n")
            lines.pop()
            if block_may_have_level(block):
                ms = {lv: self._meta(rid, phase, lv) for lv in LEVELS}
                search, of, unknown = level_word_search, LEVEL_OF_WORD, ms[DEFAULT_LEVEL]
                for i, ln in enumerate(lines):
                    m = search(ln)
                    vals.append([str(t + i), ln, ms[of[m.group(1)]] if m else unknown])
            else:
                m = self._meta(rid, phase, DEFAULT_LEVEL)
                vals.extend([str(t + i), ln, m] for i, ln in enumerate(lines))
        body = {"streams": [{"stream": self._labels_of(k), "values": v} for k, v in streams.items()]}
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return gzip.compress(raw, compresslevel=self.cfg.gzip_level)

    def _push_inflight(self) -> bool:
        """Push the in-flight records in order, as batches of at most batch_bytes; False when stopping first.

        The batch being pushed stays at the front of `inflight` until it is
        accepted or dropped, so an exit in the middle spools it. After a timeout
        the same records go again in smaller batches with the same timestamps:
        what Loki had in fact accepted is sent again and ignored as a duplicate.
        """
        while self.inflight:
            with self.lock:
                part = self._take(self.inflight, None)      # may split a record at a line
                self.inflight.extendleft(reversed(part))
            if not part:                                    # what was left was too old: dropped
                continue
            outcome = self._push(part)
            if outcome == STOPPED:
                return False
            if outcome == DONE:
                with self.lock:
                    for _ in range(min(len(part), len(self.inflight))):   # close() may have spooled them
                        self.inflight.popleft()
        return True

    def _push(self, batch) -> str:
        """Push one batch until it is accepted or dropped (DONE), a timeout calls for smaller batches
        (SMALLER), or the stop deadline passes (STOPPED)."""
        n = sum(r.lines for r in batch)
        size = sum(len(r.block) for r in batch)
        body = self.encode(batch)
        while True:
            timeout = self.cfg.timeout
            if self.stopping:
                left = self.stop_deadline - time.monotonic()
                if left <= 0.05:
                    return STOPPED
                timeout = min(timeout, left)
            ans = self._post(body, timeout)
            status = ans.status
            if status is not None and 200 <= status < 300:
                self.sent += n
                self.failures = 0
                if self._last_problem:
                    log.info("loki: pushing again to %s", self.url_for_humans)
                    self._last_problem = None
                self._grow(size, ans.seconds)
                return DONE
            if status is None or status == 429 or status >= 500:
                delay = None
                if status == 429:
                    delay = retry_after_seconds(ans.headers.get("Retry-After"), cap=self.cfg.max_retry_after)
                if delay is None:
                    d = min(self.cfg.max_backoff, self.cfg.min_backoff * (2 ** min(self.failures, 30)))
                    delay = d / 2 + random.uniform(0, d / 2)
                self.failures += 1
                problem = ans.text if status is None else f"HTTP {status}"
                if problem != self._last_problem:
                    log.warning("loki: push to %s failed (%s); retrying with backoff", self.url_for_humans,
                                problem)
                    self._last_problem = problem
                if not self._sleep(delay):
                    return STOPPED
                if ans.timed_out and self._shrink(size, n, ans.seconds):
                    return SMALLER
                continue
            self.failures = 0
            reason = ("unauthorized" if status in (401, 403) else
                      "too_old" if ("too old" in ans.text or "too far behind" in ans.text) else "bad_request")
            self.dropped[reason] += n
            log.warning("loki: %s rejected a batch of %d lines (HTTP %d: %s); dropped", self.url_for_humans,
                        n, status, ans.text[:200].strip())
            return DONE

    def _shrink(self, size: int, lines: int, seconds: float) -> bool:
        """After a push of `size` bytes timed out: halve the batch size (not below MIN_BATCH_BYTES).
        False when this batch cannot get smaller (then it is retried as it is)."""
        floor = min(MIN_BATCH_BYTES, self.cfg.batch_max_bytes)
        self.quick = 0
        if lines < 2 or size <= floor:
            return False
        self.batch_bytes = max(floor, size // 2)
        log.warning("loki: a push of %d bytes of lines timed out after %.1f s; sending batches of at most %d bytes",
                    size, seconds, self.batch_bytes)
        return True

    def _grow(self, size: int, seconds: float) -> None:
        """After a push of `size` bytes was accepted in `seconds`: double the batch size (up to
        batch_max_bytes) once GROW_AFTER pushes in a row were quick enough that a batch twice as big
        would, at the same rate, take under a quarter of the timeout."""
        top = self.cfg.batch_max_bytes
        if self.batch_bytes >= top or size <= 0:
            return
        if seconds * (2 * self.batch_bytes / size) >= self.cfg.timeout / 4:
            self.quick = 0
            return
        self.quick += 1
        if self.quick >= GROW_AFTER:
            self.quick = 0
            self.batch_bytes = min(top, 2 * self.batch_bytes)
            if self.batch_bytes == top:
                log.info("loki: pushes are quick again; batches back to %d bytes", top)

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

    def _post(self, body: bytes, timeout: float) -> Answer:
        t0 = time.perf_counter()
        connected = False
        try:
            if self.conn is None:
                cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self.conn = cls(self.host, self.port, timeout=timeout)
            conn = self.conn
            conn.timeout = timeout
            if conn.sock is None:
                conn.connect()              # a timeout here is an unreachable Loki, not a big batch
            else:
                conn.sock.settimeout(timeout)
            connected = True
            conn.request("POST", self.path, body, self.headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            headers = resp.headers
            if resp.will_close:
                self._drop_conn()
            text = data[:1000].decode("utf-8", "replace")
            key = str(status)
            timed_out = False
        except (OSError, http.client.HTTPException) as e:
            self._drop_conn()
            status, headers = None, {}
            text = type(e).__name__ + (f": {e.strerror}" if getattr(e, "strerror", None) else "")
            key = "error"
            timed_out = connected and isinstance(e, TimeoutError)
        dt = time.perf_counter() - t0
        self.requests[key] = self.requests.get(key, 0) + 1
        self.push_count += 1
        self.push_sum += dt
        for i, b in enumerate(PUSH_BUCKETS):
            if dt <= b:
                self.push_buckets[i] += 1
        return Answer(status, headers, text, dt, timed_out)

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
            self.inflight.clear()
            self.segbuf.clear()
            self.q.clear()
            self.q_bytes = self.q_lines = 0
            lines = sum(r.lines for r in rest)
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
        h.add_metric([], [(str(b), float(c)) for b, c in zip(PUSH_BUCKETS, self.push_buckets, strict=True)]
                     + [("+Inf", float(self.push_count))], self.push_sum)
        yield h
