"""Cost accrual across a VM power-state timeline, against hand-computed figures.

Azure bills a VM while it is starting, running, stopping or stopped (stopped
from inside the guest still holds the hardware); it stops billing once it is
deallocating/deallocated. Timeline (rate 0.40 USD/h):

    10:00 running      ─┐
    12:30 stopped       │ billed 3 h 15 min  -> 1.30 USD
    13:15 deallocated  ─┘ not billed 1 h 45 min
    15:00 running      ─┐
    16:00 (now)        ─┘ billed 1 h         -> 0.40 USD
                          total 4.25 h × 0.40 = 1.70 USD
"""
from __future__ import annotations

import pytest

from runwatch.events import make
from runwatch.model.state import RunState

H = 3600.0
T0 = 1_700_000_000.0 - (1_700_000_000.0 % 86400) + 10 * H     # some day, 10:00 UTC


def at(hh: int, mm: int = 0) -> float:
    return T0 + (hh - 10) * H + mm * 60


def test_hand_computed_timeline():
    st = RunState()
    st.apply(make("cost", {"rate_usd_per_hour": 0.40, "budget_usd": 5}, at(10)))
    st.apply(make("vm_power", {"vm": "waa-vm", "state": "running"}, at(10)))
    assert st.cost(at(10)) == 0.0
    assert st.cost(at(11)) == pytest.approx(0.40)
    st.apply(make("vm_power", {"vm": "waa-vm", "state": "stopped"}, at(12, 30)))
    assert st.cost(at(12, 30)) == pytest.approx(1.00)
    assert st.current_rate() == 0.40                      # stopped is billed
    assert st.cost(at(13)) == pytest.approx(1.20)
    st.apply(make("vm_power", {"vm": "waa-vm", "state": "deallocated"}, at(13, 15)))
    assert st.cost(at(13, 15)) == pytest.approx(1.30)
    assert st.current_rate() == 0.0
    assert st.cost(at(15)) == pytest.approx(1.30)         # nothing accrues while deallocated
    st.apply(make("vm_power", {"vm": "waa-vm", "state": "running"}, at(15)))
    assert st.cost(at(15)) == pytest.approx(1.30)
    assert st.cost(at(16)) == pytest.approx(1.70)
    snap = st.snapshot(at(16))
    assert snap["cost"] == pytest.approx(1.70) and snap["cost_rate"] == 0.40 and snap["budget"] == 5


def test_deallocating_is_not_billed_and_the_run_state_does_not_matter():
    st = RunState()
    st.apply(make("cost", {"rate_usd_per_hour": 1.0}, at(10)))
    st.apply(make("vm_power", {"vm": "vm", "state": "starting"}, at(10)))        # billed
    st.apply(make("status", {"state": "succeeded"}, at(10, 30)))                  # job done, VM still up
    st.apply(make("vm_power", {"vm": "vm", "state": "stopping"}, at(11)))        # billed
    st.apply(make("vm_power", {"vm": "vm", "state": "deallocating"}, at(11, 6)))  # not billed
    st.apply(make("vm_power", {"vm": "vm", "state": "deallocated"}, at(11, 10)))
    assert st.cost(at(12)) == pytest.approx(1.1)          # 10:00 -> 11:06 = 1.1 h


def test_a_rate_change_mid_run_accrues_each_part_at_its_rate():
    st = RunState()
    st.apply(make("cost", {"rate_usd_per_hour": 0.40}, at(10)))
    st.apply(make("vm_power", {"vm": "vm", "state": "running"}, at(10)))
    st.apply(make("cost", {"rate_usd_per_hour": 0.80}, at(11)))                  # resized
    assert st.cost(at(12)) == pytest.approx(0.40 + 0.80)


@pytest.mark.stack
def test_timeline_through_the_real_azure_source(tmp_path):
    pytest.importorskip("azure.mgmt.compute")
    from runwatch.sources.poller import Poller
    from runwatch.sources.pricing import RetailPrices
    from runwatch.model.runs import Registry, RunSpec
    from runwatch.sources.azure_vm import AzureVMConfig, AzureVMSource, compute_client
    from support.fakes.azure_cloud import RG, SUB, FakeAzure, FakeCredential, VMScript
    from support.fakes.prices_server import FakePrices

    prices = FakePrices()
    try:
        now = [at(10)]
        fake = FakeAzure()
        VMScript(fake, "waa-vm", ["running", "stopped", "deallocated", "running"])
        src = AzureVMSource(AzureVMConfig(SUB, RG, "waa-vm"),
                            client=compute_client(SUB, FakeCredential(), transport=fake.transport()),
                            prices=RetailPrices(base_url=prices.api, cache_path=str(tmp_path / "p.json")),
                            clock=lambda: now[0])
        reg = Registry()
        run = reg.add(RunSpec(id="eval-1"), now=now[0])
        poller = Poller(reg, [run], src, clock=lambda: now[0])
        for t in (at(10), at(12, 30), at(13, 15), at(15)):
            now[0] = t
            poller.step()
        # Standard_D8s_v3 eastus Linux pay-as-you-go from the (fake) price list: 0.384 USD/h
        assert run.state.cost_rate == 0.384
        assert run.state.cost(at(16)) == pytest.approx(4.25 * 0.384)     # 1.632 USD
    finally:
        prices.stop()
