"""`runwatch scan --timestamps`: OpenMetrics at the log's own times, imported by promtool,
queried from a real Prometheus started on the blocks."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time

import pytest
import requests

from support.ports import free_port
from support.procs import runwatch_cmd
from support.waits import wait_for
from runwatch.parse.timestamps import LineClock, TimestampFormat
from runwatch.parse.packs import parse_pack
from runwatch.yamlfile import ConfigError, load_file

T = 1795564800.0     # 2026-11-25 00:00:00 UTC


@pytest.mark.parametrize("line, want", [
    ("2026-11-25T00:00:00Z INFO x", T),
    ("2026-11-25T02:00:00.250+02:00 x", T + 0.25),
    ("2026-11-25 00:00:01,123 INFO waa.setup: Creating VM", T + 1.123),
    ("level=info ts=2026-11-25 00:00:02.5 msg=x", T + 2.5),
    ("Nov 25 00:00:03 host app[12]: started", T + 3),
    ("1795564804.75 step 1", T + 4.75),
    ("[1795564805000] step 2", T + 5),
    ("Traceback (most recent call last):", None),
    ("#7 98.40 Successfully installed", None),
])
def test_builtin_timestamp_formats(line, want):
    got = LineClock([], year=2026)(line)
    assert got == pytest.approx(want) if want is not None else got is None


def test_pack_timestamp_key(tmp_path):
    p = tmp_path / "nginxish.yaml"
    p.write_text("pack: access\n"
                 "timestamp: {regex: '\\[(?P<ts>[^\\]]+)\\]', format: '%d/%b/%Y:%H:%M:%S %z'}\n"
                 "rules:\n  - {name: r, match: 'GET', emit: step}\n")
    pack = parse_pack(load_file(str(p)), str(p), "access")
    assert isinstance(pack.timestamp, TimestampFormat)
    assert LineClock([pack])('1.2.3.4 - - [25/Nov/2026:01:00:00 +0100] "GET / HTTP/1.1"') == pytest.approx(T)
    p.write_text("pack: bad\ntimestamp: {regex: '(', format: '%Y'}\nrules:\n  - {name: r, match: x, emit: step}\n")
    with pytest.raises(ConfigError, match=":2:.*regex does not compile"):
        parse_pack(load_file(str(p)), str(p), "bad")
    p.write_text("pack: bad\ntimestamp: {format: 'dd/mm/yyyy'}\nrules:\n  - {name: r, match: x, emit: step}\n")
    with pytest.raises(ConfigError, match="timestamp"):
        parse_pack(load_file(str(p)), str(p), "bad")


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def write_eval_log(path, t0):
    """6 tasks of 90 s after a 120 s boot; times from t0. Returns {event: time}."""
    marks, t, out = {}, t0, []
    out.append(f"{_stamp(t)} INFO waa.setup: Creating VM")
    t += 120
    for i in range(1, 7):
        marks[f"task{i}"] = t
        out.append(f"{_stamp(t)} INFO runner: Task {i}/6: task_{i}")
        for k in range(3):
            t += 20
            out.append(f"{_stamp(t)} INFO runner: Step {k + 1}: CLICK")
        t += 30
        out.append(f"{_stamp(t)} INFO runner: Task task_{i}: {'FAIL' if i == 3 else 'SUCCESS'}")
        if i == 4:
            out.append("Traceback (most recent call last):")        # no timestamp: the line before's
            out.append(f"{_stamp(t)} ERROR runner: boom")
    marks["end"] = t
    path.write_text("\n".join(out) + "\n")
    return marks


@pytest.mark.stack("promtool", "prometheus")
@pytest.mark.skipif(not (shutil.which("promtool") and shutil.which("prometheus")), reason="needs prometheus")
def test_promtool_imports_and_prometheus_answers_at_the_logs_own_times(tmp_path):
    t0 = float(int(time.time()) - 3 * 3600)        # recent enough for the default retention
    log = tmp_path / "eval.log"
    marks = write_eval_log(log, t0)
    om = tmp_path / "eval.om"
    r = subprocess.run(runwatch_cmd("scan", "--timestamps", "--pack", "waa", "--pack", "python",
                                    "--run-id", "eval-7", "--output", str(om), str(log)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = om.read_text()
    assert text.endswith("# EOF\n")
    blocks = tmp_path / "tsdb"
    r = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(blocks)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [d for d in os.listdir(blocks) if len(d) == 26], "no blocks written"

    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1h\n")
    port = free_port()
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={blocks}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/-/ready", timeout=1).ok, 30, what="prometheus ready")

        def q(expr, at):
            res = requests.get(url + "/api/v1/query", params={"query": expr, "time": at}, timeout=5).json()
            assert res["status"] == "success", res
            return [float(x["value"][1]) for x in res["data"]["result"]]

        sel = '{run_id="eval-7"}'
        assert q(f"runwatch_tasks_completed_total{sel}", marks["end"]) == [6]
        assert q(f"runwatch_tasks_failed_total{sel}", marks["end"]) == [1]
        assert q(f"runwatch_tasks_completed_total{sel}", marks["task3"] + 16) == [2]     # mid-run, as it was
        assert q(f"runwatch_tasks_completed_total{sel}", t0 + 60) == [0]
        assert q(f"runwatch_errors_total{sel}", marks["end"]) == [2]          # traceback + ERROR line
        assert q(f"runwatch_run_start_timestamp_seconds{sel}", marks["end"]) == [pytest.approx(t0)]
        assert q(f"runwatch_run_progress_ratio{sel}", marks["task4"] + 1) == [pytest.approx(0.5)]
        assert q(f"runwatch_run_eta_seconds{sel}", marks["task4"] + 1)[0] == pytest.approx(270, rel=0.2)
        assert q(f"runwatch_tasks_completed_total{sel}", t0 - 600) == []                # nothing before it
        assert q(f"runwatch_tasks_completed_total{sel}", marks["end"] + 900) == []      # series end after it
        rng = requests.get(url + "/api/v1/query_range", timeout=5, params={
            "query": f"runwatch_tasks_completed_total{sel}", "start": t0, "end": marks["end"], "step": 60}).json()
        values = [float(v) for _, v in rng["data"]["result"][0]["values"]]
        assert values == sorted(values) and values[0] == 0 and values[-1] == 6
    finally:
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
