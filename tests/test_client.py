"""runwatch.client against a live runwatch and against none: events arrive,
log records arrive redacted, and with nothing listening the job neither slows
nor fails."""
from __future__ import annotations

import logging
import socket
import threading

import pytest
import requests

from support.prom_text import sample
from support.waits import wait_for
from runwatch.client import RunwatchClient, RunwatchLogHandler
from runwatch.model.runs import Registry
from runwatch.web.server import Server

TOKEN = "client-token"


@pytest.fixture
def live():
    srv = Server(Registry(), ("127.0.0.1", 0), events=True, token=TOKEN, rate=10000).start()
    srv.base = f"http://{srv.address}"
    yield srv
    srv.stop()


def dead_url() -> str:
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_events_arrive_batched(live):
    c = RunwatchClient(live.base, TOKEN, "cl-run", kind="workflow", flush_interval=0.05)
    for _ in range(500):
        c.event("step", action="think")
    c.event("agent_started", agent_id="planner")
    c.event("data_flow", from_agent="planner", to_agent="coder", data_size=1234)
    c.event("progress_update", progress=25, message="a quarter")
    assert c.flush(5)
    c.close()
    m = requests.get(live.base + "/metrics", timeout=5).text
    assert sample(m, "runwatch_steps_total", run_id="cl-run", action="think") == 500
    assert sample(m, "runwatch_data_flow_bytes_total", run_id="cl-run", from_agent="planner", to_agent="coder") == 1234
    assert sample(m, "runwatch_run_progress_ratio", run_id="cl-run") == 0.25
    assert c.stats()["sent"] == 503 and not c.stats()["dropped"]
    assert c.event("step") is False and c.dropped["closed"] == 1       # after close: dropped, no raise


def test_invalid_events_are_counted_not_raised(live):
    c = RunwatchClient(live.base, TOKEN, "cl-bad", flush_interval=0.05)
    c.event("progress_update", progress=250)
    c.event("no_such_type", x=1)
    c.event("step", action="ok")
    c.event("step", action=object())      # not JSON: sent as its str(), still no exception
    assert c.flush(5)
    assert c.dropped["invalid"] == 2 and c.sent == 2 and c.rejected == 0   # refused before a POST
    assert "unknown event type" in c.last_error


def test_wrong_token_drops_and_counts(live):
    c = RunwatchClient(live.base, "wrong", "cl-auth", flush_interval=0.05)
    c.event("step")
    assert c.flush(5)
    assert c.dropped["unauthorized"] == 1 and c.sent == 0


def test_log_handler_forwards_records_redacted(live):
    c = RunwatchClient(live.base, TOKEN, "cl-log", flush_interval=0.05)
    h = RunwatchLogHandler(c)
    logger = logging.getLogger("test_client.job")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(h)
    try:
        logger.info("epoch 1 done, loss 0.31")
        logger.info("fetched https://acct.blob.core.windows.net/c/x?sv=2022-11-02&sig=AbC123%2Bsecret%3D")
        try:
            raise ValueError("bad batch")
        except ValueError:
            logger.exception("training step failed")
        logger.debug("not at INFO: filtered by the logger")
        assert c.flush(5)
    finally:
        logger.removeHandler(h)
    j = requests.get(live.base + "/api/runs/cl-log", timeout=5).json()
    text = "\n".join(j["recent_lines"])
    assert "INFO test_client.job: epoch 1 done, loss 0.31" in text
    assert "ValueError: bad batch" in text and "Traceback (most recent call last):" in text
    assert "sig=<redacted>" in text and "AbC123" not in text
    assert j["errors"] == 1                       # the ERROR record
    assert j["lines"] >= 5 and "not at INFO" not in text


def test_nothing_listening_never_blocks_the_job_or_raises(monkeypatch):
    """The job's thread only queues: every HTTP attempt happens on the client's own
    thread (bench/bench_client.py prints what a call costs)."""
    import runwatch.client as client_mod
    callers = set()
    real_urlopen = client_mod.urllib.request.urlopen

    def spying_urlopen(*a, **kw):
        callers.add(threading.current_thread().name)
        return real_urlopen(*a, **kw)
    monkeypatch.setattr(client_mod.urllib.request, "urlopen", spying_urlopen)
    url = dead_url()
    c = RunwatchClient(url, TOKEN, "nobody", flush_interval=0.01, max_queue=1000)
    n = 20000
    for i in range(n):
        assert c.event("step", action="click", index=i) in (True, False)   # never raises
    # the background sender drops what it cannot deliver, and the queue stays bounded
    wait_for(lambda: c.last_error, what="the sender's first failed attempt")
    assert c.queued <= 1000
    assert c.dropped["queue_full"] + c.dropped["unreachable"] >= n - 1000
    assert "cannot reach" in c.last_error
    # a logging handler pointed at nothing: logging goes on, nothing raises
    logger = logging.getLogger("test_client.nobody")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    h = RunwatchLogHandler(c)
    logger.addHandler(h)
    try:
        for i in range(2000):
            logger.info("line %d", i)
    finally:
        logger.removeHandler(h)
    wait_for(lambda: callers, what="the sender thread to try")
    assert callers == {"runwatch-client"}          # never the job's (this) thread
    closer = threading.Thread(target=c.close, kwargs={"timeout": 0.5})   # flush gives up, close never hangs
    closer.start()
    closer.join(60)
    assert not closer.is_alive(), "close() hangs against an unreachable runwatch"
    assert c.queued == 0 and not c.event("step", action="late")       # closed: later events are dropped


def test_client_recovers_when_runwatch_comes_up():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = RunwatchClient(f"http://127.0.0.1:{port}", TOKEN, "late", flush_interval=0.02)
    c.event("step", action="early")
    assert c.flush(2)
    assert c.dropped["unreachable"] == 1
    srv = Server(Registry(), ("127.0.0.1", port), events=True, token=TOKEN).start()
    try:
        c.event("step", action="late")
        assert c.flush(5)        # flush skips the back-off
        assert c.sent == 1
        m = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert sample(m, "runwatch_steps_total", run_id="late", action="late") == 1
    finally:
        srv.stop()
