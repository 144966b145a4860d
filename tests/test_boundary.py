"""Validation at the boundary, against a live `runwatch serve --events`: every bad string or
number in a posted event is a 400 that names the field and the reason, the connection is never
dropped, /metrics keeps answering and parsing, and the valid events of a batch are applied."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import requests

from support.ports import free_port
from support.procs import Proc, runwatch_cmd
from support.prom_text import sample
from support.scrape import scrape
from support.waits import wait_for

from runwatch.events import MAX_TEXT, MAX_WORD

TOKEN = "boundary-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    (d / "job.log").write_text("starting\n")
    cfg = d / "runwatch.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        runs:
          - {{id: tailed, file: {d / 'job.log'}, packs: [python]}}
        """))
    port = free_port()
    pr = Proc(["serve", "--events", "--listen", f"127.0.0.1:{port}", "-c", str(cfg)], port,
              env=dict(os.environ, RUNWATCH_TOKEN=TOKEN, RUNWATCH_DATA_DIR=str(d / "data")))
    pr.wait_up(30)
    yield pr
    pr.stop()


def post(pr, body, path="/api/events"):
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return requests.post(pr.url + path, data=data, headers=AUTH, timeout=30)


def run_json(pr, run_id):
    r = requests.get(f"{pr.url}/api/runs/{run_id}", timeout=10)
    return r.json() if r.status_code == 200 else None


SURROGATE = "\\udcff"          # JSON text for the lone surrogate os.fsdecode makes of byte 0xff
BIG = "9" * 400

def j(text: str) -> str:
    return text.replace("<S>", SURROGATE).replace("<BIG>", BIG)


# (event JSON text without run_id, the field the 400 must name, a word of the reason)
BAD = [
    (j('{"type": "phase", "phase": "<S>"}'), "phase", "surrogate"),
    (j('{"type": "agent_started", "agent_id": "a<S>"}'), "agent_id", "surrogate"),
    (j('{"type": "error", "message": "x<S>"}'), "message", "surrogate"),
    ('{"type": "agent_failed", "agent_id": "a", "error": "x\\ud800y"}', "error", "surrogate"),
    (j('{"type": "phase", "phase": "ok", "kind": "k<S>"}'), "kind", "surrogate"),
    (j('{"type": "log", "line": "a<S>b"}'), "line", "surrogate"),
    (j('{"type": "step", "<S>": 1}'), "\\xff", "surrogate"),
    (j('{"type": "task_planned", "total": <BIG>}'), "total", "64 bits"),
    (j('{"type": "build_step", "step": <BIG>}'), "step", "64 bits"),
    (j('{"type": "step", "action": "a", "index": "<BIG>"}'), "index", "64 bits"),
    ('{"type": "score", "name": "acc", "value": 1e400}', "value", "finite"),
    ('{"type": "metric", "name": "m", "value": -1e400}', "value", "finite"),
    (j('{"type": "cost", "cost_usd": <BIG>.5}'), "cost_usd", "finite"),
    ('{"type": "task_planned", "total": -3}', "total", "negative"),
    ('{"type": "task_started", "index": -1}', "index", "negative"),
    ('{"type": "task_finished", "total": -10}', "total", "negative"),
    ('{"type": "cost", "cost_usd": -0.5}', "cost_usd", "negative"),
    ('{"type": "cost", "budget_usd": -10}', "budget_usd", "negative"),
    ('{"type": "cost", "rate_usd_per_hour": -2}', "rate_usd_per_hour", "negative"),
    ('{"type": "progress", "done": -1, "total": 10}', "done", "negative"),
    ('{"type": "progress", "eta_seconds": "-1:00"}', "eta_seconds", "negative"),
    ('{"type": "artifact", "artifact": "m", "deadline_seconds": -5}', "deadline_seconds", "negative"),
    (j('{"type": "phase", "phase": "x", "ts": <BIG>}'), "ts", "range"),
    ('{"type": "phase", "phase": "x", "ts": 1e400}', "ts", "finite"),
    ('{"type": "score", "name": "acc", "value": NaN}', "body", "NaN"),
    ('[' * 100_000 + ']' * 100_000, "body", "nested"),
    ('{"a": ' * 50_000 + '1' + '}' * 50_000, "body", "nested"),
    ('{"type": "task_planned", "total": %s}' % ("7" * 5000), "body", "digits"),
]


