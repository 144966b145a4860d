"""History of finished runs (history.py) and the ETA it gives the next run of a kind."""
from __future__ import annotations

import os

import pytest

from runwatch.model.history import History
from runwatch.model.runs import Registry, RunSpec
from support.events import ev


def play_eval(reg, rid, t0, boot=200.0, task=60.0, n=5):
    """An agent evaluation: VM provisioning, Windows boot (no progress lines), n tasks."""
    run = reg.add(RunSpec(id=rid, kind="agent_eval"), now=t0)
    reg.apply(run, [ev("phase", t0, phase="vm_provision")], now=t0)
    reg.apply(run, [ev("phase", t0 + 100, phase="windows_boot")], now=t0 + 100)
    t = t0 + 100 + boot
    for i in range(1, n + 1):
        reg.apply(run, [ev("task_started", t, index=i, total=n), ev("phase", t, phase="benchmark")], now=t)
        t += task
        reg.apply(run, [ev("task_finished", t, result="SUCCESS")], now=t)
    t += 20
    reg.apply(run, [ev("status", t, state="succeeded")], now=t)
    return run, t


def test_second_run_gets_an_eta_before_its_first_progress_line(tmp_path):
    path = str(tmp_path / "history.db")
    reg = Registry(history=History(path))
    run1, end1 = play_eval(reg, "eval-1", 1000.0)
    assert run1.state.eta_seconds(1010.0) is None           # finished

    # a new runwatch process (the history is in the data directory), a second run of the kind
    reg2 = Registry(history=History(path))
    t0 = 5000.0
    run2 = reg2.add(RunSpec(id="eval-2", kind="agent_eval"), now=t0)
    reg2.apply(run2, [ev("phase", t0, phase="vm_provision")], now=t0)
    eta = run2.state.eta_seconds(t0 + 10)
    # 90 s provisioning left + 200 s boot + 5 x 60 s tasks + 20 s tail
    assert eta == pytest.approx(90 + 200 + 300 + 20)
    reg2.apply(run2, [ev("phase", t0 + 100, phase="windows_boot")], now=t0 + 100)
    assert run2.state.eta_seconds(t0 + 250) == pytest.approx(50 + 300 + 20)
    # another kind has no history: nothing honest to say
    other = reg2.add(RunSpec(id="build-1", kind="docker_build"), now=t0)
    reg2.apply(other, [ev("phase", t0, phase="docker_build")], now=t0)
    assert other.state.eta_seconds(t0 + 10) is None


def test_prior_is_median_of_recent_succeeded_runs(tmp_path):
    h = History(str(tmp_path / "h.db"))
    reg = Registry(history=h)
    t = 0.0
    for i, boot in enumerate([100.0, 200.0, 900.0]):        # one odd run
        _, t = play_eval(reg, f"e{i}", t + 10, boot=boot)
    run = reg.add(RunSpec(id="bad", kind="agent_eval"), now=t)
    reg.apply(run, [ev("phase", t, phase="vm_provision"), ev("status", t + 5, state="failed")], now=t + 5)
    p = h.prior("agent_eval")
    assert p.runs == 3
    assert dict(p.pre_phases)["windows_boot"] == pytest.approx(200.0)
    assert p.unit_seconds == pytest.approx(60.0)
    assert p.post_seconds == pytest.approx(20.0)
    assert h.prior("nothing") is None


def test_corrupt_history_is_set_aside(tmp_path, caplog):
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not an sqlite database" * 100)
    h = History(str(path))
    assert h.conn is not None and h.prior("x") is None
    assert any(n.startswith("history.db.corrupt-") for n in os.listdir(tmp_path))
    assert "moved it to" in caplog.text
