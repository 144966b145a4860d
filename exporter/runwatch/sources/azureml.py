"""An Azure ML job: its status, its studio page and its log lines.

A state source for `pollers.Poller` that is also a line source: each poll

1. reads the job with `MLClient.jobs.get(name)` and maps its status onto the
   run state, from the transitions the service documents (`STATUS`): Paused,
   NotResponding, CancelRequested and Finalizing are phases of a running job,
   cleared when it leaves them; NotResponding is not an end (the service
   documents it as the one status a job can leave for any earlier one), nor is
   CancelRequested (the job ends when it is Canceled);
2. then, on its own, reads the logs: lists the job's log files from the run
   history's `logFiles` (name -> SAS URL), filtered and sorted by the SDK's own
   `_get_sorted_filtered_logs` (Common Runtime `user_logs/std_log*.txt`; else
   the legacy `azureml-logs/NN_*.txt` of command jobs — and of job types the
   SDK has no legacy pattern for, like pipeline steps of type parallel —,
   `logs/azureml/executionlogs.txt` of pipelines, `azureml-logs/hyperdrive.txt`
   of sweeps). `jobs.stream` reads these too, but for a job with a default
   output folder it reads `user_logs/` from that datastore folder instead; the
   run history lists the same files.
3. reads only what is new in each file: runwatch keeps a byte offset per file
   and asks the blob service for `Range: bytes=OFFSET-` (206; 416 when nothing
   is new; a 416 whose `Content-Range` says the blob is now shorter than the
   offset means it was rewritten, and it is read again from the start; a 200
   that ignores the range is cut at the offset). The bytes go through the run's
   `Ingest` (packs, Loki), one stream per file, so a partial last line waits
   for its end and never glues onto another file.

A failed log read (the storage firewall's 403, a 5xx, a timeout) never fails
the poll: the status is already applied, the logs show as their own source
`runwatch_source_up{source="azureml_logs"}` 0 (and count in
`runwatch_source_errors_total`), and the next poll reads from the same offsets.
After the job has ended, logs that stay unreadable for `LOG_ATTEMPTS_AFTER_END`
polls are given up (with a warning) so the source can stop.

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
import re
import time
from dataclasses import dataclass

from ..events import Event, make
from .azure_sdk import INSTALL_HINT, azure_error, cached, client_kwargs, quiet_sdk_loggers
from .errors import SourceError

log = logging.getLogger("runwatch")

#: Azure ML job status -> (run state or None: unchanged, phase or None: no phase)
STATUS = {
    "NotStarted": ("pending", None), "Queued": ("pending", None), "Preparing": ("pending", None),
    "Provisioning": ("pending", None), "Starting": ("pending", None),
    "Running": ("running", None), "Finalizing": ("running", "finalizing"),
    "CancelRequested": (None, "cancel_requested"), "NotResponding": (None, "not_responding"),
    "Paused": (None, "paused"),
    "Completed": ("succeeded", None), "Failed": ("failed", None), "Canceled": ("canceled", None),
}
#: the statuses a job never leaves (NotResponding and CancelRequested are not over yet)
FINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})
#: statuses whose name is the run's end reason
REASON = frozenset({"Failed", "Canceled"})
MAX_READ = 8 * 1024 * 1024          # bytes per file per poll (a long backlog is read over several polls)
LOG_ATTEMPTS_AFTER_END = 10         # polls of unreadable logs after the job ended before giving up
LOGS_SOURCE = "azureml_logs"


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


class LogRewritten(Exception):
    """The blob is now shorter than what was read of it: it was replaced."""


def sorted_streamable_logs(names, job_type: str) -> list[str]:
    """The log files `jobs.stream` would pick from a run history listing, in its order (the SDK's own filter).

    The SDK falls back to legacy names only for command, pipeline and sweep
    jobs; any other type (a pipeline step of type parallel, an untyped child)
    gets the command jobs' legacy names rather than nothing."""
    from azure.ai.ml.operations._job_ops_helper import _get_sorted_filtered_logs
    names = list(names)
    jtype = (job_type or "command").lower()
    found = _get_sorted_filtered_logs(names, jtype, None, only_streamable=True)
    if not found and jtype not in ("command", "pipeline", "sweep"):
        found = _get_sorted_filtered_logs(names, "command", None, only_streamable=True)
    return found


_CONTENT_RANGE_TOTAL = re.compile(r"/\s*(\d{1,19})\s*$")


_SAS_SIG = re.compile(r"sig=[^&\s]*")


def _storage_error(resp) -> str:
    """`HTTP 403 AuthorizationFailure` from a blob service answer (its x-ms-error-code)."""
    code = (resp.headers.get("x-ms-error-code") or "").strip()[:64]
    return f"HTTP {resp.status_code} {code}".strip()


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
        quiet_sdk_loggers()
        ml = MLClient(cached(credential), cfg.subscription_id, cfg.resource_group, cfg.workspace,
                      **client_kwargs(kwargs))
        quiet_sdk_loggers()
        return cls(ml)

    def job(self, name: str) -> JobInfo:
        job = self.ml.jobs.get(name)
        quiet_sdk_loggers()
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
        """Bytes of the blob from offset on (at most limit); b"" when nothing is new.
        LogRewritten when the blob is now shorter than offset."""
        pipeline = self.ml.jobs._requests_pipeline
        resp = pipeline.get(url, headers={"Range": f"bytes={offset}-{offset + limit - 1}",
                                          "x-ms-version": "2021-08-06"})
        status = resp.status_code
        if status == 206:
            return resp.body()
        if status == 200:                       # the range was ignored: cut it ourselves
            body = resp.body()
            if offset > len(body):
                raise LogRewritten()
            return body[offset:offset + limit]
        if status == 404:                       # not there yet
            return b""
        if status == 416:                       # nothing new, or the blob was replaced by a shorter one
            m = _CONTENT_RANGE_TOTAL.search(resp.headers.get("Content-Range") or "")
            if m and int(m.group(1)) < offset:
                raise LogRewritten()
            return b""
        raise SourceError(f"log read: {_storage_error(resp)}")


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
        self.phase: str | None = None
        self.run_state: str | None = None        # the run state last reported
        self.url: str | None = None
        self.done = False                        # terminal and its logs read to the end (or given up)
        self.parts: dict[str, bool] = {}         # what the poller exports besides source_up{azureml}
        self.log_error: str | None = None
        self._failed_after_end = 0

    @property
    def what(self) -> str:
        return f"azure ml job {self.cfg.name}"

    @property
    def client(self) -> AzureMLClient:
        if self._client is None:
            cfg = self.cfg.resolved()
            self._client = AzureMLClient.connect(cfg, self._credential)
        return self._client

    @property
    def _reads_logs(self) -> bool:
        return self.cfg.logs and self.ingest is not None

    def poll(self) -> list[Event]:
        self.parts = {}
        if self.done:
            return []
        client = self.client
        try:
            info = client.job(self.cfg.name)
        except SourceError:
            raise
        except Exception as e:  # noqa: BLE001 - the SDK raises many types; azure_error classifies each
            raise azure_error(e, self.what) from None
        self.url = info.studio_url or self.url
        events = self._status_events(info.status, self.clock())
        self.status = info.status
        caught_up = True
        if self._reads_logs and info.status not in ("NotStarted", "Queued"):
            caught_up = self._poll_logs(client, info)
        if info.status in FINAL_STATUSES and caught_up:
            self._end_streams()
            self.done = True
        return events

    def _status_events(self, status: str, now: float) -> list[Event]:
        if status == self.status:
            return []
        log.info("%s: %s", self.what, status)
        if status not in STATUS:
            log.warning("%s: unknown job status %r", self.what, status)
            return []
        state, phase = STATUS[status]
        if self.run_state in (None, "pending") and state is None:
            phase = None                         # a phase would start the run (cancel while queued)
        events: list[Event] = []
        if phase != self.phase:
            events.append(make("phase", {"phase": phase or ""}, now))     # "" clears it
            self.phase = phase
        if state:
            fields = {"state": state}
            if status in REASON:
                fields["reason"] = status
            events.append(make("status", fields, now))
            self.run_state = state
        return events

    def _poll_logs(self, client: AzureMLClient, info: JobInfo) -> bool:
        """Read what is new; True when read to the end (or given up after the job ended)."""
        try:
            caught_up = self._read_logs(client, info)
        except Exception as e:  # noqa: BLE001 - logs fail on their own, never the status
            err = e if isinstance(e, SourceError) else azure_error(e, "logs")
            msg = _SAS_SIG.sub("sig=REDACTED", f"{self.what}: {err}")
            self.parts[LOGS_SOURCE] = False
            if msg != self.log_error:
                log.warning("%s (the job's status is still read; logs retried next poll)", msg)
                self.log_error = msg
            if info.status not in FINAL_STATUSES:
                return False
            self._failed_after_end += 1
            if self._failed_after_end < LOG_ATTEMPTS_AFTER_END:
                return False
            log.warning("%s: the job has ended and its logs stayed unreadable for %d polls: giving up on them",
                        self.what, self._failed_after_end)
            return True
        self.parts[LOGS_SOURCE] = True
        if self.log_error is not None:
            log.info("%s: logs readable again", self.what)
            self.log_error = None
        return caught_up

    def _read_logs(self, client: AzureMLClient, info: JobInfo) -> bool:
        files = client.log_files(self.cfg.name)
        caught_up = True
        for name in sorted_streamable_logs(files, info.job_type):
            off = self.offsets.get(name, 0)
            try:
                data = client.read(files[name], off)
            except LogRewritten:
                log.info("%s: %s was rewritten (now shorter than the %d bytes read): reading it again",
                         self.what, name, off)
                stream = self.streams.get(name)
                if stream is not None:
                    self.ingest.end(stream)
                off = self.offsets[name] = 0
                data = client.read(files[name], 0)
            if not data:
                continue
            if len(data) >= MAX_READ:
                caught_up = False
            self.offsets[name] = off + len(data)
            # stream ids from 1<<20: never those of a file follower sharing the run's Ingest
            stream = self.streams.setdefault(name, (1 << 20) + len(self.streams))
            self.ingest.data(stream, data)
        return caught_up

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
    poll = float(number(m, "poll_seconds", 30.0, what=f"run {rid!r}: poll_seconds", minimum=5))
    return AzureMLConfig(vals["name"], vals.get("subscription_id"), vals.get("resource_group"),
                         vals.get("workspace"), poll, logs)
