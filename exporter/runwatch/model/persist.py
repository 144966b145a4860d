"""State that survives a restart: each tailed file's position and each run's state.

One SQLite database, `state.db`, in the data directory. A checkpoint writes,
in ONE transaction, a run's serialised state together with the position of
the file it was read from (inode, offset, the last bytes before the offset as
a fingerprint, the partial line not yet framed). Because the pair is committed
atomically, a `kill -9` at any moment leaves either the previous checkpoint or
the new one, never a state that has counted lines the offset says are unread
(double counts) or the other way round (losses): after a restart runwatch
rereads exactly the bytes after the checkpoint.

Checkpoints are cheap and periodic (`checkpoint_seconds`, default 5 s, and on
shutdown), never per line. WAL journal with synchronous=NORMAL: a committed
checkpoint survives a process crash (a power cut may lose the last one, which
only means rereading a little more).

A corrupt or unreadable database is renamed aside (`state.db.corrupt-<time>`)
with a warning and runwatch starts fresh; if even that fails, it runs without
persistence. It never crash-loops on its own state.
"""
from __future__ import annotations

import base64
import collections
import json
import logging
import math
import os
import sqlite3
import threading
import time

from ..events import INT_MAX, INT_MIN, escape_surrogates, unicode_error
from ..settings import private_file
from .runs import Run

log = logging.getLogger("runwatch")

SCHEMA_VERSION = 2

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,           -- config path + run id
    run_id TEXT NOT NULL,
    state TEXT NOT NULL,            -- JSON: RunState.to_dict() + run counters
    saved_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs_aside (   -- saved states that could not be restored, kept for a look
    key TEXT NOT NULL, run_id TEXT NOT NULL, state TEXT NOT NULL, saved_ts REAL NOT NULL,
    aside_ts REAL NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,           -- same key as the run the file feeds
    path TEXT NOT NULL,
    dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,      -- up to 64 bytes before offset
    framer TEXT NOT NULL,           -- JSON: the line framer's state (partial last line read but not yet a line …)
    saved_ts REAL NOT NULL
);
"""


# ---------------------------------------------------------------- opening safely

def open_db(path: str, schema: str, what: str) -> sqlite3.Connection | None:
    """Open (or create) an SQLite database; set a corrupt one aside and start fresh.

    Returns None only if no database can be used at all (runwatch then carries
    on without it)."""
    for attempt in (1, 2):
        try:
            private_file(path)                  # 0600 in a 0700 directory; -wal and -shm take its mode
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                row = conn.execute("PRAGMA quick_check").fetchone()
                if not row or row[0] != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
                conn.executescript(schema)
                return conn
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as e:
            if attempt == 2 or not os.path.exists(path):
                log.warning("%s %s unusable (%s); running without it", what, path, e)
                return None
            aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            log.warning("%s %s is unreadable (%s); moved it to %s and starting fresh", what, path, e, aside)
            try:
                os.replace(path, aside)
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(path + suffix):
                        os.replace(path + suffix, aside + suffix)
            except OSError as e2:
                log.warning("cannot move %s aside (%s); running without it", path, e2)
                return None
        except OSError as e:
            log.warning("%s %s cannot be opened (%s); running without it", what, path, e)
            return None
    return None


# ---------------------------------------------------------------- encoding

def encode(obj):
    """Plain Python (sets, tuples, deques, dicts with non-string keys) -> JSON-able."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list,)):
        return [encode(x) for x in obj]
    if isinstance(obj, tuple):
        return {"__t": [encode(x) for x in obj]}
    if isinstance(obj, (set, frozenset)):
        return {"__s": [encode(x) for x in sorted(obj, key=repr)]}
    if isinstance(obj, collections.deque):
        return {"__q": [encode(x) for x in obj], "max": obj.maxlen}
    if isinstance(obj, bytes):
        return {"__b": base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v) for k, v in obj.items()}
        return {"__d": [[encode(k), encode(v)] for k, v in obj.items()]}
    raise TypeError(f"cannot persist a {type(obj).__name__}")


def decode(obj):
    if isinstance(obj, list):
        return [decode(x) for x in obj]
    if isinstance(obj, dict):
        if "__t" in obj:
            return tuple(decode(x) for x in obj["__t"])
        if "__s" in obj:
            return {decode(x) for x in obj["__s"]}
        if "__q" in obj:
            return collections.deque((decode(x) for x in obj["__q"]), obj.get("max"))
        if "__b" in obj:
            return base64.b64decode(obj["__b"])
        if "__d" in obj:
            return {decode(k): decode(v) for k, v in obj["__d"]}
        return {k: decode(v) for k, v in obj.items()}
    return obj


