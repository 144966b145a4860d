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


# ------------------------------------------------------------ runwatch's families, prometheus_client's samples

def _both(kind, *args, calls=(), **kw):
    import prometheus_client.core as pc

    from runwatch.export import families
    out = []
    for mod in (pc, families):
        m = getattr(mod, kind)(*args, **kw)
        for call_args, call_kw in calls:
            m.add_metric(*call_args, **call_kw)
        out.append(m)
    return out


@pytest.mark.parametrize("kind,args,kw,calls", [
    ("CounterMetricFamily", ("runwatch_x_total", "X."), {"labels": ["run_id", "action"]},
     [((["r", "click"], 3), {}), ((["r2", 'q"\n'], 0.5), {"created": 12.0}), ((["r3"], 1), {})]),
    ("CounterMetricFamily", ("runwatch_y", "Y."), {"value": 7}, []),
    ("CounterMetricFamily", ("runwatch_z", "Z."), {"value": 2, "created": 5.0, "unit": "bytes"}, []),
    ("GaugeMetricFamily", ("runwatch_g", "G."), {"labels": ["run_id"]},
     [((["r"], float("nan")), {}), ((["s"], -0.0), {"timestamp": 3.0})]),
    ("GaugeMetricFamily", ("runwatch_d", "D."), {"value": 1e21, "unit": "seconds"}, []),
    ("InfoMetricFamily", ("runwatch_run", "Run."), {"labels": ["run_id"]},
     [((["r"], {"kind": "log", "url": ""}), {})]),
    ("InfoMetricFamily", ("runwatch_build", "B."), {"value": {"version": "1"}}, []),
    ("StateSetMetricFamily", ("runwatch_run_state", "S."), {"labels": ["run_id"]},
     [((["r"], {"running": True, "failed": False, "canceled": False}), {})]),
    ("StateSetMetricFamily", ("runwatch_vm", "V."), {"value": {"on": False, "off": True}}, []),
])
def test_runwatchs_families_make_prometheus_clients_samples(kind, args, kw, calls):
    theirs, ours = _both(kind, *args, calls=calls, **kw)
    for attr in ("name", "documentation", "type", "unit"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert [tuple(s) for s in ours.samples] == [tuple(s) for s in theirs.samples] and ours.samples
    assert ours.samples[0]._fields == theirs.samples[0]._fields
    assert ours == theirs
    for openmetrics in (False, True):        # rendered alike, by runwatch and by prometheus_client
        gen = generate_openmetrics if openmetrics else generate_latest
        assert render([ours], openmetrics) == render([theirs], openmetrics) == gen(_Given([theirs]))
        assert gen(_Given([ours])) == gen(_Given([theirs]))


class _Given:
    def __init__(self, fams):
        self.fams = fams

    def collect(self):
        return self.fams


def test_both_refuse_a_value_with_labels():
    import prometheus_client.core as pc

    from runwatch.export import families
    for mod in (pc, families):
        with pytest.raises(ValueError):
            mod.GaugeMetricFamily("runwatch_a", "A.", value=1, labels=["x"])


def test_values_are_written_as_prometheus_client_writes_them():
    from prometheus_client import utils

    from runwatch.export.exposition import go_float as ours
    theirs = utils.floatToGoString
    values = [0.0, -0.0, 1.0, -1.5, 1e21, 1e-7, 123456.0, 1234567.0, 12345678.9, 1.5e300, -1e21, 2 ** 53,
              float("inf"), float("-inf"), float("nan"), 3, True, 0.1 + 0.2, 999999.9999, 1e6, 1e16]
    assert [ours(v) for v in values] == [theirs(v) for v in values]


def test_scan_renders_without_importing_prometheus_client(tmp_path):
    """prometheus_client costs ~0.1 s to import: `runwatch scan` builds and writes its metrics without it."""
    import subprocess
    import sys
    log = tmp_path / "job.log"
    log.write_text("Task 1/2: a\nStep 1: Agent chose action: click\nERROR boom\n")
    code = ("import sys, runwatch.cli as c\n"
            f"rc = c.main(['scan', {str(log)!r}])\n"
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('prometheus_client', 'http', 'ssl')),"
            " file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stderr.strip().splitlines()[-1] == "0 []", p.stderr
    assert 'runwatch_errors_total{run_id="job.log"} 1.0' in p.stdout
    assert 'runwatch_steps_total{action="click",run_id="job.log"} 1.0' in p.stdout
