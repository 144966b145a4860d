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
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")   # a run id: it becomes a label value

# Files and folders kept in the data directory.
STATE_DB = "state.db"                 # runs' state across restarts (serve)
HISTORY_DB = "history.db"             # durations of finished runs, for ETAs from the start
LOKI_SPOOL = "loki-spool"             # lines waiting while Loki is slow or down
REMOTE_WRITE_SPOOL = "remote-write-spool"   # samples waiting while a remote-write receiver is down
PRICE_CACHE = "azure_vm_prices_cache.json"
TOKEN_FILE = "api-token"              # the API token serve/run generated, mode 0600 (never logged)

# Environment variables that hold secrets: the command `runwatch run` launches does not inherit them.
SECRET_ENV = ("RUNWATCH_TOKEN", "RUNWATCH_TOKEN_FROM_FLAG", "RUNWATCH_LOKI_AUTH", "RUNWATCH_REMOTE_WRITE_AUTH",
              "RUNWATCH_LOKI_URL", "RUNWATCH_REMOTE_WRITE")


def default_data_dir() -> str:
    """$XDG_STATE_HOME/runwatch, else ~/.local/state/runwatch."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "runwatch")


def data_dir(value: str | None = None) -> str:
    """The data directory (state, history, caches, spools): the given value, else
    RUNWATCH_DATA_DIR, else default_data_dir()."""
    return os.path.expanduser(value or os.environ.get("RUNWATCH_DATA_DIR") or default_data_dir())


def parse_listen(value: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); '[::1]:9897' -> ('::1', 9897), '[::]:9897' -> every
    IPv6 (and, where the system allows, IPv4) address; ':9897' -> loopback.
    An IPv6 address needs its brackets. Raises ValueError with the expected form."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT like {DEFAULT_LISTEN} or [::1]:{DEFAULT_PORT}, got {value!r}")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else None
        if not inner or ":" not in inner or "[" in inner or "]" in inner:
            raise ValueError(f"brackets hold an IPv6 address, like [::1]:{DEFAULT_PORT}; got {value!r}")
        host = inner
    elif ":" in host:
        raise ValueError(f"an IPv6 address needs brackets: [{host}]:{port}")
    if any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"expected HOST:PORT like {DEFAULT_LISTEN}, got {value!r}")
    return (host or "127.0.0.1", int(port))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); a host name
    other than localhost counts as not loopback."""
    import ipaddress
    h = host.strip("[]").lower().rstrip(".")
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- private files

def ensure_private_dir(path: str) -> str:
    """Create path (and its parents) if missing; the directory itself is mode 0700.
    An existing directory of ours that others may read is tightened to 0700."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        st = os.stat(path)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, st.st_mode & 0o700 | 0o700)
    except OSError:
        pass
    return path


def private_file(path: str) -> str:
    """Make sure path exists as a file only its owner can read or write (0600),
    creating it empty if missing (its directory: ensure_private_dir). Used before
    handing the path to a library that creates files with the umask's mode
    (SQLite gives its -wal and -shm files the database's mode)."""
    ensure_private_dir(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def private_opener(path: str, flags: int) -> int:
    """open(..., opener=private_opener): a file created by open() gets mode 0600."""
    return os.open(path, flags, 0o600)


def write_private(path: str, text: str) -> str:
    """Write text to path atomically as a 0600 file (its directory 0700)."""
    ensure_private_dir(os.path.dirname(os.path.abspath(path)))
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def child_environ(env=None) -> dict[str, str]:
    """The environment for a command runwatch launches: its own, without the
    secrets runwatch was given (SECRET_ENV)."""
    env = dict(os.environ if env is None else env)
    for name in SECRET_ENV:
        env.pop(name, None)
    return env


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


MAX_TOKEN_FILE = 4096


def given_token(flag: str | None, path: str | None) -> tuple[str | None, str | None]:
    """(token, where it came from) from --token (flag), --token-file (path; its
    env twin RUNWATCH_TOKEN_FILE arrives here too) or RUNWATCH_TOKEN, in that
    order; (None, None) if none. ValueError for a token file that cannot be
    used, and for --token together with --token-file."""
    if flag and path:
        raise ValueError("give --token or --token-file, not both")
    if flag:
        return flag, "--token"
    if not path and os.environ.get("RUNWATCH_TOKEN"):
        # cli.py moves a --token into the environment and runs runwatch again, marking it so
        moved = os.environ.pop("RUNWATCH_TOKEN_FROM_FLAG", None) == "1"
        return os.environ["RUNWATCH_TOKEN"], "--token" if moved else "RUNWATCH_TOKEN"
    if not path:
        return None, None
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))   # a FIFO must not hang us
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError(f"--token-file {path}: not a regular file")
            raw = f.read(MAX_TOKEN_FILE + 1)
    except OSError as e:
        raise ValueError(f"--token-file {path}: cannot read: {e.strerror}") from None
    if len(raw) > MAX_TOKEN_FILE:
        raise ValueError(f"--token-file {path}: over {MAX_TOKEN_FILE} bytes; it should hold one token")
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"--token-file {path}: not UTF-8 text") from None
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"--token-file {path}: should hold one token on one line")
    return token, f"--token-file {path}"
