"""Bounded memory for everything from outside, against a live `runwatch serve --events`:
huge bodies, endless distinct words in events and in lines, too many runs, too many agents.
What a cap turns away is counted in runwatch_events_refused_total{reason}; the assertions are on
what /metrics and the JSON API hold, never on time."""
from __future__ import annotations

import json
import os

import pytest
import requests

from support.ports import free_port
from support.procs import Proc
from support.prom_text import sample
from support.scrape import scrape, series
from support.waits import wait_for

from runwatch.events import MAX_TEXT, MAX_WORD
from runwatch.model.runs import MAX_RUNS
from runwatch.model.state import MAX_AGENTS, MAX_LABEL_VALUES

# live runwatch processes, one or more per test: the full suite runs them, the fast loop does not
pytestmark = pytest.mark.stack()

TOKEN = "caps-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def serve(tmp_path):
    procs = []

    def start(log_text: str = "starting\n", packs: str = "python", rules: str | None = None):
        n = len(procs)
        (tmp_path / f"job{n}.log").write_text(log_text)
        cfg = tmp_path / f"runwatch{n}.yaml"
        extra = f", rules: [{rules}]" if rules else ""
        cfg.write_text(f"runs:\n  - {{id: tailed, file: {tmp_path / f'job{n}.log'}, packs: [{packs}]{extra}}}\n")
        port = free_port()
        pr = Proc(["serve", "--events", "--listen", f"127.0.0.1:{port}", "-c", str(cfg)], port,
                  env=dict(os.environ, RUNWATCH_TOKEN=TOKEN, RUNWATCH_DATA_DIR=str(tmp_path / f"data{n}")))
        procs.append(pr)
        return pr.wait_up(30)

    yield start
    for pr in procs:
        pr.stop()


def post(pr, items) -> requests.Response:
    """POST, waiting out the rate limit's 429 (Retry-After) instead of failing on it."""
    data = json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(data) <= 1 << 20
    resp = {}

    def sent():
        resp["r"] = r = requests.post(pr.url + "/api/events", data=data, headers=AUTH, timeout=60)
        return r.status_code != 429
    wait_for(sent, 120, interval=0.2, what="the rate limit to let a body through")
    return resp["r"]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.stack          # no tool, but 100 MB through the events API and its redaction take a while
def test_a_hundred_one_megabyte_bodies_keep_metrics_and_state_bounded(serve):
    pr = serve()
    rss0 = rss_kib(pr.p.pid)
    big = "x" * 150_000
    for i in range(100):
        rid = f"big-{i % 5}"
        items = [{"type": "phase", "phase": f"{i}-{big}", "run_id": rid},
                 {"type": "error", "message": f"{i}-{big}", "run_id": rid},
                 {"type": "log", "line": f"{i}-{big}", "run_id": rid},
                 {"type": "artifact", "artifact": f"{i}-{big}", "run_id": rid},
                 {"type": "vm_power", "vm": f"{i}-{big}", "state": "running", "run_id": rid},
                 {"type": "score", "name": f"{i}-{big}", "value": 1, "run_id": rid}]
        items += [{"type": "step", "action": f"w{i}_{k}", "run_id": rid} for k in range(2000)]
        items += [{"type": "metric", "name": f"m{i}_{k}", "value": k, "run_id": rid} for k in range(500)]
        r = post(pr, items)
        assert r.status_code == 200, r.text[:300]
    text = scrape(pr.url)
    rss1 = rss_kib(pr.p.pid)
    print(f"100 bodies of ~1 MB: /metrics {len(text)} bytes, RSS {rss0} -> {rss1} KiB")
    assert len(text) < 1 << 20                  # unbounded, this was over 100 MB
    per_label = 5 * (MAX_LABEL_VALUES + 1)      # 5 runs, each at most the cap plus "other"
    for name in ("runwatch_steps_total", "runwatch_run_metric", "runwatch_artifact_available", "runwatch_score"):
        assert series(text, name) <= per_label, name
    assert sample(text, "runwatch_steps_total", run_id="big-0", action="other") > 0
    assert sample(text, "runwatch_events_refused_total", reason="label_values") > 0
    for k in range(5):
        run = requests.get(f"{pr.url}/api/runs/big-{k}", timeout=30).json()
        assert len(run["phase"]) == MAX_WORD
        assert len(run["last_error"]) == MAX_TEXT
        assert len(run["steps"]) <= MAX_LABEL_VALUES + 1
        assert all(len(x) <= 16 * 1024 + 1 for x in run["recent_lines"])
    assert len(requests.get(pr.url + "/api/runs", timeout=30).content) < 4 << 20


def _step_words(n: int) -> str:
    def word(n):
        s = ""
        for _ in range(4):
            n, r = divmod(n, 26)
            s += chr(97 + r)
        return s
    return "".join(f"Step {k}: act_{word(k)}\n" for k in range(n))


