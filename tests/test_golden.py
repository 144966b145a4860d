"""Golden tests: every built-in pack, a sample log, the exact metrics it yields."""
import glob
import os
import subprocess

import pytest

from support.paths import TESTS
from support.procs import runwatch_cmd
from support.prom_text import sample
from support.cli import scan as scan_in_process

GOLDEN = os.path.join(TESTS, "golden")
LOGS = sorted(glob.glob(os.path.join(GOLDEN, "*.log")))


def scan(pack: str, path: str) -> str:
    return scan_in_process("--pack", pack, path, cwd=GOLDEN)


@pytest.mark.parametrize("log", LOGS, ids=[os.path.basename(p) for p in LOGS])
def test_golden(log):
    pack = os.path.basename(log).split(".")[0].split("_")[0]
    got = scan(pack, os.path.basename(log))
    want_path = log[:-4] + ".prom"
    if os.environ.get("RUNWATCH_UPDATE_GOLDEN"):
        with open(want_path, "w") as f:
            f.write(got)
    with open(want_path) as f:
        assert got == f.read()


def test_a_scan_process_prints_what_the_in_process_scan_does():
    """The golden tests scan in the test process (support/cli.py); a real process prints the same."""
    name = "waa.log"
    p = subprocess.run(runwatch_cmd("scan", "--pack", "waa", name), capture_output=True, cwd=GOLDEN, check=True)
    assert p.stdout.decode("utf-8") == scan("waa", name)
    with open(os.path.join(GOLDEN, "waa.prom")) as f:
        assert p.stdout.decode("utf-8") == f.read()


def test_every_builtin_pack_has_a_golden_file():
    from runwatch.parse.packs import builtin_names
    covered = {os.path.basename(p).split(".")[0].split("_")[0] for p in LOGS}
    assert set(builtin_names()) <= covered


