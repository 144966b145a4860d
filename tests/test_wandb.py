"""W&B source: the real wandb.Api against a local GraphQL server (no network)."""
from __future__ import annotations

import logging
import random

import pytest

pytest.importorskip("wandb")

from prometheus_client import CollectorRegistry

from runwatch.export.collector import RunwatchCollector
from runwatch.sources.poller import Poller
from runwatch.model.runs import Registry, RunSpec
from runwatch.sources.wandb_run import WandbConfig, WandbSource
from support.fakes.netguard import no_network  # noqa: F401 - an autouse fixture: importing it guards every test here
from support.fakes.wandb_server import FakeWandb, membership_node, run_node

KEY = "0123456789abcdef0123456789abcdef01234567"
HIST = ("ent", "proj", "run-abc123-history:latest")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    # wandb-core starts with the first Api(); on a busy machine that can outlast the short
    # request timeout the tests use (to keep injected 5xx short). Start it outside any request.
    from wandb.sdk import wandb_setup
    wandb_setup.singleton().ensure_service()
    f = FakeWandb().start()
    yield f
    f.stop()


def setup(fake, **kw):
    cfg = WandbConfig(entity="ent", project="proj", run_id="abc123", base_url=fake.url, poll_seconds=30,
                      timeout=2, **kw)
    src = WandbSource(cfg)
    reg = Registry()
    run = reg.add(RunSpec(id="train-7", kind="training", source="wandb"))
    poller = Poller(reg, [run], src, rng=random.Random(3))
    prom = CollectorRegistry()
    prom.register(RunwatchCollector(reg))
    return src, reg, run, poller, prom


def val(prom, metric, **labels):
    return prom.get_sample_value(metric, {"run_id": "train-7", **labels})


@pytest.mark.stack
def test_state_summary_url_and_history_artifact_after_n_polls(fake):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "running", {"loss": 0.9, "acc": 0.5, "_step": 9})
    src, reg, run, poller, prom = setup(fake, summary=["acc", "loss", "absent"])
    assert poller.step() == 30
    assert val(prom, "runwatch_source_up", source="wandb") == 1
    assert val(prom, "runwatch_run_state", runwatch_run_state="running") == 1
    assert val(prom, "runwatch_score", name="acc") == 0.5 and val(prom, "runwatch_score", name="loss") == 0.9
    assert val(prom, "runwatch_score", name="absent") is None
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 0
    info = [s for s in next(iter(m for m in prom.collect() if m.name == "runwatch_run")).samples][0]
    assert info.labels["url"] == f"{fake.url}/ent/proj/runs/abc123"

    # the run finishes; the history artifact shows up two polls later
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {"loss": 0.2, "acc": 0.93})
    poller.step()
    assert val(prom, "runwatch_run_state", runwatch_run_state="succeeded") == 1   # not stuck in Api's cache
    assert val(prom, "runwatch_score", name="acc") == 0.93
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 0
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 0
    fake.artifacts[HIST] = membership_node(*HIST, created_at="2025-03-01T12:00:00Z")
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 1
    assert val(prom, "runwatch_artifact_available_timestamp_seconds", artifact="run-abc123-history") == 1740830400
    n = fake.count("ArtifactMembershipByName")
    poller.step()                                          # available: not asked again
    assert fake.count("ArtifactMembershipByName") == n
    assert not fake.unknown
    assert all(h.startswith("Basic ") for h in fake.auth_headers)


@pytest.mark.parametrize("wstate,state", [("crashed", "failed"), ("failed", "failed"), ("killed", "canceled"),
                                          ("preempted", "failed"), ("pending", "pending")])
def test_terminal_states(fake, wstate, state):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", wstate, {})
    src, reg, run, poller, prom = setup(fake, history_artifact=False)
    poller.step()
    assert val(prom, "runwatch_run_state", runwatch_run_state=state) == 1


def test_configured_artifacts_and_pending_artifact(fake):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})
    fake.artifacts[("ent", "proj", "model-abc123:latest")] = membership_node("ent", "proj", "model-abc123:latest",
                                                                             state="PENDING", atype="model")
    src, reg, run, poller, prom = setup(fake, artifacts=["model-abc123"], history_artifact=False)
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="model-abc123") == 0   # uploading: not yet
    fake.artifacts[("ent", "proj", "model-abc123:latest")] = membership_node("ent", "proj", "model-abc123:latest",
                                                                             atype="model")
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="model-abc123") == 1


