"""A tiny client for runwatch's events API, for jobs to report exactly.

    from runwatch.client import RunwatchClient, RunwatchLogHandler

    rw = RunwatchClient("http://127.0.0.1:9897", token="…", run_id="wf-42")
    rw.event("agent_started", agent_id="planner")
    rw.event("data_flow", from_agent="planner", to_agent="coder", data_size=2048)
    rw.event("progress_update", progress=40, message="plan ready")
    logging.getLogger().addHandler(RunwatchLogHandler(rw))

Promises to the job, whatever runwatch does:
- `event()` never raises and never blocks: it appends to a bounded in-memory
  queue (a few microseconds) and returns; a background thread sends batches
  (a JSON array per POST) every `flush_interval` seconds or when `batch_size`
  events are waiting.
- When runwatch is down, slow or refuses, events are dropped and counted
  (`client.dropped`, by reason), never retried forever, never piled up beyond
  `max_queue`. After a failed send the client backs off (0.5 s doubling to 30 s).
- At interpreter exit the queue is flushed for at most `exit_timeout` seconds.

Standard library only: the job needs nothing but runwatch itself. Events are
checked against runwatch's own schema (events.py) before they are queued: one the
server would refuse is dropped at once (`dropped["invalid"]`), and undecodable
bytes of a file name (os.fsdecode's surrogates) are sent as `\\xNN`. url, token
and run_id default to RUNWATCH_URL, RUNWATCH_TOKEN and RUNWATCH_RUN_ID.
"""
from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from .events import EventError, escape_surrogates, make
from .retry import retry_after_seconds

__all__ = ["RunwatchClient", "RunwatchLogHandler"]

log = logging.getLogger("runwatch.client")

DEFAULT_URL = "http://127.0.0.1:9897"
MAX_BODY = 900 * 1024        # stay under the server's 1 MiB default
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0


