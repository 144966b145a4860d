"""The scheduler for state sources: each polls on its own thread and schedule.

A state source (Azure VM power state, Azure ML job status and logs, W&B run
state and artifacts) is an object with

    source: str          # the label of runwatch_source_up{source}
    interval: float      # seconds between good polls
    poll() -> list[Event]

`poll()` may block on the network: it runs on the source's own thread, so a
slow or throttled service never holds up line processing or a scrape. A poll
that raises marks the source down on every run it serves
(`runwatch_source_up 0`) with one clear log line per distinct failure, and the
next poll waits longer: exponential backoff with jitter, at least what a 429's
Retry-After asks for, at most `max_backoff`. The first good poll after a
failure sets the source up again and logs that it recovered. Each failed poll
counts in `runwatch_source_errors_total{source}`.

A source may also report parts that fail on their own without failing the
poll (an Azure ML job's log read): after a good poll, `source.parts`
({name: ok}) sets `runwatch_source_up{source=name}` (and counts its errors).
After a failed poll, `source.on_failure(now)` (when it has one) may return
events all the same (the Azure VM source stops billing a VM it has not seen
for long).

Nothing here imports a cloud SDK.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from ..model.runs import Registry, Run
from .errors import SourceError

log = logging.getLogger("runwatch")


class Poller:
    """Polls one source for one or more runs (a VM can serve several)."""

    def __init__(self, registry: Registry, runs: list[Run], source, *, max_backoff: float = 600.0,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None):
        self.registry, self.runs, self.source = registry, list(runs), source
        self.max_backoff = max_backoff
        self.clock = clock
        self.rng = rng or random.Random()
        self.failures = 0          # consecutive failed polls
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return f"{self.source.source}[{', '.join(r.spec.id for r in self.runs)}]"

    def step(self) -> float:
        """Poll once, apply what it found; return the seconds to wait before the next poll."""
        try:
            events = self.source.poll()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none kills the thread
            return self._failed(e)
        now = self.clock()
        parts = dict(getattr(self.source, "parts", None) or {})
        for run in self.runs:
            if events:
                self.registry.apply(run, events, now)
            self.registry.set_source_up(run, self.source.source, True)
            for part, ok in parts.items():
                if ok:
                    self.registry.set_source_up(run, part, True)
                else:
                    self.registry.source_failed(run, part)
            self.registry.set_url(run, getattr(self.source, "url", None))
        if self.failures:
            log.info("%s: recovered after %d failed poll(s)", self.name, self.failures)
        self.failures, self.last_error = 0, None
        return float(self.source.interval)

    def _failed(self, e: Exception) -> float:
        self.failures += 1
        msg = str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}"
        on_failure = getattr(self.source, "on_failure", None)
        now = self.clock()
        events = on_failure(now) if on_failure is not None else []
        for run in self.runs:
            if events:
                self.registry.apply(run, events, now)
            self.registry.source_failed(run, self.source.source)
        delay = self.backoff(e)
        if msg != self.last_error:
            log.warning("%s: %s (source down; next try in %.0f s)", self.name, msg, delay)
            self.last_error = msg
        return delay

    def backoff(self, e: Exception | None = None) -> float:
        """interval × 2^(failures-1), jittered ±20 %, within [interval, max_backoff];
        never shorter than a Retry-After; auth failures wait at least 5 minutes."""
        base = max(float(self.source.interval), 1.0)
        d = min(self.max_backoff, base * 2 ** min(self.failures - 1, 16))
        d *= 1.0 + self.rng.uniform(-0.2, 0.2)
        d = max(min(d, self.max_backoff), min(base, self.max_backoff))
        if isinstance(e, SourceError):
            if e.retry_after is not None:
                d = max(d, e.retry_after)
            if e.auth:
                d = max(d, min(300.0, self.max_backoff))
        return d

    # ------------------------------------------------------------ thread

    def loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                delay = self.step()
            except Exception:
                log.exception("%s: error applying a poll", self.name)
                delay = self.backoff()
            stop.wait(delay)
        close = getattr(self.source, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.debug("%s: error closing", self.name, exc_info=True)

    def start(self, stop: threading.Event) -> "Poller":
        self._thread = threading.Thread(target=self.loop, args=(stop,), daemon=True,
                                        name=f"poll-{self.source.source}-{self.runs[0].spec.id}")
        self._thread.start()
        return self



# ---------------------------------------------------------------- serve wiring

def cloud_pollers(registry: Registry, items: list, data_dir: str | None = None) -> list[Poller]:
    """Pollers for the runs' cloud sources; items are (run, RunConfig, Ingest).

    Checks first that the SDKs the config needs are installed (SourceError
    "… pip install 'runwatch[azure]'" otherwise) and imports them only then.
    One VM named by several runs is polled once and feeds all of them. VM prices are cached in
    data_dir (None: settings.data_dir's rule)."""
    from . import azure_vm, azureml, wandb_run
    kinds = {k for _, rc, _ in items for k in rc.cloud}
    if kinds & {"azure_vm", "azureml_job"}:
        azure_vm.require_sdk()
    if "wandb" in kinds:
        wandb_run.require_sdk()
    out: list[Poller] = []
    vms: dict[tuple, Poller] = {}
    prices = None
    for run, rc, ingest in items:
        for kind, cfg in rc.cloud.items():
            if kind == "azure_vm":
                key = (cfg.subscription_id.lower(), cfg.resource_group.lower(), cfg.name.lower())
                if key in vms:
                    vms[key].runs.append(run)
                    continue
                if prices is None:
                    from .pricing import RetailPrices
                    prices = RetailPrices(directory=data_dir)
                p = vms[key] = Poller(registry, [run], azure_vm.AzureVMSource(cfg, prices=prices))
            elif kind == "azureml_job":
                p = Poller(registry, [run], azureml.AzureMLSource(cfg, ingest if cfg.logs else None))
            else:
                p = Poller(registry, [run], wandb_run.WandbSource(cfg))
            out.append(p)
    return out
