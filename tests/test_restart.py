"""State that survives a restart (persist.py, FileFollower(resume=…), serve's checkpoints).

The main test is end to end: a real `runwatch serve` follows a file that keeps
growing and rotating, is SIGKILLed in the middle (with lines read since its
last checkpoint and a partial line in flight), the file rotates while it is
down, it is restarted, and its final counters must equal those of one
uninterrupted `runwatch scan` of the same lines: none lost, none counted twice.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest
import requests

from support.procs import runwatch_cmd
from support.prom_text import sample
from support.waits import wait_for
from runwatch.events import Event
from runwatch.model.persist import StateDB, decode, dump_run, encode, load_run
from runwatch.model.runs import Registry, Run, RunSpec
from runwatch.sources.tail import FileFollower

COUNTERS = [("runwatch_lines_total", {}), ("runwatch_tasks_started_total", {}),
            ("runwatch_tasks_completed_total", {}), ("runwatch_tasks_failed_total", {}),
            ("runwatch_errors_total", {}), ("runwatch_steps_total", {"action": "CLICK"}),
            ("runwatch_steps_total", {"action": "TYPE"})]


class Writer:
    """Appends waa-style lines to a log and rotates it like logrotate's `create`."""

    def __init__(self, path):
        self.path, self.n, self.rotations, self.all = path, 0, 0, []
        self.f = open(path, "ab")

    def line(self, i):
        k = i % 4
        if k == 0:
            return f"2026-11-24 10:00:00,000 INFO runner: Task {i // 4 + 1}/500: task_{i}\n"
        if k == 1:
            return f"2026-11-24 10:00:01,000 INFO runner: Step 1: {'CLICK' if i % 3 else 'TYPE'}\n"
        if k == 2:
            return "2026-11-24 10:00:02,000 ERROR runner: WAA server returned 500\n" if i % 10 == 2 else \
                   "2026-11-24 10:00:02,000 INFO runner: Step 2: TYPE\n"
        return f"2026-11-24 10:00:03,000 INFO runner: Task task_{i}: {'FAIL' if i % 7 == 3 else 'SUCCESS'}\n"

    def write(self, count, pause=0.002, partial_at_end=False):
        for _ in range(count):
            data = self.line(self.n).encode()
            self.n += 1
            self.all.append(data)
            self.f.write(data)
            self.f.flush()
            if pause:
                time.sleep(pause)
        if partial_at_end:               # half a line now, the rest later
            data = self.line(self.n).encode()
            self.n += 1
            self.all.append(data)
            self.f.write(data[:20])
            self.f.flush()
            self._rest = data[20:]

    def finish_partial(self):
        self.f.write(self._rest)
        self.f.flush()

    def rotate(self):
        self.f.close()
        self.rotations += 1
        os.rename(self.path, f"{self.path}.{self.rotations}")
        self.f = open(self.path, "ab")


def saved_lines(data_dir) -> int:
    """Lines counted in the last checkpoint of run 'eval' (0 if none yet)."""
    try:
        with sqlite3.connect(f"file:{data_dir}/state.db?mode=ro", uri=True) as c:
            row = c.execute("SELECT state FROM runs WHERE run_id='eval'").fetchone()
    except sqlite3.Error:
        return 0
    return decode(json.loads(row[0]))["state"]["lines"] if row else 0


def scrape(url):
    return requests.get(url + "/metrics", timeout=5).text


def counters(text, rid):
    return {f"{n}{lab}": sample(text, n, run_id=rid, **lab) for n, lab in COUNTERS}


