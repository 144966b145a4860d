"""Azure VM source: the real azure-mgmt-compute client through an injected transport."""
from __future__ import annotations

import logging
import random

import pytest

pytest.importorskip("azure.mgmt.compute")

from prometheus_client import CollectorRegistry

from runwatch.export.collector import RunwatchCollector
from runwatch.sources.poller import Poller
from runwatch.sources.pricing import RetailPrices
from runwatch.model.runs import Registry, RunSpec
from runwatch.sources.azure_vm import AzureVMConfig, AzureVMSource, compute_client
from support.fakes.azure_cloud import (AUTH_401, AUTH_403, RG, SUB, THROTTLED_429, FakeAzure,
                                       FakeCredential, VMScript)
from support.fakes.netguard import no_network  # noqa: F401 - an autouse fixture: importing it guards every test here
from support.fakes.prices_server import FakePrices
from support.procs import child_env


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def prices(tmp_path):
    p = FakePrices()
    yield RetailPrices(base_url=p.api, cache_path=str(tmp_path / "prices.json"))
    p.stop()


def setup(script, prices, clock, price_per_hour=None, **vm_kw):
    fake = FakeAzure()
    VMScript(fake, "waa-vm", script, **vm_kw)
    cred = FakeCredential()
    client = compute_client(SUB, cred, transport=fake.transport())
    src = AzureVMSource(AzureVMConfig(SUB, RG, "waa-vm", price_per_hour=price_per_hour, poll_seconds=30),
                        client=client, prices=prices, clock=clock)
    reg = Registry()
    run = reg.add(RunSpec(id="eval-1", kind="waa", source="azure_vm"), now=clock())
    poller = Poller(reg, [run], src, clock=clock, rng=random.Random(1))
    prom = CollectorRegistry()
    prom.register(RunwatchCollector(reg))
    return fake, cred, src, reg, run, poller, prom


def power(prom, state):
    return prom.get_sample_value("runwatch_vm_power_state",
                                 {"run_id": "eval-1", "vm": "waa-vm", "runwatch_vm_power_state": state})


def test_running_vm_power_size_location_and_price(prices):
    clock = Clock()
    fake, cred, src, reg, run, poller, prom = setup(["running"], prices, clock)
    assert poller.step() == 30
    assert power(prom, "running") == 1 and power(prom, "deallocated") == 0
    assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 1
    assert (src.size, src.location) == ("Standard_D8s_v3", "eastus")
    assert run.state.cost_rate == 0.384
    # the real client sent the real request, signed with our credential
    method, url, headers = fake.calls[0]
    assert method == "GET" and "$expand=instanceView" in url and "api-version=" in url
    assert f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/waa-vm" in url
    assert headers["Authorization"] == "Bearer fake-arm-token"
    assert cred.scopes[0] == ("https://management.azure.com/.default",)
    assert not fake.unrouted


def test_deallocated_vm_is_not_billed(prices):
    clock = Clock()
    _, _, _, reg, run, poller, prom = setup(["deallocated"], prices, clock)
    poller.step()
    assert power(prom, "deallocated") == 1
    clock.t += 3600
    snap = run.state.snapshot(clock.t)
    assert snap["cost_rate"] == 0.0 and snap["cost"] == 0.0


def test_price_override_skips_the_prices_api(tmp_path):
    clock = Clock()
    rp = RetailPrices(base_url="http://127.0.0.1:9/none", cache_path=str(tmp_path / "p.json"), timeout=1)
    _, _, _, _, run, poller, _ = setup(["running"], rp, clock, price_per_hour=1.25)
    poller.step()
    assert run.state.cost_rate == 1.25 and rp.requests == 0


def test_throttling_backs_off_at_least_retry_after_then_recovers(prices, caplog):
    clock = Clock()
    fake, _, _, reg, run, poller, prom = setup([THROTTLED_429, THROTTLED_429, "running"], prices, clock)
    caplog.set_level(logging.INFO, "runwatch")
    d1 = poller.step()
    assert d1 >= 17                                    # Retry-After: 17
    assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 0
    d2 = poller.step()
    assert d2 >= 17 and poller.failures == 2
    assert prom.get_sample_value("runwatch_source_errors_total", {"run_id": "eval-1", "source": "azure_vm"}) == 2
    assert len(fake.calls) == 2                        # the SDK did not retry on its own
    assert poller.step() == 30
    assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("throttled by Azure (HTTP 429)" in m for m in msgs) == 1      # one line per distinct failure
    assert any("recovered after 2 failed poll(s)" in m for m in msgs)


