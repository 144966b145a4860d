"""Agent input/output payloads: accepted on the agent events, kept within their bounds (per
payload, per run, per agent), redacted as log lines are, and served by GET
/api/runs/{id}/agents/{agent} for the status page's inspector."""
from __future__ import annotations

import json

import pytest
import requests

from runwatch.events import make
from runwatch.model import persist
from runwatch.model.runs import Registry, Run, RunSpec
from runwatch.model.state import (MAX_AGENT_EVENTS, MAX_AGENT_EXECUTIONS, MAX_AGENT_TEXT, MAX_AGENTS,
                                  MAX_EVENT_TEXT, MAX_PAYLOAD_BYTES, MAX_RUN_AGENT_EVENTS, MAX_RUN_PAYLOAD_BYTES,
                                  RunState)
from runwatch.parse.redact import Redactor
from runwatch.web.server import Server

TOKEN = "payload-token-5678"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server():
    servers = []

    def start(**kw):
        srv = Server(Registry(), ("127.0.0.1", 0), events=True, token=TOKEN, rate=10000, **kw).start()
        srv.base = f"http://{srv.address}"
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


def post(srv, run_id, events):
    r = requests.post(f"{srv.base}/api/runs/{run_id}/events", data=json.dumps(events), headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def agent(srv, run_id, agent_id, code=200):
    r = requests.get(f"{srv.base}/api/runs/{run_id}/agents/{requests.utils.quote(agent_id, safe='')}", timeout=10)
    assert r.status_code == code, r.text
    return r.json()


def test_payloads_round_trip_and_stay_out_of_the_run_list(server):
    srv = server()
    post(srv, "wf", [
        {"type": "agent_started", "agent_id": "planner", "input": {"question": "why?", "n": 3}},
        {"type": "data_flow", "from_agent": "planner", "to_agent": "coder", "data_size": 10},
        {"type": "agent_completed", "agent_id": "planner", "output": "three sub-questions\nfor the coder"},
    ])
    a = agent(srv, "wf", "planner")
    assert json.loads(a["input"]["text"]) == {"question": "why?", "n": 3}
    assert a["input"]["bytes"] == len(a["input"]["text"].encode()) and a["input"]["truncated"] is False
    assert a["output"]["text"] == "three sub-questions\nfor the coder"
    assert a["output"]["event"] == "agent_completed"
    assert a["output_size"] == a["output"]["bytes"]        # no size reported: the payload's
    assert [e["type"] for e in a["events"]] == ["agent_started", "data_flow", "agent_completed"]
    assert a["events"][0]["input_bytes"] == a["input"]["bytes"]
    assert a["flows_out"] == [{"to_agent": "coder", "bytes": 10.0}] and a["flows_in"] == []
    assert [x["state"] for x in a["executions"]] == ["completed"]
    assert a["limits"]["payload_bytes"] == MAX_PAYLOAD_BYTES
    # the run list (and so every status page push) carries sizes, never the payloads
    runs = requests.get(srv.base + "/api/runs", timeout=5).text
    assert "sub-questions" not in runs and "why?" not in runs
    listed = {x["agent_id"]: x for x in json.loads(runs)["runs"][0]["agents"]}
    assert listed["planner"]["output_bytes"] == a["output"]["bytes"]
    assert listed["coder"]["state"] == "pending" and listed["coder"]["executions"] == []


def test_a_payload_over_the_cap_is_cut_at_a_character_and_counted(server):
    srv = server()
    text = "a" + "é" * 9000                  # 18001 bytes; the cap falls inside an "é"
    post(srv, "wf", [{"type": "agent_completed", "agent_id": "writer", "output": text}])
    out = agent(srv, "wf", "writer")["output"]
    assert out["bytes"] == len(text.encode()) == 18001
    assert out["kept_bytes"] == MAX_PAYLOAD_BYTES - 1 and out["text"] == text[:MAX_PAYLOAD_BYTES // 2]
    assert out["cut_bytes"] == 18001 - out["kept_bytes"] and out["truncated"] is True
    assert agent(srv, "wf", "writer")["run_payload_cut_bytes"] == out["cut_bytes"]


def test_the_run_cap_bounds_all_agents_together_and_a_new_payload_frees_the_old(server):
    srv = server()
    n = MAX_RUN_PAYLOAD_BYTES // MAX_PAYLOAD_BYTES
    big = "x" * MAX_PAYLOAD_BYTES
    post(srv, "wf", [{"type": "agent_completed", "agent_id": f"a{i}", "output": big} for i in range(n)])
    full = agent(srv, "wf", "a0")
    assert full["run_payload_bytes"] == MAX_RUN_PAYLOAD_BYTES and full["run_payload_cut_bytes"] == 0
    post(srv, "wf", [{"type": "agent_completed", "agent_id": "late", "output": "no room left"}])
    late = agent(srv, "wf", "late")
    assert late["output"]["kept_bytes"] == 0 and late["output"]["cut_bytes"] == 12 and late["output"]["truncated"]
    assert late["run_payload_cut_bytes"] == 12
    post(srv, "wf", [{"type": "agent_completed", "agent_id": "a0", "output": "small"},   # replaces a0's 16 KiB
                     {"type": "agent_completed", "agent_id": "late", "output": big}])
    late = agent(srv, "wf", "late")
    assert late["output"]["kept_bytes"] == MAX_PAYLOAD_BYTES - 5
    assert late["run_payload_bytes"] == MAX_RUN_PAYLOAD_BYTES


def test_events_executions_and_agents_are_bounded(server):
    srv = server()
    rounds = MAX_AGENT_EVENTS                   # 2 events a round: twice what is kept
    evs = []
    for i in range(rounds):
        evs += [{"type": "agent_started", "agent_id": "loop", "input": f"round {i}"},
                {"type": "agent_completed", "agent_id": "loop", "output": f"result {i}"}]
    post(srv, "wf", evs)
    a = agent(srv, "wf", "loop")
    assert len(a["events"]) == MAX_AGENT_EVENTS and a["events_total"] == 2 * rounds
    assert a["events"][-1]["type"] == "agent_completed" and a["output"]["text"] == f"result {rounds - 1}"
    assert len(a["executions"]) == MAX_AGENT_EXECUTIONS and a["executions_total"] == rounds
    assert a["run_payload_bytes"] == len(f"round {rounds - 1}") + len(f"result {rounds - 1}")
    # past the agent bound, an agent and its payload are not kept: counted as cut, 404 for it
    post(srv, "many", [{"type": "agent_started", "agent_id": f"g{i}"} for i in range(MAX_AGENTS)])
    post(srv, "many", [{"type": "agent_completed", "agent_id": "one-too-many", "output": "dropped"}])
    gone = agent(srv, "many", "one-too-many", code=404)
    assert "no agent" in gone["error"]
    assert agent(srv, "many", "g0")["run_payload_cut_bytes"] == len("dropped")


def test_the_events_kept_for_the_inspector_are_bounded_per_run_and_their_text_is_cut():
    st = RunState()
    for i in range(MAX_AGENTS):
        st.apply(make("agent_started", {"agent_id": f"g{i}"}, 1.0 + i))
    for i in range(MAX_AGENTS):
        st.apply(make("agent_failed", {"agent_id": f"g{i}", "error": "E" * 5000}, 5000.0 + i))
    st.apply(make("data_flow", {"from_agent": "g0", "to_agent": "g1", "data_size": 1}, 9000.0))
    assert len(st.agent_events) == MAX_RUN_AGENT_EVENTS < 2 * MAX_AGENTS + 1
    d = st.agent_detail("g0")
    assert [e["type"] for e in d["events"]] == ["agent_failed", "data_flow"]    # its start aged out of the run's
    assert d["events_total"] == 3
    assert len(d["events"][0]["error"]) == MAX_EVENT_TEXT + 1                     # cut, with "…"
    assert len(d["agent"]["error"]) == MAX_AGENT_TEXT + 1
    # one event too many: only the run's oldest went, g1's start (the next) is still there
    assert [e["type"] for e in st.agent_detail("g1")["events"]] == ["agent_started", "agent_failed", "data_flow"]


def test_a_secret_in_a_payload_is_redacted_like_a_log_line(server):
    srv = server(redactor=Redactor(["CUSTOMER-[0-9]+"]))      # built-in rules plus a user pattern
    sas = "https://acct.blob.core.windows.net/c/f?sv=2022-11-02&sig=SasSecret123%3D"
    post(srv, "wf", [
        {"type": "agent_started", "agent_id": "fetcher",
         "input": {"url": sas, "api_key": "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"}},
        {"type": "agent_failed", "agent_id": "fetcher", "error": "401 for CUSTOMER-4711",
         "output": "GET /data\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl\n"},
    ])
    a = agent(srv, "wf", "fetcher")
    body = json.dumps(a)
    for secret in ("SasSecret123", "abcdefghijklmnopqrstuvwxyz0123456789", "eyJzdWIiOiIxMjM0NTY3ODkwIn0", "4711"):
        assert secret not in body
        assert secret not in requests.get(srv.base + "/api/runs", timeout=5).text
        assert secret not in requests.get(srv.base + "/metrics", timeout=5).text
    assert "sig=<redacted>" in a["input"]["text"] and '"api_key":"<redacted>"' in a["input"]["text"]
    assert "Authorization: Bearer <redacted>" in a["output"]["text"]
    assert a["error"] == "401 for <redacted>" and a["executions"][-1]["error"] == "401 for <redacted>"


def test_unknown_run_or_agent_is_404_and_odd_names_and_values_work(server):
    srv = server()
    assert "no run" in agent(srv, "nope", "planner", code=404)["error"]
    post(srv, "wf", [{"type": "agent_started", "agent_id": "team/lead ü", "input": 42},
                     {"type": "agent_completed", "agent_id": "team/lead ü", "output": "fine ü char"}])
    assert "no agent" in agent(srv, "wf", "planner", code=404)["error"]
    a = agent(srv, "wf", "team/lead ü")               # '/' in a name: sent as %2F
    assert a["input"]["text"] == "42" and a["output"]["text"] == "fine ü char"
    lone = requests.post(srv.base + "/api/runs/wf/events", headers=AUTH, timeout=5,
                         data=json.dumps({"type": "agent_completed", "agent_id": "x", "output": "bad \ud800 char"}))
    assert lone.status_code == 400 and lone.json()["field"] == "output"   # a lone surrogate: refused, named
    bad = requests.post(srv.base + "/api/runs/wf/events", headers=AUTH, timeout=5,
                        data=json.dumps({"type": "data_flow", "from_agent": "a", "to_agent": "b", "data_size": 1,
                                         "output": "x"}))
    assert bad.status_code == 400 and bad.json()["field"] == "output"     # only the agent events take payloads


def test_payloads_survive_a_checkpoint_and_older_states_load():
    st = RunState()
    for e in (make("agent_started", {"agent_id": "a", "input": {"k": [1, 2]}}, 10.0),
              make("agent_completed", {"agent_id": "a", "output": "done"}, 12.0)):
        st.apply(e)
    run = Run(RunSpec(id="r", kind="workflow"))
    run.state = st
    again = Run(RunSpec(id="r", kind="workflow"))
    persist.load_run(again, persist.dump_run(run))
    assert again.state.agent_detail("a") == st.agent_detail("a")
    old = RunState.from_dict({"agents": {"b": {"state": "running", "started_ts": 5.0, "ended_ts": None,
                                               "duration": None, "output_size": None, "error": None}}})
    old.apply(make("agent_completed", {"agent_id": "b", "output": "late"}, 7.0))
    d = old.agent_detail("b")
    assert d["agent"]["state"] == "completed" and d["output"]["text"] == "late" and d["agent"]["duration"] == 2.0
