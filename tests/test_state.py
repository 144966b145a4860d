"""The reducer: events in, run state out. Pure: times come from the events."""
import pytest

from runwatch.events import RUN_STATES, TERMINAL_STATES, Event, make
from runwatch.model.state import RunState
from support.events import ev


def run(*evs):
    st = RunState()
    for e in evs:
        st.apply(e)
    return st


def test_first_activity_makes_a_pending_run_running():
    st = RunState()
    assert st.state == "pending"
    st.lines_seen(3, 10.0)
    assert (st.state, st.start_ts, st.lines, st.last_line_ts) == ("running", 10.0, 3, 10.0)


def test_status_end_sets_end_timestamp():
    st = run(ev("status", 5.0, state="running"), ev("status", 9.0, state="failed", reason="exit code 2"))
    assert (st.state, st.start_ts, st.end_ts, st.status_reason) == ("failed", 5.0, 9.0, "exit code 2")


@pytest.mark.parametrize("state", RUN_STATES)
def test_exactly_the_terminal_states_end_a_run(state):
    st = run(ev("status", 5.0, state="running"), ev("status", 9.0, state=state))
    assert (st.end_ts is not None) == (state in TERMINAL_STATES)
    assert set(TERMINAL_STATES) == {"succeeded", "failed", "canceled"}


def test_tasks_and_progress():
    st = run(ev("task_started", 1, task="a", index=1, total=4), ev("task_finished", 2, task="a", result="SUCCESS"),
             ev("task_started", 3, task="b", index=2, total=4), ev("task_finished", 4, task="b", result="FAIL"))
    assert (st.tasks_planned, st.tasks_started, st.tasks_completed, st.tasks_failed) == (4, 2, 2, 1)
    assert st.progress_ratio() == 0.5
    assert st.last_progress_ts == 4


def test_outer_level_refines_with_inner_trials():
    st = run(ev("progress", 1, current=2, total=4, level="outer"), ev("task_finished", 2, index=1, total=2))
    assert st.progress_ratio() == pytest.approx(0.25 + 0.5 / 4)


def test_classic_build_progress_counts_steps_before_the_current_one():
    st = run(ev("build_step", 1, step=3, steps=4))
    assert st.progress_ratio() == 0.5
    st.apply(ev("build_complete", 2))
    assert (st.build_step, st.build_done, st.progress_ratio()) == (4, 4, 1.0)


def test_tqdm_eta_counts_down_from_the_tools_estimate():
    st = run(ev("status", 0, state="running"), ev("progress", 100.0, percent=45, eta_seconds=15))
    assert st.eta_seconds(100.0) == 15
    assert st.eta_seconds(110.0) == 5
    # overdue (a pause): the estimate holds at a floor and grows again instead of sitting at 0 (eta.overdue)
    assert 0 < st.eta_seconds(130.0) < st.eta_seconds(200.0)


def test_rate_eta_from_progress_and_absent_without_progress():
    st = run(ev("status", 0, state="running"))
    assert st.eta_seconds(10) is None
    st.apply(ev("task_started", 0, index=1, total=10))
    st.apply(ev("task_finished", 10))
    st.apply(ev("task_finished", 20))            # 0.1/10 s -> 80 s left at t=20
    assert st.eta_seconds(20) == pytest.approx(80)
    st.apply(ev("status", 30, state="succeeded"))
    assert st.eta_seconds(30) is None          # not running: nothing to estimate


def test_scores_best_by_marker_by_value_and_by_direction():
    st = run(ev("score", value=0.3), ev("score", value=0.2, best=True), ev("score", name="loss", direction="min"),
             ev("score", name="loss", value=2.0), ev("score", name="loss", value=1.0),
             ev("score", name="loss", value=1.5))
    assert st.scores == {"score": 0.2, "loss": 1.5}
    assert st.best_scores == {"score": 0.2, "loss": 1.0}


def test_cost_accrues_while_running_and_projects_with_eta():
    st = run(ev("cost", 0, rate_usd_per_hour=3.6, budget_usd=1.0), ev("status", 0, state="running"))
    assert st.cost(100) == pytest.approx(0.1)
    st.apply(ev("progress", 100, percent=50, eta_seconds=100))
    snap = st.snapshot(100)
    assert snap["cost_projected"] == pytest.approx(0.2)
    st.apply(ev("status", 200, state="succeeded"))
    assert st.cost(1000) == pytest.approx(0.2)        # stops when the run ends
    assert st.snapshot(1000)["cost_rate"] == 0.0


def test_unknown_event_types_are_refused_by_make():
    with pytest.raises(ValueError, match="unknown event type"):
        make("explode", {}, 0)
    with pytest.raises(ValueError, match="state: must be one of"):
        make("status", {"state": "exploded"}, 0)


def test_an_error_that_continues_makes_the_next_one_part_of_it():
    # a chained traceback: first block, separator, second block, separator, third block = 1 error;
    # then an unrelated error counts again
    st = RunState()
    for fields in ({"message": "Traceback"}, {"continues": True}, {"message": "Traceback"},
                   {"continues": True}, {"message": "Traceback"}, {"message": "ERROR: disk full"}):
        st.apply(Event("error", fields, 1.0))
    assert st.errors == 2 and st.last_error == "ERROR: disk full"
    # a report quoting a traceback (sklearn's failed fits): the marker alone is no error
    st = RunState()
    st.apply(Event("error", {"continues": True}, 1.0))
    st.apply(Event("error", {"message": "Traceback"}, 2.0))
    assert st.errors == 0


@pytest.mark.parametrize("name,best", [("valid-logloss", 0.5), ("valid_1-binary_logloss", 0.5),
                                       ("valid-rmse", 0.5), ("train-merror", 0.5), ("valid-mape", 0.5),
                                       ("valid-auc", 0.9), ("eval_accuracy", 0.9), ("f1", 0.9),
                                       ("valid-map@5", 0.9)])
