"""An Azure ML job: its status, its studio page and its log lines.

A state source for `pollers.Poller` that is also a line source: each poll

1. reads the job with `MLClient.jobs.get(name)` and maps its status onto the
   run state (Paused becomes the phase "paused");
2. lists the job's log files the way `jobs.stream` finds them: the run
   history's `logFiles` (name -> SAS URL), filtered and sorted by the SDK's own
   `_get_sorted_filtered_logs` (Common Runtime `user_logs/std_log*.txt`; else
   the legacy `azureml-logs/NN_*.txt` of command jobs,
   `logs/azureml/executionlogs.txt` of pipelines, `azureml-logs/hyperdrive.txt`
   of sweeps);
3. reads only what is new in each file: runwatch keeps a byte offset per file
   and asks the blob service for `Range: bytes=OFFSET-` (206; 416 when nothing
   is new; a 200 that ignores the range is cut at the offset). The bytes go
   through the run's `Ingest` (packs, Loki), one stream per file, so a
   partial last line waits for its end and never glues onto another file.

Unlike `jobs.stream` it never prints to stdout, never raises because the job
failed, and never re-downloads a whole file per poll.

`AzureMLClient` is the narrow adapter around the SDK (three calls, some through
azure-ai-ml's private helpers); tests/test_azureml.py checks it against the
real `MLClient` with an injected transport answering recorded response shapes.
The SDK is imported only when a client is made.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from ..events import Event, make
from .errors import SourceError
from .azure_vm import INSTALL_HINT, azure_error, default_credential

log = logging.getLogger("runwatch")

#: Azure ML job status -> (run state, phase)
STATUS = {
    "NotStarted": ("pending", None), "Queued": ("pending", None), "Preparing": ("pending", None),
    "Provisioning": ("pending", None), "Starting": ("pending", None),
    "Running": ("running", None), "Finalizing": ("running", None),
    "Completed": ("succeeded", None),
    "Failed": ("failed", None), "NotResponding": ("failed", None),
    "Canceled": ("canceled", None), "CancelRequested": ("canceled", None),
    "Paused": (None, "paused"),
}
#: the statuses a job never leaves (CancelRequested is canceled, but not over yet)
FINAL_STATUSES = frozenset({"Completed", "Failed", "NotResponding", "Canceled"})
MAX_READ = 8 * 1024 * 1024          # bytes per file per poll (a long backlog is read over several polls)


@dataclass
class AzureMLConfig:
    name: str
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    poll_seconds: float = 30.0
    logs: bool = True

    def resolved(self) -> "AzureMLConfig":
        """Fill the workspace from the usual environment variables."""
        sub = self.subscription_id or os.environ.get("AZURE_SUBSCRIPTION_ID")
        rg = self.resource_group or os.environ.get("AZURE_ML_RESOURCE_GROUP")
        ws = self.workspace or os.environ.get("AZURE_ML_WORKSPACE_NAME")
        missing = [n for n, v in (("subscription_id (AZURE_SUBSCRIPTION_ID)", sub),
                                  ("resource_group (AZURE_ML_RESOURCE_GROUP)", rg),
                                  ("workspace (AZURE_ML_WORKSPACE_NAME)", ws)) if not v]
        if missing:
            raise SourceError(f"azure ml job {self.name}: no {', '.join(missing)} in the config or environment")
        return AzureMLConfig(self.name, sub, rg, ws, self.poll_seconds, self.logs)


@dataclass
class JobInfo:
    status: str
    job_type: str
    studio_url: str | None


def sorted_streamable_logs(names, job_type: str) -> list[str]:
    """The log files `jobs.stream` would show, in its order (the SDK's own filter)."""
    from azure.ai.ml.operations._job_ops_helper import _get_sorted_filtered_logs
    return _get_sorted_filtered_logs(list(names), job_type or "command", None, only_streamable=True)


def _quiet_sdk_loggers() -> None:
    """azure-ai-ml gives some of its loggers their own INFO handler (on stderr, not
    propagated): chatter like "Proceeding with no tenant id appended to studio URL"
    would interleave with runwatch's log. Keep its warnings, drop its info."""
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if name.startswith("azure.ai.ml") and isinstance(lg, logging.Logger) and not lg.propagate:
            lg.setLevel(logging.WARNING)


class AzureMLClient:
    """The narrow adapter: job status, log file list, a ranged read."""

    def __init__(self, ml_client):
        self.ml = ml_client

    @classmethod
    def connect(cls, cfg: AzureMLConfig, credential=None, **kwargs) -> "AzureMLClient":
        try:
            from azure.ai.ml import MLClient
        except ImportError as e:
            raise SourceError(f"{INSTALL_HINT} ({e})") from None
        kwargs.setdefault("enable_telemetry", False)
        kwargs.setdefault("retry_total", 0)
        ml = MLClient(credential or default_credential(), cfg.subscription_id, cfg.resource_group,
                      cfg.workspace, **kwargs)
        _quiet_sdk_loggers()
        return cls(ml)

    def job(self, name: str) -> JobInfo:
        job = self.ml.jobs.get(name)
        _quiet_sdk_loggers()
        services = getattr(job, "services", None) or {}
        studio = services.get("Studio")
        url = getattr(studio, "endpoint", None) or getattr(job, "studio_url", None)
        status = getattr(job.status, "value", job.status)        # a str enum in some versions
        jtype = getattr(job, "type", None)
        return JobInfo(status=str(status or ""), job_type=str(getattr(jtype, "value", jtype) or "command"),
                       studio_url=url)

    def log_files(self, name: str) -> dict[str, str]:
        details = self.ml.jobs._runs_operations.get_run_details(name)
        return dict(details.log_files or {})

    def read(self, url: str, offset: int, limit: int = MAX_READ) -> bytes:
        """Bytes of the blob from offset on (at most limit); b"" when nothing is new."""
        pipeline = self.ml.jobs._requests_pipeline
        resp = pipeline.get(url, headers={"Range": f"bytes={offset}-{offset + limit - 1}",
                                          "x-ms-version": "2021-08-06"})
        status = resp.status_code
        if status == 206:
            return resp.body()
        if status == 200:                       # the range was ignored: cut it ourselves
            return resp.body()[offset:offset + limit]
        if status in (404, 416):                # not there yet / nothing new
            return b""
        raise SourceError(f"log read: HTTP {status}")


class AzureMLSource:
    source = "azureml"

    def __init__(self, cfg: AzureMLConfig, ingest=None, *, client: AzureMLClient | None = None,
                 credential=None, clock=time.time):
        self.cfg = cfg
        self.interval = cfg.poll_seconds
        self.ingest = ingest
        self._client = client
        self._credential = credential
        self.clock = clock
        self.offsets: dict[str, int] = {}
        self.streams: dict[str, int] = {}
        self.status: str | None = None
        self.url: str | None = None
        self.done = False                        # terminal and its logs read to the end

    @property
    def what(self) -> str:
        return f"azure ml job {self.cfg.name}"

    @property
    def client(self) -> AzureMLClient:
        if self._client is None:
            cfg = self.cfg.resolved()
            self._client = AzureMLClient.connect(cfg, self._credential)
        return self._client

    def poll(self) -> list[Event]:
        if self.done:
            return []
        client = self.client
        try:
            info = client.job(self.cfg.name)
        except SourceError:
            raise
        except Exception as e:  # noqa: BLE001
            raise azure_error(e, self.what) from None
        self.url = info.studio_url or self.url
        now = self.clock()
        events: list[Event] = []
        if self.cfg.logs and self.ingest is not None and info.status not in ("NotStarted", "Queued"):
            try:
                self._read_logs(client, info)
            except SourceError:
                raise
            except Exception as e:  # noqa: BLE001
                raise azure_error(e, f"{self.what}: logs") from None
        if info.status != self.status:
            log.info("%s: %s", self.what, info.status)
            state, phase = STATUS.get(info.status, (None, None))
            if phase:
                events.append(make("phase", {"phase": phase}, now))
            if state:
                fields = {"state": state}
                if info.status not in ("Completed", "Running", "Queued", "NotStarted"):
                    fields["reason"] = info.status
                events.append(make("status", fields, now))
            if info.status not in STATUS:
                log.warning("%s: unknown job status %r", self.what, info.status)
        self.status = info.status
        if info.status in FINAL_STATUSES and (not self.cfg.logs or self.ingest is None or self._caught_up):
            self._end_streams()
            self.done = True
        return events

    def _read_logs(self, client: AzureMLClient, info: JobInfo) -> None:
        files = client.log_files(self.cfg.name)
        self._caught_up = True
        for name in sorted_streamable_logs(files, info.job_type):
            off = self.offsets.get(name, 0)
            data = client.read(files[name], off)
            if not data:
                continue
            if len(data) >= MAX_READ:
                self._caught_up = False
            self.offsets[name] = off + len(data)
            # stream ids from 1<<20: never those of a file follower sharing the run's Ingest
            stream = self.streams.setdefault(name, (1 << 20) + len(self.streams))
            self.ingest.data(stream, data)

    _caught_up = False

    def _end_streams(self) -> None:
        if self.ingest is not None:
            for stream in self.streams.values():
                self.ingest.end(stream)     # flush a last line without a newline


# ---------------------------------------------------------------- config (no SDK, no network)

JOB_KEYS = ("name", "subscription_id", "resource_group", "workspace", "poll_seconds", "logs")


def parse_config(m, rid: str) -> AzureMLConfig:
    """`azureml_job:` of a run: a job name, or a mapping with name and the workspace."""
    from ..yamlfile import ConfigError, Map, check_keys, expect, number
    if isinstance(m, str):
        return AzureMLConfig(m)
    if not isinstance(m, Map):
        raise ConfigError(getattr(m, "file", "<config>"), getattr(m, "line", None),
                          f"run {rid!r}: azureml_job is a job name or a mapping with 'name'")
    check_keys(m, JOB_KEYS, f"azureml_job of run {rid!r}")
    if "name" not in m:
        raise ConfigError(m.file, m.line, f"run {rid!r}: azureml_job needs the job's 'name'")
    vals = {k: str(expect(m[k], str, m, k, f"run {rid!r}: azureml_job.{k}"))
            for k in ("name", "subscription_id", "resource_group", "workspace") if k in m}
    logs = expect(m.get("logs", True), bool, m, "logs", f"run {rid!r}: azureml_job.logs")
    return AzureMLConfig(vals["name"], vals.get("subscription_id"), vals.get("resource_group"),
                         vals.get("workspace"), float(number(m, "poll_seconds", 30.0, what=f"run {rid!r}: poll_seconds", minimum=5)), logs)
