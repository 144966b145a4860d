"""Run detail: everything about one run (template variable run_id)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, gauge, logs, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (LOKI, PROMETHEUS, RUN, RUN_LOGS, RUN_UID, TAGS, finish,
                     links_to_dashboards, logql, panel, prom, thresholds, value_map)


def status_panels() -> list:
    """State, phase, progress, ETA, last output, links; state and phase over time."""
    out = []
    out.append(panel(
        stat.Panel(), "State",
        "The run's state: pending, running, succeeded, failed or canceled (runwatch_run_state).",
        "none", w=4, h=4,
        targets=[prom(f"max by (runwatch_run_state) (runwatch_run_state{{{RUN}}} == 1)", "{{runwatch_run_state}}")],
    ).text_mode(cm.BigValueTextMode.NAME).graph_mode(cm.BigValueGraphMode.NONE)
     .color_mode(cm.BigValueColorMode.BACKGROUND)
     .override_by_name("failed", [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})])
     .override_by_name("running", [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "green"})])
     .override_by_name("succeeded", [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "dark-green"})]))
    out.append(panel(
        stat.Panel(), "Phase",
        "The run's current phase, e.g. docker_build, windows_boot, benchmark (runwatch_run_phase_info).",
        "none", w=4, h=4,
        targets=[prom(f"max by (phase) (runwatch_run_phase_info{{{RUN}}})", "{{phase}}")],
    ).text_mode(cm.BigValueTextMode.NAME).graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.NONE))
    out.append(panel(
        gauge.Panel(), "Progress",
        "How far the run is, 0-100 % (runwatch_run_progress_ratio).",
        "percentunit", w=4, h=4,
        targets=[prom(f"max(runwatch_run_progress_ratio{{{RUN}}})", "progress")],
    ).min(0).max(1).thresholds(thresholds((None, "blue"), (1, "green"))))
    out.append(panel(
        stat.Panel(), "ETA",
        "Estimated time left (runwatch_run_eta_seconds); empty while runwatch cannot estimate it.",
        "s", w=4, h=4,
        targets=[prom(f"max(runwatch_run_eta_seconds{{{RUN}}})", "time left")],
    ).graph_mode(cm.BigValueGraphMode.AREA))
    out.append(panel(
        stat.Panel(), "Last output",
        "Seconds since the run last printed anything (time() - runwatch_run_last_line_timestamp_seconds).",
        "s", w=4, h=4,
        targets=[prom(f"time() - max(runwatch_run_last_line_timestamp_seconds{{{RUN}}})", "age")],
    ).thresholds(thresholds((None, "green"), (600, "orange"), (1800, "red"))).graph_mode(cm.BigValueGraphMode.NONE))
    out.append(panel(
        table.Panel(), "Links",
        "What the run is and where to look at it: W&B page, Azure ML studio, VNC ... (url label of runwatch_run_info).",
        "none", w=4, h=4,
        targets=[prom(f"max by (kind, source, url) (runwatch_run_info{{{RUN}}})", ref="A", instant=True, table=True)],
    ).with_transformation(dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True, "Value": True}}))
     .override_by_name("url", [dm.DynamicConfigValue(id_val="links", value=[{
         "title": "Open ${__value.raw}", "url": "${__value.raw}", "targetBlank": True}])]))
    out.append(panel(
        statetimeline.Panel(), "State over time",
        "The run's state over time (runwatch_run_state).",
        "none", w=12, h=5,
        targets=[prom(f"max by (runwatch_run_state) (runwatch_run_state{{{RUN}}} == 1)", "{{runwatch_run_state}}")],
    ).mappings([value_map({"1": ("active", "green")})]).show_value(cm.VisibilityMode.NEVER).merge_values(True))
    out.append(panel(
        statetimeline.Panel(), "Phase over time",
        "Which phase the run was in when (one row per phase; runwatch_run_phase_info).",
        "none", w=12, h=5,
        targets=[prom(f"max by (phase) (runwatch_run_phase_info{{{RUN}}})", "{{phase}}")],
    ).mappings([value_map({"1": ("active", "blue")})]).show_value(cm.VisibilityMode.NEVER).merge_values(True))
    return out


def task_panels() -> list:
    """Tasks planned/completed/failed, success ratio, cost per task, agent steps."""
    out = []
    out.append(panel(
        timeseries.Panel(), "Tasks planned, completed, failed",
        "Tasks planned (runwatch_tasks_planned) and finished so far; completed counts every finished task, "
        "failed the subset that failed (recording rules run_id:runwatch_tasks_*:sum).",
        "short", w=6, h=8,
        targets=[
            prom(f"max(runwatch_tasks_planned{{{RUN}}})", "planned", ref="A"),
            prom(f"run_id:runwatch_tasks_completed:sum{{{RUN}}}", "completed", ref="B"),
            prom(f"run_id:runwatch_tasks_failed:sum{{{RUN}}}", "failed", ref="C"),
        ],
    ).min(0).override_by_name("failed", [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})]))
    out.append(panel(
        stat.Panel(), "Task success ratio",
        "Share of finished tasks that did not fail (run_id:runwatch_task_success:ratio).",
        "percentunit", w=3, h=8,
        targets=[prom(f"run_id:runwatch_task_success:ratio{{{RUN}}}", "success")],
    ).min(0).max(1).thresholds(thresholds((None, "red"), (0.5, "orange"), (0.8, "green"))))
    out.append(panel(
        stat.Panel(), "Cost per completed task",
        "Money spent so far divided by tasks finished (run_id:runwatch_cost_per_completed_task:usd).",
        "currencyUSD", w=3, h=8,
        targets=[prom(f"run_id:runwatch_cost_per_completed_task:usd{{{RUN}}}", "per task")],
    ))
    out.append(panel(
        bargauge.Panel(), "Steps by action",
        "Agent steps in the selected time range, by action (increase of runwatch_steps_total).",
        "short", w=6, h=8,
        targets=[prom(f"sum by (action) (increase(runwatch_steps_total{{{RUN}}}[$__range]))", "{{action}}", instant=True)],
    ).display_mode(cm.BarGaugeDisplayMode.GRADIENT).orientation(cm.VizOrientation.HORIZONTAL))
    out.append(panel(
        timeseries.Panel(), "Task and step rate",
        "Tasks finished and agent steps taken per minute (rate of runwatch_tasks_completed_total, runwatch_steps_total).",
        "short", w=6, h=8,
        targets=[
            prom(f"sum(rate(runwatch_tasks_completed_total{{{RUN}}}[$__rate_interval])) * 60", "tasks/min", ref="A"),
            prom(f"sum by (action) (rate(runwatch_steps_total{{{RUN}}}[$__rate_interval])) * 60", "{{action}} steps/min", ref="B"),
        ],
    ))
    return out


def docker_panels() -> list:
    """Docker build step X of Y and its progress."""
    out = []
    out.append(panel(
        stat.Panel(), "Docker build step",
        "Docker build step X of Y: current step (runwatch_docker_build_step), steps done "
        "(runwatch_docker_build_steps_done) and total steps (runwatch_docker_build_steps).",
        "short", w=6, h=8,
        targets=[
            prom(f"max(runwatch_docker_build_step{{{RUN}}})", "step", ref="A"),
            prom(f"max(runwatch_docker_build_steps_done{{{RUN}}})", "done", ref="B"),
            prom(f"max(runwatch_docker_build_steps{{{RUN}}})", "of", ref="C"),
        ],
    ).text_mode(cm.BigValueTextMode.VALUE_AND_NAME).graph_mode(cm.BigValueGraphMode.NONE))
    out.append(panel(
        gauge.Panel(), "Docker build progress",
        "Current docker build step divided by total steps (run_id:runwatch_docker_build_progress:ratio).",
        "percentunit", w=6, h=8,
        targets=[prom(f"run_id:runwatch_docker_build_progress:ratio{{{RUN}}}", "build")],
    ).min(0).max(1))
    return out


def score_panels() -> list:
    """Trial scores, best scores and training metrics (loss, accuracy ...)."""
    out = []
    out.append(panel(
        timeseries.Panel(), "Score and best score",
        "Latest trial score and best score so far, by score name (runwatch_score, runwatch_best_score).",
        "short", w=12, h=8,
        targets=[
            prom(f"max by (name) (runwatch_score{{{RUN}}})", "{{name}}", ref="A"),
            prom(f"max by (name) (runwatch_best_score{{{RUN}}})", "best {{name}}", ref="B"),
        ],
    ).override_by_regexp("^best .*", [dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]))
    out.append(panel(
        timeseries.Panel(), "Training metrics",
        "Metrics the job reports by name: loss, val_loss, accuracy, learning_rate ... (runwatch_run_metric), "
        "and the best value of each so far (runwatch_best_score).",
        "short", w=12, h=8,
        targets=[prom(f"max by (name) (runwatch_run_metric{{{RUN}}})", "{{name}}", ref="A")],
    ))
    loss = 'name=~".*(loss|error|rmse|mae|mse|perplexity).*"'
    out.append(panel(
        timeseries.Panel(), "Loss curves",
        "The losses and errors a training run prints (loss, val_loss, eval_loss, train_loss, valid-logloss ...: "
        "runwatch_run_metric), dashed: the lowest value of each so far (runwatch_best_score).",
        "short", w=12, h=8,
        targets=[
            prom(f"max by (name) (runwatch_run_metric{{{RUN},{loss}}})", "{{name}}", ref="A"),
            prom(f"min by (name) (runwatch_best_score{{{RUN},{loss}}})", "best {{name}}", ref="B"),
        ],
    ).override_by_regexp("^best .*", [dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]))
    out.append(panel(
        bargauge.Panel(), "Best values",
        "The best value of each score and training metric so far, lower for losses and errors, higher for "
        "accuracy, AUC, F1 and scores (runwatch_best_score).",
        "short", w=12, h=8,
        targets=[prom(f"max by (name) (runwatch_best_score{{{RUN}}})", "{{name}}", instant=True)],
    ).orientation(cm.VizOrientation.HORIZONTAL).display_mode(cm.BarGaugeDisplayMode.BASIC))
    return out


def error_panels() -> list:
    """Error lines and events, lines cut or undecodable."""
    out = []
    out.append(panel(
        timeseries.Panel(), "Errors",
        "Error lines / error events per minute (rate of runwatch_errors_total), and lines runwatch had to "
        "cut (too long) or could not decode (runwatch_lines_cut_total, runwatch_line_decode_errors_total).",
        "short", w=18, h=8,
        targets=[
            prom(f"sum(rate(runwatch_errors_total{{{RUN}}}[$__rate_interval])) * 60", "errors/min", ref="A"),
            prom(f"sum(rate(runwatch_lines_cut_total{{{RUN}}}[$__rate_interval])) * 60", "lines cut/min", ref="B"),
            prom(f"sum(rate(runwatch_line_decode_errors_total{{{RUN}}}[$__rate_interval])) * 60", "undecodable lines/min", ref="C"),
        ],
    ).override_by_name("errors/min", [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})]))
    out.append(panel(
        stat.Panel(), "Errors in range",
        "Error lines / events in the selected time range (increase of runwatch_errors_total).",
        "short", w=6, h=8,
        targets=[prom(f"sum(increase(runwatch_errors_total{{{RUN}}}[$__range]))", "errors", instant=True)],
    ).thresholds(thresholds((None, "green"), (1, "red"))))
    return out


def cost_panels() -> list:
    """Cost so far, rate, projection, budget."""
    out = []
    for title, desc, metric, unit in [
        ("Cost so far", "Money spent so far (runwatch_cost_usd).", "runwatch_cost_usd", "currencyUSD"),
        ("Cost rate", "Current billing rate in USD per hour; 0 when nothing is billed (runwatch_cost_rate_usd_per_hour).",
         "runwatch_cost_rate_usd_per_hour", "currencyUSD"),
        ("Projected cost", "Cost so far + rate x ETA (runwatch_cost_projected_usd).", "runwatch_cost_projected_usd", "currencyUSD"),
        ("Budget", "The budget configured for the run (runwatch_cost_budget_usd).", "runwatch_cost_budget_usd", "currencyUSD"),
    ]:
        out.append(panel(stat.Panel(), title, desc, unit, w=5, h=4,
                               targets=[prom(f"max({metric}{{{RUN}}})", title.lower())]).graph_mode(cm.BigValueGraphMode.AREA))
    out.append(panel(
        gauge.Panel(), "Budget used",
        "Cost so far as a share of the budget (run_id:runwatch_cost_budget_used:ratio).",
        "percentunit", w=4, h=4,
        targets=[prom(f"run_id:runwatch_cost_budget_used:ratio{{{RUN}}}", "budget used")],
    ).min(0).max(1).thresholds(thresholds((None, "green"), (0.8, "orange"), (1, "red"))))
    out.append(panel(
        timeseries.Panel(), "Cost, projection and budget",
        "Cost so far, projected total cost and budget over time.",
        "currencyUSD", w=24, h=8,
        targets=[
            prom(f"max(runwatch_cost_usd{{{RUN}}})", "cost so far", ref="A"),
            prom(f"max(runwatch_cost_projected_usd{{{RUN}}})", "projected", ref="B"),
            prom(f"max(runwatch_cost_budget_usd{{{RUN}}})", "budget", ref="C"),
        ],
    ).override_by_name("budget", [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})]))
    return out


def artifact_panels() -> list:
    """Whether each artifact is available yet."""
    out = []
    out.append(panel(
        stat.Panel(), "Artifacts",
        "Whether each artifact of the run is available yet (runwatch_artifact_available, 1 = available).",
        "none", w=6, h=5,
        targets=[prom(f"max by (artifact) (runwatch_artifact_available{{{RUN}}})", "{{artifact}}")],
    ).mappings([value_map({"0": ("missing", "red"), "1": ("available", "green")})])
     .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).color_mode(cm.BigValueColorMode.BACKGROUND)
     .graph_mode(cm.BigValueGraphMode.NONE))
    return out


def vm_panels() -> list:
    """Power state of the run's cloud VMs."""
    out = []
    out.append(panel(
        statetimeline.Panel(), "VM power state",
        "Power state of the run's cloud VMs over time (runwatch_vm_power_state): the VM bills while running.",
        "none", w=18, h=5,
        targets=[prom(f"max by (vm, runwatch_vm_power_state) (runwatch_vm_power_state{{{RUN}}} == 1)",
                      "{{vm}}: {{runwatch_vm_power_state}}")],
    ).mappings([value_map({"1": ("active", "green")})]).show_value(cm.VisibilityMode.NEVER).merge_values(True))
    return out


