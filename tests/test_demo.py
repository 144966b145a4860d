"""`runwatch demo`: live metrics from the bundled samples within seconds."""
import pytest

from support.prom_text import sample
from support.waits import wait_for

pytestmark = pytest.mark.stack     # waits for the demo's runs to move and one to fail

RUNS = ("demo-agent-eval", "demo-docker-build", "demo-hparam-search", "demo-failing-train")


def test_demo_runs_move_and_one_fails(runwatch_proc):
    rw = runwatch_proc("demo", "--speed", "20").wait_up()
    first = wait_for(lambda: (t := rw.metrics()) and all(
        sample(t, "runwatch_run_info", run_id=r) == 1 for r in RUNS) and t, what="all demo runs")
    assert sample(first, "runwatch_run_state", run_id="demo-docker-build", runwatch_run_state="running") == 1

    def moved():
        t = rw.metrics()
        return (sample(t, "runwatch_docker_build_step", run_id="demo-docker-build") or 0) >= 3 and \
            (sample(t, "runwatch_tasks_completed_total", run_id="demo-hparam-search") or 0) >= 2 and t
    # the second trial is the first [BEST] one: from then on the run has a best score
    t = wait_for(moved, timeout=30, what="demo progress")
    assert sample(t, "runwatch_best_score", run_id="demo-hparam-search", name="score") is not None
    assert sample(t, "runwatch_cost_usd", run_id="demo-failing-train") > 0
    t = wait_for(lambda: (t := rw.metrics()) and sample(
        t, "runwatch_run_state", run_id="demo-failing-train", runwatch_run_state="failed") == 1 and t,
        timeout=40, what="the failing sample fails")
    assert sample(t, "runwatch_errors_total", run_id="demo-failing-train") == 2   # ERROR line + one traceback


def test_the_replayed_openadapt_run_shows_what_the_recorded_run_did(runwatch_proc):
    # the sample replays a log of the corpus of real output: runwatch shows that run's truth
    import json
    import os
    from support import real_facts
    case = "openadapt-api-sequential"
    with open(os.path.join(real_facts.HERE, case, "truth.json")) as f:
        truth = json.load(f)
    rw = runwatch_proc("demo", "--speed", "20").wait_up()
    t = wait_for(lambda: (t := rw.metrics()) and sample(
        t, "runwatch_run_state", run_id="demo-openadapt-replay", runwatch_run_state="succeeded") == 1 and t,
        timeout=60, what="the replayed run ends")
    run = {"run_id": "demo-openadapt-replay"}
    assert sample(t, "runwatch_tasks_completed_total", **run) == truth["num_tasks"]
    assert sample(t, "runwatch_tasks_failed_total", **run) == truth["failed"]
    assert sample(t, "runwatch_errors_total", **run) == truth["error_count"]
    for action, n in truth["actions"].items():
        assert sample(t, "runwatch_steps_total", action=action, **run) == n



def test_the_replayed_trainer_run_shows_what_the_recorded_run_did(runwatch_proc):
    # a training run of the corpus of real output: every fact of its truth file (taken from the
    # Trainer's own log_history and state) holds for the replayed run, as it does for a scan
    from support import real_facts
    rw = runwatch_proc("demo", "--speed", "20").wait_up()
    run = {"run_id": "demo-hf-trainer-replay"}
    t = wait_for(lambda: (t := rw.metrics()) and sample(
        t, "runwatch_run_state", runwatch_run_state="succeeded", **run) == 1 and t,
        timeout=60, what="the replayed training run ends")
    facts = real_facts.facts("hf-tqdm")
    assert len(facts) > 10
    wrong = [(f, got) for f in facts
             for ok, got in [real_facts.check(t, (f[0], f[1], {**f[2], **run}, f[3], f[4]))] if not ok]
    assert not wrong, wrong
