"""Runs overview: one row per run, counts of runs by state."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (OVERVIEW_UID, PROMETHEUS, RUN_DETAIL_URL, STATE_COLORS, TAGS, finish,
                     links_to_dashboards, panel, prom, thresholds, value_map)
from .views import view_of_kind_expr

# The machines runwatch reports from: one per scrape target, or per pushing host
# (remote-write sets instance to the host name).
INSTANCE = 'instance=~"$instance"'
# A run's own view, chosen by its kind (views.py); the full Run detail is one click further.
VIEW_URL = "/d/runwatch-${__data.fields.view}?var-run_id=${__value.raw}&${__url_time_range}"


def _count_stat(state: str, color: str) -> stat.Panel:
    return panel(
        stat.Panel(), f"Runs {state}",
        f"Number of runs runwatch currently reports in state {state} "
        f"(runwatch_run_state{{runwatch_run_state=\"{state}\"}}).",
        "none", w=4, h=4,
        targets=[prom(f'sum(runwatch_run_state{{runwatch_run_state="{state}", {INSTANCE}}})', state)],
    ).color_mode(cm.BigValueColorMode.BACKGROUND if state == "failed" else cm.BigValueColorMode.VALUE) \
     .thresholds(thresholds((None, "green"), (1, color)) if state == "failed" else thresholds((None, color))) \
     .graph_mode(cm.BigValueGraphMode.AREA)


# Columns of the runs table: (refId, query, column title).
_TABLE = [
    ("A", view_of_kind_expr(f"max by (run_id, kind, source, instance) (runwatch_run_info{{{INSTANCE}}})"), None),
    ("B", f"max by (run_id, runwatch_run_state) (runwatch_run_state{{{INSTANCE}}} == 1)", None),
    ("C", f"max by (run_id, phase) (runwatch_run_phase_info{{{INSTANCE}}})", None),
    ("D", f"max by (run_id) (runwatch_run_progress_ratio{{{INSTANCE}}})", "Progress"),
    ("E", f"max by (run_id) (runwatch_run_eta_seconds{{{INSTANCE}}})", "ETA"),
    ("F", f"max by (run_id) (runwatch_cost_usd{{{INSTANCE}}})", "Cost so far"),
    ("G", f"max by (run_id) (runwatch_cost_projected_usd{{{INSTANCE}}})", "Projected cost"),
    ("H", f"time() - max by (run_id) (runwatch_run_last_line_timestamp_seconds{{{INSTANCE}}})", "Last output"),
]


def _runs_table() -> table.Panel:
    t = panel(
        table.Panel(), "Runs",
        "One row per run: state, phase, progress, time left, cost so far and "
        "projected, and how long ago the run last printed anything, and the machine it reports from. "
        "Click a run_id for the view that fits its kind (agent evaluation, docker build, training, "
        "workflow, cloud VM), or for the full run detail.",
        "none", w=24, h=10,
        targets=[prom(q, ref=ref, instant=True, table=True) for ref, q, _ in _TABLE],
    )
    exclude = {"Time": True}
    for ref, _, title in _TABLE:
        if title is None:
            exclude[f"Value #{ref}"] = True
    rename = {f"Value #{ref}": title for ref, _, title in _TABLE if title}
    rename.update({"runwatch_run_state": "State", "phase": "Phase", "kind": "Kind", "source": "Source",
                   "instance": "Instance"})
    # `view` keeps its field name: the run_id link reads it as ${__data.fields.view}
    order = (["run_id", "kind", "source", "runwatch_run_state", "phase"] + [f"Value #{r}" for r, _, t in _TABLE if t]
             + ["instance", "view"])
    t = t.with_transformation(dm.DataTransformerConfig(id_val="merge", options={})) \
         .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
             "excludeByName": exclude,
             "renameByName": rename,
             "indexByName": {name: i for i, name in enumerate(order)},
         }))
    t = t.override_by_name("run_id", [
        dm.DynamicConfigValue(id_val="links", value=[
            {"title": "Open the run's view", "url": VIEW_URL, "targetBlank": False},
            {"title": "Run detail (every panel)", "url": RUN_DETAIL_URL, "targetBlank": False}]),
    ]).override_by_name("State", [
        dm.DynamicConfigValue(id_val="mappings", value=[value_map(STATE_COLORS).to_json()]),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
    ]).override_by_name("Progress", [
        dm.DynamicConfigValue(id_val="unit", value="percentunit"),
        dm.DynamicConfigValue(id_val="min", value=0),
        dm.DynamicConfigValue(id_val="max", value=1),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "gauge", "mode": "basic"}),
        dm.DynamicConfigValue(id_val="color", value={"mode": "continuous-RdYlGr"}),
    ]).override_by_name("ETA", [
        dm.DynamicConfigValue(id_val="unit", value="s"),
    ]).override_by_name("Cost so far", [
        dm.DynamicConfigValue(id_val="unit", value="currencyUSD"),
    ]).override_by_name("Projected cost", [
        dm.DynamicConfigValue(id_val="unit", value="currencyUSD"),
    ]).override_by_name("Last output", [
        dm.DynamicConfigValue(id_val="unit", value="s"),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        dm.DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": [
            {"value": None, "color": "text"}, {"value": 600, "color": "orange"}, {"value": 1800, "color": "red"}]}),
    ])
    return t.sort_by([cb.TableSortByFieldState().display_name("run_id")])


def _instance_variable() -> dash.QueryVariable:
    return (dash.QueryVariable("instance").label("Machine").datasource(PROMETHEUS)
            .description("The machines runwatch reports from (instance label: the scrape target, or the "
                         "host name a pushing runwatch sets).")
            .query("label_values(runwatch_run_info, instance)").multi(True).include_all(True).all_value(".*")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))


def build() -> dict:
    d = (dash.Dashboard("runwatch / Runs overview").uid(OVERVIEW_UID)
         .description("Every run runwatch watches: is it still running, how far is it, how long left, what has it cost.")
         .tags(TAGS).refresh("30s").time("now-6h", "now").timezone("browser").editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).with_variable(_instance_variable())
         .link(links_to_dashboards()))
    d = d.with_row(dash.Row("Runs"))
    d = d.with_panel(_count_stat("running", "green"))
    d = d.with_panel(_count_stat("failed", "red"))
    d = d.with_panel(_count_stat("succeeded", "dark-green"))
    d = d.with_panel(panel(
        stat.Panel(), "Cost so far, all runs",
        "Money spent so far by all runs runwatch currently reports (sum of runwatch_cost_usd).",
        "currencyUSD", w=6, h=4, targets=[prom(f"sum(runwatch_cost_usd{{{INSTANCE}}})", "cost")],
    ).graph_mode(cm.BigValueGraphMode.AREA))
    d = d.with_panel(panel(
        stat.Panel(), "Burn rate, all runs",
        "Current billing rate of all runs together in USD per hour (sum of runwatch_cost_rate_usd_per_hour).",
        "currencyUSD", w=6, h=4, targets=[prom(f"sum(runwatch_cost_rate_usd_per_hour{{{INSTANCE}}})", "USD/h")],
    ).graph_mode(cm.BigValueGraphMode.AREA))
    d = d.with_panel(_runs_table())
    d = d.with_row(dash.Row("Over time"))
    d = d.with_panel(panel(
        timeseries.Panel(), "Progress by run",
        "Progress of each run, 0-100 % (runwatch_run_progress_ratio).",
        "percentunit", w=12, h=8,
        targets=[prom(f"max by (run_id) (runwatch_run_progress_ratio{{{INSTANCE}}})", "{{run_id}}")],
    ).min(0).max(1).data_links([dash.DashboardLink("Run detail").url(
        "/d/runwatch-run/runwatch-run-detail?var-run_id=${__field.labels.run_id}&${__url_time_range}")]))
    d = d.with_panel(panel(
        timeseries.Panel(), "Cost by run",
        "Money spent so far by each run (runwatch_cost_usd).",
        "currencyUSD", w=12, h=8,
        targets=[prom(f"max by (run_id) (runwatch_cost_usd{{{INSTANCE}}})", "{{run_id}}")],
    ))
    return finish(d)
