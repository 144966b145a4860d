"""What each recorded case's truth file says runwatch must show.

`facts(case)` turns tests/real/<case>/truth.json (written from the tool's own objects when
the case was recorded, see record.py) into checks on `runwatch scan` output. Used by
tests/test_real.py (every fact must hold) and bench/real_accuracy.py (facts right / checked).
A fact is (what, metric, labels, op, expected) with op "==" (equal, to float precision),
"~N" (equal once rounded to N decimals: the tool prints it so), "g" (equal as printed
with %g), "gN" (equal as printed with %.Ng), ">=" or "absent" (no such sample).
"""
from __future__ import annotations

import glob
import json
import os
import re

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "real")   # tests/real/

# The packs a user would pick for each tool (by case-name prefix); "all" is the other way
# every case is checked: `runwatch scan` without --pack, every built-in pack.
USER_PACKS = {
    "python-crash-after-bar": ["tqdm", "python"],
    "python": ["python"],
    "tqdm": ["tqdm", "python"],
    "pytest": ["pytest", "python"],
    "pip": ["pip", "python"],
    "uv": ["pip"],
    "sklearn": ["sklearn", "python"],
    "xgboost": ["gbm", "python"],
    "lightgbm": ["gbm", "python"],
    "optuna": ["trials", "tqdm", "python"],
    "openadapt": ["waa", "python"],
    "docker": ["docker"],
    "hf": ["hf", "tqdm", "python"],
    "keras": ["keras", "python"],
    "lightning": ["lightning", "tqdm", "python"],
}

# Which way a training metric improves, as each tool decides it: transformers' TrainingArguments
# (greater_is_better = not metric_for_best_model.endswith("loss")), Keras' and Lightning's
# monitors (mode "min" for losses, "max" for accuracies). Other names (runtimes, learning rate,
# grad_norm, epoch) have no best.
def _train_direction(name: str) -> str | None:
    if name.endswith("loss"):
        return "min"
    if name.endswith(("accuracy", "acc", "f1", "auc")):
        return "max"
    return None


def _last_and_best(fact, name: str, values: list, op: str, best: bool = True) -> None:
    fact(f"last {name}", "runwatch_run_metric", op, values[-1], name=name)
    d = _train_direction(name)
    if not best:
        return
    if d is None:
        fact(f"no best {name}", "runwatch_best_score", "absent", None, name=name)
    else:
        fact(f"best {name}", "runwatch_best_score", op, min(values) if d == "min" else max(values), name=name)

# Which metrics improve upwards, as each tool itself decides it (for early stopping):
# xgboost/callback.py EarlyStopping (3.2) and lightgbm/basic.py Booster (4.7).
XGBOOST_MAXIMIZE = ("auc", "aucpr", "pre", "pre@", "map", "ndcg", "auc@", "aucpr@", "map@", "ndcg@")
LIGHTGBM_MAXIMIZE = ("auc", "ndcg@", "map@", "average_precision")

# pytest's stats keys (terminal.py KNOWN_TYPES) -> the metric name the pytest pack gives them
PYTEST_METRICS = {"failed": "tests_failed", "passed": "tests_passed", "skipped": "tests_skipped",
                  "deselected": "tests_deselected", "xfailed": "tests_xfailed",
                  "xpassed": "tests_xpassed", "warnings": "tests_warnings", "error": "tests_errors"}


def cases() -> list[str]:
    return sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(HERE, "*", "truth.json")))


def tool(case: str) -> str:
    return case.split("-")[0]


def user_packs(case: str) -> list[str]:
    """The packs of the longest USER_PACKS key the case's name starts with."""
    key = max((k for k in USER_PACKS if case == k or case.startswith(k + "-")), key=len)
    return USER_PACKS[key]


def truth(case: str) -> dict:
    with open(os.path.join(HERE, case, "truth.json")) as f:
        return json.load(f)


