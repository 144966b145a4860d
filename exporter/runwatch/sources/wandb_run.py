"""A Weights & Biases run: its state, chosen summary metrics, page URL and artifacts.

A state source for `pollers.Poller`, through the real `wandb.Api`
(`overrides={"base_url": …}` for W&B Server or a test server). Each poll:

- reloads the run (`Run.load(force=True)`: `Api.run` caches the run object,
  so without a forced load the state would never change);
- maps its state onto the run state and its summary metrics onto
  `score` events (only the names the config lists);
- checks each artifact not yet available: by default the run's history
  artifact `run-<id>-history:latest`, plus the configured ones. A version
  created before the run was (a shared `name:latest` an older run logged) is
  not this run's: it counts as not yet available.

Once the run has ended and every artifact is available, the source stops
asking W&B anything. A run that is resumed after it ended gets a new end time
(for the artifact deadline) when it ends again.

Errors are classified by their cause, not by the exception type: `wandb.Api()`
raises `AuthenticationError` for any failure of its login check. A 401/403 (or
the server not knowing the key) is a refused key; a wandb-core answer that
timed out is told apart by trying to connect to the server (no connection:
a network problem; connected: the server answered errors or too slowly —
wandb-core retries 5xx and 429 until the timeout); a dead wandb-core service
process (the connection to it is cached process-wide) is torn down and a new
one started on the next poll. A project the key cannot see (W&B answers
`project: null`, the same as for no such project) is a permission problem:
the source is down, never "run not created yet" nor "artifact missing".

A failing API must never read as "artifact missing": `Api.artifact_exists`
answers False on some transport and parse errors, so it is not used. An
artifact is missing only when the server answered that it does not exist;
anything else (timeouts, 5xx, 429, a malformed answer) fails the poll, so
`runwatch_source_up{source="wandb"}` goes to 0 and the artifact keeps the value
it had. The API key comes from the environment (`WANDB_API_KEY` or the
variable the config names) and is never logged.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..events import Event, make
from .errors import SourceError

log = logging.getLogger("runwatch")

INSTALL_HINT = "the W&B source needs the wandb SDK: pip install 'runwatch[wandb]'"
DEFAULT_BASE_URL = "https://api.wandb.ai"     # only when wandb cannot say which server it uses
#: W&B run states that mean the run has ended
WANDB_ENDED = frozenset({"finished", "crashed", "failed", "killed", "preempted"})

#: W&B run states -> (runwatch state, reason)
STATES = {
    "pending": ("pending", None),
    "running": ("running", None),
    "preempting": ("running", "preempting"),
    "finished": ("succeeded", None),
    "crashed": ("failed", "crashed"),
    "failed": ("failed", "failed"),
    "killed": ("canceled", "killed"),
    "preempted": ("failed", "preempted"),
}


@dataclass
class WandbConfig:
    entity: str
    project: str
    run_id: str
    summary: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    history_artifact: bool = True
    artifact_deadline_minutes: float | None = None
    poll_seconds: float = 60.0
    base_url: str | None = None
    api_key_env: str = "WANDB_API_KEY"
    timeout: float = 20.0

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.run_id}"

    def artifact_names(self) -> list[str]:
        """Artifact names as the runwatch_artifact_available{artifact} label shows them."""
        names = [f"run-{self.run_id}-history"] if self.history_artifact else []
        for a in self.artifacts:
            a = a.split("/")[-1]
            if a.endswith(":latest"):
                a = a[: -len(":latest")]
            if a not in names:
                names.append(a)
        return names

    def artifact_path(self, name: str) -> str:
        full = name if ":" in name else f"{name}:latest"
        for a in self.artifacts:
            if a.count("/") == 2 and a.split("/")[-1].split(":")[0] == name.split(":")[0]:
                return a if ":" in a else f"{a}:latest"
        return f"{self.entity}/{self.project}/{full}"


def require_sdk() -> None:
    try:
        import wandb  # noqa: F401 - imported only to learn the SDK is installed
    except ImportError as e:
        raise SourceError(f"{INSTALL_HINT} ({e})") from None


def _parse_time(s) -> float | None:
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)   # W&B times are UTC
    return dt.timestamp()


def _causes(e: BaseException | None) -> list[BaseException]:
    """The exception, what it wraps (CommError.exc) and its causes, nearest first."""
    out: list[BaseException] = []
    while e is not None and len(out) < 8 and all(e is not x for x in out):
        out.append(e)
        e = getattr(e, "exc", None) or e.__cause__ or e.__context__
    return out


def _http_status(e: BaseException) -> int | None:
    for err in _causes(e):
        resp = getattr(err, "response", None)
        status = getattr(resp, "http_status", None)
        if status:
            return int(status)
    return None


def _project_hidden(e: BaseException) -> bool:
    """W&B answered `project: null`: no such project, or not one this key may see."""
    return " not found under entity " in str(e) and _http_status(e) is None


def _not_found(e: BaseException) -> bool:
    """True only for the server's own 'does not exist' answers."""
    inner = getattr(e, "exc", None)
    if inner is not None and type(inner).__name__ == "ValidationError":   # pydantic: a malformed answer
        return False
    if _http_status(e) not in (None, 404):
        return False
    msg = str(e)
    if "Failed to execute API request" in msg or "did not respond" in msg:
        return False
    return "Could not find run" in msg or " not found in " in msg


