"""Addresses and ``NAME=VALUE`` declarations, read one way wherever a user writes them.

A proxy's upstream and listen address, a service's port, a line of the ini
key ``asyncfaults_proxies``, a ``--proxy`` or ``--env`` of the command line:
each bad one gets the same message (the field, the value, what is allowed)
whichever door it came through.
"""

from __future__ import annotations

import socket
from ipaddress import ip_address

from ._exceptions import InvalidError


def parse_address(
    field_name: str, value: object, *, default_host: str | None = None
) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) to a pair, with a message naming the field."""
    allowed = 'expected "host:port" with a port from 0 to 65535'
    if not isinstance(value, str):
        raise InvalidError(f"{field_name}={value!r} is not valid: {allowed}")
    host, sep, port_text = value.rpartition(":")
    if not sep and default_host is None:
        raise InvalidError(f"{field_name}={value!r} is not valid: {allowed}")
    host = host.strip("[]") if host else (default_host or "")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidError(f"{field_name}={value!r} is not valid: {allowed}")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Only this machine can reach it; a host name other than localhost may resolve anywhere."""
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (another process may take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def parse_pair(
    where: str, text: str, expected: str, *, value_required: bool = True
) -> tuple[str, str]:
    """``NAME=VALUE`` to its stripped parts; ``where`` names the setting and its text.

    The name is never empty; the value may be (``NAME=`` clears an environment
    variable) unless ``value_required``.
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or (value_required and not value.strip()):
        raise InvalidError(f"{where} is not valid: expected {expected}")
    return name.strip(), value.strip()