def facts(case: str) -> list[tuple]:
    t, kind = truth(case), tool(case)
    out: list[tuple] = []

    def fact(what, metric, op, expected, **labels):
        out.append((what, metric, labels, op, expected))

    if kind == "python":
        fact("one error per uncaught exception", "runwatch_errors_total", "==", t["uncaught_exceptions"])
        if "bar_total" in t:
            fact("progress where the bar stopped", "runwatch_run_progress_ratio", "==",
                 t["bar_n"] / t["bar_total"])
    elif kind == "tqdm":
        fact("a clean run counts no error", "runwatch_errors_total", "==", 0)
        if t["final_total"]:
            fact("progress of the last bar drawn", "runwatch_run_progress_ratio", "==",
                 t["final_n"] / t["final_total"])
        else:
            fact("no total, no progress ratio", "runwatch_run_progress_ratio", "absent", None)
        for item in (t.get("postfix") or "").split(", "):        # tqdm's own postfix string
            k, _, v = item.partition("=")
            if re.fullmatch(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", v):
                fact(f"postfix {k} a metric", "runwatch_run_metric", "==", float(v), name=k)
    elif kind == "pytest":
        stats = t["stats"]
        for key, metric in PYTEST_METRICS.items():
            if stats.get(key):
                fact(f"pytest's {key} count", "runwatch_run_metric", "==", stats[key], name=metric)
        fact("pytest's errors are the run's errors", "runwatch_errors_total", "==", stats.get("error", 0))
        fact("a finished session is complete", "runwatch_run_progress_ratio", "==", 1.0)
        if "-verbose" in case:
            fact("each test a task", "runwatch_tasks_completed_total", "==", t["collected"])
            fact("failed and erroring tests are failed tasks", "runwatch_tasks_failed_total", "==",
                 stats.get("failed", 0) + stats.get("error", 0))
    elif kind in ("pip", "uv"):
        code = t[f"{kind}_exit"]
        if code == 0:
            fact("a clean install counts no error", "runwatch_errors_total", "==", 0)
            fact("the install finished", "runwatch_run_phase_info", "==", 1, phase="installed")
        else:
            # pip reports one failed resolution in two ERROR lines ("Could not find a version ...",
            # "No matching distribution found ..."): at least one error is the honest fact.
            fact("a failed install counts an error", "runwatch_errors_total", ">=", 1)
            fact("a failed install did not finish", "runwatch_run_phase_info", "absent", None,
                 phase="installed")
    elif kind == "sklearn":
        fact("the planned fits", "runwatch_tasks_planned", "==", t["fits"])
        fact("each fit a task", "runwatch_tasks_completed_total", "==", t["fits"])
        fact("failed fits are failed tasks", "runwatch_tasks_failed_total", "==", t["failed_fits"])
        fact("failed fits are no errors", "runwatch_errors_total", "==", 0)
        fact("the search is complete", "runwatch_run_progress_ratio", "==", 1.0)
        if t["verbose"] > 2:        # sklearn prints fold scores with 3 decimals
            fact("the best fold score", "runwatch_best_score", "~3", t["best_fold_score"], name="cv_score")
        if t["verbose"] > 9:
            fact("each fit started", "runwatch_tasks_started_total", "==", t["fits"])
    elif kind in ("xgboost", "lightgbm"):
        fact("a clean run counts no error", "runwatch_errors_total", "==", 0)
        # the rounds the monitor printed: every period-th and the last (xgboost/callback.py
        # EvaluationMonitor, verbose_eval=k / verbose=k); LightGBM's log_evaluation(period) likewise
        period, rounds = t.get("period", 1), t.get("rounds")
        printed = None if rounds is None else [r for r in range(rounds) if r % period == 0 or r == rounds - 1]
        for data, metrics in t["evals_result"].items():
            for metric, values in metrics.items():
                if printed is not None:
                    values = [values[r] for r in printed]
                if kind == "xgboost":       # "<set>-<metric>:%.5f"
                    up = metric != "mape" and metric.startswith(XGBOOST_MAXIMIZE)
                    name, op = f"{data}-{metric}", "~5"
                else:                       # "<set>'s <metric>: %g"
                    up = metric.startswith(LIGHTGBM_MAXIMIZE)
                    name, op = f"{data}-{metric}", "g"
                fact(f"best {name}", "runwatch_best_score", op, max(values) if up else min(values), name=name)
                if kind == "xgboost":
                    fact(f"last {name}", "runwatch_score", op, values[-1], name=name)
        if kind == "lightgbm":
            # "Early stopping, best iteration is:" / "Did not meet early stopping. Best iteration is:"
            fact("LightGBM's end marker ends the run", "runwatch_run_progress_ratio", "==", 1.0)
        else:   # no planned total printed (num_boost_round, n_estimators): unknown unless configured
            fact("no planned rounds printed, no progress ratio", "runwatch_run_progress_ratio", "absent", None)
    elif kind == "optuna":
        states = t["states"]
        fact("every finished trial a task", "runwatch_tasks_completed_total", "==", len(states))
        fact("failed trials are failed tasks", "runwatch_tasks_failed_total", "==", states.count("FAIL"))
        fact("failed trials are no errors", "runwatch_errors_total", "==", 0)
        if "best_value" in t:
            fact("the study's best value", "runwatch_best_score", "==", t["best_value"], name="value")
            fact("progress bar: trials done of n_trials", "runwatch_run_progress_ratio", "==",
                 len(states) / t["n_trials"])
        else:   # several objectives: optuna logs no best (a Pareto front); runwatch shows none
            fact("no single best for several objectives", "runwatch_best_score", "absent", None, name="value")
    elif kind == "openadapt":
        # openadapt-evals' BenchmarkResults: each task an attempt; a task that did not succeed is
        # a failed task; an attempt with an error_type (the agent's error, an exception) is an
        # error, a low score is none (compute_metrics' error_count)
        fact("the planned tasks", "runwatch_tasks_planned", "==", t["num_tasks"])
        fact("every task finished", "runwatch_tasks_completed_total", "==", t["num_tasks"])
        fact("tasks that did not succeed are failed tasks", "runwatch_tasks_failed_total", "==", t["failed"])
        fact("errors are the attempts with an error", "runwatch_errors_total", "==", t["error_count"])
        fact("the evaluation is complete", "runwatch_run_progress_ratio", "==", 1.0)
        fact("each task started", "runwatch_tasks_started_total", "==", t["num_tasks"])
        for action, n in sorted(t["actions"].items()):
            fact(f"{action} actions", "runwatch_steps_total", "==", n, action=action)
    elif kind == "docker":
        # the transcript's own lines (composed by compose_docker.py, or public transcripts, see each
        # README): the steps and which finished (classic, plain), the last frame's vertex counts
        # (terminal display). A failed build failed once: one error, however many error lines its
        # step printed and its failure report repeats.
        if t["succeeded"]:
            fact("a clean build counts no error", "runwatch_errors_total", "==", 0)
            fact("a finished build is complete", "runwatch_run_progress_ratio", "==", 1.0)
        else:
            fact("a failed build is one error", "runwatch_errors_total", "==", 1)
        if t["builder"] == "tty":
            if not t["succeeded"]:
                fact("progress where the display stopped", "runwatch_run_progress_ratio", "==",
                     t["vertices_done"] / t["vertices"])
        else:
            if t["steps"] is not None:
                fact("the Dockerfile's steps", "runwatch_docker_build_steps", "==", t["steps"])
                if not t["succeeded"]:
                    fact("progress where the build failed", "runwatch_run_progress_ratio", "==",
                         t["steps_done"] / t["steps"])
            else:       # docker before 1.13 printed "Step 5 : ...", no total
                fact("the last step started", "runwatch_docker_build_step", "==", t["last_step"])
                if t["succeeded"]:
                    fact("a finished build ran all its steps", "runwatch_docker_build_steps", "==", t["last_step"])
                else:
                    fact("no total printed, none shown", "runwatch_docker_build_steps", "absent", None)
                    fact("no total, no progress ratio", "runwatch_run_progress_ratio", "absent", None)
            fact("the steps finished", "runwatch_docker_build_steps_done", "==", t["steps_done"])
    elif kind == "hf":
        fact("one error per uncaught exception", "runwatch_errors_total", "==", t["uncaught_exceptions"])
        if t.get("crashed"):
            fact("progress where training stopped", "runwatch_run_progress_ratio", "==",
                 t["global_step"] / t["max_steps"])
        else:
            fact("finished training is complete", "runwatch_run_progress_ratio", "==", 1.0)
        series: dict[str, list] = {}
        for entry in t["log_history"]:              # the Trainer prints each float '{:.4g}'
            for k, v in entry.items():   # total_flos: both callbacks drop it before printing
                if k not in ("step", "total_flos") and isinstance(v, float):
                    series.setdefault(k, []).append(v)
        for name, values in series.items():
            _last_and_best(fact, name, values, "g4", best=name != "epoch")
    elif kind == "keras":
        fact("a clean run counts no error", "runwatch_errors_total", "==", 0)
        fact("every epoch done", "runwatch_run_progress_ratio", "==", t["epochs_run"] / t["params"]["epochs"])
        for name, values in t["history"].items():   # the progress bar prints '{:.4f}'
            _last_and_best(fact, name, values, "~4")
    elif kind == "lightning":
        fact("a clean run counts no error", "runwatch_errors_total", "==", 0)
        fact("fit finished: complete", "runwatch_run_progress_ratio", "==", 1.0)
        rich = "-rich" in case
        op = "~3" if rich else "g3"                 # rich: '{:.3f}'; tqdm's postfix: '{:.3g}'
        every_epoch = not rich or "-pty" in case    # rich on a file draws its bars once, at the end
        shown = t.get("rich_shown")     # the names rich's own layout shows whole (record.py's wide cases)
        names = sorted({k for e in t["epochs"] for k in e})
        for name in names:
            if shown is not None and name not in shown:     # wider than the metrics column: cut with "…"
                fact(f"{name}, cut by rich, is not shown", "runwatch_run_metric", "absent", None, name=name)
                continue
            if name == "train_loss":
                # the bar's value after each step: tqdm draws every one; rich's live display redraws
                # at its own pace (the last is sure), on a file once, at the end
                values = [s["train_loss"] for s in t["steps"] if "train_loss" in s]
                _last_and_best(fact, name, values, op, best=not rich)
                continue
            values = [e[name] for e in t["epochs"] if name in e]
            _last_and_best(fact, name, values, op, best=every_epoch)
        if rich:    # a value whose name rich cut off (or wrapped away) goes to no name
            fact("no metric without a name", "runwatch_run_metric", "absent", None, name="")
    else:
        raise ValueError(f"{case}: no facts defined for tool {kind!r}")
    return out


def sample(text: str, name: str, labels: dict):
    """Value of the first sample `name{labels...}` in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def check(text: str, fact: tuple) -> tuple[bool, float | None]:
    """(holds, the value runwatch showed)."""
    _what, metric, labels, op, expected = fact
    got = sample(text, metric, labels)
    if op == "absent":
        return got is None, got
    if got is None:
        return False, None
    if op == ">=":
        return got >= expected, got
    if op == "g":
        return abs(got - float(f"{expected:g}")) <= 1e-12, got
    if op.startswith("g"):
        return abs(got - float(f"{expected:.{int(op[1:])}g}")) <= 1e-12, got
    if op.startswith("~"):
        return abs(got - round(expected, int(op[1:]))) <= 1e-9, got
    return abs(got - expected) <= 1e-9 * max(1.0, abs(expected)), got