def test_twenty_thousand_distinct_step_words_in_lines_give_bounded_series(serve, tmp_path):
    # the built-in pack takes step actions from the agents' action vocabulary only: free words are no steps
    pr = serve(_step_words(20_000) + "Step 1: CLICK\nStep 2: type\n", packs="waa")
    wait_for(lambda: sample(scrape(pr.url), "runwatch_lines_total", run_id="tailed") == 20_002, 120,
             what="the 20,002 lines read")
    text = scrape(pr.url)
    assert series(text, "runwatch_steps_total") == 2
    assert sample(text, "runwatch_steps_total", run_id="tailed", action="CLICK") == 1
    # a user's rule that does take any word: the per-run cap folds the rest into `other`
    rules = tmp_path / "anyword.yaml"
    rules.write_text("rules:\n  - name: step\n    match: 'Step (?P<index>\\d+): (?P<action>\\w+)'\n    emit: step\n")
    pr = serve(_step_words(20_000), packs="waa", rules=str(rules))
    wait_for(lambda: sample(scrape(pr.url), "runwatch_lines_total", run_id="tailed") == 20_000, 120,
             what="the 20,000 lines read")
    text = scrape(pr.url)
    assert series(text, "runwatch_steps_total") == MAX_LABEL_VALUES + 1
    assert sample(text, "runwatch_steps_total", run_id="tailed", action="other") == 20_000 - MAX_LABEL_VALUES
    assert sample(text, "runwatch_label_values_folded_total", run_id="tailed") == 20_000 - MAX_LABEL_VALUES
    assert sample(text, "runwatch_events_refused_total", reason="label_values") == 20_000 - MAX_LABEL_VALUES


def test_runs_beyond_the_cap_are_refused_until_a_finished_one_makes_room(serve):
    pr = serve()
    n = MAX_RUNS - 1                                    # the config's run counts too
    r = post(pr, [{"type": "phase", "phase": "work", "run_id": f"cap-{i}"} for i in range(n)])
    assert r.status_code == 200 and len(r.json()["runs_created"]) == n
    r = post(pr, [{"type": "phase", "phase": "work", "run_id": "one-too-many"}])
    assert r.status_code == 400
    assert r.json()["field"] == "run_id" and "refused" in r.json()["reason"] and str(MAX_RUNS) in r.json()["reason"]
    text = scrape(pr.url)
    assert sample(text, "runwatch_events_refused_total", reason="runs") == 1
    assert sample(text, "runwatch_runs") == MAX_RUNS
    # a finished run is forgotten (the one that ended first) to make room; nothing else is
    assert post(pr, [{"type": "status", "state": "succeeded", "run_id": "cap-7"}]).status_code == 200
    assert post(pr, [{"type": "status", "state": "failed", "run_id": "cap-3"}]).status_code == 200
    r = post(pr, [{"type": "phase", "phase": "work", "run_id": "newcomer"}])
    assert r.status_code == 200, r.text
    assert requests.get(pr.url + "/api/runs/cap-7", timeout=10).status_code == 404
    assert requests.get(pr.url + "/api/runs/cap-3", timeout=10).status_code == 200
    assert requests.get(pr.url + "/api/runs/newcomer", timeout=10).status_code == 200
    text = scrape(pr.url)
    assert sample(text, "runwatch_runs") == MAX_RUNS
    assert sample(text, "runwatch_events_refused_total", reason="runs") == 1


def test_agents_beyond_the_cap_are_refused_and_counted(serve):
    pr = serve()
    extra = 50
    for start in range(0, MAX_AGENTS + extra, 5000):
        r = post(pr, [{"type": "agent_started", "agent_id": f"agent-{i}", "run_id": "swarm"}
                      for i in range(start, min(start + 5000, MAX_AGENTS + extra))])
        assert r.status_code == 200
    text = scrape(pr.url)
    assert series(text, "runwatch_agent_state") == MAX_AGENTS * 4      # a state set: one sample per state
    assert sample(text, "runwatch_events_refused_total", reason="agents") == extra


def test_log_lines_of_forgotten_runs_do_not_pile_up():
    """Runs come and go through the events API (finished ones make room for new ones): the
    line paths kept for their posted log lines stay bounded by the run cap too."""
    from runwatch.model.runs import Registry
    from runwatch.web import api
    reg = Registry(max_runs=20)
    lines = api.LogLines(reg)
    for i in range(200):
        res = api.apply_body(reg, [{"type": "log", "line": f"line {i}", "run_id": f"r{i}"},
                                   {"type": "status", "state": "succeeded", "run_id": f"r{i}"}], log_lines=lines)
        assert res["applied"] == 2, res
    assert len(reg.runs) == 20
    assert len(lines.ingests) <= 20
    assert reg.evicted == 180