class RunwatchClient:
    def __init__(self, url: str | None = None, token: str | None = None, run_id: str | None = None, *,
                 kind: str | None = None, batch_size: int = 200, flush_interval: float = 0.5,
                 max_queue: int = 10000, timeout: float = 2.0, exit_timeout: float = 2.0):
        self.url = (url or os.environ.get("RUNWATCH_URL") or DEFAULT_URL).rstrip("/")
        self.endpoint = self.url + "/api/events"
        self.token = token if token is not None else os.environ.get("RUNWATCH_TOKEN")
        self.run_id = run_id if run_id is not None else os.environ.get("RUNWATCH_RUN_ID")
        self.kind = kind
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = float(flush_interval)
        self.max_queue = max(1, int(max_queue))
        self.timeout = float(timeout)
        self.exit_timeout = float(exit_timeout)
        self.sent = 0                # events runwatch applied
        self.rejected = 0            # events runwatch refused as invalid (400)
        self.dropped: collections.Counter = collections.Counter()   # reason -> events
        self.last_error: str | None = None
        self._q: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._pid = None
        self._start_lock = threading.Lock()
        self._backoff = 0.0
        self._retry_at = 0.0
        self._warned: set = set()

    # ------------------------------------------------------------ the job's side

    def event(self, type: str, **fields) -> bool:    # noqa: A002 - the API's keyword: event type
        """Queue one event; True if queued, False if dropped. Never raises."""
        try:
            item = {"type": type, "ts": time.time()}
            if self.run_id is not None and "run_id" not in fields:
                item["run_id"] = self.run_id
            if self.kind is not None:
                item["kind"] = _text(self.kind)
            item.update({k: _text(v) for k, v in fields.items()})
            try:                    # the server's own schema (events.py): refused here, not after a POST
                make(type, {k: v for k, v in item.items() if k not in _RESERVED}, item["ts"])
            except EventError as e:
                self.dropped["invalid"] += 1
                self.last_error = f"invalid {type!r} event: {e}"
                self._warn("invalid", f"dropped an event runwatch would refuse: {self.last_error}")
                return False
            return self._put(item)
        except Exception:   # noqa: BLE001 - event() never raises into the job
            return False

    def log(self, line: str, level: str = "INFO", logger: str | None = None) -> bool:
        """Queue one line of the job's output (type `log`)."""
        try:
            item = {"type": "log", "ts": time.time(), "line": _text(str(line)), "level": _text(level)}
            if logger:
                item["logger"] = logger
            if self.run_id is not None:
                item["run_id"] = self.run_id
            if self.kind is not None:
                item["kind"] = _text(self.kind)
            return self._put(item)
        except Exception:   # noqa: BLE001 - log() never raises into the job
            return False

    def _put(self, item: dict) -> bool:
        if self._closing:
            self.dropped["closed"] += 1
            return False
        if len(self._q) >= self.max_queue:
            self.dropped["queue_full"] += 1
            return False
        self._q.append(item)
        if self._pid != os.getpid():        # first use, or a forked child: (re)start the sender
            self._start()
        if len(self._q) >= self.batch_size:
            self._wake.set()
        return True

    @property
    def queued(self) -> int:
        return len(self._q)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued was sent or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._q and self._idle.is_set():
                return True
            self._retry_at = 0.0            # a flush does not wait out a back-off
            self._wake.set()
            time.sleep(0.01)
        return not self._q and self._idle.is_set()

    def close(self, timeout: float = 2.0) -> None:
        """Flush for at most `timeout` seconds, then stop the sender; later events are dropped."""
        try:
            if self._thread is not None and self._pid == os.getpid():
                self.flush(timeout)
            self._closing = True
            self._wake.set()
            left = len(self._q)
            if left:
                self._q.clear()
                self.dropped["closed"] += left
        except Exception:   # noqa: BLE001 - close() runs at exit and never raises into the job
            pass

    def stats(self) -> dict:
        return {"sent": self.sent, "rejected": self.rejected, "dropped": dict(self.dropped),
                "queued": len(self._q), "last_error": self.last_error}

    # ------------------------------------------------------------ the sender

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            first = self._pid is None
            self._pid = os.getpid()
            self._idle.set()
            self._thread = threading.Thread(target=self._loop, name="runwatch-client", daemon=True)
            self._thread.start()
            if first:
                atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        self.close(self.exit_timeout)

    def _loop(self) -> None:
        while not self._closing:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if time.monotonic() < self._retry_at:
                continue
            while self._q and not self._closing:
                self._idle.clear()
                try:
                    self._send_some()
                except Exception as e:      # noqa: BLE001 - never let the sender die
                    self.last_error = f"internal: {e!r}"
                finally:
                    self._idle.set()
                if time.monotonic() < self._retry_at:
                    break

    def _take(self) -> tuple[list, bytes]:
        batch, size, parts = [], 2, []
        while self._q and len(batch) < self.batch_size:
            item = self._q[0]
            raw = json.dumps(item, separators=(",", ":"), default=str)
            if batch and size + len(raw) + 1 > MAX_BODY:
                break
            self._q.popleft()
            if len(raw) + 2 > MAX_BODY:
                self.dropped["too_large"] += 1
                continue
            batch.append(item)
            parts.append(raw)
            size += len(raw) + 1
        return batch, ("[" + ",".join(parts) + "]").encode("utf-8")

    def _send_some(self) -> None:
        batch, body = self._take()
        if not batch:
            return
        if urllib.parse.urlsplit(self.endpoint).scheme not in ("http", "https"):
            self._fail(batch, "unreachable", f"cannot reach {self.url}: not an http(s) URL")
            return
        headers = {"Content-Type": "application/json", "User-Agent": "runwatch-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.endpoint, data=body, method="POST",  # noqa: S310 - scheme checked above
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:     # noqa: S310 - scheme checked above
                res = _json(resp.read())
                self.sent += int(res.get("applied", len(batch)))
                self._backoff = 0.0
                return
        except urllib.error.HTTPError as e:
            code, res, retry_after = e.code, _json(e.read()), (e.headers or {}).get("Retry-After")
        except (urllib.error.URLError, OSError, ValueError) as e:
            self._fail(batch, "unreachable", f"cannot reach {self.url}: {getattr(e, 'reason', e)}")
            return
        if code == 400:
            self.sent += int(res.get("applied", 0))
            n = int(res.get("rejected", len(batch)))
            self.rejected += n
            self.last_error = res.get("error") or "400"
            self._warn("rejected", f"runwatch rejected {n} event(s): {self.last_error}")
            self._backoff = 0.0
        elif code == 429:
            for item in reversed(batch):    # not their fault: try these again after Retry-After
                if len(self._q) < self.max_queue:
                    self._q.appendleft(item)
                else:
                    self.dropped["queue_full"] += 1
            retry = retry_after_seconds(retry_after, cap=BACKOFF_MAX)
            self._retry_at = time.monotonic() + (1.0 if retry is None else retry)
            self.last_error = "429 too many requests"
        elif code in (401, 403):
            self._fail(batch, "unauthorized", f"HTTP {code}: {res.get('error', 'check the token')}")
        elif code == 404:
            self._fail(batch, "disabled", f"HTTP 404: {res.get('error', 'events API not found')}")
        elif code == 413:
            self._fail(batch, "too_large", f"HTTP 413: {res.get('error', 'body too large')}", backoff=False)
        else:
            self._fail(batch, "server_error", f"HTTP {code}: {res.get('error', '')}")

    def _fail(self, batch: list, reason: str, message: str, backoff: bool = True) -> None:
        self.dropped[reason] += len(batch)
        self.last_error = message
        self._warn(reason, f"dropped {len(batch)} event(s): {message}")
        if backoff:
            self._backoff = min(BACKOFF_MAX, max(BACKOFF_MIN, self._backoff * 2))
            self._retry_at = time.monotonic() + self._backoff

    def _warn(self, reason: str, message: str) -> None:
        if reason not in self._warned:      # once per reason: a job's log is not runwatch's
            self._warned.add(reason)
            log.warning("runwatch client: %s (further ones only counted)", message)


_RESERVED = ("type", "run_id", "ts", "kind")


def _text(v):
    """A string from the job (a file name os.fsdecode made, say) as valid Unicode: undecodable
    bytes become \\xNN instead of a lone surrogate the server would refuse."""
    return escape_surrogates(v) if isinstance(v, str) else v


def _json(raw: bytes) -> dict:
    try:
        v = json.loads(raw or b"{}")
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {}


class RunwatchLogHandler(logging.Handler):
    """Forward a job's log records to runwatch as lines of output.

    Each record becomes one `log` item (its formatted text, tracebacks
    included, and its level): runwatch counts it as output (lines, last-output
    age, the status page's recent lines, after redaction) and counts records at
    ERROR and above as errors (runwatch_errors_total). Records are not parsed
    into other events: report those exactly with `client.event(...)`.
    """

    DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

    def __init__(self, client: RunwatchClient | None = None, level: int = logging.NOTSET, **client_kw):
        super().__init__(level)
        self.client = client if client is not None else RunwatchClient(**client_kw)
        self.setFormatter(logging.Formatter(self.DEFAULT_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == "runwatch.client" or record.name.startswith("runwatch.client."):
                return                      # our own warnings would loop
            self.client.log(self.format(record), record.levelname, record.name)
        except Exception:                   # noqa: BLE001 - never into the job, not even to stderr
            pass

    def flush(self) -> None:
        self.client.flush(1.0)

    def close(self) -> None:
        try:
            self.client.flush(1.0)
        finally:
            super().close()
