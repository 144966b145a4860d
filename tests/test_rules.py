"""Prometheus config, alert/recording rules and Alertmanager config.

promtool and amtool come from the Debian packages `prometheus` and
`prometheus-alertmanager`; a test skips only when its binary is missing.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest
import yaml

from support.paths import REPO
from support.stack import PROM_DIR, override_thresholds, render_prometheus_dir
from support.tools import binary

RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))
RUNBOOK = REPO / "docs" / "runbook.md"
SEVERITIES = {"critical", "warning", "info"}
REQUIRED_ALERTS = {
    "RunwatchRunStalled", "RunwatchRunFailed", "RunwatchRunOverBudget", "RunwatchRunProjectedOverBudget",
    "RunwatchArtifactMissing", "RunwatchSourceDown", "RunwatchExporterDown", "RunwatchExporterAbsent",
    "RunwatchLokiDroppingLines",
}
# Alerts about the exporter itself, not about one run.
EXPORTER_ALERTS = {"RunwatchExporterDown", "RunwatchExporterAbsent", "RunwatchLokiDroppingLines"}


def _tool(name: str) -> str:
    path = binary(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install prometheus prometheus-alertmanager)")
    return path


def _run(argv: list[str], cwd: pathlib.Path = REPO) -> str:
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{' '.join(argv)} failed:\n{out}"
    return out


def _rules() -> list[dict]:
    out = []
    for f in RULE_FILES:
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                out.append(dict(r, _group=g["name"], _file=f.name))
    return out


ALERTS = [r for r in _rules() if "alert" in r]
RECORDS = [r for r in _rules() if "record" in r]


# ------------------------------------------------------------------ promtool

@pytest.mark.stack("promtool")
def test_promtool_check_config():
    out = _run([_tool("promtool"), "check", "config", str(PROM_DIR / "prometheus.yml")])
    assert "SUCCESS" in out


@pytest.mark.stack("promtool")
def test_promtool_check_config_as_the_tests_render_it(tmp_path):
    """The rendered copy (only intervals + targets differ) is valid too."""
    cfg = render_prometheus_dir(tmp_path, runwatch=["127.0.0.1:9897"], prometheus=["127.0.0.1:9090"],
                                thresholds={"runwatch_config:stall_threshold:seconds": 5})
    _run([_tool("promtool"), "check", "config", str(cfg)])


@pytest.mark.stack("promtool")
def test_promtool_check_rules():
    out = _run([_tool("promtool"), "check", "rules", *map(str, RULE_FILES)])
    assert out.count("SUCCESS") == len(RULE_FILES)


@pytest.mark.stack("promtool")
def test_promtool_test_rules():
    out = _run([_tool("promtool"), "test", "rules", *map(str, TEST_FILES)], cwd=PROM_DIR)
    assert "FAILED" not in out


@pytest.mark.stack("amtool")
def test_amtool_check_config():
    _run([_tool("amtool"), "check-config", str(PROM_DIR / "alertmanager.yml")])


def test_prometheus_yml_has_no_inline_targets():
    """All targets come from file_sd (targets/*.yml) so one file serves compose and tests."""
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"prometheus", "runwatch"}
    for job in jobs.values():
        assert "static_configs" not in job
        for sd in job["file_sd_configs"]:
            for f in sd["files"]:
                assert (PROM_DIR / f).is_file(), f
    assert cfg["rule_files"] == ["rules/*.yml"]
    for am in cfg["alerting"]["alertmanagers"]:
        for sd in am["file_sd_configs"]:
            for f in sd["files"]:
                assert (PROM_DIR / f).is_file(), f


# ------------------------------------------------------------------ rules

def test_required_alerts_exist():
    names = {a["alert"] for a in ALERTS}
    assert REQUIRED_ALERTS <= names, REQUIRED_ALERTS - names
    assert len(names) == len(ALERTS), "duplicate alert names"


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: r["alert"])
def test_alert_conventions(rule):
    assert rule["alert"].startswith("Runwatch")
    assert rule["labels"]["severity"] in SEVERITIES
    ann = rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= set(ann)
    anchor = ann["runbook_url"].rsplit("#", 1)[1]
    assert anchor == rule["alert"].lower()
    assert ann["runbook_url"].split("#")[0].endswith("docs/runbook.md")
    if rule["alert"] not in EXPORTER_ALERTS:
        assert "$labels.run_id" in ann["summary"] and "$labels.run_id" in ann["description"]
        # one alert per run: run_id must survive the expression
        assert not re.search(r"\b(sum|max|min|avg|count)\s*(by|without)?\s*\((?![^)]*run_id)", rule["expr"]), \
            "aggregation drops run_id"
    assert "$value" in ann["description"] or rule["alert"] in {"RunwatchRunFailed", "RunwatchExporterAbsent"}


def _runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:  # GitHub's slug: lower case, drop punctuation, spaces -> '-'
            anchors.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def test_runbook_has_every_alert_and_threshold_docs():
    anchors = _runbook_anchors()
    for rule in ALERTS:
        assert rule["alert"].lower() in anchors, f"docs/runbook.md lacks a '## {rule['alert']}' section"
    assert "thresholds" in anchors
    text = RUNBOOK.read_text()
    for r in RECORDS:
        if r["record"].startswith("runwatch_config:"):
            assert r["record"] in text, f"{r['record']} not documented in docs/runbook.md"


def test_recording_rule_names():
    for r in RECORDS:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z_0-9]+", r["record"]), r["record"]
    # the config series are plain constants so they can be overridden
    for r in RECORDS:
        if r["record"].startswith("runwatch_config:"):
            assert re.fullmatch(r"\s*vector\([0-9.e+]+\)\s*", r["expr"]), r


def test_thresholds_come_from_config_series():
    """Alerts compare against runwatch_config:* series, which a deployment can override."""
    config = {r["record"] for r in RECORDS if r["record"].startswith("runwatch_config:")}
    used = {c for c in config for a in ALERTS if c in a["expr"]}
    assert used == config, f"unused threshold series: {config - used}"
    stalled = next(a for a in ALERTS if a["alert"] == "RunwatchRunStalled")
    assert "runwatch_config:stall_threshold:seconds" in stalled["expr"]


def test_threshold_override_changes_only_the_value():
    text = (PROM_DIR / "rules" / "runwatch-config.yml").read_text()
    out = yaml.safe_load(override_thresholds(text, {"runwatch_config:stall_threshold:seconds": 7}))
    orig = yaml.safe_load(text)
    recs = {r["record"]: r["expr"] for g in out["groups"] for r in g["rules"]}
    assert recs["runwatch_config:stall_threshold:seconds"] == "vector(7)"
    assert len(recs) == sum(len(g["rules"]) for g in orig["groups"])
    with pytest.raises(AssertionError):
        override_thresholds(text, {"runwatch_config:no_such:seconds": 1})


def _unit_tests() -> list[dict]:
    cases = []
    for f in TEST_FILES:
        for t in yaml.safe_load(f.read_text())["tests"]:
            cases.extend(t.get("alert_rule_test", []))
    return cases


@pytest.mark.parametrize("name", sorted({a["alert"] for a in ALERTS}))
def test_every_alert_has_firing_and_silent_promtool_case(name):
    cases = [c for c in _unit_tests() if c["alertname"] == name]
    firing = [c for c in cases if c.get("exp_alerts")]
    silent = [c for c in cases if not c.get("exp_alerts")]
    assert firing, f"{name}: no promtool case where it fires"
    assert silent, f"{name}: no promtool case where it must stay silent"
    for c in firing:
        for exp in c["exp_alerts"]:
            assert exp.get("exp_labels", {}).get("severity"), f"{name}: exp_labels must check severity"
            assert {"summary", "description", "runbook_url"} <= set(exp.get("exp_annotations", {})), \
                f"{name}: exp_annotations must check summary, description and runbook_url"


def test_recording_rules_have_promtool_cases():
    exprs = []
    for f in TEST_FILES:
        for t in yaml.safe_load(f.read_text())["tests"]:
            exprs += [c["expr"] for c in t.get("promql_expr_test", [])]
    for r in RECORDS:
        if not r["record"].startswith("runwatch_config:"):
            assert any(r["record"] in e for e in exprs), f"no promql_expr_test for {r['record']}"


# ------------------------------------------------------------------ alertmanager

def test_alertmanager_routes_by_severity():
    am = yaml.safe_load((PROM_DIR / "alertmanager.yml").read_text())
    route = am["route"]
    assert set(route["group_by"]) == {"alertname", "run_id"}
    matched = {m for r in route["routes"] for m in r["matchers"]}
    for sev in SEVERITIES:
        assert f'severity="{sev}"' in matched
    receivers = {r["name"] for r in am["receivers"]}
    assert {route["receiver"], *(r["receiver"] for r in route["routes"])} <= receivers
