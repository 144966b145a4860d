"""runwatch itself: scrape health, lines read, sources, Loki shipper."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import EXPORTER_UID, TAGS, finish, links_to_dashboards, panel, prom, thresholds, value_map


def build() -> dict:
    d = (dash.Dashboard("runwatch / Exporter").uid(EXPORTER_UID)
         .description("Health of runwatch itself: is it scraped, how fast, what it reads, which sources answer, "
                      "and whether its log lines reach Loki.")
         .tags(TAGS).refresh("30s").time("now-6h", "now").timezone("browser").editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).link(links_to_dashboards()))

    d = d.with_row(dash.Row("Scrape health"))
    d = d.with_panel(panel(
        stat.Panel(), "Exporter up",
        "Whether Prometheus can scrape each runwatch instance (up{job=\"runwatch\"}).",
        "none", w=6, h=8,
        targets=[prom('max by (instance) (up{job="runwatch"})', "{{instance}}")],
    ).mappings([value_map({"0": ("down", "red"), "1": ("up", "green")})])
     .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
     .text_mode(cm.BigValueTextMode.VALUE_AND_NAME))
    d = d.with_panel(panel(
        table.Panel(), "Version",
        "runwatch version of each instance (runwatch_build_info).",
        "none", w=6, h=8,
        targets=[prom("max by (instance, version) (runwatch_build_info)", instant=True, table=True)],
    ).with_transformation(dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True, "Value": True}})))
    d = d.with_panel(panel(
        timeseries.Panel(), "Scrape duration",
        "How long runwatch takes to build /metrics (runwatch_scrape_duration_seconds) and the whole scrape "
        "as Prometheus sees it (scrape_duration_seconds).",
        "s", w=12, h=8,
        targets=[
            prom("max by (instance) (runwatch_scrape_duration_seconds)", "{{instance}} collect", ref="A"),
            prom('max by (instance) (scrape_duration_seconds{job="runwatch"})', "{{instance}} scrape", ref="B"),
        ],
    ))
    d = d.with_panel(panel(
        timeseries.Panel(), "Lines read",
        "Lines read per second, by run (rate of runwatch_lines_total).",
        "short", w=12, h=8,
        targets=[prom("sum by (run_id) (rate(runwatch_lines_total[$__rate_interval]))", "{{run_id}}")],
    ))
    d = d.with_panel(panel(
        timeseries.Panel(), "Lines cut and undecodable",
        "Lines per second that runwatch had to cut (too long) or could not decode "
        "(rate of runwatch_lines_cut_total, runwatch_line_decode_errors_total).",
        "short", w=12, h=8,
        targets=[
            prom("sum by (run_id) (rate(runwatch_lines_cut_total[$__rate_interval]))", "{{run_id}} cut", ref="A"),
            prom("sum by (run_id) (rate(runwatch_line_decode_errors_total[$__rate_interval]))", "{{run_id}} undecodable", ref="B"),
        ],
    ))

    d = d.with_row(dash.Row("Sources"))
    d = d.with_panel(panel(
        stat.Panel(), "Sources up",
        "Sources (commands, files, Azure, W&B ...) that currently answer (sum of runwatch_source_up).",
        "none", w=4, h=8,
        targets=[prom("sum(runwatch_source_up)", "up")],
    ).thresholds(thresholds((None, "green"))))
    d = d.with_panel(panel(
        stat.Panel(), "Sources down",
        "Sources that currently do not answer (runwatch_source_up == 0).",
        "none", w=4, h=8,
        targets=[prom("sum(1 - runwatch_source_up)", "down")],
    ).thresholds(thresholds((None, "green"), (1, "red"))).color_mode(cm.BigValueColorMode.BACKGROUND))
    d = d.with_panel(panel(
        table.Panel(), "Sources",
        "Every source of every run and whether it answers (runwatch_source_up).",
        "none", w=16, h=8,
        targets=[prom("max by (run_id, source) (runwatch_source_up)", instant=True, table=True)],
    ).with_transformation(dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True}, "renameByName": {"Value": "Up"}}))
     .override_by_name("Up", [
         dm.DynamicConfigValue(id_val="mappings", value=[value_map({"0": ("down", "red"), "1": ("up", "green")}).to_json()]),
         dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
     ]))

    d = d.with_row(dash.Row("Loki shipper"))
    d = d.with_panel(panel(
        timeseries.Panel(), "Log lines sent and dropped",
        "Log entries per second pushed to Loki, and dropped by reason (rate of runwatch_loki_entries_sent_total, "
        "runwatch_loki_entries_dropped_total).",
        "short", w=8, h=8,
        targets=[
            prom("sum by (instance) (rate(runwatch_loki_entries_sent_total[$__rate_interval]))", "{{instance}} sent", ref="A"),
            prom("sum by (instance, reason) (rate(runwatch_loki_entries_dropped_total[$__rate_interval]))",
                 "{{instance}} dropped: {{reason}}", ref="B"),
        ],
    ).override_by_regexp(".*dropped.*", [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})]))
    d = d.with_panel(panel(
        timeseries.Panel(), "Loki queue",
        "Entries waiting in the in-memory queue (runwatch_loki_queue_entries).",
        "short", w=8, h=8,
        targets=[prom("max by (instance) (runwatch_loki_queue_entries)", "{{instance}} queued")],
    ))
    d = d.with_panel(panel(
        timeseries.Panel(), "Loki spool size",
        "Bytes spooled to disk while Loki is unreachable (runwatch_loki_spool_bytes).",
        "bytes", w=8, h=8,
        targets=[prom("max by (instance) (runwatch_loki_spool_bytes)", "{{instance}} spool")],
    ))
    d = d.with_panel(panel(
        timeseries.Panel(), "Loki push latency",
        "Median and 99th percentile duration of pushes to Loki (runwatch_loki_push_duration_seconds).",
        "s", w=24, h=8,
        targets=[
            prom("histogram_quantile(0.5, sum by (le) (rate(runwatch_loki_push_duration_seconds_bucket[$__rate_interval])))", "p50", ref="A"),
            prom("histogram_quantile(0.99, sum by (le) (rate(runwatch_loki_push_duration_seconds_bucket[$__rate_interval])))", "p99", ref="B"),
        ],
    ))
    return finish(d)
