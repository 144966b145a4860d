"""Cost so far and to come (state.py accrual, projected cost, budget) against hand-computed figures."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from runwatch.export.collector import RunwatchCollector
from runwatch.model.runs import Registry, RunSpec
from runwatch.model.state import RunState
from support.events import ev


def test_configured_rate_over_running_time_with_a_rate_change():
    reg = Registry()
    run = reg.add(RunSpec(id="r", cost_rate=3.6, budget=5.0), now=0.0)     # 3.6 $/h = $0.001/s
    st = run.state
    assert st.cost(50.0) == 0.0 and st.current_rate() == 0.0               # pending: not billed
    reg.ingest(run, b"hello\n", [], 0, 100.0)                               # running from t=100
    assert st.cost(1000.0) == pytest.approx(0.9)                            # 900 s x $0.001
    reg.apply(run, [ev("cost", 1000.0, rate_usd_per_hour=7.2)], now=1000.0)  # $0.002/s from now
    assert st.cost(1500.0) == pytest.approx(0.9 + 1.0)
    reg.apply(run, [ev("status", 2000.0, state="succeeded")], now=2000.0)
    assert st.cost(2000.0) == pytest.approx(2.9)
    assert st.cost(9999.0) == pytest.approx(2.9) and st.current_rate() == 0.0  # finished: nothing accrues
    s = st.snapshot(9999.0)
    assert s["cost_projected"] == pytest.approx(2.9) and s["budget"] == 5.0


def test_vm_power_states_billed_and_not_billed():
    """starting/running/stopping/stopped are billed; deallocating/deallocated are not."""
    st = RunState()
    st.apply(ev("cost", 0.0, rate_usd_per_hour=3.6))
    timeline = [(0, "starting"), (100, "running"), (200, "stopping"), (300, "stopped"),
                (400, "deallocating"), (500, "deallocated"), (1000, "starting"), (1100, "running"),
                (1500, "deallocating"), (1600, "deallocated")]
    for t, s in timeline:
        st.apply(ev("vm_power", float(t), vm="vm1", state=s))
    # billed 0-400 and 1000-1500: 900 s x $0.001
    assert st.cost(5000.0) == pytest.approx(0.9)
    assert st.current_rate() == 0.0


def test_rate_change_while_deallocated_and_two_vms():
    st = RunState()
    st.apply(ev("cost", 0.0, rate_usd_per_hour=3.6))
    st.apply(ev("vm_power", 0.0, vm="a", state="running"))
    st.apply(ev("vm_power", 0.0, vm="b", state="deallocated"))
    assert st.current_rate() == 3.6                                        # one VM billed: billed
    st.apply(ev("vm_power", 600.0, vm="a", state="deallocated"))           # 600 s x 0.001 = 0.6
    st.apply(ev("cost", 700.0, rate_usd_per_hour=36.0))                     # not billed: nothing accrues
    assert st.cost(800.0) == pytest.approx(0.6)
    st.apply(ev("vm_power", 900.0, vm="b", state="starting"))              # $0.01/s from 900
    assert st.cost(1000.0) == pytest.approx(0.6 + 1.0)
    # the run itself finishing does not stop a VM's bill
    st.apply(ev("status", 1000.0, state="failed"))
    assert st.cost(1100.0) == pytest.approx(0.6 + 2.0)


def test_reported_cost_and_projection_with_eta():
    st = RunState()
    st.apply(ev("cost", 0.0, rate_usd_per_hour=36.0, budget_usd=20.0))    # $0.01/s
    t = 0.0
    for i in range(1, 5):                                                   # 4 of 10 tasks, 60 s each
        st.apply(ev("task_started", t, index=i, total=10))
        t += 60.0
        st.apply(ev("task_finished", t, result="SUCCESS"))
    s = st.snapshot(t)
    assert s["cost"] == pytest.approx(2.4)                                  # 240 s
    assert s["eta"] == pytest.approx(360.0)
    assert s["cost_projected"] == pytest.approx(2.4 + 3.6)                  # + 360 s x $0.01
    st.apply(ev("cost", t, cost_usd=10.0))                                   # the provider's own figure wins
    assert st.cost(t + 100) == pytest.approx(11.0)


def test_billed_but_no_honest_eta_means_no_projection():
    st = RunState()
    st.apply(ev("cost", 0.0, rate_usd_per_hour=3.6))
    st.lines_seen(1, 0.0)
    s = st.snapshot(100.0)
    assert s["cost"] == pytest.approx(0.1) and s["eta"] is None and s["cost_projected"] is None


def test_cost_metrics_exported():
    reg = Registry()
    run = reg.add(RunSpec(id="c", cost_rate=3.6, budget=1.0), now=0.0)
    reg.ingest(run, b"x\n", [], 0, 0.0)
    r = CollectorRegistry(auto_describe=False)
    r.register(RunwatchCollector(reg, self_metrics=False))
    assert r.get_sample_value("runwatch_cost_budget_usd", {"run_id": "c"}) == 1.0
    assert r.get_sample_value("runwatch_cost_rate_usd_per_hour", {"run_id": "c"}) == 3.6
    assert r.get_sample_value("runwatch_cost_usd", {"run_id": "c"}) > 0
