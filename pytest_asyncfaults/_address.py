"""Addresses and ``NAME=VALUE`` declarations, read one way wherever a user writes them.

A proxy's upstream and listen address, a service's port, a line of the ini
key ``asyncfaults_proxies``, a ``--proxy`` or ``--env`` of the command line:
each bad one gets the same message (the field, the value, what is allowed)
whichever door it came through.
"""

from __future__ import annotations

import re
import socket
import threading
from ipaddress import ip_address
from typing import Final
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

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


# -- DSNs and the secrets in them ----------------------------------------------------------------

_URL_PASSWORD: Final = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@/'\"]+@")
"""The password of a URL's user info, wherever a URL stands in a text."""
_SECRET_NAME: Final = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|(^|_)KEY($|_)|PWD$", re.IGNORECASE)
"""Environment variables whose value is a secret by their name alone."""
_SECRETS: set[str] = set()
"""Passwords this process knows of (a cluster's, a user's server's): never printed."""
_SECRETS_LOCK: Final = threading.Lock()
MASK: Final = "***"


def dsn_with_address(dsn: str, host: str, port: int) -> str:
    """The same DSN (user, password, database, options) pointed at ``host:port``."""
    parts = urlsplit(dsn)
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{format_address(host, port)}"
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def dsn_fields(dsn: str) -> dict[str, str]:
    """``user``, ``password`` and ``database`` of a ``postgresql://`` URL, decoded ('' if absent).

    They are what an app configured by separate variables (``DB_USER``,
    ``DB_PASSWORD``, ``DB_NAME``) needs besides the proxy's host and port.
    """
    parts = urlsplit(dsn.strip())
    return {
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")),
    }


def register_secret(value: str | None) -> None:
    """Remember a password, so that ``mask_secrets`` hides it in whatever text carries it."""
    if value and len(value) >= 4:  # a one-letter "password" would mask half of every report
        with _SECRETS_LOCK:
            _SECRETS.add(value)
            quoted = quote(value, safe="")
            if quoted != value:
                _SECRETS.add(quoted)


def register_dsn(dsn: str | None) -> None:
    """Remember the password of a DSN (see ``register_secret``)."""
    if dsn:
        register_secret(dsn_fields(dsn)["password"])


def mask_secrets(text: str) -> str:
    """``text`` with every URL's password and every known secret replaced by ``***``.

    What the plugin prints or writes (reports, timelines, the JSON matrix, JUnit
    properties) ends up in CI logs and artifacts that more people read than
    those who may log in to the database.
    """
    if not text:
        return text
    masked = _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in masked:
            masked = masked.replace(secret, MASK)
    return masked


def has_secrets(text: str) -> bool:
    """Whether ``mask_secrets`` would change ``text`` (cheap when it would not)."""
    if not text:
        return False
    if "://" in text and _URL_PASSWORD.search(text):
        return True
    with _SECRETS_LOCK:
        return any(secret in text for secret in _SECRETS)


def mask_env(name: str, value: str) -> str:
    """An environment variable's value as it may be shown: secrets by name hidden whole."""
    if _SECRET_NAME.search(name) and value:
        return MASK
    return mask_secrets(value)
