"""The stack, live: `runwatch demo` on loopback, scraped every second by a
real Prometheus that runs the project's prometheus.yml and rule files.

- every PromQL query of every dashboard returns data for some demo run
  (panels the demo cannot feed yet are listed in NO_DATA_YET with the issue
  that will feed them; the test fails if one of them does return data, so the
  list only shrinks);
- every recording and alert rule evaluates without error on real data;
- RunwatchRunFailed and RunwatchRunStalled fire against the demo, with the
  stall threshold lowered through the documented threshold override;
- every demo run's own view (the dashboard the overview links it to by its
  kind) shows data in at least VIEW_DATA_SHARE of its visible panels.

Needs the `prometheus` binary (Debian package `prometheus`); skips only if it
is missing. LogQL targets are not run (no Loki here); test_dashboards.py
validates their selectors.
"""

from __future__ import annotations

import time

import pytest

from support.loki_double import LokiServer

from support.stack import (Prom, datasource_uid, demo_available, iter_targets, load_dashboards, running_demo,
                           running_prometheus, substitute)
from support.tools import binary

pytestmark = [pytest.mark.stack("prometheus"),
              pytest.mark.skipif(binary("prometheus") is None,
                                 reason="prometheus not installed (apt-get install prometheus)")]

DEMO_RUNS = {"demo-agent-eval", "demo-docker-build", "demo-hparam-search", "demo-failing-train", "demo-workflow",
             "demo-openadapt-replay", "demo-hf-trainer-replay"}
# demo-agent-eval goes ~31 demo-seconds without progress (VM provision and
# Windows boot) every loop: at 5x that is ~6 s, so with a 2 s stall threshold
# RunwatchRunStalled fires for ~4 s per loop (~25 s).
DEMO_SPEED = 5
# Thresholds lowered to seconds via prometheus/rules/runwatch-config.yml's
# documented override (tests/support/stack.py:override_thresholds).
THRESHOLDS = {
    "runwatch_config:stall_threshold:seconds": 2,
    "runwatch_config:artifact_missing_threshold:seconds": 3,
}
RATE_INTERVAL = "10s"  # what Grafana's $__rate_interval is at a 1s scrape interval, rounded up
DATA_TIMEOUT = 75      # seconds to wait for every panel to show data
VIEW_DATA_SHARE = 0.9  # of a run's own view's panels (with a Prometheus query) that show data for it

