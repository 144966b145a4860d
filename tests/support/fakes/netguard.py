"""A fixture that makes any non-loopback connection from this process fail loudly."""
from __future__ import annotations

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(addr) -> None:
    if isinstance(addr, tuple) and addr:
        host = addr[0]
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise OSError(f"test network guard: refused a connection to {addr!r}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def connect(self, addr):
        _check(addr)
        return _real_connect(self, addr)

    def connect_ex(self, addr):
        _check(addr)
        return _real_connect_ex(self, addr)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield


_real_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host, *a, **kw):
    if host not in (None, "localhost") and not _is_ip(host):
        raise socket.gaierror(f"test network guard: no DNS for {host!r}")
    return _real_getaddrinfo(host, *a, **kw)


def _is_ip(host) -> bool:
    try:
        ipaddress.ip_address(host if isinstance(host, str) else host.decode())
        return True
    except ValueError:
        return False
