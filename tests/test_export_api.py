"""The JSON API's history, export and event stream, without a browser: a real Server on a
loopback port, a Registry fed through the same calls the sources use."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import socket
import threading
import time

import pytest
import requests

from runwatch.events import Event
from runwatch.model import samples
from runwatch.model.runs import RECENT_LINES, Registry, RunSpec
from runwatch.model.samples import Timeline
from runwatch.model.state import RunState
from runwatch.web import api
from runwatch.web.server import Server
from support.waits import wait_for


@pytest.fixture
def served():
    reg = Registry()
    srv = Server(reg, ("127.0.0.1", 0), events=True, token="tok").start()
    try:
        yield reg, srv.url.rstrip("/")
    finally:
        srv.stop()


def feed(reg, run, t0, n=6, step=3.0):
    """n moments `step` seconds apart: progress, a metric, a score, a line each."""
    for i in range(n):
        ts = t0 + i * step
        reg.apply(run, [Event("progress", {"ratio": i / n}, ts),
                        Event("metric", {"name": "loss", "value": 2.0 - i / 10}, ts),
                        Event("score", {"name": "auc", "value": 0.5 + i / 100, "direction": "max"}, ts)], ts)
        reg.ingest(run, f"epoch {i} loss={2.0 - i / 10}\n".encode(), [], 0, ts)


def test_history_keeps_samples_over_time_and_ends_at_the_latest_state(served):
    reg, url = served
    t0 = time.time() - 60
    run = reg.add(RunSpec(id="t1", kind="training", cost_rate=3.6), t0)
    feed(reg, run, t0)
    h = requests.get(url + "/api/runs/t1/history", timeout=5).json()
    assert h["run_id"] == "t1" and h["max_samples"] == samples.MAX_SAMPLES
    s = h["samples"]
    assert len(s) >= 6
    assert [x["ts"] for x in s] == sorted(x["ts"] for x in s)
    assert s[0]["progress"] == 0.0 and s[-1]["progress"] == pytest.approx(5 / 6)
    assert [x["metrics"]["loss"] for x in s[:6]] == pytest.approx([2.0, 1.9, 1.8, 1.7, 1.6, 1.5])
    assert s[-1]["best_scores"] == {"auc": pytest.approx(0.55)}
    assert s[-1]["cost_usd"] > s[0]["cost_usd"]        # 3.6 $/h accrues between samples
    assert requests.get(url + "/api/runs/nope/history", timeout=5).status_code == 404


def test_history_is_bounded_and_still_spans_the_whole_run():
    tl = Timeline(interval=1.0)
    st = RunState()
    for i in range(samples.MAX_SAMPLES * 5):
        st.apply(Event("progress", {"ratio": i / (samples.MAX_SAMPLES * 5)}, float(i)))
        tl.observe(st, float(i))
    view = tl.view(st, float(i))
    assert len(view["samples"]) <= samples.MAX_SAMPLES + 1
    assert view["samples"][0]["ts"] == 0.0 and view["samples"][-1]["ts"] == float(i)
    assert view["interval_seconds"] > 1.0
    # metric names per sample are bounded too
    for k in range(samples.MAX_SERIES * 3):
        st.apply(Event("metric", {"name": f"m{k}", "value": 1.0}, float(i)))
    tl.observe(st, float(i + 100), force=True)
    assert len(tl.view(st, float(i + 100))["samples"][-1]["metrics"]) == samples.MAX_SERIES


def test_events_kept_for_export_are_bounded():
    tl = Timeline()
    big = "x" * (samples.MAX_FIELD_CHARS * 10)
    steps = [Event("step", {"action": "CLICK"}, 2.0)] * samples.MAX_EVENTS
    tl.record([Event("error", {"message": big}, 1.0), *steps], 2.0)
    v = tl.events_view()
    assert len(v["events"]) == samples.MAX_EVENTS and v["events_dropped"] == 1
    tl.record([Event("error", {"message": big}, 3.0)], 3.0)
    assert len(tl.events_view()["events"][-1]["fields"]["message"]) <= samples.MAX_FIELD_CHARS + 1


def test_export_csv_and_json_hold_the_runs_events_and_samples(served):
    reg, url = served
    run = reg.add(RunSpec(id="t2", kind="training"))
    feed(reg, run, time.time() - 60)
    reg.apply(run, [Event("error", {"message": "=HYPERLINK(\"http://x\") token=abc123secretvalue"}, time.time())])

    r = requests.get(url + "/api/runs/t2/export?format=json", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Content-Disposition"] == 'attachment; filename="t2.json"'
    doc = r.json()
    assert doc["run"]["run_id"] == "t2" and doc["run"]["kind"] == "training"
    types = [e["type"] for e in doc["events"]]
    assert types.count("progress") == 6 and types.count("metric") == 6 and types[-1] == "error"
    assert len(doc["samples"]) >= 6 and doc["samples"][0]["metrics"]["loss"] == 2.0

    r = requests.get(url + "/api/runs/t2/export?format=csv", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == list(api.CSV_COLUMNS)
    loss = [float(x["value"]) for x in rows if x["record"] == "sample" and x["key"] == "metrics.loss"]
    assert loss[:6] == pytest.approx([2.0, 1.9, 1.8, 1.7, 1.6, 1.5])
    metric_events = {x["seq"] for x in rows if x["record"] == "event" and x["type"] == "metric"}
    assert len(metric_events) == 6
    err = [x for x in rows if x["type"] == "error" and x["key"] == "message"]
    assert err and err[0]["value"].startswith("'=")           # no formula for a spreadsheet to run
    assert "abc123secretvalue" not in r.text                  # redacted like every other view


def test_export_refuses_a_bad_format_and_an_unknown_run(served):
    reg, url = served
    reg.add(RunSpec(id="t3"))
    r = requests.get(url + "/api/runs/t3/export?format=xml", timeout=5)
    assert r.status_code == 400 and "csv" in r.json()["error"]
    assert requests.get(url + "/api/runs/missing/export?format=csv", timeout=5).status_code == 404
    assert requests.get(url + "/api/runs/t3/export", timeout=5).status_code == 200   # json by default


def test_links_are_http_urls_only(served):
    reg, url = served
    reg.add(RunSpec(id="t4", url="http://127.0.0.1:8006/vnc.html",
                    labels={"wandb": "https://wandb.ai/team/p/runs/x", "evil": "javascript:alert(1)",
                            "studio": "https://ml.azure.com/runs/abc", "model": "gpt"}))
    links = requests.get(url + "/api/runs/t4", timeout=5).json()["links"]
    assert [(x["name"], x["source"]) for x in links] == [("Open VNC", "url"), ("Azure ML studio", "studio"),
                                                         ("W&B run", "wandb")]


class Stream:
    """A raw SSE client on a socket: collects (event, data) pairs on a thread."""

    def __init__(self, url):
        host, port = url.split("//", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: %s:%s\r\nAccept: text/event-stream\r\n\r\n"
                          % (host.encode(), port.encode()))     # a loopback Host: others are refused (DNS rebinding)
        self.got: list[tuple[str, dict]] = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        event = None
        try:
            for raw in self.sock.makefile("rb"):
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    self.got.append((event, json.loads(line[6:])))
        except (OSError, ValueError):
            pass

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_stream_sends_a_snapshot_then_only_what_changed(served):
    reg, url = served
    a = reg.add(RunSpec(id="a"))
    b = reg.add(RunSpec(id="b"))
    reg.ingest(a, b"".join(b"old %d\n" % i for i in range(80)), [], 0, time.time())
    reg.ingest(b, b"b line\n", [], 0, time.time())
    s = Stream(url)
    try:
        wait_for(lambda: s.got, what="the snapshot")
        event, snap = s.got[0]
        assert event == "snapshot" and [r["run_id"] for r in snap["runs"]] == ["a", "b"]
        assert len(snap["runs"][0]["recent_lines"]) == RECENT_LINES
        reg.ingest(a, b"new 1\nnew 2\n", [], 0, time.time())
        diff = wait_for(lambda: next((d for e, d in s.got if e == "diff" and d["runs"]), None), what="a diff")
        assert [r["run_id"] for r in diff["runs"]] == ["a"]            # b did not change
        assert diff["runs"][0]["new_lines"] == ["new 1", "new 2"] and "recent_lines" not in diff["runs"][0]
        assert "kind" not in diff["runs"][0] and diff["runs"][0]["lines"] == 82   # only what changed
        reg.remove("b")
        gone = wait_for(lambda: next((d for e, d in s.got if e == "diff" and d["removed"]), None), what="removal")
        assert gone["removed"] == ["b"]
        reg.remove("a")                                          # a new run of the same id: all its lines
        a2 = reg.add(RunSpec(id="a"))
        reg.ingest(a2, b"fresh\n", [], 0, time.time())
        again = wait_for(lambda: next((r for e, d in s.got if e == "diff" for r in d["runs"]
                                       if r.get("recent_lines") == ["fresh"]), None), what="the new run a")
        assert again["lines"] == 1
    finally:
        s.close()


def test_stream_pushes_are_bounded_in_lines(served):
    reg, url = served
    a = reg.add(RunSpec(id="a"))
    s = Stream(url)
    try:
        wait_for(lambda: s.got, what="the snapshot")
        line = "y" * 3000
        reg.ingest(a, ("\n".join(f"{i} {line}" for i in range(40)) + "\n").encode(), [], 0, time.time())
        d = wait_for(lambda: next((r for e, d in s.got if e == "diff" for r in d["runs"] if "new_lines" in r), None),
                     what="the new lines")
        assert sum(len(x) + 1 for x in d["new_lines"]) <= api.MAX_PUSH_LINE_BYTES
        assert d["new_lines"][-1].startswith("39 ") and d["lines_skipped"] == 40 - len(d["new_lines"])
    finally:
        s.close()


def test_stream_pushes_are_bounded_in_runs(served):
    reg, url = served
    s = Stream(url)
    try:
        wait_for(lambda: s.got, what="the snapshot")
        n = api.MAX_RUNS_PER_PUSH * 2 + 5
        now = time.time()
        for i in range(n):
            reg.ingest(reg.add(RunSpec(id=f"r{i:03d}")), b"x\n", [], 0, now)

        def all_seen():
            ids = {r["run_id"] for e, d in s.got if e == "diff" for r in d["runs"]}
            return len(ids) == n
        wait_for(all_seen, timeout=20, what="every run pushed")
        sizes = [len(d["runs"]) for e, d in s.got if e == "diff"]
        assert max(sizes) <= api.MAX_RUNS_PER_PUSH and len(sizes) >= 3
    finally:
        s.close()


def test_history_and_export_of_a_demo_run(runwatch_proc):
    """`runwatch demo` as a process: its runs' history has curves and their export answers."""
    rw = runwatch_proc("demo", "--speed", "10").wait_up()
    h = wait_for(lambda: (lambda j: j if len(j.get("samples", [])) > 1 else None)(
        requests.get(rw.url + "/api/runs/demo-hparam-search/history", timeout=5).json()), timeout=60,
        what="two samples of demo-hparam-search")
    assert all(s["ts"] <= t["ts"] for s, t in zip(h["samples"], h["samples"][1:], strict=False))
    r = requests.get(rw.url + "/api/runs/demo-hparam-search/export?format=csv", timeout=5)
    assert r.status_code == 200 and list(csv.reader(io.StringIO(r.text)))[0][0] == "record"
