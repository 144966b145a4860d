"""What the shipper is told: LokiConfig, from the `loki:` section of a serve config and the --loki-* flags.

Also where the URL and the auth value become an HTTP target (`LokiConfig.push_target`),
so that no message, label or log line ever holds the password or token: `safe_url`
is the URL for humans.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

from ...settings import LOKI_SPOOL, data_dir, parse_size
from ..httpauth import auth_header, safe_url
from .shipper import Shipper

log = logging.getLogger("runwatch.loki")

PUSH_PATH = "/loki/api/v1/push"
DEFAULT_BATCH_WAIT = 1.0
DEFAULT_BATCH_BYTES = 1 << 20
DEFAULT_QUEUE_BYTES = 32 << 20
DEFAULT_SPOOL_BYTES = 1 << 30


@dataclass(frozen=True)
class PushTarget:
    """Where and how to POST: what the shipper's connection needs."""
    https: bool
    host: str
    port: int
    path: str
    headers: dict
    url_for_humans: str


@dataclass
class LokiConfig:
    url: str
    tenant: str | None = None
    auth: str | None = None            # "USER:PASSWORD", "Bearer TOKEN" / "bearer:TOKEN", "@FILE"
    spool_dir: str | None = None       # None: no spool (memory only; overflow dropped as queue_full)
    spool_max_bytes: int = DEFAULT_SPOOL_BYTES
    queue_max_bytes: int = DEFAULT_QUEUE_BYTES
    batch_wait: float = DEFAULT_BATCH_WAIT
    batch_max_bytes: int = DEFAULT_BATCH_BYTES
    timeout: float = 10.0              # per push; a push that times out is retried as smaller batches
    flush_timeout: float = 5.0
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0
    max_age: float = 7 * 86400.0       # older entries are dropped (too_old): Loki would reject them
    host: str | None = None
    gzip_level: int = 1

    def push_target(self) -> PushTarget:
        """The push endpoint and headers; ValueError for a bad URL or auth value (the message holds no secret)."""
        p = urlsplit(self.url)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise ValueError(f"Loki URL must be http(s)://HOST[:PORT][/PATH], got {safe_url(self.url)!r}")
        https = p.scheme == "https"
        path = p.path.rstrip("/")
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "User-Agent": "runwatch"}
        if p.username is not None:
            headers.update(parse_auth(f"{unquote(p.username)}:{unquote(p.password or '')}"))
        headers.update(parse_auth(self.auth))
        if self.tenant:
            headers["X-Scope-OrgID"] = self.tenant
        return PushTarget(https, p.hostname, p.port or (443 if https else 80),
                          path if path.endswith(PUSH_PATH) else path + PUSH_PATH, headers, safe_url(self.url))


def parse_auth(value: str | None) -> dict:
    """HTTP headers for a Loki auth value; raises ValueError (without echoing the secret)."""
    return auth_header(value, "Loki")


def spool_dir_for(directory: str) -> str:
    return os.path.join(directory, LOKI_SPOOL)


def from_args(args, base: LokiConfig | None = None) -> Shipper | None:
    """A started Shipper from --loki-* flags over a config's `loki:` (None without a URL).

    The spool goes to <data dir>/loki-spool unless the config names a spool_dir.
    Raises ValueError for a bad URL or auth value (the message holds no secret).
    """
    url = getattr(args, "loki_url", None) or (base.url if base else None)
    if not url:
        return None
    cfg = replace(base, url=url) if base else LokiConfig(url=url)
    if getattr(args, "loki_tenant", None):
        cfg.tenant = args.loki_tenant
    if getattr(args, "loki_auth", None):
        cfg.auth = args.loki_auth
    if getattr(args, "loki_spool_max_bytes", None) is not None:
        cfg.spool_max_bytes = args.loki_spool_max_bytes
    if getattr(args, "loki_flush_timeout", None) is not None:
        cfg.flush_timeout = args.loki_flush_timeout
    if not cfg.spool_dir:
        cfg.spool_dir = spool_dir_for(data_dir(getattr(args, "data_dir", None)))
    try:
        shipper = Shipper(cfg)
    except OSError as e:
        log.warning("loki: cannot use the spool in %s (%s); lines that do not fit in memory while Loki is "
                    "down will be dropped", cfg.spool_dir, e.strerror or e)
        cfg.spool_dir = None
        shipper = Shipper(cfg)
    return shipper.start()


LOKI_KEYS = ("url", "tenant", "auth", "spool_dir", "spool_max_bytes", "queue_max_bytes", "batch_wait_seconds",
             "batch_max_bytes", "timeout_seconds", "flush_timeout_seconds", "min_backoff_seconds",
             "max_backoff_seconds", "max_age_seconds")


def config_from_mapping(m, base_dir: str) -> LokiConfig:
    """The `loki:` mapping of a serve config; ConfigError with file:line on a problem."""
    from ...yamlfile import ConfigError, check_keys, expect

    if not isinstance(m, dict) or not hasattr(m, "line_of"):
        raise ConfigError(getattr(m, "file", "<config>"), getattr(m, "line", None),
                          "loki: must be a mapping with at least 'url'")
    check_keys(m, LOKI_KEYS, "loki")
    if "url" not in m:
        raise ConfigError(m.file, m.line, "loki: needs a 'url' (e.g. http://loki:3100)")
    url = expect(m["url"], str, m, "url", "loki: url")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ConfigError(m.file, m.line_of("url"), f"loki: url must be http(s)://HOST[:PORT], got {safe_url(url)!r}")
    cfg = LokiConfig(url=url)
    if "tenant" in m:
        cfg.tenant = str(m["tenant"])
    if "auth" in m:
        cfg.auth = expect(m["auth"], str, m, "auth", "loki: auth")
        try:
            parse_auth(cfg.auth)
        except ValueError as e:
            raise ConfigError(m.file, m.line_of("auth"), f"loki: {e}") from None
    if "spool_dir" in m:
        cfg.spool_dir = os.path.join(base_dir, os.path.expanduser(expect(m["spool_dir"], str, m, "spool_dir",
                                                                        "loki: spool_dir")))
    for key, attr in (("spool_max_bytes", "spool_max_bytes"), ("queue_max_bytes", "queue_max_bytes"),
                      ("batch_max_bytes", "batch_max_bytes")):
        if key in m:
            try:
                v = parse_size(m[key])
            except ValueError as e:
                raise ConfigError(m.file, m.line_of(key), f"loki: {key}: {e}") from None
            if v < 1024:
                raise ConfigError(m.file, m.line_of(key), f"loki: {key} must be at least 1KiB, got {v}")
            setattr(cfg, attr, v)
    for key, attr in (("batch_wait_seconds", "batch_wait"), ("timeout_seconds", "timeout"),
                      ("flush_timeout_seconds", "flush_timeout"), ("min_backoff_seconds", "min_backoff"),
                      ("max_backoff_seconds", "max_backoff"), ("max_age_seconds", "max_age")):
        if key in m:
            v = expect(m[key], (int, float), m, key, f"loki: {key}")
            if v <= 0:
                raise ConfigError(m.file, m.line_of(key), f"loki: {key} must be positive, got {v}")
            setattr(cfg, attr, float(v))
    return cfg