# The figures that matter, counted by hand from the logs, so a regenerated
# golden file cannot silently bless a wrong count.
HAND_COUNTED = {
    "waa.log": {("runwatch_tasks_planned",): 3, ("runwatch_tasks_started_total",): 3,
                ("runwatch_tasks_completed_total",): 3, ("runwatch_tasks_failed_total",): 2,
                ("runwatch_steps_total", "CLICK"): 3, ("runwatch_steps_total", "SCROLL"): 1,
                ("runwatch_errors_total",): 1, ("runwatch_lines_total",): 14},
    "docker_classic.log": {("runwatch_docker_build_step",): 5, ("runwatch_docker_build_steps",): 5,
                           ("runwatch_docker_build_steps_done",): 5, ("runwatch_run_progress_ratio",): 1.0},
    # builder 1-4 and stage-1 1 started (#6 reappears: once), 4+3 steps, #3 #4 cached + #5 #6 done;
    # one failed build, one error ("#7 ERROR" is repeated by "failed to solve", which counts)
    "docker_buildkit.log": {("runwatch_docker_build_step",): 5, ("runwatch_docker_build_steps",): 7,
                            ("runwatch_docker_build_steps_done",): 4, ("runwatch_errors_total",): 1},
    # optuna: 3 finished + 1 pruned + 1 failed (its "failed with value None." not again) + 3 Trial N/3;
    # the failed trial is a failed task, not an error (its traceback belongs to it)
    "trials.log": {("runwatch_tasks_completed_total",): 8, ("runwatch_tasks_failed_total",): 1,
                   ("runwatch_errors_total",): 0,
                   ("runwatch_best_score", "value"): 0.12, ("runwatch_score", "value"): 0.3,
                   ("runwatch_best_score", "score"): 0.1934, ("runwatch_run_progress_ratio",): 0.5},
    "tqdm.log": {("runwatch_run_progress_ratio",): 0.73, ("runwatch_lines_total",): 4},
    # ERROR line, one traceback (its frames and exception line not again), CRITICAL; not ERRORS_TOTAL
    "python.log": {("runwatch_errors_total",): 3},
    # pytest -v (recorded, tests/real/pytest-verbose): 12 results, 2 FAILED + 1 ERROR; the short
    # summary's ERROR line is the one error; the summary line's counts as metrics
    "pytest.log": {("runwatch_tasks_completed_total",): 12, ("runwatch_tasks_failed_total",): 3,
                   ("runwatch_errors_total",): 1, ("runwatch_run_progress_ratio",): 1.0,
                   ("runwatch_run_metric", "tests_passed"): 7},
    # GridSearchCV verbose=3 (recorded, tests/real/sklearn-grid): 6 candidates x 3 folds, the
    # max_depth=-1 candidate's 3+3 fits fail (score=nan); its quoted traceback is not an error
    "sklearn.log": {("runwatch_tasks_planned",): 18, ("runwatch_tasks_completed_total",): 18,
                    ("runwatch_tasks_failed_total",): 6, ("runwatch_errors_total",): 0,
                    ("runwatch_best_score", "cv_score"): 0.99},
    # XGBoost then LightGBM (recorded, tests/real/*-early-stop); one run: their names differ
    "gbm.log": {("runwatch_best_score", "valid-auc"): 0.73827, ("runwatch_best_score", "valid-logloss"): 0.60643,
                ("runwatch_best_score", "valid_1-auc"): 0.727373, ("runwatch_score", "valid_1-auc"): 0.727373,
                ("runwatch_run_progress_ratio",): 1.0, ("runwatch_errors_total",): 0},
    # transformers Trainer with disable_tqdm=True (recorded, tests/real/hf-no-tqdm): 9 training logs,
    # 3 evaluations, the training summary (which completes the progress)
    "hf.log": {("runwatch_best_score", "loss"): 0.3247, ("runwatch_run_metric", "loss"): 0.3247,
               ("runwatch_best_score", "eval_accuracy"): 0.85, ("runwatch_run_metric", "learning_rate"): 0.0001389,
               ("runwatch_run_progress_ratio",): 1.0, ("runwatch_errors_total",): 0},
    # Keras fit verbose=1 (recorded, tests/real/keras-verbose1): 6 epochs; the bar's running means
    # count for the best only at each epoch's last update (History: best loss 0.3667 at epoch 6)
    "keras.log": {("runwatch_best_score", "loss"): 0.3667, ("runwatch_best_score", "val_loss"): 0.4382,
                  ("runwatch_run_metric", "val_loss"): 0.4395, ("runwatch_best_score", "accuracy"): 0.8375,
                  ("runwatch_run_progress_ratio",): 1.0},
    "keras_verbose2.log": {("runwatch_best_score", "val_accuracy"): 0.775, ("runwatch_run_metric", "loss"): 0.3667,
                           ("runwatch_run_progress_ratio",): 1.0},
    # a rich bar at epoch 2 of 0..3 with its wrapped metrics, early stopping, a tqdm bar glued to
    # "`Trainer.fit` stopped" (the tqdm pack's, not this one's)
    "lightning.log": {("runwatch_run_metric", "val_loss"): 0.609, ("runwatch_run_metric", "val_acc"): 0.677,
                      ("runwatch_best_score", "val_loss"): 0.609, ("runwatch_run_progress_ratio",): 1.0},
    # pip then uv installing, then uv failing to resolve: one lower-case "error:" line
    "pip.log": {("runwatch_errors_total",): 1, ("runwatch_lines_total",): 20},
}


@pytest.mark.parametrize("name", sorted(HAND_COUNTED))
def test_hand_counted_figures(name):
    pack = name.split(".")[0].split("_")[0]
    text = scan(pack, name)
    for key, want in HAND_COUNTED[name].items():
        labels = {}
        if len(key) > 1:
            labels["name" if "score" in key[0] or "metric" in key[0] else "action"] = key[1]
        assert sample(text, key[0], **labels) == pytest.approx(want), (name, key)