@pytest.mark.stack
def test_server_error_is_source_down_never_artifact_missing(fake, caplog):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})
    fake.artifacts[HIST] = membership_node(*HIST)
    src, reg, run, poller, prom = setup(fake)
    caplog.set_level(logging.INFO, "runwatch")
    _ = src.api                                            # log in first (the property logs in)
    fake.fail_next = [500] * 1000
    d = poller.step()
    assert d >= 30
    assert val(prom, "runwatch_source_up", source="wandb") == 0
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") is None   # not "missing"
    fake.fail_next = []
    poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 1
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 1
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "source down" in text and KEY not in text


def test_malformed_artifact_answer_is_an_error_not_missing(fake, monkeypatch):
    """artifact_exists() would say False here; runwatch must say 'source down'."""
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})
    src, reg, run, poller, prom = setup(fake)
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 0
    real_answer = fake.answer

    def broken(op, v):
        if op == "ArtifactMembershipByName":
            return 200, {"data": {"project": {}}}          # what a broken proxy or schema drift looks like
        return real_answer(op, v)

    monkeypatch.setattr(fake, "answer", broken)
    assert src.api.artifact_exists("ent/proj/run-abc123-history:latest") is False   # the SDK's trap
    poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 0
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 0   # unchanged


@pytest.mark.stack
def test_rate_limited_backs_off_and_recovers(fake):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "running", {})
    src, reg, run, poller, prom = setup(fake, history_artifact=False)
    poller.step()
    fake.fail_next = [429] * 1000
    d1 = poller.step()
    d2 = poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 0
    assert 30 * 0.8 <= d1 and d2 > d1                     # exponential backoff
    fake.fail_next = []
    assert poller.step() == 30
    assert val(prom, "runwatch_source_up", source="wandb") == 1


def test_missing_run_is_waited_for(fake):
    src, reg, run, poller, prom = setup(fake, history_artifact=False)
    poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 1
    assert val(prom, "runwatch_run_state", runwatch_run_state="pending") == 1


def test_bad_api_key_is_an_auth_failure(fake, caplog):
    fake.bad_key = True
    src, reg, run, poller, prom = setup(fake)
    caplog.set_level(logging.WARNING, "runwatch")
    assert poller.step() >= 300
    assert val(prom, "runwatch_source_up", source="wandb") == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused the API key" in text and KEY not in text


def test_no_api_key(fake, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY")
    src, reg, run, poller, prom = setup(fake)
    poller.step()
    assert poller.last_error.endswith("no API key: set WANDB_API_KEY")


def test_artifact_deadline_is_exported_for_the_alert(fake):
    """RunwatchArtifactMissing uses runwatch_artifact_deadline_seconds where a source configures one."""
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {"acc": 0.9})
    src, reg, run, poller, prom = setup(fake, artifact_deadline_minutes=10)
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 0
    assert val(prom, "runwatch_artifact_deadline_seconds", artifact="run-abc123-history") == 600
    src2, reg2, run2, poller2, prom2 = setup(fake)
    poller2.step()
    assert val(prom2, "runwatch_artifact_deadline_seconds", artifact="run-abc123-history") is None   # default applies


# ---------------------------------------------------------------- errors by their cause

@pytest.mark.stack()   # waits out real client timeouts and retries
def test_server_errors_at_login_are_not_a_refused_key(fake, caplog):
    fake.fail_next = [500] * 10000
    src, reg, run, poller, prom = setup(fake)
    d = poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 0
    assert "refused the API key" not in poller.last_error
    assert "answered with errors" in poller.last_error and d < 300


@pytest.mark.stack()   # waits out real client timeouts and retries
def test_an_unreachable_server_is_a_network_problem(fake, monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                       # nothing listens here
    cfg = WandbConfig(entity="ent", project="proj", run_id="abc123", base_url=f"http://127.0.0.1:{port}",
                      poll_seconds=30, timeout=2)
    reg = Registry()
    run = reg.add(RunSpec(id="train-7", kind="training", source="wandb"))
    poller = Poller(reg, [run], WandbSource(cfg), rng=random.Random(3))
    d = poller.step()
    assert "cannot connect" in poller.last_error and "refused the API key" not in poller.last_error
    assert d < 300


def test_a_401_is_a_refused_key(fake):
    fake.fail_next = [401] * 10000
    src, reg, run, poller, prom = setup(fake)
    assert poller.step() >= 300
    assert "refused the API key" in poller.last_error


def test_a_dead_service_process_is_restarted(fake, caplog):
    from support.fakes.wandb_server import kill_service
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "running", {})
    src, reg, run, poller, prom = setup(fake, history_artifact=False)
    poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 1
    kill_service()
    poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 0
    assert "service process" in poller.last_error
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})
    poller.step()                                          # a new wandb-core, a new login
    assert val(prom, "runwatch_source_up", source="wandb") == 1
    assert val(prom, "runwatch_run_state", runwatch_run_state="succeeded") == 1


