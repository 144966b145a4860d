"""POST /api/events: every event type, partial batches, auth, limits, the
metrics each event produces, and several clients posting at once."""
from __future__ import annotations

import json
import threading

import pytest
import requests

from support.prom_text import sample
from runwatch.model.runs import Registry
from runwatch.web.server import Server

TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server():
    servers = []

    def start(**kw):
        kw.setdefault("events", True)
        kw.setdefault("token", TOKEN)
        kw.setdefault("rate", 10000)
        srv = Server(Registry(), ("127.0.0.1", 0), **kw).start()
        srv.base = f"http://{srv.address}"
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


def post(srv, body, path="/api/events", headers=AUTH, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(srv.base + path, data=data, headers=headers, timeout=5, **kw)


def metrics(srv) -> str:
    return requests.get(srv.base + "/metrics", timeout=5).text


# every type of the vocabulary, with the sample it must produce
CASES = [
    ({"type": "agent_started", "agent_id": "planner"},
     ("runwatch_agent_state", {"agent": "planner", "runwatch_agent_state": "running"}, 1.0)),
    ({"type": "agent_completed", "agent_id": "planner", "duration": 12.5, "output_size": 2048},
     ("runwatch_agent_duration_seconds", {"agent": "planner"}, 12.5)),
    ({"type": "agent_failed", "agent_id": "coder", "error": "KeyError"},
     ("runwatch_agent_state", {"agent": "coder", "runwatch_agent_state": "failed"}, 1.0)),
    ({"type": "data_flow", "from_agent": "planner", "to_agent": "coder", "data_size": 4096},
     ("runwatch_data_flow_bytes_total", {"from_agent": "planner", "to_agent": "coder"}, 4096.0)),
    ({"type": "progress_update", "progress": 42, "message": "halfway-ish"},
     ("runwatch_run_progress_ratio", {}, 0.42)),
    ({"type": "phase", "phase": "research"}, ("runwatch_run_phase_info", {"phase": "research"}, 1.0)),
    ({"type": "progress", "done": 3, "total": 4}, ("runwatch_run_progress_ratio", {}, 0.75)),
    ({"type": "task_planned", "total": 10}, ("runwatch_tasks_planned", {}, 10.0)),
    ({"type": "task_started", "task": "t1", "index": 1, "total": 5}, ("runwatch_tasks_started_total", {}, 1.0)),
    ({"type": "task_finished", "task": "t1", "result": "fail"}, ("runwatch_tasks_failed_total", {}, 1.0)),
    ({"type": "step", "action": "CLICK"}, ("runwatch_steps_total", {"action": "CLICK"}, 1.0)),
    ({"type": "build_step", "step": 3, "steps": 7}, ("runwatch_docker_build_steps", {}, 7.0)),
    ({"type": "score", "name": "acc", "value": 0.9, "best": True}, ("runwatch_best_score", {"name": "acc"}, 0.9)),
    ({"type": "error", "message": "boom"}, ("runwatch_errors_total", {}, 1.0)),
    ({"type": "artifact", "artifact": "model.pt"}, ("runwatch_artifact_available", {"artifact": "model.pt"}, 1.0)),
    ({"type": "cost", "budget_usd": 5}, ("runwatch_cost_budget_usd", {}, 5.0)),
    ({"type": "vm_power", "vm": "vm1", "state": "running"},
     ("runwatch_vm_power_state", {"vm": "vm1", "runwatch_vm_power_state": "running"}, 1.0)),
    ({"type": "status", "state": "succeeded"}, ("runwatch_run_state", {"runwatch_run_state": "succeeded"}, 1.0)),
    ({"type": "log", "line": "hello from the job"}, ("runwatch_lines_total", {}, 1.0)),
    ({"type": "metric", "name": "gpu_util", "value": 0.93}, ("runwatch_run_metric", {"name": "gpu_util"}, 0.93)),
]


@pytest.mark.parametrize("event,expect", CASES, ids=[c[0]["type"] for c in CASES])
def test_every_event_type_produces_its_metric(server, event, expect):
    srv = server()
    rid = f"r-{event['type']}"
    r = post(srv, dict(event, run_id=rid))
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == 1 and r.json()["runs_created"] == [rid]
    name, labels, value = expect
    assert sample(metrics(srv), name, run_id=rid, **labels) == pytest.approx(value)
    info = sample(metrics(srv), "runwatch_run_info", run_id=rid, kind="workflow", source="api")
    assert info == 1.0


def test_workflow_sequence_and_json_view(server):
    srv = server()
    events = [
        {"type": "agent_started", "agent_id": "a", "ts": 1000.0},
        {"type": "data_flow", "from_agent": "a", "to_agent": "b", "data_size": 100},
        {"type": "data_flow", "from_agent": "a", "to_agent": "b", "data_size": 50},
        {"type": "agent_completed", "agent_id": "a", "ts": 1007.0, "output_size": 150},
        {"type": "agent_started", "agent_id": "b", "ts": 1008.0},
        {"type": "agent_failed", "agent_id": "b", "error": "oops", "ts": 1010.0},
    ]
    r = post(srv, events, path="/api/runs/wf-1/events")
    assert r.status_code == 200 and r.json()["applied"] == 6
    m = metrics(srv)
    assert sample(m, "runwatch_agent_duration_seconds", run_id="wf-1", agent="a") == 7.0   # measured
    assert sample(m, "runwatch_agent_duration_seconds", run_id="wf-1", agent="b") == 2.0
    assert sample(m, "runwatch_data_flow_bytes_total", run_id="wf-1", from_agent="a", to_agent="b") == 150
    assert sample(m, "runwatch_agent_state", run_id="wf-1", agent="b", runwatch_agent_state="failed") == 1
    assert sample(m, "runwatch_errors_total", run_id="wf-1") == 1
    j = requests.get(srv.base + "/api/runs/wf-1", timeout=5).json()
    assert [a["agent_id"] for a in j["agents"]] == ["a", "b"]
    assert j["data_flow"] == [{"from_agent": "a", "to_agent": "b", "bytes": 150.0}]
    assert j["status"] == "running" and j["kind"] == "workflow"


def test_ndjson_and_kind_of_new_run(server):
    srv = server()
    body = "\n".join(json.dumps(e) for e in [
        {"type": "phase", "phase": "p1", "run_id": "nd-1", "kind": "etl"},
        {"type": "step", "action": "load", "run_id": "nd-1"},
    ]) + "\n"
    r = post(srv, body, headers=dict(AUTH, **{"Content-Type": "application/x-ndjson"}))
    assert r.status_code == 200 and r.json()["applied"] == 2
    assert sample(metrics(srv), "runwatch_run_info", run_id="nd-1", kind="etl") == 1


def test_mixed_batch_applies_the_valid_and_names_the_bad(server):
    srv = server()
    batch = [
        {"type": "step", "action": "a"},                       # ok
        {"type": "agent_started"},                             # missing agent_id
        {"type": "progress_update", "progress": 140},          # out of range
        {"type": "nope"},                                      # unknown type
        {"type": "data_flow", "from_agent": "x", "to_agent": "y", "data_size": -1},
        {"type": "step", "action": "a", "run_id": "other"},    # path/body mismatch
        "not an object",
        {"type": "step", "action": "a"},                       # ok
    ]
    r = post(srv, batch, path="/api/runs/mix/events")
    assert r.status_code == 400
    j = r.json()
    assert j["applied"] == 2 and j["rejected"] == 6
    by_index = {e["index"]: (e["field"], e["reason"]) for e in j["errors"]}
    assert by_index[1][0] == "agent_id" and "required" in by_index[1][1]
    assert by_index[2][0] == "progress" and "between 0 and 100" in by_index[2][1]
    assert by_index[3][0] == "type" and "unknown event type" in by_index[3][1]
    assert by_index[4][0] == "data_size" and "negative" in by_index[4][1]
    assert by_index[5][0] == "run_id"
    assert by_index[6][0] == "event"
    assert "the other 2 were applied" in j["error"]
    assert sample(metrics(srv), "runwatch_steps_total", run_id="mix", action="a") == 2
    assert sample(metrics(srv), "runwatch_api_events_rejected_total") == 6


def test_single_bad_event_and_bad_bodies(server):
    srv = server()
    r = post(srv, {"type": "agent_completed", "agent_id": "a", "duration": "soon", "run_id": "x"})
    assert r.status_code == 400
    assert r.json()["field"] == "duration" and r.json()["error"].startswith("duration:")
    r = post(srv, {"type": "step"})
    assert r.status_code == 400 and r.json()["field"] == "run_id"
    r = post(srv, b"{not json")
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = post(srv, b"")
    assert r.status_code == 400
    r = post(srv, {"type": "step", "run_id": "bad id with spaces"})
    assert r.status_code == 400 and r.json()["field"] == "run_id"
    # NDJSON with one broken line: the others still count
    r = post(srv, b'{"type":"step","run_id":"n"}\n{broken\n{"type":"step","run_id":"n"}\n')
    assert r.status_code == 400 and r.json()["applied"] == 2 and r.json()["errors"][0]["index"] == 1


def test_auth_missing_wrong_and_write_disabled(server):
    srv = server()
    ev = {"type": "step", "run_id": "auth"}
    r = post(srv, ev, headers={})
    assert r.status_code == 401 and "missing" in r.json()["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert post(srv, ev, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert post(srv, ev, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert post(srv, ev, headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert "auth" not in requests.get(srv.base + "/api/runs", timeout=5).text
    assert post(srv, ev).status_code == 200
    off = server(events=False)
    r = post(off, ev)
    assert r.status_code == 404 and "--events" in r.json()["error"]


def test_oversize_body_413_and_connection_survives(server):
    srv = server(max_body=1000)
    big = json.dumps([{"type": "step", "run_id": "big", "action": "x" * 50}] * 40)
    with requests.Session() as s:
        r = s.post(srv.base + "/api/events", data=big, headers=AUTH, timeout=5)
        assert r.status_code == 413 and "1000" in r.json()["error"]
        r = s.post(srv.base + "/api/events", data=json.dumps({"type": "step", "run_id": "big"}),
                   headers=AUTH, timeout=5)
        assert r.status_code == 200


def test_rate_limit_429(server):
    srv = server(rate=1, burst=3)
    codes = [post(srv, {"type": "step", "run_id": "rl"}).status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    r = post(srv, {"type": "step", "run_id": "rl"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


@pytest.mark.stack
def test_concurrent_posters_exact_counts(server):
    srv = server()
    threads, per_thread, batch = 8, 25, 4
    errors = []

    def worker(k):
        with requests.Session() as s:
            for _ in range(per_thread):
                body = [{"type": "step", "action": f"w{k}"} for _ in range(batch)]
                body.append({"type": "data_flow", "from_agent": f"w{k}", "to_agent": "sink", "data_size": 10})
                r = s.post(srv.base + "/api/runs/conc/events", data=json.dumps(body), headers=AUTH, timeout=10)
                if r.status_code != 200:
                    errors.append(r.text)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    m = metrics(srv)
    for k in range(threads):
        assert sample(m, "runwatch_steps_total", run_id="conc", action=f"w{k}") == per_thread * batch
        assert sample(m, "runwatch_data_flow_bytes_total", run_id="conc", from_agent=f"w{k}",
                      to_agent="sink") == per_thread * 10
    assert sample(m, "runwatch_api_events_applied_total") == threads * per_thread * (batch + 1)
    assert sample(m, "runwatch_runs") == 1


def test_json_api_runs_and_method_errors(server):
    srv = server()
    post(srv, [{"type": "task_started", "task": "notepad_1", "index": 1, "total": 3},
               {"type": "step", "action": "CLICK"}, {"type": "step", "action": "TYPE"},
               {"type": "log", "line": "url https://x.blob.core.windows.net/c?sv=1&sig=AbC123%2Bsecret%3D"}],
         path="/api/runs/bench/events")
    runs = requests.get(srv.base + "/api/runs", timeout=5).json()["runs"]
    assert [r["run_id"] for r in runs] == ["bench"]
    j = requests.get(srv.base + "/api/runs/bench", timeout=5).json()
    assert j["status"] == "running" and j["total_tasks"] == 3 and j["tasks_completed"] == 0
    assert j["current_task"]["task_id"] == "notepad_1"
    assert [s["action"] for s in j["current_task"]["steps"]] == ["CLICK", "TYPE"]
    assert "AbC123" not in json.dumps(j) and "sig=<redacted>" in j["recent_lines"][0]
    assert requests.get(srv.base + "/api/runs/nope", timeout=5).status_code == 404
    assert requests.get(srv.base + "/api/events", timeout=5).status_code == 405
    r = requests.get(srv.base + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert r.headers.get("Content-Encoding") == "gzip" and "runwatch_run_info" in r.text


def test_posted_log_lines_take_the_line_path_redacted_and_shipped():
    """`log` events go through runs.Ingest: redacted before they are stored or shipped."""
    from runwatch.web import api
    from runwatch.model.runs import Registry
    reg = Registry()
    shipped = []
    lines = api.LogLines(reg, on_block=lambda run, block, ts: shipped.append((run.spec.id, block)))
    res = api.apply_body(reg, [{"type": "log", "run_id": "wf", "level": "error",
                                "line": "GET https://a.blob.core.windows.net/c/f?sv=2022&sig=S3cr3t%2B rc=403"}],
                         log_lines=lines)
    assert res["applied"] == 1
    assert shipped == [("wf", b"GET https://a.blob.core.windows.net/c/f?sv=2022&sig=<redacted> rc=403\n")]
    run = reg.get("wf")
    assert reg.recent_lines(run) == ["GET https://a.blob.core.windows.net/c/f?sv=2022&sig=<redacted> rc=403"]
    assert run.state.errors == 1 and run.state.lines == 1


def test_posted_log_lines_use_the_commands_extra_redaction_patterns():
    from runwatch.web import api
    from runwatch.parse.redact import Redactor
    from runwatch.model.runs import Registry
    reg = Registry()
    lines = api.LogLines(reg, redactor=Redactor([r"employee-\d+"]))
    api.apply_body(reg, [{"type": "log", "run_id": "wf", "line": "paid employee-4711 token=abc"}], log_lines=lines)
    assert reg.recent_lines(reg.get("wf")) == ["paid <redacted> token=<redacted>"]