def dump_run(run) -> str:
    """A Run (runs.py) as JSON: its state and its line counters."""
    d = {"state": run.state.to_dict(), "lines_cut": run.lines_cut, "decode_errors": run.decode_errors,
         "recent": list(run.recent), "finished_at": run.finished_at}
    return json.dumps(encode(d), separators=(",", ":"))


def load_run(run, blob: str) -> None:
    """Restore what dump_run saved into a fresh Run."""
    from .state import RunState
    d = decode(json.loads(blob))
    run.state = RunState.from_dict(d["state"])
    run.lines_cut = int(d.get("lines_cut", 0))
    run.decode_errors = int(d.get("decode_errors", 0))
    run.recent.extend(d.get("recent") or [])
    run.finished_at = d.get("finished_at")


# ---------------------------------------------------------------- checking what was read back

_NUMBERS = ("progress", "eta", "lines", "tasks_planned", "tasks_started", "tasks_completed", "tasks_failed",
            "build_step", "build_steps", "build_done", "errors", "cost", "cost_rate", "cost_projected", "budget",
            "labels_folded", "start_ts", "end_ts", "last_progress_ts", "last_line_ts")
_NUMBER_MAPS = ("steps", "scores", "best_scores", "metrics", "artifact_deadlines")


class Unusable(ValueError):
    """A saved run that must not be restored: it would break a scrape or the JSON views."""


def _number(v, where: str) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Unusable(f"{where}: {type(v).__name__}, not a number")
    if isinstance(v, int) and not INT_MIN <= v <= INT_MAX:
        raise Unusable(f"{where}: an integer of {len(str(abs(v)))} digits")
    if isinstance(v, float) and not math.isfinite(v):
        raise Unusable(f"{where}: {v}")


def _label(v, where: str) -> None:
    if not isinstance(v, str):
        raise Unusable(f"{where}: {type(v).__name__}, not a string")
    why = unicode_error(v)
    if why:
        raise Unusable(f"{where}: {why}")


def _walk_text(obj, where: str) -> None:
    """Every string in obj (keys too) valid Unicode, every integer within int64."""
    stack = [(obj, where)]
    while stack:
        o, w = stack.pop()
        if isinstance(o, str):
            _label(o, w)
        elif isinstance(o, int) and not isinstance(o, bool):
            _number(o, w)
        elif isinstance(o, dict):
            for k, v in o.items():
                stack.append((k, f"{w} key"))
                stack.append((v, f"{w}[{str(k)[:40]!r}]" if isinstance(k, str) else w))
        elif isinstance(o, (list, tuple, set, frozenset, collections.deque)):
            stack.extend((x, w) for x in o)


def check_run(run, now: float | None = None) -> None:
    """Raise Unusable unless a run read back from state.db renders: every string valid
    Unicode, every sample a finite number within range, every state one runwatch knows.
    The same checks the event schema (events.py) makes on the way in, for what a database
    (an older runwatch, a hand edit, a damaged file) may hold."""
    from ..events import AGENT_STATES, RUN_STATES, VM_POWER_STATES
    now = time.time() if now is None else now
    st = run.state
    _walk_text(st.to_dict(), "state")
    _walk_text(list(run.recent), "recent lines")
    _number(run.lines_cut, "lines_cut")
    _number(run.decode_errors, "decode_errors")
    _number(run.finished_at, "finished_at")
    try:
        snap = st.snapshot(now)
    except Exception as e:  # noqa: BLE001 - whatever a damaged state does, it is not restored
        raise Unusable(f"cannot compute its metrics: {type(e).__name__}: {e}") from None
    if snap["state"] not in RUN_STATES:
        raise Unusable(f"state: {snap['state']!r} is not a run state")
    if snap["phase"] is not None:
        _label(snap["phase"], "phase")
    for k in _NUMBERS:
        _number(snap.get(k), k)
    for k in _NUMBER_MAPS:
        for name, v in snap[k].items():
            _label(name, k)
            _number(v, f"{k}[{name[:40]!r}]")
    for name, (_avail, since) in snap["artifacts"].items():
        _label(name, "artifacts")
        _number(since, f"artifacts[{name[:40]!r}]")
    for vm, p in snap["vm_power"].items():
        _label(vm, "vm_power")
        if p not in VM_POWER_STATES:
            raise Unusable(f"vm_power[{vm[:40]!r}]: {p!r} is not a power state")
    for name, a in snap["agents"].items():
        _label(name, "agents")
        if a.get("state") not in AGENT_STATES:
            raise Unusable(f"agents[{name[:40]!r}]: {a.get('state')!r} is not an agent state")
        _number(a.get("duration"), f"agents[{name[:40]!r}].duration")
    for key, v in snap["data_flow"].items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise Unusable("data_flow: a key that is not a pair of agents")
        _label(key[0], "data_flow")
        _label(key[1], "data_flow")
        _number(v, "data_flow")


# ---------------------------------------------------------------- the state database

