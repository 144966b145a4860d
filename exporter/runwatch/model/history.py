"""How long earlier runs took, by kind and phase: the ETA's memory.

`history.db` (SQLite) in the data directory. When a run finishes, the registry
records what it took (eta.Tracker.summary): start to first progress, the
progress itself (and per unit: a task, a docker step), progress done to end,
and each phase. When a run is added, `prior(kind)` turns the last few finished
runs of its kind into an `eta.Prior` (medians, so one odd run does not skew
it). Only succeeded runs say how long a whole run or its progress takes;
phases that completed count from any run.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import statistics
import threading

from ..settings import HISTORY_DB
from .eta import Prior
from .persist import open_db

log = logging.getLogger("runwatch")

LAST_RUNS = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, run_id TEXT NOT NULL, state TEXT NOT NULL, ended_ts REAL,
    total_s REAL, pre_s REAL, progress_s REAL, units INTEGER, post_s REAL,
    curve TEXT                      -- JSON: seconds since progress began at 0 %, 1 %, … 100 %
);
CREATE INDEX IF NOT EXISTS runs_kind ON runs (kind, id);
CREATE TABLE IF NOT EXISTS phases (
    run INTEGER NOT NULL REFERENCES runs (id), seq INTEGER NOT NULL, kind TEXT NOT NULL,
    phase TEXT NOT NULL, seconds REAL NOT NULL, pre INTEGER NOT NULL, complete INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS phases_kind ON phases (kind, phase, run);
"""


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class History:
    FILE = HISTORY_DB

    @classmethod
    def in_dir(cls, directory: str) -> "History":
        """The history kept in a data directory (see cli.data_dir)."""
        return cls(os.path.join(directory, cls.FILE))

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.conn = open_db(path, SCHEMA, "history database")
        if self.conn is not None:
            try:
                cols = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
                if "curve" not in cols:          # a history.db from before curves
                    self.conn.execute("ALTER TABLE runs ADD COLUMN curve TEXT")
            except sqlite3.Error as e:
                log.warning("history database %s: %s", path, e)

    def record(self, kind: str, run_id: str, state: str, summary: dict | None, ended_ts: float | None = None) -> None:
        """Add a finished run (summary from RunState.history_summary())."""
        if self.conn is None or not summary:
            return
        try:
            with self.lock:
                c = self.conn
                c.execute("BEGIN IMMEDIATE")
                try:
                    cur = c.execute(
                        "INSERT INTO runs (kind, run_id, state, ended_ts, total_s, pre_s, progress_s, units, post_s,"
                        " curve) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (kind, run_id, state, ended_ts, summary.get("total_seconds"), summary.get("pre_seconds"),
                         summary.get("progress_seconds"), summary.get("units"), summary.get("post_seconds"),
                         json.dumps(summary["curve"]) if summary.get("curve") else None))
                    rid = cur.lastrowid
                    for i, ph in enumerate(summary.get("phases") or []):
                        c.execute("INSERT INTO phases VALUES (?,?,?,?,?,?,?)",
                                  (rid, i, kind, ph["phase"], ph["seconds"], int(ph["pre"]), int(ph["complete"])))
                    c.execute("COMMIT")
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
        except sqlite3.Error as e:
            log.warning("history database %s: cannot record run %s (%s)", self.path, run_id, e)

    def prior(self, kind: str) -> Prior | None:
        """Medians over the last finished runs of `kind`; None without a succeeded one."""
        if self.conn is None:
            return None
        try:
            with self.lock:
                c = self.conn
                rows = c.execute("SELECT id, total_s, pre_s, progress_s, units, post_s, curve FROM runs "
                                 "WHERE kind=? AND state='succeeded' ORDER BY id DESC LIMIT ?",
                                 (kind, LAST_RUNS)).fetchall()
                if not rows:
                    return None
                latest = rows[0][0]
                seq = c.execute("SELECT phase FROM phases WHERE run=? AND pre=1 ORDER BY seq",
                                (latest,)).fetchall()
                phase_s = {}
                for (name,) in c.execute("SELECT DISTINCT phase FROM phases WHERE kind=?", (kind,)).fetchall():
                    xs = [r[0] for r in c.execute(
                        "SELECT seconds FROM phases WHERE kind=? AND phase=? AND complete=1 ORDER BY run DESC "
                        "LIMIT ?", (kind, name, LAST_RUNS)).fetchall()]
                    if xs:
                        phase_s[name] = statistics.median(xs)
        except sqlite3.Error as e:
            log.warning("history database %s: cannot read (%s)", self.path, e)
            return None
        unit = _median([r[3] / r[4] for r in rows if r[3] is not None and r[4]])
        pre_phases = [(name, phase_s[name]) for (name,) in seq if name in phase_s]
        curve, curve_units = _median_curve(rows)
        return Prior(curve=curve, curve_units=curve_units, pre_seconds=_median(r[2] for r in rows),
                     progress_seconds=_median(r[3] for r in rows), unit_seconds=unit,
                     post_seconds=_median(r[5] for r in rows), total_seconds=_median(r[1] for r in rows),
                     pre_phases=pre_phases,
                     phase_seconds=phase_s, runs=len(rows))

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


def _median_curve(rows) -> tuple[list | None, int | None]:
    """Pointwise median of the progress curves of the latest runs with the latest one's units."""
    with_curve = [(r[4], json.loads(r[6])) for r in rows if r[6]]
    if not with_curve:
        return None, None
    units = with_curve[0][0]
    curves = [c for u, c in with_curve if u == units and len(c) == len(with_curve[0][1])]
    return [statistics.median(xs) for xs in zip(*curves, strict=True)], units
