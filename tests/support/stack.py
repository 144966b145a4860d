"""Helpers for the stack tests: run the project's own Prometheus config and
rules against a local runwatch, evaluate dashboard queries.

How the tests use prometheus/ without keeping a copy of it:
- prometheus.yml reads every target from file_sd files in targets/ next to it.
  ``render_prometheus_dir`` builds a temp dir that holds prometheus.yml with
  ONLY global.scrape_interval / scrape_timeout / evaluation_interval changed
  (everything else, jobs, rule_files, alerting, is the file as checked in), a
  targets/ dir pointing at the test's exporter, and rules/ symlinked to the
  real rule files.
- Thresholds: the alert rules read them from the recording rules in
  prometheus/rules/runwatch-config.yml. ``thresholds={record: value}``
  rewrites only the ``vector(N)`` of those records (the documented way to
  change a threshold, see docs/runbook.md#thresholds); the alert rules are
  the real files.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import subprocess
import typing

import yaml

from .paths import REPO
from .ports import free_port
from .procs import runwatch_cmd, start_logged, stop_group
from .tools import binary
from .waits import wait_http

PROM_DIR = REPO / "prometheus"
GRAFANA_DIR = REPO / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
CONFIG_RULES = "runwatch-config.yml"


def render_prometheus_dir(dest: pathlib.Path, *, runwatch: list[str], prometheus: list[str] | None = None,
                          alertmanager: list[str] | None = None, interval: str = "1s",
                          thresholds: dict[str, float] | None = None) -> pathlib.Path:
    """Lay out dest/ like prometheus/ for a local run; return the config path."""
    dest.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval)
    (dest / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    targets = dest / "targets"
    targets.mkdir(exist_ok=True)
    for name, hosts in (("runwatch", runwatch), ("prometheus", prometheus or []), ("alertmanager", alertmanager or [])):
        (targets / f"{name}.yml").write_text(yaml.safe_dump([{"targets": list(hosts)}] if hosts else []))

    rules = dest / "rules"
    rules.mkdir(exist_ok=True)
    for f in sorted((PROM_DIR / "rules").glob("*.yml")):
        if f.name == CONFIG_RULES and thresholds:
            (rules / f.name).write_text(override_thresholds(f.read_text(), thresholds))
        else:
            (rules / f.name).symlink_to(f)
    return dest / "prometheus.yml"


def override_thresholds(text: str, thresholds: dict[str, float]) -> str:
    """Replace `expr: vector(N)` of the named config records, nothing else."""
    doc = yaml.safe_load(text)
    seen = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("record") in thresholds:
                assert re.fullmatch(r"\s*vector\([^()]*\)\s*", rule["expr"]), rule
                rule["expr"] = f"vector({thresholds[rule['record']]})"
                seen.add(rule["record"])
    missing = set(thresholds) - seen
    assert not missing, f"no such threshold record in {CONFIG_RULES}: {missing}"
    return yaml.safe_dump(doc, sort_keys=False)


def demo_available() -> str | None:
    """None if `python -m runwatch demo` can run here, else why not."""
    try:
        r = subprocess.run(runwatch_cmd("demo", "--help"),
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`python -m runwatch demo --help` hung"
    if r.returncode != 0:
        return "`python -m runwatch demo --help` failed: " + (r.stderr or r.stdout).strip()[-300:]
    return None


@contextlib.contextmanager
def running_demo(tmp: pathlib.Path, speed: float | None = None,
                 loki_url: str | None = None) -> typing.Iterator[str]:
    """Start `python -m runwatch demo` on a free loopback port; yield host:port."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    argv = runwatch_cmd("demo", "--listen", addr, "--data-dir", str(tmp / "runwatch-data"))
    if speed is not None:
        argv += ["--speed", str(speed)]
    if loki_url:
        argv += ["--loki-url", loki_url]
    proc = start_logged(argv, tmp / "demo.log")
    try:
        wait_http(f"http://{addr}/metrics", 30, proc)
        yield addr
    finally:
        stop_group(proc)


@contextlib.contextmanager
def running_prometheus(tmp: pathlib.Path, runwatch: list[str], thresholds: dict[str, float] | None = None,
                       interval: str = "1s") -> typing.Iterator[str]:
    """Start the real Prometheus with the project's config and rules; yield its base URL."""
    prom = binary("prometheus")
    assert prom, "prometheus binary missing"
    port = free_port()
    addr = f"127.0.0.1:{port}"
    cfg = render_prometheus_dir(tmp / "prometheus", runwatch=runwatch, prometheus=[addr],
                                interval=interval, thresholds=thresholds)
    proc = start_logged([prom, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'prom-data'}",
                  f"--web.listen-address={addr}", "--log.level=warn"], tmp / "prometheus.log")
    try:
        wait_http(f"http://{addr}/-/ready", 30, proc)
        yield f"http://{addr}"
    finally:
        stop_group(proc)


class Prom:
    """Minimal Prometheus HTTP API client."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _get(self, path: str, **params) -> typing.Any:
        import requests

        r = requests.get(self.base + path, params=params, timeout=10)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list:
        return self._get("/api/v1/query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list:
        return self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]

    def label_values(self, label: str, match: str) -> list[str]:
        return self._get(f"/api/v1/label/{label}/values", **{"match[]": match})

    def alerts(self) -> list[dict]:
        return self._get("/api/v1/alerts")["alerts"]

    def rule_groups(self) -> list[dict]:
        return self._get("/api/v1/rules")["groups"]


# ----------------------------------------------------------------- dashboards

def load_dashboards() -> dict[str, dict]:
    import json

    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def iter_panels(dashboard: dict) -> typing.Iterator[dict]:
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def iter_targets(dashboard: dict) -> typing.Iterator[tuple[dict, dict]]:
    """(panel, target) for every query of every non-row panel."""
    for p in iter_panels(dashboard):
        if p.get("type") == "row":
            continue
        for t in p.get("targets", []):
            yield p, t


def datasource_uid(panel: dict, target: dict) -> str | None:
    ds = target.get("datasource") or panel.get("datasource") or {}
    return ds.get("uid") if isinstance(ds, dict) else None


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana variables ($x and ${x}, ${x:raw}) by values."""
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"no value for variable {name!r} in {expr!r}")
        return variables[name]

    # longest names first is implied by \w+ being greedy
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)