@pytest.mark.parametrize("body,field,word", BAD, ids=[f"{i}-{b[2]}-{b[1]}" for i, b in enumerate(BAD)])
def test_a_bad_value_is_a_400_naming_the_field(serve, body, field, word):
    rid = f"bad-{abs(hash(body)) % 10**8}"
    text = body if not body.startswith("{") or '"a": {' in body else body[:-1] + f', "run_id": "{rid}"}}'
    r = post(serve, text.encode())
    assert r.status_code == 400, r.text[:300]
    answer = r.json()
    assert answer["field"] == field, answer
    assert word.lower() in answer["reason"].lower(), answer
    assert answer["error"]
    scrape(serve.url)
    assert run_json(serve, rid) is None          # nothing of a refused event was applied
    assert requests.get(serve.url + "/api/runs", timeout=10).status_code == 200


def test_the_valid_events_of_a_batch_are_applied_around_a_bad_one(serve):
    rid = "batch-mixed"
    body = j('[{"type": "task_planned", "total": 4, "run_id": "<R>"},'
             ' {"type": "phase", "phase": "x<S>", "run_id": "<R>"},'
             ' {"type": "task_finished", "run_id": "<R>"},'
             ' {"type": "cost", "budget_usd": -1, "run_id": "<R>"}]').replace("<R>", rid)
    r = post(serve, body.encode())
    assert r.status_code == 400
    a = r.json()
    assert (a["applied"], a["rejected"]) == (2, 2)
    assert [(e["index"], e["field"]) for e in a["errors"]] == [(1, "phase"), (3, "budget_usd")]
    t = scrape(serve.url)
    assert sample(t, "runwatch_tasks_planned", run_id=rid) == 4
    assert sample(t, "runwatch_tasks_completed_total", run_id=rid) == 1
    assert run_json(serve, rid)["phase"] is None and run_json(serve, rid)["budget_usd"] is None


def test_a_huge_field_is_cut_to_its_documented_length(serve):
    rid = "huge-field"
    big = "é" * 200_000                       # 400 KB of UTF-8 each
    r = post(serve, [{"type": "phase", "phase": big, "run_id": rid},
                     {"type": "error", "message": big, "run_id": rid}])
    assert r.status_code == 200, r.text[:300]
    run = run_json(serve, rid)
    assert run["phase"] == "é" * MAX_WORD
    assert run["last_error"] == "é" * MAX_TEXT
    t = scrape(serve.url)
    assert len(t) < 100_000
    assert sample(t, "runwatch_run_phase_info", run_id=rid, phase="é" * MAX_WORD) == 1


def test_the_client_sends_file_names_escaped_and_refuses_what_the_server_would(serve):
    from runwatch.client import RunwatchClient
    name = os.fsdecode(b"model-\xff.pt")                # what os.listdir gives for a non-UTF-8 name
    assert "\udcff" in name
    c = RunwatchClient(serve.url, TOKEN, "client-fsdecode", flush_interval=0.05)
    assert c.event("artifact", artifact=name)
    assert not c.event("task_planned", total=-1)
    assert not c.event("score", name="loss", value=float("inf"))
    assert c.flush(20)
    assert c.sent == 1 and c.rejected == 0 and c.dropped["invalid"] == 2
    t = scrape(serve.url)
    assert sample(t, "runwatch_artifact_available", run_id="client-fsdecode", artifact="model-\\\\xff.pt") == 1
    c.close()


