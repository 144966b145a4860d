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

from support.fakes.netguard import no_network  # noqa: F401
from support.ports import free_port
from support.procs import child_env
from support.prom_text import sample

# azure-ai-ml takes seconds to import; the `az ml job stream` run waits on a child
pytestmark = pytest.mark.stack

JOB = "calm_kettle_7x1"


def test_status_mapping_table():
    from runwatch.sources.azureml import STATUS
    assert {k for k, v in STATUS.items() if v[0] == "pending"} == {
        "NotStarted", "Queued", "Preparing", "Provisioning", "Starting"}
    assert STATUS["Finalizing"] == ("running", None) and STATUS["Completed"] == ("succeeded", None)
    assert STATUS["NotResponding"][0] == "failed" and STATUS["CancelRequested"][0] == "canceled"
    assert STATUS["Paused"] == (None, "paused")


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
    client = AzureMLClient.connect(cfg, FakeCredential(), transport=fake.transport())
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
    assert aml.svc.ranges[-1] == f"bytes={len(first)}-{len(first) + 8 * 2**20 - 1}"              # only the new bytes were asked for

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