def _uncommitted(e: BaseException) -> bool:
    """The server answered with the artifact, but it is still PENDING (uploading):
    wandb 0.31 cannot build an Artifact for it (`assert artifact.id is not None`
    in Artifact._from_attrs, as `id` is None for a draft)."""
    return type(getattr(e, "exc", None)).__name__ == "AssertionError" and _http_status(e) is None


# ---------------------------------------------------------------- the wandb-core service process

def service_died() -> bool:
    """Whether the wandb-core process this Python process started has exited."""
    try:
        from wandb.sdk import wandb_setup
        conn = getattr(wandb_setup._singleton, "_connection", None)
        proc = getattr(getattr(conn, "_proc", None), "_process", None)
        return proc is not None and proc.poll() is not None
    except Exception:  # noqa: BLE001 - a wandb without these internals: judge by the error alone
        return False


def _service_failure(e: BaseException) -> bool:
    """The error is the service connection's, not the server's."""
    for c in _causes(e):
        if isinstance(c, (ConnectionError, EOFError)) or "service process is not running" in str(c):
            return True
    return service_died()


def restart_service() -> None:
    """Drop the dead wandb-core connection wandb caches process-wide; the next
    `wandb.Api()` starts a new service process."""
    try:
        import wandb
        wandb.teardown()
    except (Exception, SystemExit):
        log.debug("wandb teardown after the service died", exc_info=True)


def _proxied(base_url: str) -> bool:
    import urllib.request
    u = urllib.parse.urlsplit(base_url)
    return bool(urllib.request.getproxies().get(u.scheme)) and not urllib.request.proxy_bypass(u.hostname or "")


def _reachable(base_url: str, timeout: float = 5.0) -> str | None:
    """None when a TCP connection to the server opens; else why it does not."""
    u = urllib.parse.urlsplit(base_url)
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"cannot connect to {host}:{port}: {e.strerror or e}"


def wandb_error(e: BaseException, what: str, base_url: str = DEFAULT_BASE_URL) -> SourceError:
    """A SourceError that says what failed: the key, the network, the server or wandb-core."""
    name = type(e).__name__
    status = _http_status(e)
    msg = str(e).splitlines()[0] if str(e) else name
    if status in (401, 403) or "invalid credentials" in msg:
        return SourceError(f"{what}: W&B refused the API key ({msg}); set WANDB_API_KEY "
                           f"(or the variable named by api_key_env)", auth=True)
    if _service_failure(e):
        return SourceError(f"{what}: the wandb-core service process stopped ({msg}); a new one is "
                           f"started on the next poll")
    if status == 429:
        return SourceError(f"{what}: rate limited by W&B (HTTP 429)")
    if status and status >= 500:
        return SourceError(f"{what}: W&B answered HTTP {status}: {msg}")
    if "did not respond in time" in msg:
        if _proxied(base_url):                     # a direct connection would say nothing
            return SourceError(f"{what}: W&B at {base_url} did not answer in time through the proxy "
                               f"(no connection, server errors or rate limiting)")
        why = _reachable(base_url)
        if why:
            return SourceError(f"{what}: no connection to W&B at {base_url} ({why})")
        return SourceError(f"{what}: W&B at {base_url} answered with errors or too slowly (wandb-core "
                           f"retries 5xx and 429 until the timeout)")
    return SourceError(f"{what}: {name}: {msg}")


def _hidden_project_error(what: str, entity: str, project: str) -> SourceError:
    return SourceError(f"{what}: project {entity}/{project} is not visible with this API key (no such "
                       f"project, or the key's account is not a member of {entity!r}); check the entity "
                       f"and project names and the key", auth=True)