def agent_panels() -> list:
    """Agents of a multi-agent workflow: state, duration, data flow."""
    out = []
    out.append(panel(
        statetimeline.Panel(), "Agent state",
        "State of each agent of a multi-agent workflow (runwatch_agent_state).",
        "none", w=12, h=6,
        targets=[prom(f"max by (agent, runwatch_agent_state) (runwatch_agent_state{{{RUN}}} == 1)",
                      "{{agent}}: {{runwatch_agent_state}}")],
    ).mappings([value_map({"1": ("active", "green")})]).show_value(cm.VisibilityMode.NEVER).merge_values(True))
    out.append(panel(
        bargauge.Panel(), "Agent duration",
        "How long each agent has been running or ran (runwatch_agent_duration_seconds).",
        "s", w=6, h=6,
        targets=[prom(f"max by (agent) (runwatch_agent_duration_seconds{{{RUN}}})", "{{agent}}", instant=True)],
    ).orientation(cm.VizOrientation.HORIZONTAL))
    out.append(panel(
        timeseries.Panel(), "Data flow between agents",
        "Bytes per second passed from one agent to another (rate of runwatch_data_flow_bytes_total).",
        "Bps", w=6, h=6,
        targets=[prom(f"sum by (from_agent, to_agent) (rate(runwatch_data_flow_bytes_total{{{RUN}}}[$__rate_interval]))",
                      "{{from_agent}} -> {{to_agent}}")],
    ))
    return out


