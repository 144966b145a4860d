"""Nothing stored can poison a later scrape: a state.db row or a Loki spool segment written by
hand with what no event may carry any more (a lone surrogate, a 400-digit count) is set aside
with a warning when `runwatch serve` starts on it, and /metrics answers and parses."""
from __future__ import annotations

import json
import os
import sqlite3
import struct
import time

import pytest

from support.loki_double import LokiServer
from support.ports import free_port
from support.procs import Proc
from support.prom_text import sample
from support.scrape import scrape
from support.waits import wait_for

# live runwatch processes, one or more per test: the full suite runs them, the fast loop does not
pytestmark = pytest.mark.stack()


def config(d, *runs) -> str:
    cfg = d / "runwatch.yaml"
    body = "runs:\n" + "".join(f"  - {{id: {rid}, file: {d / (rid + '.log')}, packs: [waa]}}\n" for rid in runs)
    cfg.write_text(body)
    return str(cfg)


def serve(d, cfg, *extra):
    port = free_port()
    return Proc(["serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(d / "data"), "-c", cfg, *extra],
                port).wait_up(30)


POISONS = {
    "surrogate phase": lambda st: st.update(phase="\udcff"),
    "400-digit total": lambda st: st.update(tasks_planned=10 ** 400),
    "surrogate step action": lambda st: st.update(steps={"click\udcff": 3}),
    "string count": lambda st: st.update(tasks_started="many"),
    "unknown state": lambda st: st.update(state="exploded"),
    "infinite score": lambda st: st.update(scores={"acc": float("inf")}),
}


def poison_rows(db, poisons: dict) -> None:
    """Rewrite the saved state of each run_id in `poisons` by hand (JSON escapes keep the text valid)."""
    conn = sqlite3.connect(db)
    for rid, poison in poisons.items():
        (key, blob), = conn.execute("SELECT key, state FROM runs WHERE run_id=?", (rid,)).fetchall()
        saved = json.loads(blob)
        POISONS[poison](saved["state"])
        conn.execute("UPDATE runs SET state=? WHERE key=?", (json.dumps(saved), key))
    conn.commit()
    conn.close()


def test_poisoned_state_db_rows_are_set_aside_and_their_runs_start_fresh(tmp_path):
    runs = ("phase", "total", "clean")
    for rid in runs:
        (tmp_path / f"{rid}.log").write_text("Task 1/4: a\nTask 2/4: b\n")
    cfg = config(tmp_path, *runs)
    first = serve(tmp_path, cfg)
    try:
        wait_for(lambda: all(sample(first.metrics(), "runwatch_tasks_started_total", run_id=r) == 2 for r in runs),
                 30, what="every file read")
    finally:
        first.p.terminate()
        assert first.p.wait(30) == 0          # SIGTERM: a last checkpoint of every run
    db = tmp_path / "data" / "state.db"
    poison_rows(db, {"phase": "surrogate phase", "total": "400-digit total"})
    with open(tmp_path / "clean.log", "a") as f:
        f.write("Task 3/4: c\n")

    again = serve(tmp_path, cfg)
    try:
        wait_for(lambda: sample(scrape(again.url), "runwatch_tasks_started_total", run_id="clean") == 3,
                 30, what="the clean run resumed")
        # the poisoned runs started fresh and read their files anew: nothing lost, nothing twice
        wait_for(lambda: all(sample(scrape(again.url), "runwatch_tasks_started_total", run_id=r) == 2
                             for r in ("phase", "total")), 30, what="the poisoned runs re-read")
        text = scrape(again.url)
        for rid in ("phase", "total"):
            assert sample(text, "runwatch_tasks_planned", run_id=rid) == 4
            assert sample(text, "runwatch_lines_total", run_id=rid) == 2
        assert sample(text, "runwatch_lines_total", run_id="clean") == 3
        err = again.stderr_text()
        for rid in ("phase", "total"):
            assert f"run {rid}: saved state unusable" in err, err
        assert "set it aside" in err and "run clean: resumed at byte" in err, err
        conn = sqlite3.connect(db)
        aside = dict(conn.execute("SELECT run_id, reason FROM runs_aside").fetchall())
        conn.close()
        assert sorted(aside) == ["phase", "total"], aside
        assert "surrogate" in aside["phase"] and "digits" in aside["total"], aside
    finally:
        again.stop()


@pytest.mark.parametrize("poison", POISONS, ids=list(POISONS))
def test_every_kind_of_poison_is_found_before_a_run_is_restored(tmp_path, poison):
    from runwatch.events import Event
    from runwatch.model.persist import Checkpointer, StateDB, dump_run
    from runwatch.model.runs import Registry, RunSpec
    reg = Registry()
    run = reg.add(RunSpec(id="r", kind="k", source="file"))
    reg.apply(run, [Event("task_planned", {"total": 4}, 1.0), Event("step", {"action": "click"}, 2.0)])
    db = StateDB(str(tmp_path / "state.db"))
    cp = Checkpointer(db, reg, str(tmp_path / "c.yaml"))
    db.save([(cp.key("r", None), "r", dump_run(run), None)])
    db.close()
    poison_rows(tmp_path / "state.db", {"r": poison})
    db = StateDB(str(tmp_path / "state.db"))
    cp = Checkpointer(db, Registry(), str(tmp_path / "c.yaml"))
    assert cp.resume_for(run, None) == (None, None)
    assert db.load(cp.key("r", None)) == (None, None)          # moved out of the way
    assert db.conn.execute("SELECT count(*) FROM runs_aside").fetchone()[0] == 1
    db.close()


# ---------------------------------------------------------------- the Loki spool

_HEAD = struct.Struct("<4sIIqI")


def record(meta: bytes, block: bytes, ts_ns: int) -> bytes:
    return _HEAD.pack(b"RWL1", len(meta), len(block), ts_ns, block.count(b"\n")) + meta + block


@pytest.fixture
def loki():
    s = LokiServer()
    yield s
    s.stop()


def test_a_poisoned_loki_spool_segment_is_set_aside_and_shipping_goes_on(tmp_path, loki):
    spool = tmp_path / "data" / "loki-spool" / "0"
    spool.mkdir(parents=True)
    t0 = time.time_ns() - 60 * 10 ** 9           # a minute ago: not too old for Loki
    seg = (record(b'["eval","file","old",""]', b"kept line\n", t0)
           + record(b'["eval","file","old","\\udcff"]', b"poisoned line\n", t0 + 10)   # a lone surrogate phase
           + record(b'["eval","file","old",""]', b"after the poison\n", t0 + 20))
    (spool / f"{10 ** 12:016d}.seg").write_bytes(seg)
    (tmp_path / "live.log").write_text("Task 1/2: first\n")
    cfg = config(tmp_path, "live")
    pr = serve(tmp_path, cfg, "--loki-url", loki.url)
    try:
        wait_for(lambda: loki.lines("old") == ["kept line"], 60, what="the good record resent")
        wait_for(lambda: loki.lines("live") == ["Task 1/2: first"], 60, what="a new line shipped after it")
        with open(tmp_path / "live.log", "a") as f:
            f.write("Task 2/2: second\n")
        wait_for(lambda: loki.lines("live") == ["Task 1/2: first", "Task 2/2: second"], 60,
                 what="the shipper still alive")
        text = scrape(pr.url)
        assert sample(text, "runwatch_loki_entries_dropped_total", reason="spool_corrupt") >= 1
        aside = [f for f in os.listdir(spool) if ".seg.bad-" in f]
        assert len(aside) == 1, os.listdir(spool)
        assert (spool / aside[0]).read_bytes() == seg          # kept as it was, for a look
        assert "cannot be pushed" in pr.stderr_text() and "set it aside" in pr.stderr_text()
        assert not [f for f in os.listdir(spool) if f.endswith(".seg") and os.path.getsize(spool / f)]
    finally:
        pr.stop()


def test_read_segment_stops_at_a_poisoned_record(tmp_path):
    from runwatch.export.loki.spool import read_segment
    p = tmp_path / "1.seg"
    p.write_bytes(record(b'["k","s","r",""]', b"a\nb\n", 5) + record(b'["k","s",7,""]', b"c\n", 6)
                  + record(b'["k","s","r",""]', b"d\n", 7))
    recs, bad = read_segment(str(p))
    assert [r.block for r in recs] == [b"a\nb\n"] and bad > 0
    assert [f for f in os.listdir(tmp_path) if ".seg.bad-" in f]
    lying = tmp_path / "2.seg"
    lying.write_bytes(_HEAD.pack(b"RWL1", 16, 2, 1, 5) + b'["k","s","r",""]' + b"x\n")   # says 5 lines, holds 1
    recs, bad = read_segment(str(lying))
    assert recs == [] and bad == lying.stat().st_size


def test_the_remote_write_spool_sets_an_unreadable_request_aside(tmp_path):
    from runwatch.export.remote_write.spool import Spool, SpoolCorrupt
    sp = Spool(str(tmp_path), 1 << 20)
    assert sp.append(b"body", 3)
    path = sp.path(sp.seqs[0])
    with open(path, "r+b") as f:
        f.truncate(8)                                 # torn: shorter than its header says
    with pytest.raises(SpoolCorrupt):
        sp.oldest()
    assert [f for f in os.listdir(sp.dir) if ".rws.bad-" in f]
    sp.close()


def test_a_history_db_that_cannot_be_read_gives_no_prior_instead_of_failing_the_run(tmp_path):
    from runwatch.model.history import History
    from runwatch.model.runs import Registry, RunSpec
    h = History(str(tmp_path / "history.db"))
    h.record("train", "old", "succeeded", {"total_seconds": 10, "progress_seconds": 8, "units": 4,
                                           "curve": [[0.5, 4.0]]}, 100.0)
    h.conn.execute("UPDATE runs SET curve='[[0.5, ' || 'x' || ']'")    # torn JSON, written by hand
    reg = Registry(history=h)
    run = reg.add(RunSpec(id="new", kind="train", source="api"))
    assert run.state.eta_prior is None
    assert reg.get("new") is run
    h.close()


def test_a_spool_segment_that_cannot_be_read_is_moved_aside(tmp_path):
    from runwatch.export.loki.spool import read_segment
    odd = tmp_path / "3.seg"
    odd.mkdir()                                  # a directory where a segment should be
    assert read_segment(str(odd)) == ([], 0)
    assert not odd.exists() and [f for f in os.listdir(tmp_path) if f.startswith("3.seg.bad-")]
