"""Run views that fit the run: one dashboard per kind of run, showing only the
sections that kind has (a docker build has build steps and no agents; a
training run has scores and metrics and no tasks).

The Runs overview links each run to its view by the run's `kind`
(runwatch_run_info{kind}): VIEW_KINDS maps kind names to views with anchored
regexes, in PromQL (label_replace), so the mapping lives in one place and
Grafana needs no plugin. A kind that matches no view opens the full Run
detail dashboard; the workflow view is the Workflow dashboard.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as dm

from .common import TAGS, finish, links_to_dashboards
from .run_detail import run_variable, with_sections

# view slug -> (title, description, kinds regex, sections). The dashboard uid is "runwatch-" + slug.
VIEWS = {
    "agent-eval": ("Agent evaluation",
                   "An agent benchmark evaluation: tasks and agent steps, errors, cost, the VM it runs on, logs.",
                   "agent_eval.*|agent_benchmark.*|benchmark.*|waa.*|eval|evaluation",
                   ["status", "tasks", "errors", "cost", "vm", "logs"]),
    "docker-build": ("Docker build",
                     "A docker build: build step X of Y, errors, logs.",
                     "docker.*|image_build.*|build",
                     ["status", "docker", "errors", "logs"]),
    "training": ("Training and search",
                 "A training run or hyper-parameter search: scores, training metrics, errors, cost, artifacts, logs.",
                 "training|train.*|fine_?tun.*|hparam.*|hyperparam.*|search|sweep.*|tuning|trials?",
                 ["status", "scores", "errors", "cost", "artifacts", "logs"]),
    "vm": ("Cloud VM",
           "A cloud VM that bills by the hour: power state, cost, logs.",
           "vm|cloud_vm|azure_vm.*",
           ["status", "vm", "cost", "logs"]),
}
# The workflow view is its own dashboard (workflow.py); it takes these kinds.
WORKFLOW_KINDS = "workflow.*|multi_agent.*|agents?"


def view_of_kind_expr(inner: str) -> str:
    """PromQL that adds a `view` label (a dashboard uid suffix) to every series of
    `inner` from its `kind` label: "run" (the full run detail) unless a view's
    kinds match."""
    expr = f'label_replace({inner}, "view", "run", "", "")'
    for slug, (_, _, kinds, _) in VIEWS.items():
        expr = f'label_replace({expr}, "view", "{slug}", "kind", "{kinds}")'
    return f'label_replace({expr}, "view", "workflow", "kind", "{WORKFLOW_KINDS}")'


def build_view(slug: str) -> dict:
    title, description, kinds, sections = VIEWS[slug]
    d = (dash.Dashboard(f"runwatch / {title}").uid(f"runwatch-{slug}")
         .description(f"{description} For runs whose kind matches {kinds}.")
         .tags(TAGS).refresh("30s").time("now-6h", "now").timezone("browser").editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).with_variable(run_variable()).link(links_to_dashboards()))
    return finish(with_sections(d, sections))