@pytest.mark.parametrize("reply,code", [(AUTH_401, "401"), (AUTH_403, "403")])
def test_auth_failure_is_source_down_with_a_clear_log_line(prices, caplog, reply, code):
    clock = Clock()
    _, _, _, reg, run, poller, prom = setup([reply], prices, clock)
    caplog.set_level(logging.WARNING, "runwatch")
    d = poller.step()
    assert d >= 300
    assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 0
    assert power(prom, "running") is None               # nothing invented
    (rec,) = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    msg = rec.getMessage()
    assert f"HTTP {code}" in msg and "az login" in msg and "azure vm rg-eval/waa-vm" in msg
    assert "fake-arm-token" not in msg


def test_not_found_vm(prices, caplog):
    clock = Clock()
    fake = FakeAzure()                                  # no route: ARM-style 404
    client = compute_client(SUB, FakeCredential(), transport=fake.transport())
    src = AzureVMSource(AzureVMConfig(SUB, RG, "nope"), client=client, prices=prices, clock=clock)
    with pytest.raises(Exception, match="not found"):
        src.poll()


def test_power_transitions_from_the_instance_view(prices):
    clock = Clock()
    states = ["starting", "running", "stopping", "stopped", "deallocating", "deallocated"]
    _, _, _, reg, run, poller, prom = setup(states, prices, clock)
    for s in states:
        poller.step()
        assert power(prom, s) == 1
        clock.t += 60


# ---------------------------------------------------------------- config, check, serve without the SDKs

CLOUD_YAML = """\
runs:
  - id: waa-eval
    kind: waa
    azureml_job: {name: calm_kettle_7x1, subscription_id: sub, resource_group: rg, workspace: ws}
    azure_vm: {subscription_id: sub, resource_group: rg, name: waa-vm, price_per_hour: 0.384}
    budget_usd: 20
  - id: train-7
    wandb:
      entity: ent
      project: proj
      run_id: abc123
      summary: [acc, loss]
      artifacts: [model-abc123]
      artifact_deadline_minutes: 30
      poll_seconds: 60
"""


def _py(code: str, *args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=child_env(),
                          timeout=60)


def test_check_validates_cloud_sources_offline_without_importing_sdks(tmp_path):
    p = tmp_path / "runwatch.yaml"
    p.write_text(CLOUD_YAML)
    r = _py("import sys; from runwatch.cli import main; rc = main(['check', '-c', sys.argv[1]]);"
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('azure', 'wandb'))}));"
            "sys.exit(rc)", str(p))
    assert r.returncode == 0, r.stderr
    assert "ok:" in r.stdout and "2 run(s)" in r.stdout and "[]" in r.stdout
    from runwatch.config import load_config
    cfg = load_config(str(p))
    a, b = cfg.runs
    assert a.file is None and set(a.cloud) == {"azureml_job", "azure_vm"} and a.packs[0].name == "waa"
    assert a.cloud["azure_vm"].price_per_hour == 0.384 and a.cloud["azureml_job"].workspace == "ws"
    assert b.cloud["wandb"].artifact_names() == ["run-abc123-history", "model-abc123"]


@pytest.mark.parametrize("snippet,msg", [
    ("  - id: x\n    azure_vm: {subscription_id: s, resource_group: r, nmae: v}\n", 'did you mean "name"'),
    ("  - id: x\n    azure_vm: {subscription_id: s, resource_group: r}\n", "azure_vm needs 'name'"),
    ("  - id: x\n    wandb: {entity: e, project: p, run_id: r, api_key: abc}\n", "do not put the W&B API key"),
    ("  - id: x\n    wandb: {entity: e, project: p, run_id: r, summary: 3}\n", "must be a list of names"),
    ("  - id: x\n    azureml_job: {workspace: w}\n", "needs the job's 'name'"),
    ("  - id: x\n    azure_vm: {subscription_id: s, resource_group: r, name: v, poll_seconds: 1}\n", "at least 5"),
])
def test_config_errors_name_file_and_line(tmp_path, snippet, msg):
    from runwatch.config import load_config
    from runwatch.yamlfile import ConfigError
    p = tmp_path / "runwatch.yaml"
    p.write_text("runs:\n" + snippet)
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    assert msg in str(e.value) and e.value.line in (2, 3)


