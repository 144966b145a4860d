"""Azure VM: power state, size and location, and what it costs while Azure bills it.

A state source for `pollers.Poller`. Each poll is one ARM call,
`virtual_machines.get(rg, name, expand="instanceView")` through
azure-mgmt-compute's `ComputeManagementClient`; the instance view's
`PowerState/…` status becomes a `vm_power` event, and the size and location
give the hourly rate (config `price_per_hour`, else `pricing.RetailPrices`)
as a `cost` event. The run state accrues cost only in billed power states
(starting, running, stopping, stopped; not deallocating, deallocated).

The SDK is imported when a client is made, never at module import, so the
core runs without `runwatch[azure]`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..events import Event, make
from .azure_sdk import INSTALL_HINT, azure_error, cached, client_kwargs, quiet_sdk_loggers
from .errors import SourceError
from .pricing import PriceUnavailable, RetailPrices

log = logging.getLogger("runwatch")

POWER_STATES = {
    "PowerState/starting": "starting", "PowerState/running": "running",
    "PowerState/stopping": "stopping", "PowerState/stopped": "stopped",
    "PowerState/deallocating": "deallocating", "PowerState/deallocated": "deallocated",
}


@dataclass
class AzureVMConfig:
    subscription_id: str
    resource_group: str
    name: str
    price_per_hour: float | None = None
    poll_seconds: float = 60.0


def require_sdk() -> None:
    try:
        import azure.identity  # noqa: F401
        import azure.mgmt.compute  # noqa: F401
    except ImportError as e:
        raise SourceError(f"{INSTALL_HINT} ({e})") from None


def compute_client(subscription_id: str, credential=None, **kwargs):
    """A ComputeManagementClient; kwargs go to azure-core (transport=, base_url= …).

    The SDK's own retries are off (retry_total=0): the poller backs off, so a
    429 is seen (and honoured) instead of blocking inside the SDK. Every
    request has a timeout; the credential is cached (`azure_sdk`)."""
    try:
        from azure.mgmt.compute import ComputeManagementClient
    except ImportError as e:
        raise SourceError(f"{INSTALL_HINT} ({e})") from None
    quiet_sdk_loggers()
    return ComputeManagementClient(cached(credential), subscription_id, **client_kwargs(kwargs))


def power_state(vm) -> str | None:
    """runwatch's power state from a VirtualMachine with its instance view."""
    view = getattr(vm, "instance_view", None)
    for s in (getattr(view, "statuses", None) or []):
        code = getattr(s, "code", "") or ""
        if code.startswith("PowerState/"):
            return POWER_STATES.get(code)
    return None


class AzureVMSource:
    source = "azure_vm"

    def __init__(self, cfg: AzureVMConfig, *, client=None, credential=None, prices: RetailPrices | None = None,
                 clock=time.time):
        self.cfg = cfg
        self.interval = cfg.poll_seconds
        self._client = client
        self._credential = credential
        self.prices = prices
        self.clock = clock
        self.size: str | None = None
        self.location: str | None = None
        self.state: str | None = None
        self.rate: float | None = None
        self._priced: tuple | None = None    # (size, location) the rate is for

    @property
    def what(self) -> str:
        return f"azure vm {self.cfg.resource_group}/{self.cfg.name}"

    @property
    def client(self):
        if self._client is None:
            self._client = compute_client(self.cfg.subscription_id, self._credential)
        return self._client

    def poll(self) -> list[Event]:
        try:
            vm = self.client.virtual_machines.get(self.cfg.resource_group, self.cfg.name, expand="instanceView")
        except SourceError:
            raise
        except Exception as e:  # noqa: BLE001 - azure-core's exceptions, classified
            raise azure_error(e, self.what) from None
        now = self.clock()
        events: list[Event] = []
        hw = getattr(vm, "hardware_profile", None)
        self.size = getattr(hw, "vm_size", None) or self.size
        self.location = getattr(vm, "location", None) or self.location
        state = power_state(vm)
        if state is not None:
            if state != self.state:
                log.info("%s: %s (%s, %s)", self.what, state, self.size, self.location)
            self.state = state
            events.append(make("vm_power", {"vm": self.cfg.name, "state": state}, now))
        rate = self._rate()
        if rate is not None and rate != self.rate:
            self.rate = rate
            events.append(make("cost", {"rate_usd_per_hour": rate}, now))
        return events

    def _rate(self) -> float | None:
        if self.cfg.price_per_hour is not None:
            return float(self.cfg.price_per_hour)
        if not self.size or not self.location:
            return self.rate
        key = (self.size.lower(), self.location.lower())
        if self._priced == key:
            return self.rate
        prices = self.prices or RetailPrices()
        self.prices = prices
        try:
            price = prices.hourly(self.size, self.location)
        except PriceUnavailable as e:
            log.warning("%s: no price for %s in %s: %s", self.what, self.size, self.location, e)
            return self.rate
        self._priced = key
        log.info("%s: %s in %s costs %.4f USD/h (%s)", self.what, self.size, self.location,
                 price.usd_per_hour, price.origin)
        return price.usd_per_hour


# ---------------------------------------------------------------- config (no SDK, no network)

VM_KEYS = ("subscription_id", "resource_group", "name", "price_per_hour", "poll_seconds")


def parse_config(m, rid: str) -> AzureVMConfig:
    """`azure_vm:` of a run in runwatch.yaml; ConfigError with file:line on problems."""
    from ..yamlfile import ConfigError, Map, check_keys, expect
    if not isinstance(m, Map):
        raise ConfigError(getattr(m, "file", "<config>"), getattr(m, "line", None),
                          f"run {rid!r}: azure_vm is a mapping with subscription_id, resource_group, name")
    check_keys(m, VM_KEYS, f"azure_vm of run {rid!r}")
    vals = {}
    for k in ("subscription_id", "resource_group", "name"):
        if k not in m:
            raise ConfigError(m.file, m.line, f"run {rid!r}: azure_vm needs {k!r}")
        vals[k] = str(expect(m[k], str, m, k, f"run {rid!r}: azure_vm.{k}"))
    price = _num(m, "price_per_hour", None, rid, 0)
    poll = _num(m, "poll_seconds", 60.0, rid, 5)
    return AzureVMConfig(vals["subscription_id"], vals["resource_group"], vals["name"], price, float(poll))


def _num(m, key, default, rid, minimum):
    from ..yamlfile import ConfigError, expect
    if key not in m:
        return default
    v = expect(m[key], (int, float), m, key, f"run {rid!r}: {key}")
    if v < minimum:
        raise ConfigError(m.file, m.line_of(key), f"run {rid!r}: {key} must be at least {minimum}, got {v}")
    return v
