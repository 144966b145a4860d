"""The web config file (`--web.config.file`): TLS and basic auth in the format
Prometheus exporters share (the exporter-toolkit's web configuration).

    tls_server_config:
      cert_file: server.crt            # relative paths: from the config file's directory
      key_file: server.key
      # client_auth_type: RequireAndVerifyClientCert   (with client_ca_file)
      # min_version: TLS12             # TLS10..TLS13; max_version likewise
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\\n')

Semantics follow the exporter-toolkit: TLS is on when `tls_server_config`
names a certificate; with `basic_auth_users` every request needs a user and
password of that list, checked with bcrypt and cached per (user, hash,
password) so a scrape costs one hash check, not one per scrape; an unknown
user is checked against a decoy hash so timing does not tell which users
exist. runwatch differs in three documented ways: writes (POST with a bearer
token) are authenticated by the API token instead of a password; the file is
read once at start (restart to change it); keys runwatch cannot honour
(inline `cert`/`key`, `cipher_suites`, `curve_preferences`,
`client_allowed_sans`, `rate_limit`, client-certificate modes without
verification) are errors rather than silently ignored. docs/security.md.
"""
from __future__ import annotations

import hashlib
import os
import re
import ssl
import threading
from dataclasses import dataclass, field

from ..yamlfile import ConfigError, Map, check_keys, load_file

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
            "prefer_server_cipher_suites", "cert", "key", "client_ca", "client_allowed_sans", "cipher_suites",
            "curve_preferences")
HTTP_KEYS = ("http2", "headers")
NOT_HONOURED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "an inline client CA is not supported; use client_ca_file",
    "client_allowed_sans": "not supported by runwatch (Python's ssl module cannot check a client's SANs here)",
    "cipher_suites": "not supported by runwatch (OpenSSL's defaults apply; TLS 1.3 suites are not configurable)",
    "curve_preferences": "not supported by runwatch (OpenSSL's defaults apply)",
}
VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
            "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# the headers a web config may set, and their allowed values (None: any), as the exporter-toolkit has them
HEADERS = {"Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",),
           "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": None, "Content-Security-Policy": None}
BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
CACHE_MAX = 1024            # remembered (user, hash, password) checks
MAX_PENDING_CHECKS = 4      # bcrypt checks waiting at once; more get 429 instead of holding threads


@dataclass
class WebConfig:
    path: str
    ssl_context: ssl.SSLContext | None = None
    users: dict = field(default_factory=dict)           # user -> bcrypt hash (bytes)
    headers: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pending: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_PENDING_CHECKS), repr=False)
    _decoy: bytes = b""

    def authenticate(self, header: str | None) -> bool | None:
        """True if the Authorization header holds a valid basic-auth user and
        password; False if not; None if too many checks are already running."""
        user, password = _basic(header)
        if user is None:
            return False
        hashed = self.users.get(user)
        known = hashed is not None
        hashed = hashed if known else self._decoy
        key = hashlib.sha256(b"\0".join((user.encode("utf-8", "surrogatepass"), hashed,
                                         password.encode("utf-8", "surrogatepass")))).digest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached and known
        if not self._pending.acquire(blocking=False):
            return None
        try:
            import bcrypt
            try:
                ok = bcrypt.checkpw(password.encode("utf-8", "surrogatepass"), hashed)
            except ValueError:
                ok = False
        finally:
            self._pending.release()
        ok = ok and known
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = ok
        return ok


def _basic(header: str | None) -> tuple[str | None, str]:
    import base64
    import binascii
    if not header or header[:6].lower() != "basic ":
        return None, ""
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, ""
    user, sep, password = raw.partition(":")
    return (user, password) if sep else (None, "")


def load_web_config(path: str) -> WebConfig:
    """Read and check a web config file; ConfigError names the file, line and key."""
    doc = load_file(path)
    cfg = WebConfig(path=path)
    if doc is None:
        return cfg
    if not isinstance(doc, Map):
        raise ConfigError(path, getattr(doc, "line", None), "a web config is a mapping with tls_server_config, "
                                                             "http_server_config and basic_auth_users")
    check_keys(doc, TOP_KEYS, "the web config")
    if "rate_limit" in doc:
        raise ConfigError(path, doc.line_of("rate_limit"),
                          "rate_limit is not supported by runwatch (the events API has its own rate limit)")
    base = os.path.dirname(os.path.abspath(path))
    tls = _section(doc, "tls_server_config")
    if tls is not None:
        cfg.ssl_context = _tls(tls, base, doc.line_of("tls_server_config"))
    http = _section(doc, "http_server_config")
    if http is not None:
        check_keys(http, HTTP_KEYS, "http_server_config")
        if "http2" in http and not isinstance(http["http2"], bool):
            raise ConfigError(path, http.line_of("http2"), "http_server_config.http2 must be true or false")
        headers = http.get("headers")
        if headers is not None:
            if not isinstance(headers, Map):
                raise ConfigError(path, http.line_of("headers"), "http_server_config.headers must be a mapping")
            for k, v in headers.items():
                where = headers.line_of(k)
                if k not in HEADERS:
                    raise ConfigError(path, where, f"http_server_config.headers: {k!r} cannot be set; "
                                                   f"allowed: {', '.join(HEADERS)}")
                if not isinstance(v, str) or not v or any(c in v for c in "\r\n\0"):
                    raise ConfigError(path, where, f"http_server_config.headers.{k} must be a one-line string")
                if HEADERS[k] is not None and v not in HEADERS[k]:
                    raise ConfigError(path, where, f"http_server_config.headers.{k} must be one of "
                                                   f"{', '.join(HEADERS[k])}, got {v!r}")
                cfg.headers[k] = v
    users = doc.get("basic_auth_users")
    if users is not None:
        if not isinstance(users, Map):
            raise ConfigError(path, doc.line_of("basic_auth_users"),
                              "basic_auth_users must map user names to bcrypt hashes")
        for user, hashed in users.items():
            where = users.line_of(user)
            if not isinstance(user, str) or not user or ":" in user:
                raise ConfigError(path, where, f"basic_auth_users: {user!r} is not a valid user name "
                                               f"(a non-empty string without ':')")
            if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
                raise ConfigError(path, where, f"basic_auth_users.{user}: not a bcrypt hash (expected "
                                               f"$2y$10$ and 53 more characters, from htpasswd -nBC 10)")
            cfg.users[user] = hashed.encode("ascii")
        if cfg.users:
            try:
                import bcrypt
            except ImportError:
                raise ConfigError(path, doc.line_of("basic_auth_users"),
                                  "basic_auth_users needs the bcrypt package: pip install 'runwatch[auth]' "
                                  "(or pip install bcrypt)") from None
            cost = int(BCRYPT_HASH.fullmatch(next(iter(cfg.users.values())).decode()).group(1))
            cfg._decoy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(max(4, min(cost, 14))))
    return cfg