# (dashboard uid, panel title, refId) -> the issue that will feed it.
NO_DATA_YET: dict = {
    # Every panel has data now; a panel the demo cannot feed goes here with the issue that will.
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    why = demo_available()
    if why:
        pytest.fail(f"runwatch demo unavailable (pip install -e '.[test]'): {why}")
    tmp = tmp_path_factory.mktemp("stack")
    loki = LokiServer()          # the Loki push API double: the shipper's metrics feed the Exporter dashboard
    try:
        with running_demo(tmp, speed=DEMO_SPEED, loki_url=loki.url) as demo:
            with running_prometheus(tmp, [demo], thresholds=THRESHOLDS) as base:
                prom = Prom(base)
                start = time.time()
                _wait(lambda: prom.query('up{job="runwatch"} == 1'), 20, "runwatch scraped")
                yield prom, start, tmp
    finally:
        loki.stop()


def _wait(cond, timeout: float, what: str, poll: float = 1):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def _targets():
    """(key, expr) of every Prometheus query of every dashboard, plus variable queries."""
    out = []
    for d in load_dashboards().values():
        for p, t in iter_targets(d):
            if datasource_uid(p, t) == "prometheus":
                out.append(((d["uid"], p["title"], t["refId"]), t["expr"]))
    return out


def _has_data(prom: Prom, expr: str, start: float, run_ids: list[str]) -> bool:
    now = time.time()
    variables = {"__rate_interval": RATE_INTERVAL, "__interval": "1s", "__range": f"{int(now - start) + 1}s",
                 "instance": ".*"}
    for run_id in (run_ids if "$run_id" in expr or "${run_id" in expr else [None]):
        q = substitute(expr, dict(variables, run_id=run_id or ""))
        if any(series.get("values") for series in prom.query_range(q, start, now)):
            return True
    return False


def test_run_variable_lists_demo_runs(stack):
    prom, _, _ = stack
    runs = set(_wait(lambda: DEMO_RUNS <= set(prom.label_values("run_id", "runwatch_run_info"))
                     and prom.label_values("run_id", "runwatch_run_info"), 20, "demo runs in runwatch_run_info"))
    assert DEMO_RUNS <= runs


def test_every_dashboard_query_returns_data(stack):
    prom, start, tmp = stack
    targets = _targets()
    assert set(NO_DATA_YET) <= {k for k, _ in targets}, "NO_DATA_YET names a panel that does not exist"
    run_ids = sorted(set(prom.label_values("run_id", "runwatch_run_info")))
    pending = {k: e for k, e in targets if k not in NO_DATA_YET}
    deadline = time.monotonic() + DATA_TIMEOUT
    while pending and time.monotonic() < deadline:
        for k, e in list(pending.items()):
            if _has_data(prom, e, start, run_ids):
                del pending[k]
        if pending:
            time.sleep(2)
    run_ids = sorted(set(prom.label_values("run_id", "runwatch_run_info")))
    unexpected = {k: e for k, e in targets if k in NO_DATA_YET and _has_data(prom, e, start, run_ids)}
    problems = [f"no data: {k} {e}" for k, e in sorted(pending.items())]
    problems += [f"has data now, remove from NO_DATA_YET ({NO_DATA_YET[k]}): {k}" for k in sorted(unexpected)]
    assert not problems, "\n".join(problems) + f"\n(demo runs: {run_ids}; logs in {tmp})"


def test_rules_evaluate_cleanly(stack):
    prom, _, _ = stack

    def evaluated():
        groups = prom.rule_groups()
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    rules = _wait(evaluated, 20, "all rules evaluated")
    files = {g["file"].rsplit("/", 1)[-1] for g in prom.rule_groups()}
    assert files == {"runwatch-alerts.yml", "runwatch-config.yml", "runwatch-recording.yml"}
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    # the threshold override took effect (and only through the config series)
    (v,) = prom.query("runwatch_config:stall_threshold:seconds")
    assert float(v["value"][1]) == THRESHOLDS["runwatch_config:stall_threshold:seconds"]


def test_failed_and_stalled_alerts_fire(stack):
    """demo-failing-train ends failed; demo-agent-eval boots Windows without progress."""
    prom, _, tmp = stack
    want = {("RunwatchRunFailed", "demo-failing-train"), ("RunwatchRunStalled", "demo-agent-eval")}
    seen: dict[tuple[str, str], dict] = {}

    def firing():
        # the stall alert is short-lived in the demo (a few seconds per loop):
        # keep what was seen firing until both were
        for a in prom.alerts():
            if a["state"] == "firing" and a["labels"]["alertname"].startswith("RunwatchRun"):
                seen.setdefault((a["labels"]["alertname"], a["labels"].get("run_id")), a)
        return want <= set(seen)

    try:
        _wait(firing, 60, f"{sorted(want)} firing", poll=0.5)
    except AssertionError:
        raise AssertionError(f"seen firing: {sorted(seen)}; alerts now: {prom.alerts()} (logs in {tmp})") from None
    for (name, run_id), a in seen.items():
        assert run_id in DEMO_RUNS
        assert a["labels"]["severity"] in {"critical", "warning"}
        assert run_id in a["annotations"]["summary"] and run_id in a["annotations"]["description"]
        assert a["annotations"]["runbook_url"].endswith("#" + name.lower())


def _views_of_runs(prom: Prom) -> dict[str, str]:
    """run_id -> the dashboard uid the overview's run_id link opens (its `view` label)."""
    overview = next(d for d in load_dashboards().values() if d["uid"] == "runwatch-overview")
    table = next(p for p, _ in iter_targets(overview) if p["title"] == "Runs")
    expr = substitute(next(t["expr"] for t in table["targets"] if t["refId"] == "A"), {"instance": ".*"})
    return {s["metric"]["run_id"]: "runwatch-" + s["metric"]["view"] for s in prom.query(expr)}


def test_every_demo_run_view_shows_data_in_most_panels(stack):
    """The view that fits the run: for each demo run, the share of its view's visible panels whose
    Prometheus queries return data for that run (Loki panels cannot run here and are not counted)."""
    prom, start, tmp = stack
    dashboards = {d["uid"]: d for d in load_dashboards().values()}
    views = _wait(lambda: DEMO_RUNS <= set(v := _views_of_runs(prom)) and v, 20, "every demo run has a view")
    assert views["demo-docker-build"] == "runwatch-docker-build" and views["demo-workflow"] == "runwatch-workflow"

    def shares() -> dict[str, tuple[float, list[str]]]:
        out = {}
        for run_id in sorted(DEMO_RUNS):
            panels: dict[str, bool] = {}
            for p, t in iter_targets(dashboards[views[run_id]]):
                if datasource_uid(p, t) != "prometheus":
                    continue
                panels[p["title"]] = panels.get(p["title"], False) or _has_data(prom, t["expr"], start, [run_id])
            out[run_id] = (sum(panels.values()) / len(panels), sorted(k for k, v in panels.items() if not v))
        return out

    got = {}
    deadline = time.monotonic() + DATA_TIMEOUT
    while time.monotonic() < deadline:
        got = shares()
        if all(share >= VIEW_DATA_SHARE for share, _ in got.values()):
            break
        time.sleep(3)
    report = "\n".join(f"{r} -> {views[r]}: {s:.0%} (no data: {', '.join(m) or '-'})" for r, (s, m) in got.items())
    print(report)
    assert all(share >= VIEW_DATA_SHARE for share, _ in got.values()), report + f"\n(logs in {tmp})"
