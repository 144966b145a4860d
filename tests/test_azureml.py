"""Azure ML job source: the real MLClient through an injected transport, and the
`runwatch run -- az ml job stream` path with a fake `az` on PATH."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest
import requests

from support.fakes.netguard import no_network  # noqa: F401 - an autouse fixture: importing it guards every test here
from support.ports import free_port
from support.procs import child_env
from support.prom_text import sample

# azure-ai-ml takes seconds to import; the `az ml job stream` run waits on a child
pytestmark = pytest.mark.stack

JOB = "calm_kettle_7x1"


def test_status_mapping_covers_the_sdk_statuses():
    """Every status azure-ai-ml knows is mapped; only Completed, Failed and Canceled end a run."""
    pytest.importorskip("azure.ai.ml")
    from azure.ai.ml.operations._run_history_constants import RunHistoryConstants

    from runwatch.sources.azureml import STATUS, FINAL_STATUSES
    assert set(RunHistoryConstants.ALL_STATUSES) == set(STATUS)
    assert FINAL_STATUSES == {"Completed", "Failed", "Canceled"}
    assert {k for k, v in STATUS.items() if v[0] in ("succeeded", "failed", "canceled")} == FINAL_STATUSES


@pytest.fixture
def aml():
    pytest.importorskip("azure.ai.ml")
    from prometheus_client import CollectorRegistry

    from runwatch.export.collector import RunwatchCollector
    from runwatch.parse.packs import Matcher, load_builtin
    from runwatch.sources.poller import Poller
    from runwatch.model.runs import Ingest, Registry, RunSpec
    from runwatch.sources.azureml import AzureMLClient, AzureMLConfig, AzureMLSource
    from support.fakes.azure_cloud import RG, SUB, FakeAzure, FakeCredential
    from support.fakes.azureml_service import WS, FakeAzureML

    fake = FakeAzure()
    svc = FakeAzureML(fake, JOB)
    cfg = AzureMLConfig(JOB, SUB, RG, WS, poll_seconds=30)
    cred = FakeCredential()
    client = AzureMLClient.connect(cfg, cred, transport=fake.transport())
    reg = Registry()
    run = reg.add(RunSpec(id="waa-eval", kind="waa", source="azureml"))
    ingest = Ingest(reg, run, Matcher([load_builtin("waa", "<test>", 1)]))
    src = AzureMLSource(cfg, ingest, client=client)
    poller = Poller(reg, [run], src)
    prom = CollectorRegistry()
    prom.register(RunwatchCollector(reg))

    class T:
        pass
    t = T()
    t.fake, t.svc, t.src, t.reg, t.run, t.poller, t.prom, t.client = fake, svc, src, reg, run, poller, prom, client
    t.cred = cred
    t.val = lambda metric, **kw: prom.get_sample_value(metric, {"run_id": "waa-eval", **kw})
    return t


def test_adapter_contract_against_recorded_shapes(aml):
    """The three calls runwatch makes through the SDK, against recorded response shapes."""
    aml.svc.status = "Running"
    aml.svc.logs = {"user_logs/std_log.txt": b"0123456789", "azureml-logs/70_driver_log.txt": b"legacy\n",
                    "system_logs/lifecycler/execution-wrapper.log": b"sys\n"}
    info = aml.client.job(JOB)
    assert (info.status, info.job_type) == ("Running", "command")
    assert info.studio_url == aml.svc.studio_url()
    files = aml.client.log_files(JOB)
    assert set(files) == set(aml.svc.logs) and all("sig=" in u for u in files.values())
    url = files["user_logs/std_log.txt"]
    assert aml.client.read(url, 0) == b"0123456789"
    assert aml.client.read(url, 4) == b"456789"
    assert aml.client.read(url, 10) == b""                       # 416: nothing new
    assert aml.svc.ranges[:3] == ["bytes=0-8388607", "bytes=4-8388611", "bytes=10-8388617"]
    aml.svc.ignore_range = True
    assert aml.client.read(url, 4) == b"456789"                  # a 200 is cut at the offset
    assert not aml.fake.unrouted
    # every ARM/data-plane call carried our token; none went to the network
    assert all(h.get("Authorization") == "Bearer fake-arm-token"
               for m, u, h in aml.fake.calls if "management.azure.com" in u or "api.azureml.ms/history" in u)


def test_log_selection_follows_the_sdk():
    pytest.importorskip("azure.ai.ml")
    from runwatch.sources.azureml import sorted_streamable_logs
    names = ["system_logs/x.log", "user_logs/std_log_process_1.txt", "user_logs/std_log_process_0.txt",
             "user_logs/std_log.txt", "azureml-logs/70_driver_log.txt"]
    assert sorted_streamable_logs(names, "command") == ["user_logs/std_log.txt", "user_logs/std_log_process_0.txt"]
    legacy = ["azureml-logs/55_azureml-execution-tvm.txt", "azureml-logs/70_driver_log.txt", "logs/x.txt"]
    assert sorted_streamable_logs(legacy, "command") == legacy[:2]
    assert sorted_streamable_logs(["logs/azureml/executionlogs.txt", "x"], "pipeline") == [
        "logs/azureml/executionlogs.txt"]
    assert sorted_streamable_logs(["azureml-logs/hyperdrive.txt", "x"], "sweep") == ["azureml-logs/hyperdrive.txt"]


def test_status_transitions_and_growing_logs(aml, capsys):
    aml.svc.status = "Queued"
    aml.poller.step()
    assert aml.val("runwatch_run_state", runwatch_run_state="pending") == 1
    assert aml.val("runwatch_source_up", source="azureml") == 1
    assert aml.run.spec.url == aml.svc.studio_url()              # runwatch_run_info{url}

    aml.svc.status = "Running"
    first = b"Task 1/10: notepad_1\nStep 1: CLICK\nStep 2: TY"
    aml.svc.logs = {"user_logs/std_log.txt": first}
    aml.poller.step()
    assert aml.val("runwatch_run_state", runwatch_run_state="running") == 1
    assert aml.val("runwatch_lines_total") == 2                   # the partial line waits
    aml.svc.logs["user_logs/std_log.txt"] += b"PE\nTask notepad_1: SUCCESS\nTask 2/10: paint_2\n"
    aml.poller.step()
    assert aml.val("runwatch_lines_total") == 5
    assert aml.val("runwatch_tasks_completed_total") == 1
    assert aml.val("runwatch_tasks_started_total") == 2
    # only the new bytes were asked for
    assert aml.svc.ranges[-1] == f"bytes={len(first)}-{len(first) + 8 * 2**20 - 1}"

    aml.svc.status = "Paused"
    aml.poller.step()
    assert aml.val("runwatch_run_phase_info", phase="paused") == 1

    aml.svc.status = "Failed"                                     # never raises
    aml.svc.logs["user_logs/std_log.txt"] += b"Traceback: boom"  # last line without newline
    aml.poller.step()
    assert aml.val("runwatch_run_state", runwatch_run_state="failed") == 1
    assert aml.val("runwatch_lines_total") == 6                   # flushed at the end
    n = len(aml.fake.calls)
    aml.poller.step()
    assert len(aml.fake.calls) == n                               # done: no more calls
    out = capsys.readouterr().out
    assert out == ""                                              # nothing printed to stdout


def test_auth_failure_is_source_down(aml, caplog):
    from support.fakes.azure_cloud import AUTH_403
    aml.fake.route("GET", r"/jobs/" + JOB + r"\?", lambda req, m: AUTH_403)
    d = aml.poller.step()
    assert d >= 300 and aml.val("runwatch_source_up", source="azureml") == 0
    assert any("authentication failed (HTTP 403)" in r.getMessage() for r in caplog.records)


def test_missing_workspace_settings_name_the_env_vars(monkeypatch):
    from runwatch.sources.poller import SourceError
    from runwatch.sources.azureml import AzureMLConfig
    for v in ("AZURE_SUBSCRIPTION_ID", "AZURE_ML_RESOURCE_GROUP", "AZURE_ML_WORKSPACE_NAME"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(SourceError, match="AZURE_ML_WORKSPACE_NAME"):
        AzureMLConfig("j", "sub", "rg").resolved()
    monkeypatch.setenv("AZURE_ML_WORKSPACE_NAME", "ws")
    assert AzureMLConfig("j", "sub", "rg").resolved().workspace == "ws"


# ---------------------------------------------------------------- az ml job stream

AZ_STREAM = f"""RunId: {JOB}
Web View: https://ml.azure.com/runs/{JOB}?wsid=/subscriptions/0000/resourcegroups/rg-eval/workspaces/ws-eval