@pytest.mark.stack
def test_serve_without_the_sdk_says_what_to_install(tmp_path):
    p = tmp_path / "runwatch.yaml"
    p.write_text(CLOUD_YAML.split("  - id: train-7")[0])
    r = _py("import sys; sys.modules['azure'] = None; sys.modules['azure.mgmt'] = None;"
            "sys.modules['azure.mgmt.compute'] = None; sys.modules['azure.identity'] = None;"
            "from runwatch.cli import main; sys.exit(main(['serve', '-c', sys.argv[1], '--listen', '127.0.0.1:0']))",
            str(p))
    assert r.returncode == 2
    assert "pip install 'runwatch[azure]'" in r.stderr


# ---------------------------------------------------------------- what a real subscription does

def _gone():
    from support.fakes.azure_cloud import arm_error
    return arm_error(404, "ResourceNotFound", "The Resource 'Microsoft.Compute/virtualMachines/waa-vm' under "
                     f"resource group '{RG}' was not found. For more details please go to "
                     "https://aka.ms/ARMResourceNotFoundFix")


def test_a_deleted_vm_stops_billing(prices, caplog):
    clock = Clock()
    _, _, src, reg, run, poller, prom = setup(["running", _gone()], prices, clock)
    caplog.set_level(logging.WARNING, "runwatch")
    poller.step()
    clock.t += 3600
    for _ in range(3 * 60):                                   # three hours of polls after the deletion
        poller.step()
        clock.t += 60
    assert power(prom, "deleted") == 1 and power(prom, "running") == 0
    assert run.state.cost(clock.t) == pytest.approx(0.384)    # the hour it ran, not four
    assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 1
    assert sum("not found" in r.getMessage() for r in caplog.records) == 1


def test_a_vm_never_seen_is_an_error_not_deleted(prices):
    clock = Clock()
    _, _, _, reg, run, poller, prom = setup([_gone()], prices, clock)
    poller.step()
    assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 0
    assert power(prom, "deleted") is None                     # a typo in the config is not a deletion
    assert "not found" in poller.last_error and "ResourceNotFound" in poller.last_error


def test_billing_ends_when_the_vm_stays_unreachable(prices, caplog):
    """A long run of failed polls does not bill forever at the last known state."""
    from support.fakes.azure_cloud import arm_error
    from runwatch.sources.azure_vm import UNREACHABLE_AFTER
    clock = Clock()
    down = arm_error(500, "InternalServerError", "An unexpected error occured while processing the request.")
    _, _, src, reg, run, poller, prom = setup(["running"] + [down] * 40 + ["running"], prices, clock)
    caplog.set_level(logging.WARNING, "runwatch")
    poller.step()
    t0 = clock.t
    for _ in range(40):                                       # 40 failed polls, 5 min apart: 200 min
        clock.t += 300
        poller.step()
    assert power(prom, "unknown") == 1
    cost = run.state.cost(clock.t)
    assert cost <= 0.384 * (UNREACHABLE_AFTER + 300) / 3600   # billed until runwatch stopped assuming it runs
    assert cost >= 0.384 * UNREACHABLE_AFTER / 3600
    assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 0
    assert any("billing" in r.getMessage() for r in caplog.records)
    clock.t += 300
    poller.step()                                             # seen again: billed again
    assert power(prom, "running") == 1
    clock.t += 3600
    assert run.state.cost(clock.t) == pytest.approx(cost + 0.384)
    assert clock.t - t0 > 0


@pytest.mark.parametrize("vm_kw,usd", [
    ({"os_type": "Windows"}, 0.752),
    ({"os_type": "Windows", "license_type": "Windows_Server"}, 0.384),       # Azure Hybrid Benefit
    ({"priority": "Spot"}, 0.0768),
    ({"os_type": "Windows", "priority": "Spot"}, 0.15),
    ({}, 0.384),
])
def test_price_by_os_license_and_priority(prices, vm_kw, usd):
    clock = Clock()
    _, _, src, reg, run, poller, prom = setup(["running"], prices, clock, **vm_kw)
    poller.step()
    assert run.state.cost_rate == usd


def test_a_lowercase_size_is_priced(prices):
    clock = Clock()
    _, _, src, reg, run, poller, prom = setup(["running"], prices, clock, size="standard_d8s_v3")
    prices.fallback()                                          # (the bundled table would mask a miss)
    prices._fallback = {}
    poller.step()
    assert run.state.cost_rate == 0.384


