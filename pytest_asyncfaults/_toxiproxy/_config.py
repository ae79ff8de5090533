"""Toxiproxy's ``-config`` file: the proxies ``asyncfaults serve`` starts with.

The format is Toxiproxy's, so one file serves both servers: a JSON array of
``{"name", "listen", "upstream", "enabled"?}``, in a regular file of at
most ``CONFIG_MAX_BYTES`` (a FIFO or ``/dev/zero`` is refused, not read
forever). Unlike Toxiproxy, which logs a bad file and carries on with
whatever it managed to read, we refuse the whole file on the first
problem and say exactly where it is (file, entry, field): a test run
against half a configuration fails later, far from the cause. Unknown
keys are refused too, since a misspelt ``enabled`` would otherwise be
silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, final

from .._address import parse_address
from .._exceptions import InvalidError
from .._toxics._spec import check_name
from .._values import CONFIG_MAX_BYTES, read_bounded, shown
from ._json import load_json

_KEYS: Final = ("name", "listen", "upstream", "enabled")
_SHAPE: Final = 'a JSON array of {"name", "listen", "upstream", "enabled"?} objects'


@final
@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """One proxy of a configuration file, validated."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True


def load_proxy_config(path: str | os.PathLike[str]) -> list[ProxyConfig]:
    """Read and validate a Toxiproxy configuration file, all or nothing."""
    where = os.fspath(path)
    raw = read_bounded(where, path, CONFIG_MAX_BYTES)
    data = load_json(raw, where, strict=True)
    if not isinstance(data, list):
        raise InvalidError(f"{where}: expected {_SHAPE}, got a JSON {_json_type(data)}")
    proxies: list[ProxyConfig] = []
    first_entry: dict[str, int] = {}
    for number, entry in enumerate(data, 1):
        proxy = _entry(where, number, entry)
        if proxy.name in first_entry:
            raise InvalidError(
                f"{where}: entry {number} ({proxy.name!r}): name={proxy.name!r} is not valid: "
                f"entry {first_entry[proxy.name]} has the same name"
            )
        first_entry[proxy.name] = number
        proxies.append(proxy)
    return proxies


def _entry(where: str, number: int, entry: object) -> ProxyConfig:
    if not isinstance(entry, dict):
        raise InvalidError(
            f"{where}: entry {number} is not valid: expected an object with "
            f'"name", "listen", "upstream" and optionally "enabled", '
            f"got a JSON {_json_type(entry)}"
        )
    raw_name = entry.get("name")
    label = (
        f"entry {number} ({shown(raw_name)})" if isinstance(raw_name, str) else f"entry {number}"
    )
    try:
        for key in entry:
            if key not in _KEYS:
                raise InvalidError(
                    f"unknown key {shown(key)}: an entry takes {', '.join(map(repr, _KEYS))}"
                )
        for key in ("name", "listen", "upstream"):
            if key not in entry:
                raise InvalidError(f"{key} is missing")
        name = check_name("name", raw_name)
        listen, upstream = entry["listen"], entry["upstream"]
        parse_address("listen", listen)
        parse_address("upstream", upstream)
        assert isinstance(listen, str)
        assert isinstance(upstream, str)
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidError(f"enabled={shown(enabled)} is not valid: expected true or false")
    except InvalidError as exc:
        raise InvalidError(f"{where}: {label}: {exc}") from None
    return ProxyConfig(name=name, listen=listen, upstream=upstream, enabled=enabled)


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