class FilePos:
    """Where reading of a file stopped, consistent with the saved run state."""

    __slots__ = ("path", "ident", "offset", "fingerprint", "framer")

    def __init__(self, path, ident, offset, fingerprint, framer=None):
        self.path, self.ident, self.offset = path, tuple(ident), int(offset)
        self.fingerprint, self.framer = bytes(fingerprint), dict(framer or {})

    def __repr__(self) -> str:
        return f"FilePos({self.path!r}, {self.ident}, offset={self.offset})"


class StateDB:
    """runs + files tables; every method is safe to call from any thread and never raises
    for database trouble (it logs and carries on)."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.conn = open_db(path, STATE_SCHEMA, "state database")
        self.failed = False
        if self.conn is not None:
            try:
                with self.lock:
                    row = self._exec("SELECT value FROM meta WHERE key='schema'").fetchone()
                    if row is None or row[0] != str(SCHEMA_VERSION):
                        if row is not None:
                            log.warning("state database %s has schema %s, not %s: starting fresh",
                                        path, row[0], SCHEMA_VERSION)
                        self.conn.executescript("DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS files;"
                                                + STATE_SCHEMA)
                    self._exec("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            except sqlite3.Error as e:
                log.warning("state database %s unusable (%s); running without it", path, e)
                self.conn.close()
                self.conn = None

    @property
    def ok(self) -> bool:
        return self.conn is not None

    def _exec(self, sql, params=()):
        return self.conn.execute(sql, params)

    def load(self, key: str) -> tuple[str | None, FilePos | None]:
        """The saved run state (JSON) and file position for key, or (None, None)."""
        if self.conn is None:
            return None, None
        try:
            with self.lock:
                r = self._exec("SELECT state FROM runs WHERE key=?", (key,)).fetchone()
                f = self._exec("SELECT path, dev, ino, offset, fingerprint, framer FROM files "
                               "WHERE key=?", (key,)).fetchone()
            pos = FilePos(f[0], (f[1], f[2]), f[3], f[4], decode(json.loads(f[5]))) if f else None
        except (sqlite3.Error, ValueError, TypeError) as e:
            log.warning("state database %s: cannot read (%s); starting %s fresh", self.path, e, key)
            return None, None
        return (r[0] if r else None), pos

    def set_aside(self, key: str, reason: str) -> None:
        """Move a saved run (and its file position) out of the way: into runs_aside, kept for
        a look, so the run starts fresh and its file is read anew."""
        if self.conn is None:
            return
        try:
            with self.lock:
                self._exec("BEGIN IMMEDIATE")
                try:
                    self._exec("INSERT INTO runs_aside SELECT key, run_id, state, saved_ts, ?, ? FROM runs "
                               "WHERE key=?", (time.time(), reason[:500], key))
                    self._exec("DELETE FROM runs WHERE key=?", (key,))
                    self._exec("DELETE FROM files WHERE key=?", (key,))
                    self._exec("COMMIT")
                except BaseException:
                    self._exec("ROLLBACK")
                    raise
        except sqlite3.Error as e:
            log.warning("state database %s: cannot set %s aside (%s)", self.path, key, e)

    def save(self, items: list[tuple[str, str, str, FilePos | None]]) -> bool:
        """One transaction: for each (key, run_id, state JSON, file position or None)."""
        if self.conn is None or not items:
            return False
        now = time.time()
        try:
            with self.lock:
                self._exec("BEGIN IMMEDIATE")
                try:
                    for key, run_id, blob, pos in items:
                        self._exec("INSERT OR REPLACE INTO runs VALUES (?,?,?,?)", (key, run_id, blob, now))
                        if pos is None:
                            self._exec("DELETE FROM files WHERE key=?", (key,))
                        else:
                            self._exec("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                                       (key, pos.path, pos.ident[0], pos.ident[1], pos.offset,
                                        pos.fingerprint, json.dumps(encode(pos.framer)), now))
                    self._exec("COMMIT")
                except BaseException:
                    self._exec("ROLLBACK")
                    raise
            self.failed = False
            return True
        except sqlite3.Error as e:
            if not self.failed:
                log.warning("state database %s: checkpoint failed (%s); will retry", self.path, e)
            self.failed = True
            return False

    def close(self) -> None:
        if self.conn is not None:
            with self.lock:
                try:
                    self.conn.close()
                except sqlite3.Error:
                    pass
                self.conn = None


# ---------------------------------------------------------------- serve's checkpoints

class Checkpointer:
    """Restores `runwatch serve`'s runs at start and checkpoints them while it runs.

    Called from the one thread that polls every followed file (serve.FilePoller),
    between polls: every byte a follower has read has then been framed and
    applied, so its offset, its framer's partial line and the run state agree.
    """

    def __init__(self, db: StateDB, registry, config_path: str, interval: float = 5.0, clock=time.monotonic):
        self.db, self.registry, self.interval, self.clock = db, registry, interval, clock
        self.config_path = os.path.abspath(config_path)
        self.items: list = []          # (key, run, path, ingest, follower)
        self.last = clock()
        self.saved: dict[str, tuple] = {}   # key -> what was saved last (skip runs that did not change)

    def key(self, run_id: str, path: str | None) -> str:
        return f"{self.config_path}|{run_id}|{os.path.abspath(path) if path else ''}"

    def resume_for(self, run, path: str | None):
        """Load what was saved for this run; returns (resume tuple for FileFollower or None, saved)."""
        key = self.key(run.spec.id, path)
        blob, pos = self.db.load(key)
        if blob is None:
            return None, None
        try:
            saved_run = Run(run.spec)
            load_run(saved_run, blob)
            check_run(saved_run)
            if pos is not None:
                _check_framer(pos.framer)
        except Exception as e:  # noqa: BLE001 - a bad saved state must not stop runwatch, nor a scrape
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, Unusable) else str(e)
            log.warning("run %s: saved state unusable (%s); set it aside in %s (table runs_aside) "
                        "and starting the run fresh", run.spec.id, escape_surrogates(reason), self.db.path)
            self.db.set_aside(key, escape_surrogates(reason))
            return None, None
        resume = (pos.ident, pos.offset, pos.fingerprint) if pos is not None else None
        return resume, (blob, pos)

    def attach(self, run, path: str | None, ingest, follower, saved) -> str:
        """Restore the saved run into `run` (and the partial line into the ingest's framer
        when the follower found its place again); register it for checkpoints.
        path/ingest/follower None: a run without a file (cloud state sources only),
        checkpointed by `maybe(files=False)` from any thread."""
        how = "new"
        if saved is not None:
            blob, pos = saved
            try:
                saved_run = Run(run.spec)
                load_run(saved_run, blob)
                self.registry.restore(run, saved_run)
                if follower is None:
                    how = "restored"
                elif follower.resumed and pos is not None:
                    from ..parse.framing import LineFramer
                    fr = ingest.framers[0] = LineFramer(ingest.max_line)
                    for name, value in pos.framer.items():
                        if name in LineFramer.__slots__:
                            setattr(fr, name, value)
                    how = f"resumed at byte {pos.offset}"
                else:
                    how = "restored (file position lost: reading the file anew)"
            except Exception as e:  # noqa: BLE001 - a bad saved state must not stop runwatch
                log.warning("run %s: saved state unusable (%s); starting it fresh", run.spec.id, e)
                how = "new (saved state unusable)"
        self.items.append((self.key(run.spec.id, path), run, path, ingest, follower))
        return how

    def maybe(self, final: bool = False) -> bool:
        """Checkpoint the followed files' runs if the interval has passed (or final);
        call it from the thread that reads the files, between polls."""
        now = self.clock()
        if not final and now - self.last < self.interval:
            return False
        self.last = now
        return self.checkpoint(files=True)

    def checkpoint(self, files: bool = True) -> bool:
        """files=True: runs fed by followed files (from their reading thread);
        files=False: runs without a file (from any thread)."""
        batch, sigs = [], {}
        for key, run, path, ingest, follower in self.items:
            if (follower is not None) != files:
                continue
            if follower is None:
                sig = (run.changes, run.finished_at)
                if self.saved.get(key) != sig:
                    with self.registry.lock:
                        blob = dump_run(run)
                    batch.append((key, run.spec.id, blob, None))
                    sigs[key] = sig
                continue
            cp = follower.checkpoint()
            if cp is None:
                continue                  # draining a rotated file: keep the previous pair
            ident, offset, tail, stream = cp
            sig = (ident, offset, stream, run.changes, run.finished_at)
            if self.saved.get(key) == sig:
                continue
            fr = ingest.framers.get(stream)
            framer = {} if fr is None else {n: getattr(fr, n) for n in fr.__slots__ if n not in _FRAMER_SKIP}
            with self.registry.lock:
                blob = dump_run(run)
            batch.append((key, run.spec.id, blob, FilePos(path, ident, offset, tail, framer)))
            sigs[key] = sig
        if not batch:
            return True
        ok = self.db.save(batch)
        if ok:
            self.saved.update(sigs)
        return ok


def _check_framer(saved: dict) -> None:
    """The saved partial line and flags have the types a LineFramer keeps (carry: bytes …)."""
    from ..parse.framing import LineFramer
    fresh = LineFramer(1)
    for name, value in saved.items():
        if name in LineFramer.__slots__ and type(value) is not type(getattr(fresh, name)):
            raise Unusable(f"file position: {name} is {type(value).__name__}, "
                           f"not {type(getattr(fresh, name)).__name__}")


_FRAMER_SKIP = ("max_line", "lines_cut")     # configuration and a per-process counter