def test_a_pack_drops_a_number_out_of_range_instead_of_poisoning_the_scrape(tmp_path):
    """A line's number goes through the same schema: `Task N/M` with a 400-digit M."""
    log = tmp_path / "huge.log"
    log.write_text(f"Task 1/{BIG}: start\nTask 2/5: next\n")
    out = subprocess.run(runwatch_cmd("scan", "--pack", "waa", "--run-id", "huge", str(log)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from prometheus_client.parser import text_string_to_metric_families
    list(text_string_to_metric_families(out.stdout))
    assert sample(out.stdout, "runwatch_tasks_planned", run_id="huge") == 5


def test_scan_names_a_run_after_a_non_utf8_file_name_escaped(tmp_path):
    d = os.fsencode(str(tmp_path))
    path = os.path.join(d, b"train-\xff.log")
    with open(path, "wb") as f:
        f.write(b"Task 1/3: x\n")
    out = subprocess.run(runwatch_cmd("scan", "--pack", "waa", os.fsdecode(path)),
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode("utf-8")              # valid UTF-8: the scrape of this output parses
    from prometheus_client.parser import text_string_to_metric_families
    list(text_string_to_metric_families(text))
    assert sample(text, "runwatch_tasks_planned", run_id="train-\\\\xff.log") == 3


# ---------------------------------------------------------------- protocol: status on a live command


def test_a_reported_status_does_not_end_a_live_command_and_cancel_still_kills_it(tmp_path):
    """`status: succeeded` posted for a command `runwatch run` launched is recorded as what
    the job reported; the process still runs, so cancel answers 202 and kills it, and the
    run ends as canceled (the process's exit decides)."""
    marker = tmp_path / "child.pid"
    child = (f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); "
             f"print('working', flush=True); time.sleep(600)")
    port = free_port()
    pr = Proc(["run", "--events", "--listen", f"127.0.0.1:{port}", "--run-id", "live", "--grace", "60",
               "--kill-after", "30", "--", sys.executable, "-c", child], port,
              env=dict(os.environ, RUNWATCH_TOKEN=TOKEN, RUNWATCH_DATA_DIR=str(tmp_path / "data")))
    try:
        pr.wait_up(30)
        wait_for(lambda: marker.exists() and marker.read_text(), 30, what="the child to start")
        pid = int(marker.read_text())
        r = post(pr, {"type": "status", "state": "succeeded", "reason": "all done", "run_id": "live"})
        assert r.status_code == 200, r.text
        run = run_json(pr, "live")
        assert run["state"] == "running"
        assert "reported succeeded" in run["status_reason"]
        assert sample(scrape(pr.url), "runwatch_run_state", run_id="live", runwatch_run_state="running") == 1
        os.kill(pid, 0)                                  # the child is alive
        c = requests.post(f"{pr.url}/api/runs/live/cancel", headers=AUTH, timeout=10)
        assert c.status_code == 202, c.text
        wait_for(lambda: run_json(pr, "live")["state"] == "canceled", 60, what="the run to end as canceled")

        def gone():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False
        wait_for(gone, 60, what="the child to be killed")
        assert sample(scrape(pr.url), "runwatch_run_state", run_id="live", runwatch_run_state="canceled") == 1
        again = requests.post(f"{pr.url}/api/runs/live/cancel", headers=AUTH, timeout=10)
        assert again.status_code == 409                  # now it has ended
        pr.p.terminate()                                 # end the grace period
        assert pr.p.wait(60) == 143
    finally:
        pr.stop()


def test_random_items_never_raise_and_always_leave_a_state_that_renders():
    """Any mix of types, fields and hostile values: each item is applied or refused with a
    field and a reason, and the registry still renders as exposition text and as JSON."""
    import random

    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from runwatch.events import SCHEMA
    from runwatch.export.collector import RunwatchCollector
    from runwatch.export.exposition import render
    from runwatch.model.runs import Registry
    from runwatch.web import api

    values = [None, True, 0, -1, 1.5, 10 ** 400, -10 ** 30, 1e308, float("inf"), "x", "", "\udcff", "a\ud800",
              [], {}, ["\udcff"], {"a": "\udcff"}, [1, [2, [3]]], "9" * 30, "-5", "1:2:3", "nan", "1e400", "\n\n"]
    types = [*SCHEMA, "log", "nope", 5, None, "\udcff"]
    reg = Registry()
    lines = api.LogLines(reg)
    rnd = random.Random(12)
    for _ in range(5000):
        t = rnd.choice(types)
        item = {"type": t, "run_id": rnd.choice(["r1", "r2", 5, "\udcff", "", None, "bad id"])}
        for key in ("ts", "kind"):
            if rnd.random() < 0.3:
                item[key] = rnd.choice(values)
        fields = list(SCHEMA[t]) if t in SCHEMA else ["line", "level", "message", "logger", "zz"]
        for f in rnd.sample(fields, k=min(len(fields), rnd.randint(0, 4))):
            item[f] = rnd.choice(values)
        res = api.apply_body(reg, [item], log_lines=lines)
        assert res["applied"] + res["rejected"] == 1
        for e in res["errors"]:
            assert e["field"] and e["reason"]
            json.dumps(e, ensure_ascii=False).encode("utf-8")      # the answer itself is valid UTF-8
    prom = CollectorRegistry(auto_describe=False)
    prom.register(RunwatchCollector(reg))
    list(text_string_to_metric_families(render(prom.collect(), False).decode("utf-8")))
    json.dumps(api.runs_view(reg, with_lines=True), allow_nan=False, ensure_ascii=False).encode("utf-8")
