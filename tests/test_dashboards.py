"""Grafana dashboards and provisioning: generated JSON is current, and a lint
that mirrors grafana/dashboard-linter's rules (title/description/unit on every
panel, datasources by uid, $__rate_interval, counters only inside rate/increase,
unique uids) plus runwatch's own (LogQL selectors only use labels runwatch
sets, metric names exist in the metric contract)."""

from __future__ import annotations

import importlib.util
import re
import subprocess

import pytest
import yaml

from support.stack import (DASHBOARD_DIR, GRAFANA_DIR, PROM_DIR, datasource_uid, iter_panels, iter_targets,
                           load_dashboards, substitute)
from support.tools import binary

DASHBOARDS = load_dashboards()
DATASOURCE_UIDS = {"prometheus", "loki", "alertmanager"}

# Metric contract: the metrics README.md ("Metrics") and docs/ of this repo describe.
CONTRACT = {
    "runwatch_run_info", "runwatch_run_state", "runwatch_run_phase_info", "runwatch_run_start_timestamp_seconds",
    "runwatch_run_end_timestamp_seconds", "runwatch_run_last_progress_timestamp_seconds",
    "runwatch_run_last_line_timestamp_seconds", "runwatch_run_progress_ratio", "runwatch_run_eta_seconds",
    "runwatch_tasks_planned", "runwatch_tasks_started_total", "runwatch_tasks_completed_total",
    "runwatch_tasks_failed_total", "runwatch_steps_total", "runwatch_docker_build_step", "runwatch_docker_build_steps",
    "runwatch_docker_build_steps_done", "runwatch_score", "runwatch_best_score", "runwatch_errors_total",
    "runwatch_run_metric", "runwatch_cost_usd", "runwatch_cost_rate_usd_per_hour", "runwatch_cost_projected_usd",
    "runwatch_cost_budget_usd",
    "runwatch_artifact_available", "runwatch_vm_power_state", "runwatch_agent_state",
    "runwatch_agent_duration_seconds", "runwatch_data_flow_bytes_total", "runwatch_lines_total",
    "runwatch_lines_cut_total", "runwatch_line_decode_errors_total", "runwatch_source_up",
    "runwatch_scrape_duration_seconds", "runwatch_build_info",
    "runwatch_loki_entries_sent_total", "runwatch_loki_entries_dropped_total", "runwatch_loki_queue_entries",
    "runwatch_loki_spool_bytes", "runwatch_loki_push_duration_seconds_bucket",
    # Prometheus' own per-target series
    "up", "scrape_duration_seconds",
}
# Loki: stream labels runwatch sets, and its structured metadata.
LOKI_STREAM_LABELS = {"service_name", "kind", "source", "host"}
LOKI_METADATA = {"run_id", "phase", "level"}

# Grafana unit ids the dashboards may use (subset of Grafana's registry).
UNITS = {"none", "short", "percent", "percentunit", "s", "ms", "dtdurations", "bytes", "Bps", "ops",
         "currencyUSD", "dateTimeAsIso", "dateTimeFromNow"}

# Variables Grafana fills in, with values usable for a syntax check.
GRAFANA_VARS = {"__rate_interval": "15s", "__range": "1h", "__interval": "15s", "__auto": "15s",
                "run_id": "demo-run", "instance": ".*"}