def start_serve(cfg, port, env):
    p = subprocess.Popen(runwatch_cmd("serve", "-c", str(cfg), "--listen", f"127.0.0.1:{port}"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(url + "/healthz", timeout=1).ok, 15, what="runwatch serve up")
    return p, url


@pytest.mark.stack
def test_sigkill_mid_file_with_rotation_loses_nothing_and_counts_nothing_twice(tmp_path):
    from support.ports import free_port
    log = tmp_path / "app.log"
    data = tmp_path / "data"
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text(f"checkpoint_seconds: 1.5\npoll_interval: 0.01\ndata_dir: {data}\n"
                   f"runs:\n  - {{id: eval, file: {log}, packs: [waa, python], kind: agent_eval}}\n")
    env = dict(os.environ, RUNWATCH_DATA_DIR="")
    w = Writer(str(log))
    port = free_port()
    p, url = start_serve(cfg, port, env)
    try:
        w.write(150)
        w.rotate()                                          # rotation while runwatch runs
        w.write(150)
        wait_for(lambda: saved_lines(data) >= 300, 15, what="a checkpoint of the first 300 lines")
        w.write(60, pause=0, partial_at_end=True)           # read, but not yet checkpointed
        wait_for(lambda: (sample(scrape(url), "runwatch_lines_total", run_id="eval") or 0) >= 360, 15,
                 what="lines after the checkpoint read")
        p.send_signal(signal.SIGKILL)
        p.wait(60)
        assert saved_lines(data) < 360                      # so the restart must re-read some lines

        w.finish_partial()                                  # runwatch is down: the file goes on
        w.write(100, pause=0)
        w.rotate()                                          # ... and rotates
        w.write(100, pause=0)

        p, url = start_serve(cfg, free_port(), env)
        w.write(100)
        w.rotate()
        w.write(99)
        total = len(w.all)
        wait_for(lambda: sample(scrape(url), "runwatch_lines_total", run_id="eval") == total, 20,
                 what=f"all {total} lines counted")
        time.sleep(0.3)
        served = counters(scrape(url), "eval")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
    assert b"eval: resumed at byte" in err, err.decode()[-2000:]

    whole = tmp_path / "whole.log"
    whole.write_bytes(b"".join(w.all))
    out = subprocess.run(runwatch_cmd("scan", "--pack", "waa", "--pack", "python", "--run-id", "eval", str(whole)),
                         capture_output=True, check=True).stdout.decode()
    expected = counters(out, "eval")
    assert expected["runwatch_lines_total{}"] == total
    assert served == expected


def test_state_and_file_position_round_trip(tmp_path):
    reg = Registry()
    run = reg.add(RunSpec(id="r", kind="k", cost_rate=2.0), now=0.0)
    reg.ingest(run, b"x\n", [Event("task_started", {"index": 1, "total": 3}, 1.0),
                             Event("build_step", {"step": 1, "steps": 2, "vertex": "5", "stage": "b"}, 1.0),
                             Event("step", {"action": "CLICK"}, 2.0)], 0, 2.0)
    blob = dump_run(run)
    r2 = Run(run.spec)
    load_run(r2, blob)
    a, b = run.state.snapshot(100.0), r2.state.snapshot(100.0)
    assert a == b and r2.state._bk_started == {("b", 1)}
    assert decode(encode({(1, "a"): {1, 2}, "q": b"\x00\xff"})) == {(1, "a"): {1, 2}, "q": b"\x00\xff"}


def test_follower_resumes_by_inode_and_fingerprint(tmp_path):
    path = tmp_path / "f.log"
    path.write_bytes(b"one\ntwo\n")
    got = []

    class Sink:
        def data(self, stream, chunk):
            got.append(chunk)

        def end(self, stream):
            pass

    f = FileFollower(str(path), Sink())
    f.poll()
    ident, off, tail, _ = f.checkpoint()
    f.close()
    with open(path, "ab") as fh:
        fh.write(b"three\n")
    got.clear()
    f = FileFollower(str(path), Sink(), resume=(ident, off, tail))
    assert f.resumed
    f.poll()
    assert b"".join(got) == b"three\n"
    f.close()
    # rewritten in place: the fingerprint no longer matches, read from 0
    path.write_bytes(b"ONE\nTWO\nthree\n")
    f = FileFollower(str(path), Sink(), resume=(ident, off, tail))
    assert not f.resumed
    f.close()
    # rotated while away: found next to the path, drained, then the new file
    path.write_bytes(b"a\n")
    f = FileFollower(str(path), Sink())
    f.poll()
    ident, off, tail, _ = f.checkpoint()
    f.close()
    with open(path, "ab") as fh:
        fh.write(b"b\n")
    os.rename(path, str(path) + ".1")
    path.write_bytes(b"c\n")
    got.clear()
    f = FileFollower(str(path), Sink(), resume=(ident, off, tail))
    assert f.resumed
    f.poll()
    assert b"".join(got) == b"b\nc\n"
    f.close()


def test_corrupt_state_db_is_set_aside_and_serve_still_starts(tmp_path, caplog):
    db = tmp_path / "state.db"
    db.write_bytes(b"garbage" * 1000)
    s = StateDB(str(db))
    assert s.ok and s.load("x") == (None, None)
    assert any(n.startswith("state.db.corrupt-") for n in os.listdir(tmp_path))
    s.close()
    # a database that is valid SQLite but not ours is no problem either
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE runs (x)").connection.commit()
    s = StateDB(str(other))
    assert s.load("x") == (None, None) and s.save([("k", "r", "{}", None)])
    assert s.load("k") == ("{}", None)
    s.close()


def test_serve_with_a_corrupt_state_db_starts_fresh(tmp_path):
    from support.ports import free_port
    data = tmp_path / "data"
    data.mkdir()
    (data / "state.db").write_bytes(b"\x00garbage" * 500)
    (data / "history.db").write_bytes(b"\x00garbage" * 500)
    log = tmp_path / "a.log"
    log.write_text("Task 1/2: a\nTask a: SUCCESS\n")
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text(f"runs:\n  - {{id: a, file: {log}, packs: [waa]}}\n")
    env = dict(os.environ, RUNWATCH_DATA_DIR=str(data))
    p, url = start_serve(cfg, free_port(), env)
    try:
        wait_for(lambda: sample(scrape(url), "runwatch_tasks_completed_total", run_id="a") == 1, 10)
    finally:
        p.terminate()
        _, err = p.communicate(timeout=60)
    assert b"moved it to" in err
    assert sorted(n.split(".corrupt-")[0] for n in os.listdir(data) if ".corrupt-" in n) == ["history.db", "state.db"]


def test_finished_runs_stay_for_the_grace_period_then_end():
    reg = Registry(grace_seconds=60)
    run = reg.add(RunSpec(id="done"), now=0.0)
    reg.apply(run, [Event("status", {"state": "succeeded"}, 10.0)], now=10.0)
    assert reg.expire(69.0) == [] and reg.get("done") is not None
    assert reg.expire(70.0) == ["done"] and reg.snapshot(71.0) == []
    # a restored finished run keeps its finish time: the grace is not restarted by a restart
    r2 = Run(run.spec)
    load_run(r2, dump_run(run))
    assert r2.finished_at == 10.0


def test_a_run_without_a_file_keeps_its_cost_and_vm_state_across_a_restart(tmp_path):
    from runwatch.model.persist import Checkpointer
    t0 = time.time() - 3600
    db = StateDB(str(tmp_path / "state.db"))
    reg = Registry()
    cp = Checkpointer(db, reg, str(tmp_path / "runwatch.yaml"))
    run = reg.add(RunSpec(id="vm-run", cost_rate=3.6), now=t0)                  # $0.001/s
    cp.attach(run, None, None, None, cp.resume_for(run, None)[1])
    reg.apply(run, [Event("vm_power", {"vm": "a", "state": "running"}, t0)], now=t0)
    reg.apply(run, [Event("vm_power", {"vm": "a", "state": "deallocated"}, t0 + 1800)], now=t0 + 1800)
    assert cp.checkpoint(files=False)
    db.close()

    db2 = StateDB(str(tmp_path / "state.db"))                                    # a new process
    reg2 = Registry()
    cp2 = Checkpointer(db2, reg2, str(tmp_path / "runwatch.yaml"))
    run2 = reg2.add(RunSpec(id="vm-run", cost_rate=3.6), now=time.time())
    assert cp2.attach(run2, None, None, None, cp2.resume_for(run2, None)[1]) == "restored"
    assert run2.state.vm_power == {"a": "deallocated"}
    assert run2.state.cost(time.time()) == pytest.approx(1.8)                    # 1800 s billed, not 0


def test_restore_keeps_the_prior_and_lets_the_configured_cost_win():
    from runwatch.model.eta import Prior
    old = Registry()
    was = old.add(RunSpec(id="r", cost_rate=1.0, budget=10.0), now=0.0)
    old.apply(was, [Event("status", {"state": "running"}, 0.0), Event("error", {"message": "x"}, 5.0)], now=5.0)
    old.account(was, 3, [], 1, 2, 5.0, ["a", "b"])
    blob = dump_run(was)

    reg = Registry()
    run = reg.add(RunSpec(id="r", cost_rate=7.2, budget=None), now=100.0)       # the config changed
    prior = Prior(pre_seconds=1, unit_seconds=2, progress_seconds=3, post_seconds=4, total_seconds=10, runs=2)
    run.state.set_prior(prior)
    saved = Run(run.spec)
    load_run(saved, blob)
    v = reg.version
    reg.restore(run, saved, now=100.0)
    assert reg.version > v                                                   # waiters (SSE) are woken
    assert run.state.eta_prior is prior and run.state.errors == 1 and run.state.lines == 3
    assert (run.lines_cut, run.decode_errors, list(run.recent)) == (1, 2, ["a", "b"])
    assert run.state.cost_rate == 7.2 and run.state.budget == 10.0            # rate from the config, budget kept
