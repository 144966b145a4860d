"""Workflow: the agents of one multi-agent run, as the events API reports them.

Agents as a node graph with their data-flow edges, agent states over time,
and how long each agent ran. Fed by agent_started / agent_completed /
agent_failed / data_flow events (runwatch_agent_state,
runwatch_agent_duration_seconds, runwatch_data_flow_bytes_total).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, nodegraph, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import PROMETHEUS, RUN, TAGS, finish, links_to_dashboards, panel, prom, thresholds, value_map

WORKFLOW_UID = "runwatch-workflow"

AGENT_COLORS = {
    "pending": ("pending", "blue"),
    "running": ("running", "green"),
    "completed": ("completed", "dark-green"),
    "failed": ("failed", "red"),
}

# Node graph frames, built from instant table queries: a nodes frame has an
# `id` field, an edges frame has `id`, `source` and `target` (Grafana's
# node graph data contract); label_join copies labels into them.
_NODES = (f'label_join(max by (agent, runwatch_agent_state) (runwatch_agent_state{{{RUN}}} == 1), '
          f'"id", "", "agent")')
_EDGES = (f'label_join(sum by (from_agent, to_agent) '
          f'(increase(runwatch_data_flow_bytes_total{{{RUN}}}[$__range])), "id", "->", "from_agent", "to_agent")')


def _overview(d: dash.Dashboard) -> dash.Dashboard:
    d = d.with_row(dash.Row("Agents"))
    for state, (_, color) in AGENT_COLORS.items():
        d = d.with_panel(panel(
            stat.Panel(), f"Agents {state}",
            f"Agents of the run now in state {state} (runwatch_agent_state{{runwatch_agent_state=\"{state}\"}}).",
            "none", w=6, h=4,
            targets=[prom(f'sum(runwatch_agent_state{{{RUN}, runwatch_agent_state="{state}"}}) or vector(0)', state)],
        ).thresholds(thresholds((None, color))).color_mode(cm.BigValueColorMode.VALUE)
         .graph_mode(cm.BigValueGraphMode.NONE))
    d = d.with_panel(panel(
        nodegraph.Panel(), "Agent graph",
        "Agents as nodes (main stat: their state) and the data passed between them as edges (main stat: "
        "bytes in the selected range; runwatch_agent_state, runwatch_data_flow_bytes_total).",
        "bytes", w=14, h=12,
        targets=[prom(_NODES, ref="A", instant=True, table=True),
                 prom(_EDGES, ref="B", instant=True, table=True)],
    ).with_transformation(dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True, "Value #A": True},
        "renameByName": {"agent": "title", "runwatch_agent_state": "mainstat", "from_agent": "source",
                         "to_agent": "target", "Value #B": "mainstat"},
    })))
    d = d.with_panel(panel(
        table.Panel(), "Data flow",
        "Bytes passed from one agent to another in the selected range (increase of runwatch_data_flow_bytes_total).",
        "bytes", w=10, h=12,
        targets=[prom(f"sum by (from_agent, to_agent) (increase(runwatch_data_flow_bytes_total{{{RUN}}}[$__range]))",
                      ref="A", instant=True, table=True)],
    ).with_transformation(dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True},
        "renameByName": {"from_agent": "From", "to_agent": "To", "Value": "Bytes"},
    })))
    return d


def _timeline(d: dash.Dashboard) -> dash.Dashboard:
    d = d.with_row(dash.Row("Over time"))
    d = d.with_panel(panel(
        statetimeline.Panel(), "Agent states over time",
        "Each agent's state over time: pending, running, completed, failed (runwatch_agent_state).",
        "none", w=24, h=8,
        targets=[prom(f'max by (agent) ((runwatch_agent_state{{{RUN}, runwatch_agent_state="pending"}} == 1) * 0 '
                      f'or (runwatch_agent_state{{{RUN}, runwatch_agent_state="running"}} == 1) * 1 '
                      f'or (runwatch_agent_state{{{RUN}, runwatch_agent_state="completed"}} == 1) * 2 '
                      f'or (runwatch_agent_state{{{RUN}, runwatch_agent_state="failed"}} == 1) * 3)',
                      "{{agent}}")],
    ).mappings([value_map({"0": AGENT_COLORS["pending"], "1": AGENT_COLORS["running"],
                           "2": AGENT_COLORS["completed"], "3": AGENT_COLORS["failed"]})])
     .show_value(cm.VisibilityMode.AUTO).merge_values(True))
    d = d.with_panel(panel(
        bargauge.Panel(), "Agent durations",
        "How long each agent ran, as reported in agent_completed or measured from agent_started "
        "(runwatch_agent_duration_seconds).",
        "s", w=10, h=9,
        targets=[prom(f"max by (agent) (runwatch_agent_duration_seconds{{{RUN}}})", "{{agent}}", instant=True)],
    ).display_mode(cm.BarGaugeDisplayMode.GRADIENT).orientation(cm.VizOrientation.HORIZONTAL))
    d = d.with_panel(panel(
        timeseries.Panel(), "Data flow rate",
        "Bytes per second passed between agents (rate of runwatch_data_flow_bytes_total), one line per edge.",
        "Bps", w=14, h=9,
        targets=[prom(f"sum by (from_agent, to_agent) (rate(runwatch_data_flow_bytes_total{{{RUN}}}[$__rate_interval]))",
                      "{{from_agent}} → {{to_agent}}")],
    ))
    return d


def build() -> dict:
    run_var = (dash.QueryVariable("run_id").label("Run").datasource(PROMETHEUS)
               .description("Runs that have workflow agents (label_values of runwatch_agent_state).")
               .query("label_values(runwatch_agent_state, run_id)")
               .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))
    d = (dash.Dashboard("runwatch / Workflow").uid(WORKFLOW_UID)
         .description("A multi-agent workflow run: agents and the data between them, agent states over time, durations.")
         .tags(TAGS).refresh("30s").time("now-1h", "now").timezone("browser").editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).with_variable(run_var).link(links_to_dashboards()))
    for section in (_overview, _timeline):
        d = section(d)
    return finish(d)
