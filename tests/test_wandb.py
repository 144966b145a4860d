"""W&B source: the real wandb.Api against a local GraphQL server (no network)."""
from __future__ import annotations

import logging
import random

import pytest

pytest.importorskip("wandb")

from prometheus_client import CollectorRegistry  # noqa: E402

from runwatch.export.collector import RunwatchCollector  # noqa: E402
from runwatch.sources.poller import Poller  # noqa: E402
from runwatch.model.runs import Registry, RunSpec  # noqa: E402
from runwatch.sources.wandb_run import WandbConfig, WandbSource  # noqa: E402
from support.fakes.netguard import no_network  # noqa: E402,F401
from support.fakes.wandb_server import FakeWandb, membership_node, run_node  # noqa: E402

KEY = "0123456789abcdef0123456789abcdef01234567"
HIST = ("ent", "proj", "run-abc123-history:latest")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_API_KEY", KEY)
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
    src.api                                                # log in first
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