Streaming azureml-logs/hyperdrive.txt
=====================================

Streaming user_logs/std_log.txt
===============================

Downloading from https://wsevalstore0123.blob.core.windows.net/azureml/run.tar?sv=2019-07-07&sr=b&sig=AbCdEfSECRET%3D&se=2025-03-01T18%3A00%3A00Z&sp=r
Task 1/3: notepad_1
Step 1: CLICK
Task notepad_1: SUCCESS
Task 2/3: paint_2
Task paint_2: FAIL
Task 3/3: save_3
Task save_3: SUCCESS

Execution Summary
=================
RunId: {JOB}
Web View: https://ml.azure.com/runs/{JOB}?wsid=/subscriptions/0000/resourcegroups/rg-eval/workspaces/ws-eval
"""


def test_runwatch_run_az_ml_job_stream(tmp_path):
    """The simplest path: runwatch runs `az ml job stream` and reads its output."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "stream.txt").write_text(AZ_STREAM)
    az = bindir / "az"
    az.write_text(f"""#!/bin/sh
[ "$1 $2 $3 $4 $5" = "ml job stream --name {JOB}" ] || {{ echo "fake az: unexpected $*" >&2; exit 2; }}
cat "{tmp_path}/stream.txt"
sleep 1.5
""")
    az.chmod(az.stat().st_mode | stat.S_IEXEC)
    port = free_port()
    env = child_env(PATH=f"{bindir}:{os.environ['PATH']}")
    p = subprocess.Popen([sys.executable, "-m", "runwatch", "run", "--listen", f"127.0.0.1:{port}", "--pack", "waa",
                          "--run-id", "aml-job", "--grace", "5", "--", "az", "ml", "job", "stream", "--name", JOB],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        text = ""
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if sample(text, "runwatch_tasks_completed_total", run_id="aml-job") == 3:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert sample(text, "runwatch_tasks_completed_total", run_id="aml-job") == 3
        assert sample(text, "runwatch_tasks_failed_total", run_id="aml-job") == 1
        assert sample(text, "runwatch_tasks_planned", run_id="aml-job") == 3
        assert "AbCdEfSECRET" not in text
    finally:
        p.terminate()
        out, err = p.communicate(timeout=20)
    assert out.decode() == AZ_STREAM                   # passed through unchanged


# ---------------------------------------------------------------- what a real workspace does

def _logs_up(aml):
    return aml.val("runwatch_source_up", source="azureml_logs")


@pytest.mark.parametrize("failure", ["FIREWALL_403", "BUSY_503", "HANGS"])
def test_a_failing_log_read_never_hides_the_status(aml, caplog, failure):
    """Status first; logs fail on their own: counted, retried next poll, the job's state still moves."""
    import logging

    from support.fakes import azureml_service
    from support.fakes.azure_cloud import HANGS
    caplog.set_level(logging.INFO, "runwatch")
    aml.svc.status = "Running"
    aml.svc.logs = {"user_logs/std_log.txt": b"Task 1/2: a\nTask a: SUCCESS\n"}
    aml.svc.blob_fail = HANGS if failure == "HANGS" else getattr(azureml_service, failure)
    assert aml.poller.step() == 30                                  # no backoff: the job answered
    assert aml.val("runwatch_run_state", runwatch_run_state="running") == 1
    assert aml.val("runwatch_source_up", source="azureml") == 1
    assert _logs_up(aml) == 0
    aml.svc.status = "Completed"
    assert aml.poller.step() == 30
    assert aml.val("runwatch_run_state", runwatch_run_state="succeeded") == 1   # not stuck in running
    assert aml.val("runwatch_source_errors_total", source="azureml_logs") == 2
    assert aml.val("runwatch_lines_total") == 0
    warnings = [r.getMessage() for r in caplog.records if "logs" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "sig=" not in warnings[0]       # one line per distinct failure, no SAS
    aml.svc.blob_fail = None                                       # the firewall opens: the logs are read
    aml.poller.step()
    assert _logs_up(aml) == 1 and aml.val("runwatch_lines_total") == 2
    assert aml.val("runwatch_tasks_completed_total") == 1
    n = len(aml.fake.calls)
    aml.poller.step()
    assert len(aml.fake.calls) == n                                # ended and read to the end: done


def test_logs_that_never_become_readable_end_the_source_after_the_job(aml):
    from support.fakes.azureml_service import FIREWALL_403
    aml.svc.status = "Completed"
    aml.svc.logs = {"user_logs/std_log.txt": b"x\n"}
    aml.svc.blob_fail = FIREWALL_403
    for _ in range(20):
        aml.poller.step()
    assert aml.val("runwatch_run_state", runwatch_run_state="succeeded") == 1
    n = len(aml.fake.calls)
    aml.poller.step()
    assert len(aml.fake.calls) == n                                # it gave up on the logs, said so
    assert aml.src.done and _logs_up(aml) == 0


# Each status the service documents (JobStatus in azure-ai-ml, the REST API's job status):
# -> (runwatch state after it, phase after it, still polled afterwards)
DOCUMENTED = [
    ("NotStarted", "pending", None, True), ("Queued", "pending", None, True),
    ("Preparing", "pending", None, True), ("Provisioning", "pending", None, True),
    ("Starting", "pending", None, True),                      # e.g. requeued after a node was preempted
    ("Running", "running", None, True),
    ("Finalizing", "running", "finalizing", True),
    ("CancelRequested", "running", "cancel_requested", True),   # not over until Canceled
    ("NotResponding", "running", "not_responding", True),       # may return to any earlier state
    ("Paused", "running", "paused", True),
    ("Completed", "succeeded", None, False), ("Failed", "failed", None, False),
    ("Canceled", "canceled", None, False),
]


@pytest.mark.parametrize("status,state,phase,polled", DOCUMENTED, ids=[d[0] for d in DOCUMENTED])
def test_each_documented_status(aml, status, state, phase, polled):
    aml.svc.status = "Running"
    aml.poller.step()
    aml.svc.status = status
    aml.poller.step()
    assert aml.val("runwatch_run_state", runwatch_run_state=state) == 1
    got = [s.labels["phase"] for m in aml.prom.collect() if m.name == "runwatch_run_phase" for s in m.samples]
    assert got == ([phase] if phase else [])
    n = aml.svc.job_gets
    aml.poller.step()
    assert (aml.svc.job_gets > n) == polled


def test_not_responding_and_back(aml):
    """The service documents NotResponding as the one status exempt from the order: a job returns from it."""
    for status in ("Running", "NotResponding", "Running", "CancelRequested", "Running", "Paused", "Running"):
        aml.svc.status = status
        aml.poller.step()
        assert aml.val("runwatch_run_state", runwatch_run_state="running") == 1, status
        assert aml.run.state.end_ts is None
    assert aml.run.state.phase is None                         # paused/not_responding cleared
    aml.svc.status = "Completed"
    aml.poller.step()
    assert aml.val("runwatch_run_state", runwatch_run_state="succeeded") == 1


def test_every_request_has_a_timeout(aml):
    from support.fakes.azure_cloud import HANGS
    aml.svc.status = "Running"
    aml.svc.logs = {"user_logs/std_log.txt": b"x\n"}
    aml.poller.step()
    assert aml.fake.timeouts and all(isinstance(t, tuple) and None not in t and max(t) <= 120
                                     for t in aml.fake.timeouts), aml.fake.timeouts
    aml.fake.route("GET", r"/jobs/" + JOB + r"\?", lambda req, m: HANGS)
    d = aml.poller.step()                                      # a hanging ARM call fails the poll, clearly
    assert d >= 30 and "timed out" in aml.poller.last_error
    assert aml.val("runwatch_source_up", source="azureml") == 0


def test_one_token_for_many_polls(aml):
    """jobs.get asks for a token on every call; the credential runwatch hands over caches it."""
    aml.svc.status = "Running"
    for _ in range(4):
        aml.poller.step()
    assert len(aml.cred.scopes) == 1, aml.cred.scopes


def test_a_log_file_that_shrinks_is_read_again_from_the_start(aml):
    aml.svc.status = "Running"
    aml.svc.logs = {"user_logs/std_log.txt": b"Task 1/3: a\nTask a: SUCCESS\nTask 2/3: b\n"}
    aml.poller.step()
    assert aml.val("runwatch_lines_total") == 3
    aml.svc.logs = {"user_logs/std_log.txt": b"Task 3/3: c\n"}      # rewritten: shorter than our offset
    aml.poller.step()
    aml.poller.step()
    assert aml.val("runwatch_lines_total") == 4 and aml.val("runwatch_tasks_started_total") == 3


def test_arm_error_message_not_the_reason_phrase(aml):
    from support.fakes.azure_cloud import AUTH_403
    aml.fake.route("GET", r"/jobs/" + JOB + r"\?", lambda req, m: AUTH_403)
    aml.poller.step()
    assert "does not have authorization to perform action" in aml.poller.last_error
    assert "Forbidden" not in aml.poller.last_error


def test_sdk_loggers_stay_quiet_at_info(aml, caplog):
    import logging
    caplog.set_level(logging.INFO)                                 # root at INFO, as `--log-level info`
    aml.svc.status = "Running"
    aml.svc.logs = {"user_logs/std_log.txt": b"x\n"}
    aml.poller.step()
    chatty = [r for r in caplog.records if r.name.startswith("azure") and r.levelno < logging.WARNING]
    assert not chatty, [r.getMessage()[:80] for r in chatty]
    from support.fakes.azure_cloud import AUTH_403
    aml.fake.route("GET", r"/jobs/" + JOB + r"\?", lambda req, m: AUTH_403)
    aml.poller.step()                                              # runwatch says it once; the SDK not again
    assert not [r for r in caplog.records if r.name.startswith("azure")], caplog.records[-1].getMessage()


def test_pipeline_child_of_an_unlisted_type_falls_back_to_the_legacy_logs():
    pytest.importorskip("azure.ai.ml")
    from runwatch.sources.azureml import sorted_streamable_logs
    legacy = ["azureml-logs/55_azureml-execution-tvm.txt", "azureml-logs/70_driver_log.txt"]
    assert sorted_streamable_logs(legacy + ["logs/x.txt"], "parallel") == legacy
    assert sorted_streamable_logs(legacy, "") == legacy


def test_a_job_canceled_while_queued_never_reads_as_running(aml):
    seen = []
    for status in ("Queued", "CancelRequested", "Canceled"):
        aml.svc.status = status
        aml.poller.step()
        seen.append(aml.run.state.state)
    assert seen == ["pending", "pending", "canceled"]
