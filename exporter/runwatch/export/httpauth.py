"""Credentials and URLs of the HTTP endpoints runwatch pushes to (Loki, remote-write receivers)."""
from __future__ import annotations

import base64
import os
from urllib.parse import urlsplit


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
        try:
            with open(os.path.expanduser(value[1:]), encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as e:
            raise ValueError(f"cannot read the {what} auth file {value[1:]!r}: {e.strerror}") from None
    low = value.lower()
    if low.startswith("bearer ") or low.startswith("bearer:"):
        token = value[7:].strip()
        if not token:
            raise ValueError(f"{what} auth: empty bearer token")
        return {"Authorization": "Bearer " + token}
    if ":" in value:
        return {"Authorization": "Basic " + base64.b64encode(value.encode("utf-8")).decode("ascii")}
    raise ValueError(f"{what} auth must be USER:PASSWORD, 'Bearer TOKEN' or @FILE holding one of those")
