"""What a command settles before its HTTP server exists: the listening socket, the API token,
the web config and the server's options.

Every step here can refuse to start (a port in use, a token file that cannot be written, a bad
web config) and none needs the server's modules (http.server, prometheus_client): `runwatch run`
does all of it before it starts the command, so a refusal never leaves a job running, and the
job does not wait for the rest of runwatch to load (commands/run.py).
"""
from __future__ import annotations

import errno
import os
import socket
import threading

from ..settings import TOKEN_FILE, write_private


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for host (IPv4, IPv6 or a name); '::' is dual-stack where possible."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(errno.EADDRNOTAVAIL, f"no address for {host}")
    family, _, _, _, addr = infos[0]
    dual = family == socket.AF_INET6 and addr[0] == "::" and socket.has_dualstack_ipv6()
    return socket.create_server(addr, family=family, backlog=128, dualstack_ipv6=dual)


def bind(listen: tuple[str, int]) -> socket.socket:
    """listen_socket, or exit with the reason (a port in use, an address not on this machine)."""
    try:
        return listen_socket(*listen)
    except OSError as e:
        raise SystemExit(f"runwatch: cannot listen on {hostport(*listen)}: {e.strerror or e}") from None


def url_of(sock: socket.socket, web=None) -> str:
    """The status page's URL on a bound socket (https with the web config's TLS)."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if web is not None and web.ssl_context is not None else "http"
    return f"{scheme}://{hostport(host, port)}/"


def web_config(args):
    """The --web.config.file's WebConfig (TLS, basic auth, headers), or None. A bad one
    raises yamlfile.ConfigError naming the file, line and key."""
    path = getattr(args, "web_config_file", None)
    if not path:
        return None
    from .webconfig import load_web_config
    return load_web_config(path)


def server_options(args, web=None) -> dict:
    """Server(...) keyword arguments from the command line's --web.config.file (or `web`,
    loaded by web_config already), --allowed-host and --http-* flags (cli.py `_common_http`)."""
    from .front import Limits
    lim = Limits()
    for name in ("read_timeout", "idle_timeout", "write_timeout", "max_connections", "max_requests", "max_streams"):
        value = getattr(args, "http_" + name, None)
        if value is not None:
            setattr(lim, name, value)
    return {"web": web if web is not None else web_config(args),
            "allowed_hosts": tuple(getattr(args, "allowed_host", None) or ()),
            "limits": lim}


def given_token(args) -> tuple[str | None, str | None]:
    """(token, where it came from): settings.given_token on the command's flags."""
    from ..settings import given_token as _given
    return _given(getattr(args, "token", None), getattr(args, "token_file", None))


def api_token(given: str | None, needed: bool, say, *, source: str | None = None,
              data_dir: str | None = None, tty: bool = False) -> str | None:
    """The token writes need: the one given (see given_token), or a new random one
    when something needs it (events on, a cancellable run).

    A new token is never written to a log: with tty (`runwatch run` whose stderr
    is a terminal) it is shown once through `say`; otherwise it goes to a 0600
    file in data_dir and `say` gets the file's path."""
    if given:
        say(f"API token: from {source or '--token / RUNWATCH_TOKEN'}")
        if source == "--token":
            say("warning: a token given with --token showed in ps and /proc/PID/cmdline to every user of this "
                "machine until runwatch moved it into its environment; prefer RUNWATCH_TOKEN or --token-file "
                "(docs/security.md)")
        return given
    if not needed:
        return None
    import base64       # secrets.token_urlsafe(24), without the ~8 ms of importing secrets (hmac, random)
    token = base64.urlsafe_b64encode(os.urandom(24)).rstrip(b"=").decode("ascii")
    if tty:
        say(f"API token (for events and cancel; shown once; set RUNWATCH_TOKEN or --token-file to choose one): "
            f"{token}")
        return token
    from ..settings import data_dir as default_dir
    path = os.path.join(data_dir or default_dir(), TOKEN_FILE)
    try:
        write_private(path, token + "\n")
    except OSError as e:
        raise SystemExit(f"runwatch: cannot write the API token file {path}: {e.strerror}; "
                         f"set RUNWATCH_TOKEN or --token-file instead") from None
    say(f"API token (for events and cancel) written to {path} (mode 0600); "
        f"clients: RUNWATCH_TOKEN=$(cat {path})")
    return token


def open_page(url: str, say) -> None:
    """--open: the status page in the user's browser, never a text browser in this terminal."""
    import sys
    import webbrowser
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        say(f"--open: no graphical session (DISPLAY unset); open {url} yourself")
        return

    def go():
        try:
            if not webbrowser.open(url, new=2):
                say(f"--open: no browser found; open {url} yourself")
        except Exception as e:   # noqa: BLE001 - a broken browser setup must not stop the run
            say(f"--open: could not start a browser ({e}); open {url} yourself")
    threading.Thread(target=go, name="runwatch-open", daemon=True).start()