def log_panels() -> list:
    """Error lines and raw lines, from Loki."""
    out = []
    out.append(panel(
        timeseries.Panel(), "Error lines",
        "Log lines with level error per second, from Loki (run_id and level are structured metadata).",
        "short", w=24, h=6, datasource=LOKI,
        targets=[logql(f'sum(rate({RUN_LOGS} | level="error" [$__rate_interval]))', "error lines/s")],
    ).draw_style(cm.GraphDrawStyle.BARS))
    out.append(panel(
        logs.Panel(), "Log lines",
        "The run's raw output (secrets redacted), from Loki.",
        "none", w=24, h=14, datasource=LOKI,
        targets=[logql(RUN_LOGS)],
    ).show_time(True).wrap_log_message(True).enable_log_details(True).sort_order(cm.LogsSortOrder.DESCENDING))
    return out


# Sections of a run view, in page order: (row title, panels). The kind-specific
# views (views.py) pick the sections their kind of run has.
SECTIONS = {
    "status": ("Status", status_panels),
    "tasks": ("Tasks and steps", task_panels),
    "docker": ("Docker build", docker_panels),
    "scores": ("Scores and training metrics", score_panels),
    "errors": ("Errors", error_panels),
    "cost": ("Cost", cost_panels),
    "artifacts": ("Artifacts", artifact_panels),
    "vm": ("VM", vm_panels),
    "agents": ("Agents", agent_panels),
    "logs": ("Logs", log_panels),
}


def with_sections(d: dash.Dashboard, names: list[str]) -> dash.Dashboard:
    for name in names:
        title, panels = SECTIONS[name]
        d = d.with_row(dash.Row(title))
        for p in panels():
            d = d.with_panel(p)
    return d


def run_variable() -> dash.QueryVariable:
    return (dash.QueryVariable("run_id").label("Run").datasource(PROMETHEUS)
            .description("The run to show (label_values of runwatch_run_info).")
            .query("label_values(runwatch_run_info, run_id)")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))


def build() -> dict:
    d = (dash.Dashboard("runwatch / Run detail").uid(RUN_UID)
         .description("One run: state, phase, progress, ETA, tasks, steps, build steps, scores, errors, cost, artifacts, VM, logs.")
         .tags(TAGS).refresh("30s").time("now-6h", "now").timezone("browser").editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).with_variable(run_variable()).link(links_to_dashboards()))
    d = with_sections(d, ["status", "tasks", "docker", "scores", "errors", "cost", "artifacts", "vm",
                          "agents", "logs"])
    return finish(d)
