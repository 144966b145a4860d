"""Remote-write into real stores: Prometheus (`--web.enable-remote-write-receiver`,
Debian `prometheus`) and VictoriaMetrics (Debian `victoria-metrics`).

A `runwatch run` job pushes every 0.5 s. While it runs, its series are
queryable through the store's HTTP API, equal to what its /metrics shows, with
job, instance and the external labels. After the run ends (and runwatch exits)
an instant query no longer returns them: the stale markers, not the store's
five-minute lookback, end them. The one difference between the stores that
shows: VictoriaMetrics rounds values to 12 significant digits.
"""
from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from support.ports import free_port
from support.procs import runwatch_cmd
from support.waits import wait_for
from support.remote_write import JOB, MOVING, parse_metrics, run_series, wait_writes_while_down
from support.procs import start_logged as start, stop_group as stop
from support.stack import Prom
from support.tools import binary
from support.waits import wait_http

pytestmark = pytest.mark.stack("prometheus", "victoria-metrics")


def _prometheus(tmp):
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text("global: {}\n")              # no scrapes: everything arrives by remote-write
    proc = start([binary("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'prom-data'}",
                  f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
                  "--log.level=warn"], tmp / "prometheus.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/-/ready", 60, proc)
    return proc, base, f"{base}/api/v1/write"


def _victoriametrics(tmp):
    port = free_port()
    proc = start([binary("victoria-metrics"), f"-storageDataPath={tmp / 'vm-data'}",
                  f"-httpListenAddr=127.0.0.1:{port}", "-search.latencyOffset=0s", "-search.disableCache",
                  "-loggerLevel=WARN"], tmp / "victoria-metrics.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/health", 60, proc)
    return proc, base, f"{base}/api/v1/write"


STORES = {"prometheus": ("prometheus", _prometheus), "victoria-metrics": ("victoria-metrics", _victoriametrics)}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    exe, starter = STORES[request.param]
    proc, base, write_url = starter(tmp_path)
    try:
        yield request.param, Prom(base), write_url
    finally:
        stop(proc)


def _stored(prom: Prom, run_id: str) -> dict[tuple, float]:
    out = {}
    for r in prom.query(f'{{run_id="{run_id}"}}'):
        labels = dict(r["metric"])
        name = labels.pop("__name__")
        out[(name, tuple(sorted(labels.items())))] = float(r["value"][1])
    return out


def test_pushed_series_equal_scraped_and_end_with_the_run(store, tmp_path):
    name, prom, write_url = store
    gate = tmp_path / "gate"
    port = free_port()
    p = subprocess.Popen(runwatch_cmd("run", "--listen", f"127.0.0.1:{port}", "--grace", "1", "--run-id", "st-1",
                                      "--pack", "waa", "--pack", "python", "--data-dir", str(tmp_path / "data"),
                                      "--remote-write", write_url, "--remote-write-interval", "0.5",
                                      "--external-label", "cluster=ci-7",
                                      "--", sys.executable, "-c", JOB, str(gate)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = {"job": "runwatch", "instance": f"{socket.gethostname()}:{port}", "cluster": "ci-7"}
    try:
        wait_for(lambda: _stored(prom, "st-1").get(
            ("runwatch_tasks_started_total", tuple(sorted(dict(base, run_id="st-1").items())))) == 2,
            60, 0.5, what=f"the running job's series in {name}")
        scraped = run_series(parse_metrics(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text), "st-1")
        assert p.poll() is None, "the job must still be running"

        diff = {}
        # VictoriaMetrics keeps 12 significant decimal digits of a float (its documented
        # lossy compression); Prometheus keeps the float exactly.
        same = (lambda a, b: math.isclose(a, b, rel_tol=1e-11)) if name == "victoria-metrics" else float.__eq__

        def equal():
            stored = _stored(prom, "st-1")
            want = {(n, tuple(sorted((k, v) for k, v in dict(dict(labels), **base).items() if v))): v
                    for (n, labels), v in scraped.items()}     # an empty label value is no label, scraped or pushed
            diff.update(missing=set(want) - set(stored), extra=set(stored) - set(want),
                        wrong={k: (v, stored[k]) for k, v in want.items()
                               if k in stored and k[0] not in MOVING and not same(stored[k], v)})
            return not any(diff.values())
        try:
            wait_for(equal, 30, 0.5, what=f"{name} to hold exactly the scraped series and values")
        except AssertionError:
            raise AssertionError(f"{name} differs from /metrics: {diff}") from None
    finally:
        gate.touch()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    # runwatch has exited: the stale markers end every series at once (lookback is 5 minutes)
    wait_for(lambda: _stored(prom, "st-1") == {}, 60, 0.5, what=f"{name} to stop returning the ended run")
    # the data is still there for a range query: the run did happen
    assert prom.query('max_over_time(runwatch_tasks_failed_total{run_id="st-1"}[10m])')[0]["value"][1] == "1"


def test_serve_ends_a_runs_series_when_its_grace_period_ends(store, tmp_path):
    """runwatch keeps running; one run finishes, its grace period passes, the registry
    forgets it: its series end in the store (stale markers) while the other run's stay."""
    name, prom, write_url = store
    token = "t0ken-for-the-test"
    for rid in ("keeps", "ends"):
        (tmp_path / f"{rid}.log").write_text("Task 1/4: a\n")
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text(f"""\
data_dir: data
grace_seconds: 1
remote_write:
  interval_seconds: 0.5
  endpoints: [{{url: "{write_url}"}}]
runs:
  - {{id: keeps, file: keeps.log, packs: [waa]}}
  - {{id: ends, file: ends.log, packs: [waa]}}
""")
    port = free_port()
    p = subprocess.Popen(runwatch_cmd("serve", "-c", str(cfg), "--listen", f"127.0.0.1:{port}", "--events"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, RUNWATCH_TOKEN=token))
    try:
        wait_for(lambda: _stored(prom, "ends") and _stored(prom, "keeps"), 60, 0.5, what=f"both runs in {name}")
        r = requests.post(f"http://127.0.0.1:{port}/api/runs/ends/events", timeout=5,
                          headers={"Authorization": f"Bearer {token}"},
                          json={"type": "status", "state": "succeeded", "reason": "done"})
        assert r.status_code < 300, r.text
        wait_for(lambda: _stored(prom, "ends") == {}, 60, 0.5, what=f"the ended run gone from {name}")
        assert _stored(prom, "keeps"), "the other run's series must stay"
        assert p.poll() is None
    finally:
        p.terminate()
        p.communicate(timeout=30)


def test_prometheus_outage_with_a_runwatch_restart_loses_nothing(tmp_path):
    """Prometheus is stopped mid-run and started again on the same data; `runwatch serve`
    is restarted while it is down. Afterwards Prometheus holds a sample for every write
    of both processes, the outage included, and refused none as out of order (a 400
    would show in the pushed runwatch_remote_write_samples_dropped_total)."""
    if binary("prometheus") is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    port = free_port()
    cfgp = tmp_path / "prometheus.yml"
    cfgp.write_text("global: {}\n")
    argv = [binary("prometheus"), f"--config.file={cfgp}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver", "--log.level=warn"]
    base = f"http://127.0.0.1:{port}"
    prom = Prom(base)
    (tmp_path / "job.log").write_text("Task 1/100: t1\n")
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text(f"""\
data_dir: data
remote_write:
  interval_seconds: 0.5
  flush_timeout_seconds: 1
  min_backoff_seconds: 0.1
  max_backoff_seconds: 0.5
  endpoints: [{{url: "{base}/api/v1/write"}}]
runs:
  - {{id: job-1, file: job.log, packs: [waa]}}
""")
    rw_port = free_port()

    def serve():
        return subprocess.Popen(runwatch_cmd("serve", "-c", str(cfg), "--listen", f"127.0.0.1:{rw_port}"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    p = start(argv, tmp_path / "prometheus.log")
    a = b = None
    try:
        wait_http(f"{base}/-/ready", 60, p)
        a = serve()
        wait_for(lambda: prom.query('runwatch_tasks_started_total{run_id="job-1"}'), 60, 0.5, what="first push")
        stop(p)
        down_at = time.time()
        wait_writes_while_down(f"http://127.0.0.1:{rw_port}/metrics", 3)
        a.terminate()
        _, err_a = a.communicate(timeout=30)
        a_stopped = time.time()
        assert b"spooled" in err_a, err_a.decode()[-2000:]
        b = serve()
        wait_for(lambda: requests.get(f"http://127.0.0.1:{rw_port}/healthz", timeout=1).ok, 30, what="serve again")
        b_started = time.time()
        wait_writes_while_down(f"http://127.0.0.1:{rw_port}/metrics", 3)
        up_at = time.time()
        p = start(argv, tmp_path / "prometheus-2.log")
        wait_http(f"{base}/-/ready", 60, p)

        def ts_of_writes():
            r = prom.query('runwatch_runs[10m]')
            return [float(t) for t, _ in r[0]["values"]] if r else []
        wait_for(lambda: [t for t in ts_of_writes() if t > up_at], 60, 0.5, what="the writes after the outage")
        ts = ts_of_writes()
        dropped = prom.query("max_over_time(runwatch_remote_write_samples_dropped_total[10m]) > 0")
        b.terminate()
        _, err_b = b.communicate(timeout=30)
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        stop(p)
    assert not dropped, dropped
    assert ts == sorted(ts)
    for lo, hi in ((down_at, a_stopped), (b_started, up_at)):     # the writes made while it was down
        window = [t for t in ts if lo < t < hi]
        assert len(window) >= 3, (lo, hi, ts[-30:], err_a.decode()[-2000:], err_b.decode()[-2000:])
        assert max(y - x for x, y in zip(window, window[1:], strict=False)) < 3.0, window