def test_a_project_the_key_cannot_see_is_source_down_not_missing(fake):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})
    fake.hidden.add(("ent", "proj"))
    src, reg, run, poller, prom = setup(fake)
    d = poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 0
    assert "not visible" in poller.last_error and d >= 300
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") is None   # not "missing"
    assert val(prom, "runwatch_run_state", runwatch_run_state="pending") == 1


def test_an_artifact_in_a_project_the_key_cannot_see_is_not_missing(fake):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})
    fake.hidden.add(("ent", "other"))
    src, reg, run, poller, prom = setup(fake, history_artifact=False, artifacts=["ent/other/model-abc123"])
    poller.step()
    assert val(prom, "runwatch_source_up", source="wandb") == 0
    assert "not visible" in poller.last_error
    assert val(prom, "runwatch_artifact_available", artifact="model-abc123") is None


def test_a_resumed_run_gets_a_new_end_time(fake, caplog):
    now = [1_740_000_000.0]
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})
    cfg = WandbConfig(entity="ent", project="proj", run_id="abc123", base_url=fake.url, poll_seconds=30, timeout=2,
                      artifact_deadline_minutes=10)
    src = WandbSource(cfg, clock=lambda: now[0])
    reg = Registry()
    run = reg.add(RunSpec(id="train-7", kind="training", source="wandb"))
    poller = Poller(reg, [run], src, clock=lambda: now[0], rng=random.Random(3))
    caplog.set_level(logging.WARNING, "runwatch")
    poller.step()
    now[0] += 300
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "running", {})      # resumed
    poller.step()
    now[0] += 1800
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})
    poller.step()
    now[0] += 300                                          # 5 min after the second end: within the deadline
    poller.step()
    assert not [r for r in caplog.records if "still missing" in r.getMessage()]
    now[0] += 600
    poller.step()
    assert [r for r in caplog.records if "still missing" in r.getMessage()]


def test_a_shared_latest_alias_from_an_older_run_is_not_this_runs_artifact(fake):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {})   # created 2025-03-01T10:00
    key = ("ent", "proj", "model:latest")
    fake.artifacts[key] = membership_node(*key, created_at="2025-02-20T09:00:00Z", atype="model")
    src, reg, run, poller, prom = setup(fake, history_artifact=False, artifacts=["model"])
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="model") == 0
    fake.artifacts[key] = membership_node(*key, created_at="2025-03-01T11:00:00Z", atype="model")
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="model") == 1


def test_nothing_is_asked_once_the_run_is_over_and_its_artifacts_are_in(fake):
    fake.runs[("ent", "proj", "abc123")] = run_node("abc123", "finished", {"acc": 0.9})
    fake.artifacts[HIST] = membership_node(*HIST)
    src, reg, run, poller, prom = setup(fake, summary=["acc"])
    poller.step()
    assert val(prom, "runwatch_artifact_available", artifact="run-abc123-history") == 1
    n = len(fake.requests)
    for _ in range(3):
        poller.step()
    assert len(fake.requests) == n
    assert val(prom, "runwatch_source_up", source="wandb") == 1


def test_behind_a_proxy_a_timeout_does_not_claim_no_connection(monkeypatch):
    """A direct TCP try says nothing when requests go through a proxy."""
    from wandb.sdk.lib.service.service_connection import WandbApiFailedError

    from runwatch.sources.wandb_run import wandb_error
    e = WandbApiFailedError("Failed to execute API request: the service process is busy and did not respond in time.")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    err = wandb_error(e, "wandb run e/p/r", "https://api.wandb.ai")
    assert "through the proxy" in str(err) and not err.auth


def test_the_server_checked_is_the_one_wandb_uses(fake, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.internal")
    src = WandbSource(WandbConfig(entity="e", project="p", run_id="r"))
    assert src.base_url == "https://wandb.example.internal"
    monkeypatch.delenv("WANDB_BASE_URL")
    from wandb.sdk.lib import urls
    assert src.base_url == urls.DEFAULT_BASE_URL
