"""Azure VM: power state, size and location, and what it costs while Azure bills it.

A state source for `pollers.Poller`. Each poll is one ARM call,
`virtual_machines.get(rg, name, expand="instanceView")` through
azure-mgmt-compute's `ComputeManagementClient`; the instance view's
`PowerState/…` status becomes a `vm_power` event, and the size, location, OS
(`storageProfile.osDisk.osType`), license (`licenseType`: a Windows VM with
Azure Hybrid Benefit pays the Linux rate) and priority (Spot, Low) give the
hourly rate (config `price_per_hour`, else `pricing.RetailPrices`) as a
`cost` event. The run state accrues cost only in billed power states
(starting, running, stopping, stopped; not deallocating, deallocated, nor the
two runwatch adds):

- `deleted`: ARM answers 404 for a VM this source has seen: it is gone, and
  so is its bill. (A VM never seen is a config error: the source is down.)
- `unknown`: the VM could not be read for `UNREACHABLE_AFTER` seconds; billing
  stops then (it may still run: the cost is a lower bound from there on, and
  the log says so), and resumes when a poll sees it again.

A price that is only an estimate (the bundled table, a stale cache) or that
could not be found is asked for again every `PRICE_RETRY` seconds, not every
poll and not never; a missing price is warned about once.

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
UNREACHABLE_AFTER = 15 * 60.0     # failing this long since the last good poll: stop billing
PRICE_RETRY = 30 * 60.0           # ask again for an estimated or missing price this often
#: licenseType values that waive the Windows license charge (Azure Hybrid Benefit)
HYBRID_BENEFIT = frozenset({"windows_server", "windows_client"})


@dataclass
class AzureVMConfig:
    subscription_id: str
    resource_group: str
    name: str
    price_per_hour: float | None = None
    poll_seconds: float = 60.0


def require_sdk() -> None:
    try:
        import azure.identity
        import azure.mgmt.compute  # noqa: F401 - imported only to learn the SDK is installed
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


def _text(v) -> str | None:
    """An SDK value as Azure spells it: enums by value (Standard_D8s_v3, Linux), not their names."""
    v = getattr(v, "value", v)
    return str(v) if v is not None else None


def billing_of(vm) -> tuple[str, str]:
    """(os_type, priority) for the price meter: linux|windows, regular|spot|low."""
    os_disk = getattr(getattr(vm, "storage_profile", None), "os_disk", None)
    os_type = (_text(getattr(os_disk, "os_type", None)) or "Linux").lower()
    license_type = (_text(getattr(vm, "license_type", None)) or "").lower()
    if os_type != "windows" or license_type in HYBRID_BENEFIT:
        os_type = "linux"
    priority = (_text(getattr(vm, "priority", None)) or "Regular").lower()
    return os_type, priority if priority in ("spot", "low") else "regular"


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
        self.billing: tuple[str, str] = ("linux", "regular")
        self.state: str | None = None
        self.rate: float | None = None
        self.last_ok: float | None = None     # when a poll last read the VM
        self._priced: tuple | None = None     # (size, location, os, priority) the rate is for
        self._price_final = False             # from the API or a fresh cache: not asked again
        self._price_asked: float | None = None
        self._price_error: str | None = None

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
            err = azure_error(e, self.what)
            if self.last_ok is not None and getattr(e, "status_code", None) == 404:
                return self._gone(str(err))
            raise err from None
        now = self.clock()
        self.last_ok = now
        events: list[Event] = []
        hw = getattr(vm, "hardware_profile", None)
        self.size = _text(getattr(hw, "vm_size", None)) or self.size
        self.location = _text(getattr(vm, "location", None)) or self.location
        self.billing = billing_of(vm)
        state = power_state(vm)
        if state is not None:
            if state != self.state:
                os_type, priority = self.billing
                log.info("%s: %s (%s, %s, %s%s)", self.what, state, self.size, self.location,
                         os_type.capitalize(), "" if priority == "regular" else f", {priority}")
            self.state = state
            events.append(make("vm_power", {"vm": self.cfg.name, "state": state}, now))
        rate = self._rate(now)
        if rate is not None and rate != self.rate:
            self.rate = rate
            events.append(make("cost", {"rate_usd_per_hour": rate}, now))
        return events

    def _gone(self, message: str) -> list[Event]:
        """ARM says the VM this source has seen does not exist: deleted, billing over."""
        if self.state != "deleted":
            log.warning("%s: %s; the VM was deleted, billing stopped", self.what, message)
            self.state = "deleted"
        return [make("vm_power", {"vm": self.cfg.name, "state": "deleted"}, self.clock())]

    def on_failure(self, now: float) -> list[Event]:
        """Called by the poller after a failed poll: past UNREACHABLE_AFTER, stop billing."""
        if self.last_ok is None or self.state in (None, "unknown", "deleted", "deallocated"):
            return []
        if now - self.last_ok < UNREACHABLE_AFTER:
            return []
        log.warning("%s: not read for %.0f min; billing stopped until it is seen again (it may still run: "
                    "the cost is a lower bound from here)", self.what, (now - self.last_ok) / 60)
        self.state = "unknown"
        return [make("vm_power", {"vm": self.cfg.name, "state": "unknown"}, now)]

    def _rate(self, now: float) -> float | None:
        if self.cfg.price_per_hour is not None:
            return float(self.cfg.price_per_hour)
        if not self.size or not self.location:
            return self.rate
        os_type, priority = self.billing
        key = (self.size.lower(), self.location.lower(), os_type, priority)
        if self._priced == key and (self._price_final or now - (self._price_asked or now) < PRICE_RETRY):
            return self.rate
        if self._priced != key:
            self._price_final, self._price_error = False, None
        self._priced, self._price_asked = key, now
        prices = self.prices or RetailPrices()
        self.prices = prices
        try:
            price = prices.hourly(self.size, self.location, os_type=os_type, priority=priority)
        except PriceUnavailable as e:
            msg = str(e)
            if msg != self._price_error:
                log.warning("%s: no price for %s in %s (%s, %s): %s; asking again in %.0f min", self.what,
                            self.size, self.location, os_type, priority, msg, PRICE_RETRY / 60)
                self._price_error = msg
            return self.rate
        self._price_final = price.origin in ("api", "cache", "config")
        if price.usd_per_hour != self.rate:
            log.info("%s: %s in %s (%s, %s) costs %.4f USD/h (%s)", self.what, self.size, self.location,
                     os_type, priority, price.usd_per_hour, price.origin)
        return price.usd_per_hour


# ---------------------------------------------------------------- config (no SDK, no network)

VM_KEYS = ("subscription_id", "resource_group", "name", "price_per_hour", "poll_seconds")


def parse_config(m, rid: str) -> AzureVMConfig:
    """`azure_vm:` of a run in runwatch.yaml; ConfigError with file:line on problems."""
    from ..yamlfile import ConfigError, Map, check_keys, expect, number
    if not isinstance(m, Map):
        raise ConfigError(getattr(m, "file", "<config>"), getattr(m, "line", None),
                          f"run {rid!r}: azure_vm is a mapping with subscription_id, resource_group, name")
    check_keys(m, VM_KEYS, f"azure_vm of run {rid!r}")
    vals = {}
    for k in ("subscription_id", "resource_group", "name"):
        if k not in m:
            raise ConfigError(m.file, m.line, f"run {rid!r}: azure_vm needs {k!r}")
        vals[k] = str(expect(m[k], str, m, k, f"run {rid!r}: azure_vm.{k}"))
    price = number(m, "price_per_hour", None, what=f"run {rid!r}: price_per_hour", minimum=0)
    poll = number(m, "poll_seconds", 60.0, what=f"run {rid!r}: poll_seconds", minimum=5)
    return AzureVMConfig(vals["subscription_id"], vals["resource_group"], vals["name"], price, float(poll))
