"""What both Azure sources share about azure-core: the credential, timeouts,
quiet SDK loggers and errors a user can act on.

- `default_credential()`: azure-identity's DefaultAzureCredential wrapped in a
  `CachingCredential`. azure-ai-ml asks its credential for a token on every
  `jobs.get`; with `az login` credentials each ask is an `az` subprocess, and
  DefaultAzureCredential does not cache CLI tokens. The wrapper hands out the
  same token until five minutes before it expires.
- `client_kwargs()`: what every SDK client runwatch makes is built with: no SDK
  retries (the poller backs off and honours Retry-After itself) and a
  connection and read timeout on every request, blob reads included (azure-core's
  default is 300 s each; a `raw_request_hook` sets them per request, so they
  hold whatever transport the client uses).
- `quiet_sdk_loggers()`: azure-core logs every request and response at INFO
  (`http_logging_policy`), azure-identity every token; at `--log-level info`
  they would drown runwatch's own log. Their warnings stay, except
  azure-ai-ml's activity log, which logs an ERROR for every failed call that
  runwatch reports itself (once per distinct failure).
- `azure_error()`: a `SourceError` with ARM's own error code and message
  (not the HTTP reason phrase), auth failures and 429s marked for the poller.

Nothing here imports an SDK at module import.
"""
from __future__ import annotations

import logging
import threading
import time

from ..retry import retry_after_seconds
from .errors import SourceError

INSTALL_HINT = "the Azure sources need the Azure SDKs: pip install 'runwatch[azure]'"

CONNECT_TIMEOUT = 10.0      # seconds to open a connection
READ_TIMEOUT = 60.0         # seconds to wait for an answer (a blob read of MAX_READ bytes included)
TOKEN_MARGIN = 300.0        # a cached token is renewed this long before it expires
MAX_MESSAGE = 600           # characters of a service's error message kept in a log line

#: SDK loggers that talk at INFO about every request or token
CHATTY_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "azure.ai.ml",
                  "azure.mgmt")


class CachingCredential:
    """A TokenCredential that asks the credential it wraps once per scope set and
    token lifetime. Requests with claims (a CAE challenge) or a tenant go through."""

    def __init__(self, inner, margin: float = TOKEN_MARGIN, clock=time.time):
        self.inner, self.margin, self.clock = inner, margin, clock
        self._tokens: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def get_token(self, *scopes, claims=None, tenant_id=None, **kwargs):
        if claims or tenant_id:
            return self.inner.get_token(*scopes, claims=claims, tenant_id=tenant_id, **kwargs)
        with self._lock:
            tok = self._tokens.get(scopes)
            if tok is not None and tok.expires_on - self.margin > self.clock():
                return tok
            tok = self.inner.get_token(*scopes, **kwargs)
            self._tokens[scopes] = tok
            return tok

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def default_credential():
    """`az login`, a service principal in AZURE_CLIENT_ID/…, or a managed identity, cached."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as e:
        raise SourceError(f"{INSTALL_HINT} ({e})") from None
    return CachingCredential(DefaultAzureCredential(exclude_interactive_browser_credential=True))


def cached(credential):
    """The credential a client gets: the default one, or the caller's, cached either way."""
    if credential is None:
        return default_credential()
    return credential if isinstance(credential, CachingCredential) else CachingCredential(credential)


def _set_timeouts(request) -> None:
    opts = request.context.options
    opts.setdefault("connection_timeout", CONNECT_TIMEOUT)
    opts.setdefault("read_timeout", READ_TIMEOUT)


def client_kwargs(kwargs: dict) -> dict:
    """kwargs for an azure-core client: the caller's, plus no SDK retries and timeouts."""
    kwargs.setdefault("retry_total", 0)
    kwargs.setdefault("raw_request_hook", _set_timeouts)
    return kwargs


def quiet_sdk_loggers() -> None:
    """Warnings and up from the SDKs' chatty loggers, unless a level was set for them."""
    for name in CHATTY_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)
    # azure-ai-ml gives some of its loggers their own INFO handler (not propagated), and its
    # activity loggers (azure.ai.ml._telemetry.<module>) their own level
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if not name.startswith("azure.ai.ml") or not isinstance(lg, logging.Logger):
            continue
        if name.startswith("azure.ai.ml._telemetry"):
            lg.setLevel(logging.CRITICAL)
        elif not lg.propagate:
            lg.setLevel(logging.WARNING)


def _service_message(e: Exception) -> str:
    """ARM's `error.code: error.message` when the body had one, else the exception's first line."""
    err = getattr(e, "error", None)
    code, message = getattr(err, "code", None), getattr(err, "message", None)
    if message:
        return f"{code}: {message}" if code else str(message)
    text = str(e)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in lines:                                       # "(Code) message" / "Message: …" forms
        if ln.startswith("Message:"):
            return ln.removeprefix("Message:").strip()
    return lines[0] if lines else type(e).__name__


def azure_error(e: Exception, what: str) -> SourceError:
    """A clear SourceError from an azure-core exception (without importing azure-core)."""
    status = getattr(e, "status_code", None)
    resp = getattr(e, "response", None)
    if status is None and resp is not None:
        status = getattr(resp, "status_code", None)
    name = type(e).__name__
    reason = _service_message(e)[:MAX_MESSAGE].rstrip(".")
    if name in ("ClientAuthenticationError", "CredentialUnavailableError") or status in (401, 403):
        code = f"HTTP {status}" if status else name
        return SourceError(f"{what}: authentication failed ({code}): {reason}. Check `az login`, "
                           f"AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET or the managed "
                           f"identity, and its role on the resource", auth=True)
    if status == 429:
        headers = getattr(resp, "headers", {}) or {}
        ra = retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"))
        return SourceError(f"{what}: throttled by Azure (HTTP 429), retry after {ra or '?'} s",
                           retry_after=ra)
    if status == 404 or name == "ResourceNotFoundError":
        return SourceError(f"{what}: not found (HTTP 404): {reason}")
    if status:
        return SourceError(f"{what}: HTTP {status}: {reason}")
    return SourceError(f"{what}: {name}: {reason}")
