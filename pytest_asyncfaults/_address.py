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
from ._values import TEXT_MAX, spelled

_ADDRESS_MAX: Final = 300
_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def parse_address(
    field_name: str, value: object, *, default_host: str | None = None
) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) to a pair, with a message naming the field.

    The host is an IP address (an IPv6 one in brackets) or a host name of
    letters, digits, ``-``, ``_`` and dots; the port, ASCII digits from 0 to
    65535. Anything else (``[::1``, a port of a hundred digits) is one
    ``InvalidError``, never an error from the resolver or from ``int``.
    """
    allowed = 'expected "host:port" with a port from 0 to 65535'
    if not isinstance(value, str) or len(value) > _ADDRESS_MAX:
        raise InvalidError(f"{spelled(field_name, value)} is not valid: {allowed}")
    host, sep, port_text = value.rpartition(":")
    if not sep:
        if default_host is None:
            raise InvalidError(f"{spelled(field_name, value)} is not valid: {allowed}")
        port_text = value
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        bracketed = True
    else:
        bracketed = False
    host = host or (default_host or "")
    if (
        not valid_host(host)
        or (":" in host and not bracketed)
        or not re.fullmatch(r"[0-9]{1,5}", port_text)
        or int(port_text) > 65535
    ):
        raise InvalidError(f"{spelled(field_name, value)} is not valid: {allowed}")
    return host, int(port_text)


def valid_host(host: str) -> bool:
    """An IP address, or a host name (RFC 1123 labels, ``_`` allowed as resolvers do)."""
    if not host or len(host) > 253:
        return False
    try:
        ip_address(host)
        return True
    except ValueError:
        pass
    return all(_LABEL.fullmatch(label) for label in host.removesuffix(".").split("."))


def is_wildcard(host: str) -> bool:
    """Every interface: ``0.0.0.0`` or ``::`` (what Testcontainers asks a proxy to listen on)."""
    try:
        return ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def parse_url(field_name: str, value: object) -> str:
    """An ``http://host:port`` URL (an API's), checked; the URL without a trailing slash."""
    allowed = "expected http://host:port or https://host:port"
    if not isinstance(value, str) or len(value) > 2048:
        raise InvalidError(f"{spelled(field_name, value)} is not valid: {allowed}")
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname or ""
        port = parts.port  # ValueError when not a number from 0 to 65535
    except ValueError:
        raise InvalidError(f"{spelled(field_name, value)} is not valid: {allowed}") from None
    if (
        parts.scheme not in ("http", "https")
        or not valid_host(host)
        or (port is not None and port == 0)
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise InvalidError(f"{spelled(field_name, value)} is not valid: {allowed}")
    return value.strip().rstrip("/")


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


_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")


def env_pair(where: str, text: str) -> tuple[str, str]:
    """``NAME=value`` of an environment variable to set: a name the shell could set
    (letters, digits, ``_``), a value without NUL (``os.environ`` refuses one)."""
    name, value = parse_pair(where, text, "NAME=value", value_required=False)
    if not _ENV_NAME.fullmatch(name):
        raise InvalidError(
            f"{where} is not valid: expected NAME=value with a NAME of letters, digits "
            f"and '_', not starting with a digit"
        )
    if "\x00" in value or len(value) > TEXT_MAX:
        raise InvalidError(
            f"{where} is not valid: expected a value without NUL, at most {TEXT_MAX} characters"
        )
    return name, value
