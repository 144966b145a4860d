"""The ETA estimator (eta.py) through the pure run state: no clock, no I/O."""
from __future__ import annotations

import pytest

from runwatch.model.eta import Prior, Tracker, overdue
from runwatch.parse.packs import Matcher, load_builtin
from runwatch.model.state import RunState
from support.events import ev


def tasks(st, n, durations, t0=0.0):
    """Task i/n started and finished; returns the time after the last one."""
    t = t0
    for i, d in enumerate(durations, 1):
        st.apply(ev("task_started", t, index=i, total=n, task=f"t{i}"))
        t += d
        st.apply(ev("task_finished", t, task=f"t{i}", result="SUCCESS"))
    return t


def test_nothing_honest_to_say_is_none():
    st = RunState()
    st.lines_seen(1, 0.0)
    assert st.eta_seconds(10.0) is None                  # running, no progress, no history
    st.apply(ev("task_started", 10.0, index=1, total=10))
    assert st.eta_seconds(20.0) is None                  # a task runs, none finished: no rate yet


def test_steady_tasks():
    st = RunState()
    t = tasks(st, 10, [60.0] * 4)
    assert st.eta_seconds(t) == pytest.approx(360.0)
    st.apply(ev("task_started", t, index=5, total=10))
    assert st.eta_seconds(t + 30) == pytest.approx(330.0)     # counts down within a unit


def test_pause_never_sits_at_zero_and_grows():
    st = RunState()
    t = tasks(st, 4, [60.0] * 3)
    st.apply(ev("task_started", t, index=4, total=4))
    e1 = st.eta_seconds(t + 58)
    e2 = st.eta_seconds(t + 600)
    e3 = st.eta_seconds(t + 1200)
    assert 0 < e1 < 60 and e2 > e1 and e3 > e2


def test_burst_of_instant_units_does_not_make_the_rest_look_instant():
    st = RunState()
    t = tasks(st, 20, [0.5] * 10 + [60.0] * 3)              # 10 cached, then 3 real ones
    eta = st.eta_seconds(t)
    true_left = 7 * 60.0
    naive = (1 - 13 / 20) / (13 / 20 / t)                   # overall rate: far too optimistic
    assert naive < 0.5 * true_left
    assert eta > 0.6 * true_left


def test_tool_eta_for_a_bar_and_done():
    st = RunState()
    st.apply(ev("progress", 0.0, percent=10, eta_seconds=90.0))
    assert st.eta_seconds(30.0) == pytest.approx(60.0)
    assert st.eta_seconds(200.0) > 9.0                      # overdue: not zero
    st.apply(ev("progress", 100.0, percent=100))
    assert st.eta_seconds(101.0) == 0.0
    st.apply(ev("status", 102.0, state="succeeded"))
    assert st.eta_seconds(103.0) is None                    # finished: absent


def test_outer_position_restarts_inner_tasks():
    """`Position 2/2` after trial 4/4 of position 1 is half done, not done."""
    st = RunState()
    m = Matcher([load_builtin("trials")])
    out = []
    for i, line in enumerate(["Position 1/2", "Trial 1/4: Score=0.2", "Trial 4/4: Score=0.1", "Position 2/2"]):
        m.match_line(line, float(i * 10), out)
    for e in out:
        st.apply(e)
    assert st.progress_ratio() == pytest.approx(0.5)
    assert st.eta_seconds(31.0) is not None and st.eta_seconds(31.0) > 0


def test_overdue():
    assert overdue(100, 30) == 70
    assert overdue(100, 100) == pytest.approx(10)
    assert overdue(100, 300) == pytest.approx(110)


def test_history_prior_before_progress_and_per_unit():
    st = RunState()
    st.set_prior(Prior(pre_seconds=300, unit_seconds=60, progress_seconds=600, post_seconds=30,
                       pre_phases=[("vm_provision", 100.0), ("windows_boot", 200.0)], runs=1))
    st.apply(ev("phase", 0.0, phase="vm_provision"))
    # 90 s of provisioning left + 200 s boot + 10 tasks (unknown count yet: 600 s) + 30 s tail
    assert st.eta_seconds(10.0) == pytest.approx(90 + 200 + 600 + 30)
    st.apply(ev("phase", 100.0, phase="windows_boot"))
    assert st.eta_seconds(150.0) == pytest.approx(150 + 600 + 30)
    st.apply(ev("task_started", 300.0, index=1, total=5))   # now the log says 5 tasks: 5 x 60 s
    assert st.eta_seconds(300.0) == pytest.approx(5 * 60 + 30)


def test_tracker_round_trip_keeps_the_estimate():
    st = RunState()
    t = tasks(st, 10, [50.0, 70.0, 60.0])
    d = st.to_dict()
    st2 = RunState.from_dict(d)
    assert st2.eta_seconds(t + 5) == pytest.approx(st.eta_seconds(t + 5))
    assert isinstance(st2._eta, Tracker)


def test_one_long_pause_does_not_make_every_other_unit_a_burst():
    st = RunState()
    t = tasks(st, 20, [30.0] * 8 + [330.0] + [30.0] * 5)     # one task stalled 5 minutes
    eta = st.eta_seconds(t)
    assert 180.0 <= eta < 2 * 180.0                         # 6 tasks of 30 s left; the pause may weigh, not rule


def test_history_curve_knows_where_the_slow_step_is():
    """A docker build whose 4th of 6 steps is the slow one: the second build's ETA after
    step 3 includes the slow step, which no rate of the quick steps could predict."""
    from runwatch.model.history import History

    def build(st, t0, slow=300.0):
        t = t0
        for i, d in enumerate([2.0, 2.0, 2.0, slow, 2.0, 2.0], 1):
            st.apply(ev("build_step", t, step=i, steps=6, vertex=str(i)))
            t += d
            st.apply(ev("build_step_done", t, vertex=str(i)))
        st.apply(ev("status", t, state="succeeded"))
        return t

    import tempfile
    import os
    h = History(os.path.join(tempfile.mkdtemp(), "h.db"))
    st1 = RunState()
    build(st1, 0.0)
    h.record("docker_build", "b1", st1.state, st1.history_summary(), st1.end_ts)
    prior = h.prior("docker_build")
    assert prior.curve is not None and prior.curve_units == 6
    st2 = RunState()
    st2.set_prior(prior)
    t = 1000.0
    for i in range(1, 4):
        st2.apply(ev("build_step", t, step=i, steps=6, vertex=str(i)))
        t += 2.0
        st2.apply(ev("build_step_done", t, vertex=str(i)))
    st2.apply(ev("build_step", t, step=4, steps=6, vertex="4"))
    true_left = 304.0
    cold = RunState()
    for e in [ev("build_step", 1000.0 + 2 * (i - 1), step=i, steps=6, vertex=str(i)) for i in range(1, 4)]:
        cold.apply(e)
        cold.apply(ev("build_step_done", e.ts + 2.0, vertex=e.fields["vertex"]))
    assert cold.eta_seconds(t) < 0.1 * true_left                # no history: the quick steps say "seconds"
    assert st2.eta_seconds(t) > 0.4 * true_left                 # the curve remembers the slow step
