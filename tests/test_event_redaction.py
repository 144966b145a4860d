"""Posted events: their free-text fields are redacted before state, labels and the JSON API see them."""
from __future__ import annotations

import json

import requests

from runwatch.model.runs import Registry
from runwatch.parse.redact import Redactor
from runwatch.web import api
from runwatch.web.server import Server

TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRETS = ["hunter2pw", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"[4:], "S3cr3tSig", "xyzPASS99", "AbCdSecretTok"]

EVENTS = [
    {"type": "agent_started", "agent_id": "planner"},
    {"type": "agent_failed", "agent_id": "planner", "error": "login failed: password=hunter2pw"},
    {"type": "task_started", "task": "clone ghp_abcdefghijklmnopqrstuvwxyz0123456789", "index": 1, "total": 2},
    {"type": "phase", "phase": "upload https://a.blob.core.windows.net/c?sv=1&sig=S3cr3tSig"},
    {"type": "step", "action": "connect postgres://bob:xyzPASS99@db"},
    {"type": "score", "name": "token=AbCdSecretTok", "value": 0.5},
    {"type": "progress_update", "progress": 10, "message": "using password=hunter2pw"},
    {"type": "error", "message": "auth: Bearer ghp_abcdefghijklmnopqrstuvwxyz0123456789"},
    {"type": "status", "state": "failed", "reason": "secret=xyzPASS99 rejected"},
]


def test_secrets_in_posted_event_fields_never_reach_metrics_or_the_api():
    srv = Server(Registry(), ("127.0.0.1", 0), events=True, token=TOKEN, rate=10000).start()
    base = f"http://{srv.address}"
    try:
        r = requests.post(base + "/api/runs/wf/events", data=json.dumps(EVENTS), headers=AUTH, timeout=10)
        assert r.status_code == 200 and r.json()["applied"] == len(EVENTS), r.text
        seen = requests.get(base + "/metrics", timeout=10).text
        seen += requests.get(base + "/api/runs", timeout=10).text
        seen += requests.get(base + "/api/runs/wf", timeout=10).text
        for s in SECRETS:
            assert s not in seen, s
        assert "<redacted>" in seen
        j = requests.get(base + "/api/runs/wf", timeout=10).json()
        assert j["status"] == "failed"
        assert "upload https://a.blob.core.windows.net/c?sv=1&sig=<redacted>" in seen    # the rest kept
    finally:
        srv.stop()


def test_event_fields_use_the_configured_patterns_and_none_when_redaction_is_off():
    reg = Registry()
    lines = api.LogLines(reg, redactor=Redactor([r"employee-\d+"]))
    api.apply_body(reg, [{"type": "phase", "run_id": "wf", "phase": "paying employee-4711"}], log_lines=lines)
    assert reg.get("wf").state.phase == "paying <redacted>"
    reg2 = Registry()
    api.apply_body(reg2, [{"type": "phase", "run_id": "wf", "phase": "password=x1"}],
                   log_lines=api.LogLines(reg2, redactor=None))
    assert reg2.get("wf").state.phase == "password=x1"