def test_a_fallback_price_is_replaced_when_the_api_answers(tmp_path, caplog):
    from runwatch.sources.azure_vm import PRICE_RETRY
    p = FakePrices()
    try:
        p.down = True
        rp = RetailPrices(base_url=p.api, cache_path=str(tmp_path / "prices.json"),
                          fallback={"eastus/standard_d8s_v3": 0.40})
        clock = Clock()
        _, _, src, reg, run, poller, prom = setup(["running"], rp, clock)
        poller.step()
        assert run.state.cost_rate == 0.40
        asked = len(p.queries)
        p.down = False
        clock.t += 60
        poller.step()
        assert len(p.queries) == asked                         # not every poll
        clock.t += PRICE_RETRY
        poller.step()
        assert run.state.cost_rate == 0.384
    finally:
        p.stop()


def test_no_price_anywhere_warns_once_and_does_not_ask_every_poll(tmp_path, caplog):
    p = FakePrices(items=[])
    try:
        rp = RetailPrices(base_url=p.api, cache_path=str(tmp_path / "prices.json"), fallback={})
        clock = Clock()
        _, _, src, reg, run, poller, prom = setup(["running"], rp, clock, size="Standard_Made_Up_v9")
        caplog.set_level(logging.WARNING, "runwatch")
        for _ in range(10):
            poller.step()
            clock.t += 60
        assert sum("no price" in r.getMessage() for r in caplog.records) == 1
        assert len(p.queries) == 1
        assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 1
    finally:
        p.stop()


def test_a_malformed_price_cache_entry_does_not_take_the_source_down(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text('{"eastus/standard_d8s_v3": {"usd_per_hour": "0.384"}}')
    p = FakePrices()
    try:
        rp = RetailPrices(base_url=p.api, cache_path=str(path))
        clock = Clock()
        _, _, src, reg, run, poller, prom = setup(["running"], rp, clock)
        poller.step()
        assert prom.get_sample_value("runwatch_source_up", {"run_id": "eval-1", "source": "azure_vm"}) == 1
        assert run.state.cost_rate == 0.384
    finally:
        p.stop()


def test_the_log_names_sizes_and_os_as_azure_spells_them(prices, caplog):
    clock = Clock()
    _, _, src, reg, run, poller, prom = setup(["running"], prices, clock)
    caplog.set_level(logging.INFO, "runwatch")
    poller.step()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Standard_D8s_v3" in text and "Linux" in text
    assert "VirtualMachineSizeTypes" not in text and "OperatingSystemTypes" not in text


def test_vm_requests_have_timeouts(prices):
    clock = Clock()
    fake, _, _, reg, run, poller, prom = setup(["running"], prices, clock)
    poller.step()
    assert fake.timeouts and all(isinstance(t, tuple) and None not in t and max(t) <= 120 for t in fake.timeouts)


@pytest.mark.stack()   # takes long: the full suite runs it, the fast loop does not
def test_a_retail_prices_api_that_hangs_does_not_hold_the_poll(tmp_path):
    """The prices client has a timeout; a hanging API gives the fallback price, the VM state still moves."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)                                              # accepts, never answers
    conns = []

    def accept():
        try:
            while True:
                conns.append(srv.accept())
        except OSError:
            pass                                               # closed at the end of the test
    threading.Thread(target=accept, daemon=True).start()
    try:
        rp = RetailPrices(base_url=f"http://127.0.0.1:{srv.getsockname()[1]}/api/retail/prices",
                          cache_path=str(tmp_path / "p.json"), timeout=1)
        clock = Clock()
        _, _, src, reg, run, poller, prom = setup(["running"], rp, clock)
        poller.step()
        assert power(prom, "running") == 1 and run.state.cost_rate == 0.384     # bundled fallback
        assert conns                                           # it did ask, and gave up on waiting
    finally:
        srv.close()
        for c, _ in conns:
            c.close()


def test_a_huge_error_message_is_cut(prices):
    from support.fakes.azure_cloud import arm_error
    clock = Clock()
    _, _, _, reg, run, poller, prom = setup([arm_error(500, "InternalServerError", "x" * 1_000_000)], prices, clock)
    poller.step()
    assert "InternalServerError" in poller.last_error and len(poller.last_error) < 1000