def _section(doc: Map, key: str) -> Map | None:
    v = doc.get(key)
    if v is None:
        return None
    if not isinstance(v, Map):
        raise ConfigError(doc.file, doc.line_of(key), f"{key} must be a mapping")
    return v


def _tls(t: Map, base: str, line: int | None) -> ssl.SSLContext | None:
    path = t.file
    check_keys(t, TLS_KEYS, "tls_server_config")
    for k, why in NOT_HONOURED.items():
        if t.get(k) not in (None, "", []):
            raise ConfigError(path, t.line_of(k), f"tls_server_config.{k}: {why}")
    for k in ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"):
        if k in t and t[k] is not None and not isinstance(t[k], str):
            raise ConfigError(path, t.line_of(k), f"tls_server_config.{k} must be a string")
    versions = {}
    for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = t.get(k) or default
        if v not in VERSIONS:
            raise ConfigError(path, t.line_of(k), f"tls_server_config.{k}: unknown TLS version {v!r}; "
                                                  f"use one of {', '.join(VERSIONS)}")
        versions[k] = VERSIONS[v]
    if versions["min_version"] > versions["max_version"]:
        raise ConfigError(path, t.line_of("min_version"), "tls_server_config: min_version is above max_version")
    cert, key = t.get("cert_file") or "", t.get("key_file") or ""
    client_ca, client_auth = t.get("client_ca_file") or "", t.get("client_auth_type") or ""
    if not (cert or key or client_ca or client_auth):
        return None                      # as in the exporter-toolkit: no TLS settings, plain HTTP
    if not cert:
        raise ConfigError(path, line, "tls_server_config: missing cert_file")
    if not key:
        raise ConfigError(path, line, "tls_server_config: missing key_file")
    cert, key = os.path.join(base, cert), os.path.join(base, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version, ctx.maximum_version = versions["min_version"], versions["max_version"]
    except (ValueError, ssl.SSLError) as e:
        raise ConfigError(path, t.line_of("min_version"), f"tls_server_config: this OpenSSL refuses the "
                                                          f"TLS versions: {e}") from None
    for k, f in (("cert_file", cert), ("key_file", key)):
        if not os.path.isfile(f):
            raise ConfigError(path, t.line_of(k), f"tls_server_config.{k}: {f}: no such file")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(path, t.line_of("cert_file"), f"tls_server_config: cannot load cert_file {cert} with "
                                                        f"key_file {key}: {getattr(e, 'reason', None) or e}") from None
    if client_auth and client_auth not in CLIENT_AUTH:
        hint = (" (runwatch can only take client certificates it verifies: use VerifyClientCertIfGiven or "
                "RequireAndVerifyClientCert)" if client_auth in ("RequestClientCert", "RequireAnyClientCert",
                                                                 "RequireClientCert") else "")
        raise ConfigError(path, t.line_of("client_auth_type"),
                          f"tls_server_config.client_auth_type: unknown value {client_auth!r}{hint}; use one "
                          f"of {', '.join(CLIENT_AUTH)}")
    mode = CLIENT_AUTH.get(client_auth or "NoClientCert")
    if client_ca:
        if mode == ssl.CERT_NONE:
            raise ConfigError(path, t.line_of("client_ca_file"), "tls_server_config: client_ca_file is set "
                                                                 "without a client_auth_type")
        ca = os.path.join(base, client_ca)
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(path, t.line_of("client_ca_file"), f"tls_server_config.client_ca_file: cannot load "
                                                                 f"{ca}: {getattr(e, 'reason', None) or e}") from None
    elif mode != ssl.CERT_NONE:
        raise ConfigError(path, t.line_of("client_auth_type"), f"tls_server_config: client_auth_type "
                                                               f"{client_auth} needs a client_ca_file")
    ctx.verify_mode = mode
    if t.get("prefer_server_cipher_suites", True):
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