class WandbSource:
    source = "wandb"

    def __init__(self, cfg: WandbConfig, *, api=None, clock=time.time):
        self.cfg = cfg
        self.interval = cfg.poll_seconds
        self._api = api
        self._run = None
        self.clock = clock
        self.url: str | None = None
        self.state: str | None = None
        self.available: dict[str, float | None] = {}     # artifact -> available since (None: missing)
        self.end_ts: float | None = None
        self.created_ts: float | None = None               # the run's createdAt
        self.done = False                                  # ended, every artifact in: nothing left to ask
        self._deadline_logged: set[str] = set()
        self._older_logged: set[str] = set()
        self._run_missing_logged = False
        self._project_seen = False

    @property
    def base_url(self) -> str:
        """The server `wandb.Api` talks to: the config's, else wandb's own choice (WANDB_BASE_URL,
        `wandb login --host`, its default), resolved as `wandb.Api` resolves it."""
        if self.cfg.base_url:
            return self.cfg.base_url
        try:
            from wandb import env
            from wandb.sdk import wandb_setup
            return env.get_base_url(wandb_setup.singleton().settings.base_url)
        except Exception:  # noqa: BLE001 - SDK internals: any failure falls back to the documented default
            return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL

    def _error(self, e: BaseException, what: str) -> SourceError:
        err = wandb_error(e, what, self.base_url)
        if _service_failure(e):
            self._api = self._run = None              # bound to the dead connection
            if service_died():
                restart_service()
        return err

    @property
    def what(self) -> str:
        return f"wandb run {self.cfg.path}"

    @property
    def api(self):
        if self._api is None:
            try:
                import wandb
            except ImportError as e:
                raise SourceError(f"{INSTALL_HINT} ({e})") from None
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                raise SourceError(f"{self.what}: no API key: set {self.cfg.api_key_env}", auth=True)
            overrides = {"base_url": self.cfg.base_url} if self.cfg.base_url else {}
            if service_died():
                restart_service()
            try:
                self._api = wandb.Api(api_key=key, overrides=overrides, timeout=int(self.cfg.timeout))
            except Exception as e:  # noqa: BLE001 - classified below
                raise self._error(e, self.what) from None
        return self._api

    def poll(self) -> list[Event]:
        if self.done:
            return []
        api = self.api
        now = self.clock()
        events: list[Event] = []
        try:
            if self._run is None:
                self._run = api.run(self.cfg.path)
            else:
                self._run.load(force=True)        # Api.run caches: force a fresh answer
        except Exception as e:  # noqa: BLE001 - the SDK raises many types; _not_found/_error classify each
            if _not_found(e):
                self._check_project(api)
                if not self._run_missing_logged:
                    log.info("%s: not found (yet); waiting for it", self.what)
                    self._run_missing_logged = True
                return events
            raise self._error(e, self.what) from None
        self._project_seen = True
        run = self._run
        self.url = getattr(run, "url", None) or self.url
        self.created_ts = _parse_time(getattr(run, "created_at", None)) or self.created_ts
        wstate = str(getattr(run, "state", "") or "").lower()
        mapped = STATES.get(wstate)
        if mapped is not None:
            state, reason = mapped
            if wstate != self.state:
                log.info("%s: %s", self.what, wstate)
                fields = {"state": state}
                if reason:
                    fields["reason"] = reason
                events.append(make("status", fields, now))
                if wstate in WANDB_ENDED:
                    self.end_ts = now
                else:                              # (resumed): a new end time when it ends again
                    self.end_ts = None
                    self._deadline_logged.clear()
            self.state = wstate
        summary = getattr(run, "summary_metrics", None) or {}
        for name in self.cfg.summary:
            v = summary.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                events.append(make("score", {"name": name, "value": v}, now))
        events.extend(self._artifacts(api, now))
        if self.state in WANDB_ENDED and all(self.available.get(n) is not None
                                                 for n in self.cfg.artifact_names()):
            log.info("%s: ended, every artifact available: no more polls", self.what)
            self.done = True
        return events

    def _check_project(self, api) -> None:
        """The run is not there: is the project? W&B answers project: null for one the key cannot see."""
        if self._project_seen:
            return
        try:
            _ = api.project(self.cfg.project, self.cfg.entity).id    # reading .id makes the SDK ask
        except ValueError as e:
            if e.__cause__ is not None:            # the lookup itself failed
                raise self._error(e.__cause__, self.what) from None
            raise _hidden_project_error(self.what, self.cfg.entity, self.cfg.project) from None
        except Exception as e:  # noqa: BLE001 - the SDK raises many types; _error classifies each
            raise self._error(e, self.what) from None
        self._project_seen = True

    def _artifacts(self, api, now: float) -> list[Event]:
        out = []
        for name in self.cfg.artifact_names():
            if self.available.get(name) is not None:
                continue                          # available stays available: stop asking
            path = self.cfg.artifact_path(name)
            try:
                art = api.artifact(path)
                state = str(getattr(art, "state", "COMMITTED") or "COMMITTED").upper()
                since = _parse_time(getattr(art, "created_at", None)) or now
                ok = state == "COMMITTED" and not self._older_than_run(name, since)
            except Exception as e:  # noqa: BLE001 - the SDK raises many types; classified below
                if _project_hidden(e):
                    entity, project = path.split("/")[:2]
                    raise _hidden_project_error(f"{self.what}: artifact {name}", entity, project) from None
                if not (_not_found(e) or _uncommitted(e)):
                    raise self._error(e, f"{self.what}: artifact {name}") from None
                ok, since = False, None
            if ok:
                log.info("%s: artifact %s available", self.what, name)
                self.available[name] = since
                out.append(make("artifact", {"artifact": name, "available": True, **self._deadline}, since))
            else:
                if name not in self.available:
                    out.append(make("artifact", {"artifact": name, "available": False, **self._deadline}, now))
                self.available[name] = None
                self._check_deadline(name, now)
        return out

    def _older_than_run(self, name: str, since: float) -> bool:
        """A version created before the run was cannot be the run's (a shared alias moved by another run)."""
        if self.created_ts is None or since >= self.created_ts:
            return False
        if name not in self._older_logged:
            log.info("%s: artifact %s is a version from before this run (%s); waiting for this run's",
                     self.what, name, datetime.fromtimestamp(since, timezone.utc).isoformat())
            self._older_logged.add(name)
        return True

    @property
    def _deadline(self) -> dict:
        """The configured deadline, exported so RunwatchArtifactMissing fires after it."""
        dl = self.cfg.artifact_deadline_minutes
        return {"deadline_seconds": dl * 60} if dl is not None else {}

    def _check_deadline(self, name: str, now: float) -> None:
        dl = self.cfg.artifact_deadline_minutes
        if dl is None or self.end_ts is None or name in self._deadline_logged:
            return
        if now - self.end_ts > dl * 60:
            log.warning("%s: artifact %s still missing %.0f min after the run ended (deadline %g min)",
                        self.what, name, (now - self.end_ts) / 60, dl)
            self._deadline_logged.add(name)