FUNC_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)?\s*\($")


def _promql_targets():
    for name, d in DASHBOARDS.items():
        for p, t in iter_targets(d):
            if datasource_uid(p, t) == "prometheus":
                yield pytest.param(p, t, id=f"{name}:{p['title']}:{t.get('refId')}")


def _logql_targets():
    for name, d in DASHBOARDS.items():
        for p, t in iter_targets(d):
            if datasource_uid(p, t) == "loki":
                yield pytest.param(p, t, id=f"{name}:{p['title']}:{t.get('refId')}")


def _panels():
    for name, d in DASHBOARDS.items():
        for p in iter_panels(d):
            if p.get("type") != "row":
                yield pytest.param(p, id=f"{name}:{p.get('title')}")


# ------------------------------------------------------------------ generated

def test_checked_in_json_matches_generator():
    spec = importlib.util.spec_from_file_location("runwatch_grafana_generate", GRAFANA_DIR / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    rendered = gen.render()
    assert set(rendered) == {p.name for p in DASHBOARD_DIR.glob("*.json")}, "stray or missing dashboard JSON"
    for name, text in rendered.items():
        assert (DASHBOARD_DIR / name).read_text() == text, \
            f"grafana/dashboards/{name} is stale: run `python grafana/generate.py`"


def test_expected_dashboards():
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert sorted(uids) == ["runwatch-agent-eval", "runwatch-docker-build", "runwatch-exporter", "runwatch-overview",
                            "runwatch-run", "runwatch-training", "runwatch-vm", "runwatch-workflow"]
    assert len(set(uids)) == len(uids)
    for d in DASHBOARDS.values():
        assert d["title"].startswith("runwatch / ")
        assert "runwatch" in d["tags"]


def test_overview_links_every_view_that_exists():
    """The run_id link opens /d/runwatch-<view>: every view the kind mapping can name is a dashboard,
    and each kind-specific view shows a subset of the full run detail's panels."""
    table = _panel("runwatch-overview", "Runs")
    expr = next(t["expr"] for t in table["targets"] if t["refId"] == "A")
    views = set(re.findall(r'"view", "([a-z-]+)", "(?:kind)?"', expr))
    uids = {d["uid"] for d in DASHBOARDS.values()}
    assert views == {"run", "agent-eval", "docker-build", "training", "vm", "workflow"}
    assert {f"runwatch-{v}" for v in views} <= uids
    links = [link["url"] for o in table["fieldConfig"]["overrides"] for prop in o["properties"]
             if prop["id"] == "links" for link in prop["value"]]
    assert any(u.startswith("/d/runwatch-${__data.fields.view}?var-run_id=${__value.raw}") for u in links), links
    full = {p["title"] for p in iter_panels(next(d for d in DASHBOARDS.values() if d["uid"] == "runwatch-run"))}
    for slug in ("agent-eval", "docker-build", "training", "vm"):
        view = next(d for d in DASHBOARDS.values() if d["uid"] == f"runwatch-{slug}")
        titles = {p["title"] for p in iter_panels(view)}
        assert titles < full, (slug, titles - full)


# ------------------------------------------------------------------ lint

@pytest.mark.parametrize("panel", list(_panels()))
def test_panel_has_title_description_unit(panel):
    assert panel.get("title"), "panel without title"
    assert len(panel.get("description", "")) >= 20, "panel without a useful description"
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    assert unit in UNITS, f"unit {unit!r}"
    assert panel.get("targets"), "panel without queries"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_datasources_by_uid(name):
    d = DASHBOARDS[name]
    text = (DASHBOARD_DIR / name).read_text()
    assert "${DS_" not in text and "__inputs" not in d
    for p in iter_panels(d):
        if p.get("type") == "row":
            continue
        assert p["datasource"]["uid"] in DATASOURCE_UIDS
        for t in p["targets"]:
            assert t["datasource"]["uid"] == p["datasource"]["uid"], "mixed datasources in one panel"
    for v in d.get("templating", {}).get("list", []):
        assert v["datasource"]["uid"] in DATASOURCE_UIDS


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_unique_panel_ids_and_layout(name):
    panels = list(iter_panels(DASHBOARDS[name]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
    refids = [[t["refId"] for t in p.get("targets", [])] for p in panels]
    assert all(len(r) == len(set(r)) for r in refids)


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + "_" * (len(m.group()) - 2) + '"', expr)


def _enclosing_functions(expr: str, pos: int) -> list[str]:
    """Names of the function calls whose parentheses enclose pos, innermost first."""
    stack: list[str] = []
    for i, ch in enumerate(expr[:pos]):
        if ch == "(":
            m = FUNC_RE.search(expr[:i + 1])
            stack.append((m.group(1) or "") if m else "")
        elif ch == ")":
            stack.pop()
    return [s for s in reversed(stack) if s not in ("by", "without", "on", "ignoring", "group_left", "group_right")]


@pytest.mark.parametrize("panel,target", list(_promql_targets()))
def test_promql_rate_interval_and_counters(panel, target):
    expr = _strip_strings(target["expr"])
    # rate()/irate() always over $__rate_interval; increase() too, except the
    # "... in the selected range" instant stats, which use increase(x[$__range]).
    for m in re.finditer(r"\b(rate|irate|increase)\s*\(", expr):
        rng = re.search(r"\[([^\]]+)\]", expr[m.end():])
        assert rng, f"{m.group(1)} without a range"
        allowed = {"$__rate_interval"}
        if m.group(1) == "increase" and target.get("instant"):
            allowed.add("$__range")
        assert rng.group(1) in allowed, f"{m.group(1)}(...[{rng.group(1)}])"
    # counters (and histogram buckets) only inside rate/irate/increase
    for m in re.finditer(r"\b[a-z_:][a-z0-9_:]*_(total|bucket)\b", expr):
        funcs = _enclosing_functions(expr, m.start())
        assert funcs and funcs[0] in ("rate", "irate", "increase"), f"raw counter {m.group()}"


PROMQL_WORDS = {"by", "without", "and", "or", "unless", "bool", "offset", "on", "ignoring", "group_left", "group_right"}


def _metric_names(expr: str) -> set[str]:
    expr = _strip_strings(re.sub(r"\{[^}]*\}", "", expr))
    expr = re.sub(r'"_*"', '""', expr)     # string arguments (label_replace, label_join) are not metrics
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr):
        tok = m.group(1)
        if tok in PROMQL_WORDS or re.fullmatch(r"[0-9.e]+", tok):
            continue
        names.add(tok)
    return names


@pytest.mark.parametrize("panel,target", list(_promql_targets()))
def test_promql_metrics_exist(panel, target):
    records = set()
    for f in (PROM_DIR / "rules").glob("*.yml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            records |= {r["record"] for r in g["rules"] if "record" in r}
    unknown = _metric_names(target["expr"]) - CONTRACT - records
    assert not unknown, f"not in the metric contract nor a recording rule: {unknown}"


@pytest.mark.stack("promtool")
def test_promql_syntax_with_promtool(tmp_path):
    """Every dashboard query parses (promtool checks rule expressions)."""
    promtool = binary("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    rules = []
    for d in DASHBOARDS.values():
        for p, t in iter_targets(d):
            if datasource_uid(p, t) == "prometheus":
                rules.append({"record": f"dashboard:check_{len(rules)}:expr",
                              "expr": substitute(t["expr"], GRAFANA_VARS)})
    for v in DASHBOARDS["runwatch-run.json"]["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"])
        assert m, v["query"]
        rules.append({"record": f"dashboard:check_{len(rules)}:expr", "expr": m.group(1)})
    f = tmp_path / "dashboard-queries.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("panel,target", list(_logql_targets()))
def test_logql_selectors_use_runwatch_labels(panel, target):
    expr = target["expr"]
    selectors = re.findall(r"\{([^}]*)\}", expr)
    assert selectors, "LogQL without a stream selector"
    for sel in selectors:
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', sel)
        labels = {m[0] for m in matchers}
        assert labels <= LOKI_STREAM_LABELS, f"stream labels runwatch does not set: {labels - LOKI_STREAM_LABELS}"
        assert ("service_name", "=", "runwatch") in matchers
    for name in re.findall(r"\|\s*(\w+)\s*(?:=~|!~|!=|=|>|<)", expr):
        assert name in LOKI_METADATA | LOKI_STREAM_LABELS, f"label filter on {name}"
    for m in re.finditer(r"\b(rate|count_over_time|bytes_rate)\s*\(", expr):
        assert "[$__rate_interval]" in expr[m.end():]


# ------------------------------------------------------------------ content

def _panel(uid: str, title: str) -> dict:
    d = next(d for d in DASHBOARDS.values() if d["uid"] == uid)
    return next(p for p in iter_panels(d) if p.get("title") == title and p["type"] != "row")


def test_overview_table_links_to_run_detail():
    table = _panel("runwatch-overview", "Runs")
    links = [prop for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "run_id"
             for prop in o["properties"] if prop["id"] == "links"]
    urls = [v["url"] for v in links[0]["value"]]
    assert any("/d/runwatch-run/" in u and "var-run_id=${__value.raw}" in u for u in urls), urls
    progress = [prop for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Progress"
                for prop in o["properties"] if prop["id"] == "custom.cellOptions"]
    assert progress and progress[0]["value"]["type"] == "gauge"
    exprs = " ".join(t["expr"] for t in table["targets"])
    for metric in ("runwatch_run_state", "runwatch_run_phase_info", "runwatch_run_progress_ratio",
                   "runwatch_run_eta_seconds", "runwatch_cost_usd", "runwatch_cost_projected_usd",
                   "runwatch_run_last_line_timestamp_seconds"):
        assert metric in exprs


def test_run_detail_variable():
    d = next(d for d in DASHBOARDS.values() if d["uid"] == "runwatch-run")
    (var,) = d["templating"]["list"]
    assert var["name"] == "run_id" and var["query"] == "label_values(runwatch_run_info, run_id)"
    for p, t in iter_targets(d):
        assert "$run_id" in t["expr"], f"{p['title']} ignores the selected run"


def test_provisioning():
    ds = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "runwatch.yml").read_text())
    assert {d["uid"]: d["type"] for d in ds["datasources"]} == {
        "prometheus": "prometheus", "loki": "loki", "alertmanager": "alertmanager"}
    prov = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "runwatch.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((GRAFANA_DIR.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
