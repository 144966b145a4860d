"""Defaults and the small parsers every layer shares. Imports nothing of runwatch.

Each default is written here once; the command line builds its help texts
from these constants, and the config loader, the sources and the exporters
take their defaults from here (never from `cli.py`, which nothing imports).
"""
from __future__ import annotations

import os
import re

DEFAULT_PORT = 9897
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_URL = f"http://{DEFAULT_LISTEN}"
DEFAULT_MAX_LINE = 64 * 1024          # bytes; longer lines are cut and counted

# Files and folders kept in the data directory.
STATE_DB = "state.db"                 # runs' state across restarts (serve)
HISTORY_DB = "history.db"             # durations of finished runs, for ETAs from the start
LOKI_SPOOL = "loki-spool"             # lines waiting while Loki is slow or down
REMOTE_WRITE_SPOOL = "remote-write-spool"   # samples waiting while a remote-write receiver is down
PRICE_CACHE = "azure_vm_prices_cache.json"


def default_data_dir() -> str:
    """$XDG_STATE_HOME/runwatch, else ~/.local/state/runwatch."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "runwatch")


def data_dir(value: str | None = None) -> str:
    """The data directory (state, history, caches, spools): the given value, else
    RUNWATCH_DATA_DIR, else default_data_dir()."""
    return os.path.expanduser(value or os.environ.get("RUNWATCH_DATA_DIR") or default_data_dir())


def parse_listen(value: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); '[::1]:9897' -> ('::1', 9897); ':9897' -> loopback.
    Raises ValueError with the expected form."""
    host, sep, port = str(value).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT like {DEFAULT_LISTEN}, got {value!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", re.I)
_SIZE_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value) -> int:
    """'1GiB', '512M', '100000' -> bytes (binary multiples). Raises ValueError."""
    if isinstance(value, int):
        return value
    m = _SIZE.fullmatch(str(value))
    if not m:
        raise ValueError(f"expected a size like 1GiB, 500MB or 1048576, got {value!r}")
    return int(float(m.group(1)) * _SIZE_MULT[m.group(2).lower()])
