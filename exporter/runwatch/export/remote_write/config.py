"""Remote-write settings: from --remote-write* flags, or the serve config's `remote_write:`.

Problems are ValueError (flags) or ConfigError with file:line (config); no
message echoes a secret.
"""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ...settings import parse_size
from ..httpauth import auth_header, safe_url

DEFAULT_INTERVAL = 15.0
DEFAULT_QUEUE_BYTES = 64 << 20
DEFAULT_SPOOL_BYTES = 1 << 30
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class EndpointConfig:
    url: str
    tenant: str | None = None          # X-Scope-OrgID (Mimir, Cortex, Thanos Receive, Grafana Cloud's Mimir)
    auth: str | None = None            # "USER:PASSWORD", "Bearer TOKEN" / "bearer:TOKEN", "@FILE"
    ca_file: str | None = None         # TLS: trust this CA bundle instead of the system's
    cert_file: str | None = None       # TLS client certificate (mutual TLS), with key_file
    key_file: str | None = None


@dataclass
class RemoteWriteConfig:
    endpoints: list[EndpointConfig] = field(default_factory=list)
    interval: float = DEFAULT_INTERVAL
    external_labels: dict[str, str] = field(default_factory=dict)
    job: str = "runwatch"
    instance: str | None = None        # None: HOST:PORT of the /metrics listener, as a scrape would say
    queue_max_bytes: int = DEFAULT_QUEUE_BYTES
    spool_dir: str | None = None       # None: <data dir>/remote-write-spool
    spool_max_bytes: int = DEFAULT_SPOOL_BYTES
    timeout: float = 10.0
    flush_timeout: float = 5.0
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0


def check_url(url: str) -> str:
    p = urlsplit(url)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ValueError(f"remote-write URL must be http(s)://HOST[:PORT]/PATH, got {safe_url(url)!r}")
    return url


def auth_headers(value: str | None, url: str = "") -> dict:
    """HTTP headers for an auth value (and user:password in the URL); ValueError without the secret."""
    out = {}
    p = urlsplit(url)
    if p.username is not None:
        raw = f"{unquote(p.username)}:{unquote(p.password or '')}"
        out["Authorization"] = "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")
    out.update(auth_header(value, "remote-write"))
    return out
    if value.startswith("@"):
        try:
            with open(os.path.expanduser(value[1:]), encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as e:
            raise ValueError(f"cannot read the remote-write auth file {value[1:]!r}: {e.strerror}") from None
    low = value.lower()
    if low.startswith("bearer ") or low.startswith("bearer:"):
        token = value[7:].strip()
        if not token:
            raise ValueError("remote-write auth: empty bearer token")
        out["Authorization"] = "Bearer " + token
    elif ":" in value:
        out["Authorization"] = "Basic " + base64.b64encode(value.encode("utf-8")).decode("ascii")
    else:
        raise ValueError("remote-write auth must be USER:PASSWORD, 'Bearer TOKEN' or @FILE holding one of those")
    return out


def parse_external_label(item: str) -> tuple[str, str]:
    name, sep, value = str(item).partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"external label {item!r}: expected NAME=VALUE")
    check_label_name(name)
    return name, value


def check_label_name(name: str) -> None:
    if not LABEL_RE.match(name) or name.startswith("__"):
        raise ValueError(f"external label {name!r} is not a valid Prometheus label name")


def from_args(args, base: RemoteWriteConfig | None = None) -> RemoteWriteConfig | None:
    """Flags over a config's `remote_write:`; None when no endpoint is given.
    --remote-write URLs replace the config's endpoints; their tenant, auth and
    TLS come from the --remote-write-* flags."""
    from dataclasses import replace

    urls = getattr(args, "remote_write", None) or []
    cfg = replace(base, external_labels=dict(base.external_labels)) if base else RemoteWriteConfig()
    if urls:
        cfg.endpoints = [EndpointConfig(url=check_url(u), tenant=getattr(args, "remote_write_tenant", None),
                                        auth=getattr(args, "remote_write_auth", None),
                                        ca_file=getattr(args, "remote_write_ca_file", None),
                                        cert_file=getattr(args, "remote_write_cert_file", None),
                                        key_file=getattr(args, "remote_write_key_file", None))
                         for u in urls]
    if not cfg.endpoints:
        return None
    for ep in cfg.endpoints:
        auth_headers(ep.auth, ep.url)            # a bad auth value fails at start, not at the first push
    if getattr(args, "remote_write_interval", None) is not None:
        cfg.interval = args.remote_write_interval
    if cfg.interval <= 0:
        raise ValueError("--remote-write-interval must be positive")
    for item in getattr(args, "external_label", None) or []:
        k, v = parse_external_label(item)
        cfg.external_labels[k] = v
    if getattr(args, "remote_write_spool_max_bytes", None) is not None:
        cfg.spool_max_bytes = args.remote_write_spool_max_bytes
    if getattr(args, "remote_write_flush_timeout", None) is not None:
        cfg.flush_timeout = args.remote_write_flush_timeout
    return cfg


