"""Shared pieces of the runwatch dashboards."""

from __future__ import annotations

import typing

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import loki as lokiq
from grafana_foundation_sdk.builders import prometheus as promq
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

# Datasources are provisioned with these fixed uids (grafana/provisioning/).
PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid="prometheus")
LOKI = dm.DataSourceRef(type_val="loki", uid="loki")

TAGS = ["runwatch"]
OVERVIEW_UID = "runwatch-overview"
RUN_UID = "runwatch-run"
EXPORTER_UID = "runwatch-exporter"

# Link from anything that knows a run_id to the run detail dashboard.
RUN_DETAIL_URL = "/d/" + RUN_UID + "/runwatch-run-detail?var-run_id=${__value.raw}&${__url_time_range}"

# The run selector, as used in every run detail query.
RUN = 'run_id="$run_id"'
# A run's log lines: stream labels runwatch sets + run_id structured metadata.
RUN_LOGS = '{service_name="runwatch"} | run_id="$run_id"'


def prom(expr: str, legend: str | None = None, *, ref: str = "A",
         instant: bool = False, table: bool = False) -> promq.Dataquery:
    q = promq.Dataquery().expr(expr).ref_id(ref).datasource(PROMETHEUS)
    if legend is not None:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    else:
        q = q.range()
    if table:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q


def logql(expr: str, legend: str | None = None, *, ref: str = "A") -> lokiq.Dataquery:
    q = lokiq.Dataquery().expr(expr).ref_id(ref).datasource(LOKI)
    if legend is not None:
        q = q.legend_format(legend)
    return q


P = typing.TypeVar("P")


def panel(p: P, title: str, description: str, unit: str, *, w: int, h: int,
          targets: typing.Sequence[typing.Any], datasource: dm.DataSourceRef = PROMETHEUS) -> P:
    """Common settings every panel must have (the lint test checks them)."""
    p = p.title(title).description(description).unit(unit).datasource(datasource)  # type: ignore[attr-defined]
    p = p.span(w).height(h)
    for t in targets:
        p = p.with_target(t)
    return p


def value_map(mapping: dict[str, tuple[str, str]]) -> dm.ValueMap:
    """{"1": ("up", "green")} -> a value mapping (text + color)."""
    return dm.ValueMap(options={
        k: dm.ValueMappingResult(text=text, color=color, index=i)
        for i, (k, (text, color)) in enumerate(mapping.items())
    })


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in steps])


def links_to_dashboards() -> dash.DashboardLink:
    return (dash.DashboardLink("runwatch").type(dm.DashboardLinkType.DASHBOARDS)
            .tags(TAGS).as_dropdown(True).include_vars(False).keep_time(True))


def finish(d: dash.Dashboard) -> dict[str, typing.Any]:
    """Build, lay panels out left to right (wrapping at 24 columns, each row
    panel starting a new line), give them stable ids, return plain JSON."""
    import json

    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    data = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    x = y = line_h = 0
    for i, p in enumerate(data.get("panels", []), start=1):
        p["id"] = i
        g = p["gridPos"]
        if p["type"] == "row":
            y, x, line_h = y + line_h, 0, 0
            g.update(x=0, y=y, w=24, h=1)
            y += 1
            continue
        if x + g["w"] > 24:
            y, x, line_h = y + line_h, 0, 0
        g.update(x=x, y=y)
        x += g["w"]
        line_h = max(line_h, g["h"])
    return data


STATE_COLORS = {
    "pending": ("pending", "blue"),
    "running": ("running", "green"),
    "succeeded": ("succeeded", "dark-green"),
    "failed": ("failed", "red"),
    "canceled": ("canceled", "orange"),
}
