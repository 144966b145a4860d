"""Credentials and URLs of the HTTP endpoints runwatch pushes to (Loki, remote-write receivers)."""
from __future__ import annotations

import base64
import os
from urllib.parse import urlsplit

from ..yamlfile import read_regular

MAX_AUTH_FILE = 64 << 10


def safe_url(url: str) -> str:
    """The URL without user:password or query, for messages and labels."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return f"{p.scheme}://{host}{p.path}"


def auth_header(value: str | None, what: str) -> dict:
    """The Authorization header for an auth value: USER:PASSWORD (basic), 'Bearer TOKEN' /
    'bearer:TOKEN', or @FILE holding one of those. `what` names the endpoint in errors.
    Raises ValueError without echoing the secret."""
    if not value:
        return {}
    if value.startswith("@"):
        try:           # a regular file of at most 64 KiB: never a FIFO or /dev/zero
            value = read_regular(os.path.expanduser(value[1:]), MAX_AUTH_FILE).decode("utf-8").strip()
        except ValueError as e:
            why = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e)
            raise ValueError(f"cannot read the {what} auth file {value[1:]!r}: {why}") from None
    low = value.lower()
    if low.startswith("bearer ") or low.startswith("bearer:"):
        token = value[7:].strip()
        if not token:
            raise ValueError(f"{what} auth: empty bearer token")
        return {"Authorization": "Bearer " + token}
    if ":" in value:
        return {"Authorization": "Basic " + base64.b64encode(value.encode("utf-8")).decode("ascii")}
    raise ValueError(f"{what} auth must be USER:PASSWORD, 'Bearer TOKEN' or @FILE holding one of those")
