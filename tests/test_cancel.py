"""Stopping a run: `runwatch run -- sleep 600` canceled through the API ends
as canceled with its child gone; without the token nothing happens; runs that
runwatch did not launch answer 409."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from support.procs import child_env, runwatch_cmd
from support.waits import wait_for
from runwatch.model.runs import Registry, RunSpec
from runwatch.web.server import Server

pytestmark = pytest.mark.stack     # each test waits on a real child through grace and kill periods

TOKEN = "cancel-token"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def env(**kw):
    return child_env(RUNWATCH_TOKEN=TOKEN, **kw)


def test_cancel_sleep_through_api_and_cli(runwatch_proc):
    rw = runwatch_proc("run", "--run-id", "c1", "--grace", "3", "--kill-after", "5", "--", "sleep", "600",
                       env=env()).wait_up()
    run = wait_for(lambda: (j := requests.get(rw.url + "/api/runs/c1", timeout=2).json()).get("state") == "running"
                   and j, what="run c1 running")         # pending until the command has started
    assert run["cancellable"]
    pid = run["process"]["pid"]
    assert alive(pid)

    # no token, wrong token: refused, child untouched
    r = requests.post(rw.url + "/api/runs/c1/cancel", timeout=5)
    assert r.status_code == 401
    r = requests.post(rw.url + "/api/runs/c1/cancel", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401
    time.sleep(0.2)
    assert alive(pid)
    assert requests.get(rw.url + "/api/runs/c1", timeout=2).json()["state"] == "running"

    # the cancel command (token from RUNWATCH_TOKEN)
    out = subprocess.run(runwatch_cmd("cancel", "c1", "--url", rw.url), env=env(), capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "SIGTERM" in out.stdout
    wait_for(lambda: requests.get(rw.url + "/api/runs/c1", timeout=2).json()["state"] == "canceled",
             timeout=5, what="state canceled")
    assert not alive(pid)
    j = requests.get(rw.url + "/api/runs/c1", timeout=2).json()
    # sleep dies of the SIGTERM (128+15); a SIGKILL after --kill-after would say 137
    assert j["status_reason"] == "canceled through the API; exit code 143"
    assert "canceled" in requests.get(rw.url + "/metrics", timeout=2).text
    assert j["end_ts"] is not None
    # canceling again: the run has ended
    r = requests.post(rw.url + "/api/runs/c1/cancel", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 409 and "already ended" in r.json()["error"]
    assert rw.p.wait(60) == 143           # SIGTERM: 128 + 15
    assert "canceled" in rw.stderr_text()


def test_cancel_escalates_to_sigkill(runwatch_proc, tmp_path):
    termed = tmp_path / "got-sigterm"          # the child notes the SIGTERM and goes on
    prog = ("import signal, time\n"
            f"signal.signal(signal.SIGTERM, lambda *_: open({str(termed)!r}, 'w').close())\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n")
    rw = runwatch_proc("run", "--run-id", "stubborn", "--grace", "0", "--kill-after", "1", "--",
                       sys.executable, "-c", prog, env=env()).wait_up()
    run = wait_for(lambda: (lambda j: j if j["lines"] else None)(
        requests.get(rw.url + "/api/runs/stubborn", timeout=2).json()), what="child ready")
    pid = run["process"]["pid"]
    r = requests.post(rw.url + "/api/runs/stubborn/cancel", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=5)
    assert r.status_code == 202 and r.json()["kill_after_seconds"] == 1
    wait_for(termed.exists, 60, what="the SIGTERM to reach the child")     # first SIGTERM, which it survives ...
    assert rw.p.wait(60) == 137           # ... then SIGKILL after 1 s: 128 + 9
    assert not alive(pid)


def test_runs_not_launched_here_answer_409():
    reg = Registry()
    reg.add(RunSpec(id="tailed", source="file"))
    srv = Server(reg, ("127.0.0.1", 0), token=TOKEN).start()
    try:
        base = f"http://{srv.address}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = requests.post(base + "/api/runs/tailed/cancel", headers=auth, timeout=5)
        assert r.status_code == 409 and "did not launch it" in r.json()["error"]
        assert requests.post(base + "/api/runs/nope/cancel", headers=auth, timeout=5).status_code == 404
        assert requests.post(base + "/api/runs/tailed/cancel", timeout=5).status_code == 401
    finally:
        srv.stop()
    # no token configured at all: writes are refused outright
    srv = Server(reg, ("127.0.0.1", 0)).start()
    try:
        r = requests.post(f"http://{srv.address}/api/runs/tailed/cancel", timeout=5)
        assert r.status_code == 403
    finally:
        srv.stop()
