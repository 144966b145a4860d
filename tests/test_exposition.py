"""exposition.render writes exactly what prometheus_client writes, only faster."""
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from runwatch.export.collector import RunwatchCollector
from runwatch.events import Event
from runwatch.export.exposition import render
from runwatch.parse.packs import Matcher, builtin_names, load_builtin
from runwatch.model.runs import Ingest, Registry, RunSpec

NOW = 1_790_000_000.0


def rich_registry() -> CollectorRegistry:
    """Runs with every family the collector builds, and label values that need escaping."""
    reg = Registry()
    m = Matcher([load_builtin(n) for n in builtin_names()])
    odd = 'quote " back \\ slash\nnewline ünïcode'
    for i, kind in enumerate(["agent_eval", "docker_build", odd]):
        run = reg.add(RunSpec(id=f"run-{i}", kind=kind, source="file", url=f"https://x.test/{i}?a=b&c=\"d\"",
                              labels={"team": odd, "zone": "eu"}, cost_rate=1.5, budget=2.0))
        Ingest(reg, run, m).data(0, (
            b"Task 1/3: a\nStep 1: CLICK\nStep 2: TY\\PE\nTask a: SUCCESS\n#5 [builder 2/7] RUN x\n#5 DONE 1s\n"
            b"Trial 1/4: Score=0.25 [BEST]\n 45%|####5     | 450/1000 [00:12<00:15, 36.1it/s]\nERROR boom\n"
            b"Position 2/3\n"))
        reg.apply(run, [Event("vm_power", {"vm": "vm\"1", "state": "stopped"}, NOW),
                        Event("artifact", {"artifact": odd, "available": True, "deadline_seconds": 60}, NOW),
                        Event("agent_started", {"agent_id": "planner"}, NOW),
                        Event("data_flow", {"from_agent": "planner", "to_agent": "coder", "data_size": 2048}, NOW),
                        Event("metric", {"name": "gpu_util", "value": 1e21}, NOW),
                        Event("metric", {"name": "delta", "value": -0.0}, NOW),
                        Event("metric", {"name": "nan", "value": 1.0}, NOW),
                        Event("score", {"name": "loss", "value": float("inf")}, NOW)])
        reg.set_source_up(run, "file", i % 2 == 0)
    reg.apply(run, [Event("status", {"state": "failed"}, NOW)])

    def extra():
        c = CounterMetricFamily("runwatch_loki_entries_dropped", "Dropped lines.", labels=["reason"])
        c.add_metric(["spool_full"], 3)
        h = HistogramMetricFamily("runwatch_loki_push_duration_seconds", "Push latency.", unit="seconds")
        h.add_metric([], [("0.1", 2), ("1.0", 5), ("+Inf", 6)], 3.5)
        return [c, h]

    prom = CollectorRegistry(auto_describe=False)
    prom.register(RunwatchCollector(reg, extra=[extra]))
    return prom


class Frozen:
    """The same families for both renderers (the collector's own clock would differ)."""

    def __init__(self, prom):
        self.families = list(prom.collect())

    def collect(self):
        return self.families


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text-0.0.4", "openmetrics-1.0"])
def test_render_is_byte_for_byte_prometheus_client(openmetrics):
    frozen = Frozen(rich_registry())
    want = (generate_openmetrics if openmetrics else generate_latest)(frozen)
    got = render(frozen.collect(), openmetrics)
    assert got == want
    assert b'kind="quote \\" back \\\\ slash\\nnewline \xc3\xbcn\xc3\xafcode"' in got
    assert b"runwatch_loki_push_duration_seconds_bucket" in got