# ---------------------------------------------------------------- config (no SDK, no network)

WANDB_KEYS = ("entity", "project", "run_id", "summary", "artifacts", "history_artifact",
              "artifact_deadline_minutes", "poll_seconds", "base_url", "api_key_env")


def parse_config(m, rid: str) -> WandbConfig:
    """`wandb:` of a run in runwatch.yaml. The API key is never in the file: it is
    read from WANDB_API_KEY (or the variable `api_key_env` names) when serving."""
    from ..yamlfile import ConfigError, Map, Seq, check_keys, expect, number
    if not isinstance(m, Map):
        raise ConfigError(getattr(m, "file", "<config>"), getattr(m, "line", None),
                          f"run {rid!r}: wandb is a mapping with entity, project, run_id")
    if "api_key" in m:
        raise ConfigError(m.file, m.line_of("api_key"), f"run {rid!r}: do not put the W&B API key in the config; "
                          f"set WANDB_API_KEY (or name another variable with api_key_env)")
    check_keys(m, WANDB_KEYS, f"wandb of run {rid!r}")
    vals = {}
    for k in ("entity", "project", "run_id"):
        if k not in m:
            raise ConfigError(m.file, m.line, f"run {rid!r}: wandb needs {k!r}")
        vals[k] = str(expect(m[k], (str, int), m, k, f"run {rid!r}: wandb.{k}"))
    lists = {}
    for k in ("summary", "artifacts"):
        v = m.get(k, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(m.file, m.line_of(k), f"run {rid!r}: wandb.{k} must be a list of names")
        lists[k] = list(v)
    for j, a in enumerate(lists["artifacts"]):
        if a.count("/") not in (0, 2):
            line = m["artifacts"].line_of(j) if isinstance(m.get("artifacts"), Seq) else m.line_of("artifacts")
            raise ConfigError(m.file, line, f"run {rid!r}: artifact {a!r}: use NAME[:ALIAS] or "
                              f"ENTITY/PROJECT/NAME[:ALIAS]")
    hist = expect(m.get("history_artifact", True), bool, m, "history_artifact", f"run {rid!r}: history_artifact")
    base = m.get("base_url")
    if base is not None:
        base = str(expect(base, str, m, "base_url", f"run {rid!r}: wandb.base_url"))
        if not base.startswith(("http://", "https://")):
            raise ConfigError(m.file, m.line_of("base_url"), f"run {rid!r}: base_url must be an http(s) URL")
    env = str(expect(m.get("api_key_env", "WANDB_API_KEY"), str, m, "api_key_env", f"run {rid!r}: api_key_env"))
    deadline = number(m, "artifact_deadline_minutes", None, what=f"run {rid!r}: artifact_deadline_minutes",
                      minimum=0)
    poll = number(m, "poll_seconds", 60.0, what=f"run {rid!r}: poll_seconds", minimum=5)
    return WandbConfig(vals["entity"], vals["project"], vals["run_id"], lists["summary"], lists["artifacts"],
                       hist, deadline, float(poll), base, env)
