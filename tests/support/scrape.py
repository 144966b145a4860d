"""A scrape as Prometheus makes one: /metrics must answer 200 and parse."""
from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def scrape(base_url: str) -> str:
    """The text of base_url/metrics; AssertionError unless it answers 200 and every line parses."""
    r = requests.get(base_url.rstrip("/") + "/metrics", timeout=10)
    assert r.status_code == 200, f"/metrics answered {r.status_code}: {r.text[:200]!r}"
    families = list(text_string_to_metric_families(r.text))
    assert any(f.name.startswith("runwatch_build") for f in families), "no runwatch_build_info in /metrics"
    return r.text


def series(text: str, name: str) -> int:
    """How many samples the metric `name` has (its _total/_info twin included)."""
    return sum(1 for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)