def test_direction_auto_follows_the_metric_name(name, best):
    st = run(*(ev("score", name=name, value=v, direction="auto") for v in (0.7, 0.9, 0.5, 0.6)))
    assert st.best_scores[name] == best and st.scores[name] == 0.6


def test_direction_auto_keeps_no_best_for_an_unknown_name():
    st = run(ev("score", name="temperature", value=3.0, direction="auto"))
    assert "temperature" not in st.best_scores and st.scores["temperature"] == 3.0


def test_a_continuing_error_covers_only_what_comes_right_after_it():
    # optuna's "Trial 6 failed ... The value nan is not acceptable." has no traceback after it:
    # the next trial's event ends the report, and a later crash counts
    st = run(ev("error", continues=True), ev("task_finished", result="complete"), ev("error", message="Traceback"))
    assert st.errors == 1


def test_label_values_from_the_output_are_bounded_per_run():
    from runwatch.model.state import MAX_LABEL_VALUES, OTHER
    n = MAX_LABEL_VALUES + 30
    st = run(*(ev("step", action=f"a{i}") for i in range(n)), ev("step", action="a0"),
             *(ev("score", name=f"s{i}", value=i) for i in range(n)),
             *(ev("metric", name=f"m{i}", value=i) for i in range(n)),
             *(ev("phase", phase=f"p{i}") for i in range(n)),
             *(ev("artifact", artifact=f"f{i}") for i in range(n)))
    assert len(st.steps) == MAX_LABEL_VALUES + 1 and st.steps[OTHER] == 30 and st.steps["a0"] == 2
    assert len(st.scores) == MAX_LABEL_VALUES + 1 and st.scores[OTHER] == n - 1
    assert len(st.metrics) == MAX_LABEL_VALUES + 1 and len(st.artifacts) == MAX_LABEL_VALUES + 1
    assert st.phase == OTHER and len(st.phases_seen) == MAX_LABEL_VALUES + 1
    assert st.labels_folded == 5 * 30


def test_an_exception_line_becomes_the_text_of_the_error_just_counted():
    st = run(ev("error", 1.0, message="Traceback"), ev("error", 1.1, message="ValueError: bad shape", detail=True))
    assert (st.errors, st.last_error) == (1, "ValueError: bad shape")
    # a chained traceback: the last link's exception is the last error, still one error
    st = run(ev("error", 1.0, message="Traceback"), ev("error", 1.1, message="KeyError: 'x'", detail=True),
             ev("error", 1.2, continues=True), ev("error", 1.3, message="Traceback"),
             ev("error", 1.4, message="RuntimeError: lookup failed", detail=True))
    assert (st.errors, st.last_error) == (1, "RuntimeError: lookup failed")
    # not right after an error (another event between): it changes nothing
    st = run(ev("error", 1.0, message="Traceback"), ev("phase", 1.1, phase="eval"),
             ev("error", 1.2, message="ValueError: later", detail=True))
    assert (st.errors, st.last_error) == (1, "Traceback")
    assert run(ev("error", 1.0, message="KeyboardInterrupt", detail=True)).errors == 0


def test_vm_power_remembers_since_when_the_vm_is_in_its_state():
    st = run(ev("vm_power", 1.0, vm="vm1", state="starting"), ev("vm_power", 5.0, vm="vm1", state="running"),
             ev("vm_power", 9.0, vm="vm1", state="running"))
    assert st.snapshot(10.0)["vm_power_since"] == {"vm1": 5.0}
def _mixed_events(seed: int, n: int = 3000) -> list[Event]:
    import random
    rng = random.Random(seed)
    out, ts = [], 1000.0
    for _ in range(n):
        ts += rng.choice((0.0, 0.0, 0.5, 2.0))
        r = rng.random()
        if r < 0.7:
            fields = {"action": rng.choice(("CLICK", "TYPE", "", f"A{rng.randrange(150)}"))}
            if rng.random() < 0.8:
                fields["index"] = rng.randrange(1, 50)
            out.append(Event("step", fields, ts))
        elif r < 0.75:
            out.append(Event("task_started", {"index": rng.randrange(1, 9), "total": 8}, ts))
        elif r < 0.8:
            out.append(Event("task_finished", {"result": rng.choice(("SUCCESS", "FAIL"))}, ts))
        elif r < 0.85:
            out.append(Event("error", {"message": "x", **({"continues": True} if rng.random() < 0.3 else {})}, ts))
        elif r < 0.88:
            out.append(Event("phase", {"phase": rng.choice(("a", "b", ""))}, ts))
        elif r < 0.9:
            out.append(Event("status", {"state": rng.choice(RUN_STATES)}, ts))
        elif r < 0.95:
            out.append(Event("progress", {"percent": rng.uniform(0, 100)}, ts))
        else:
            out.append(Event("score", {"name": "acc", "value": rng.random()}, ts))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_a_block_applied_at_once_equals_its_events_one_by_one(seed):
    """apply_all takes runs of steps as one (RunState._steps): the state must be what _step on
    each event makes of it, labels folded past the cap, the step list's cap and ETA included."""
    events = _mixed_events(seed)
    if seed % 2:
        events = [Event("step", {"action": "CLICK"}, 999.0)] * 450 + events   # a pending run's first lines
    one, batch = RunState(), RunState()
    for e in events:
        one.apply(e)
    for k in range(0, len(events), 700):          # blocks of events, as the registry hands them over
        batch.apply_all(events[k:k + 700])
    assert batch.to_dict() == one.to_dict()
    assert batch.snapshot(5000.0) == one.snapshot(5000.0)