TOP_KEYS = ("endpoints", "interval_seconds", "external_labels", "job", "instance", "queue_max_bytes", "spool_dir",
            "spool_max_bytes", "timeout_seconds", "flush_timeout_seconds", "min_backoff_seconds",
            "max_backoff_seconds")
ENDPOINT_KEYS = ("url", "tenant", "auth", "ca_file", "cert_file", "key_file")


def config_from_mapping(m, base_dir: str) -> RemoteWriteConfig:
    """The `remote_write:` mapping of a serve config; ConfigError with file:line on a problem."""
    from ...yamlfile import ConfigError, Map, Seq, check_keys, expect

    if not isinstance(m, Map):
        raise ConfigError(getattr(m, "file", "<config>"), getattr(m, "line", None),
                          "remote_write: must be a mapping with an 'endpoints:' list")
    check_keys(m, TOP_KEYS, "remote_write")
    eps = m.get("endpoints")
    if not isinstance(eps, Seq) or not eps:
        raise ConfigError(m.file, m.line_of("endpoints") if "endpoints" in m else m.line,
                          "remote_write: needs 'endpoints:', a list of {url: http://HOST:PORT/api/v1/write, …}")
    cfg = RemoteWriteConfig()

    def path(v: str) -> str:
        return os.path.join(base_dir, os.path.expanduser(v))

    for i, e in enumerate(eps):
        if not isinstance(e, Map):
            raise ConfigError(m.file, eps.line_of(i), "remote_write: each endpoint is a mapping with a 'url'")
        check_keys(e, ENDPOINT_KEYS, "a remote_write endpoint")
        if "url" not in e:
            raise ConfigError(e.file, e.line, "remote_write: an endpoint needs a 'url'")
        url = expect(e["url"], str, e, "url", "remote_write: url")
        try:
            check_url(url)
        except ValueError as err:
            raise ConfigError(e.file, e.line_of("url"), str(err)) from None
        ep = EndpointConfig(url=url)
        if "tenant" in e:
            ep.tenant = str(e["tenant"])
        if "auth" in e:
            ep.auth = expect(e["auth"], str, e, "auth", "remote_write: auth")
            try:
                auth_headers(ep.auth)
            except ValueError as err:
                raise ConfigError(e.file, e.line_of("auth"), str(err)) from None
        for key in ("ca_file", "cert_file", "key_file"):
            if key in e:
                setattr(ep, key, path(expect(e[key], str, e, key, f"remote_write: {key}")))
        if (ep.cert_file is None) != (ep.key_file is None):
            raise ConfigError(e.file, e.line, "remote_write: cert_file and key_file go together")
        cfg.endpoints.append(ep)
    labels = m.get("external_labels", {}) or {}
    if not isinstance(labels, Map) and labels != {}:
        raise ConfigError(m.file, m.line_of("external_labels"), "remote_write: external_labels must be a mapping")
    for k, v in labels.items():
        try:
            check_label_name(str(k))
        except ValueError as err:
            raise ConfigError(m.file, labels.line_of(k), f"remote_write: {err}") from None
        if isinstance(v, (dict, list)):
            raise ConfigError(m.file, labels.line_of(k), f"remote_write: external label {k!r} must have a plain value")
        cfg.external_labels[str(k)] = str(v)
    if "job" in m:
        cfg.job = str(m["job"])
    if "instance" in m:
        cfg.instance = str(m["instance"])
    if "spool_dir" in m:
        cfg.spool_dir = path(expect(m["spool_dir"], str, m, "spool_dir", "remote_write: spool_dir"))
    for key in ("queue_max_bytes", "spool_max_bytes"):
        if key in m:
            try:
                v = parse_size(m[key])
            except ValueError as err:
                raise ConfigError(m.file, m.line_of(key), f"remote_write: {key}: {err}") from None
            if v < 1024:
                raise ConfigError(m.file, m.line_of(key), f"remote_write: {key} must be at least 1KiB, got {v}")
            setattr(cfg, key, v)
    for key, attr in (("interval_seconds", "interval"), ("timeout_seconds", "timeout"),
                      ("flush_timeout_seconds", "flush_timeout"), ("min_backoff_seconds", "min_backoff"),
                      ("max_backoff_seconds", "max_backoff")):
        if key in m:
            v = expect(m[key], (int, float), m, key, f"remote_write: {key}")
            if v <= 0:
                raise ConfigError(m.file, m.line_of(key), f"remote_write: {key} must be positive, got {v}")
            setattr(cfg, attr, float(v))
    return cfg
