"""Toxiproxy's JSON, both ways through: read with errors that say where, and turned back
into our models.

``asyncfaults serve`` reads request bodies and its ``-config`` file; the
client reads a server's answers. A bad document must fail as ``InvalidError``
naming the document (the request body, the file) and the line and column, the
same way from each; and what a Toxiproxy answers must become the same
``ToxicSpec`` / ``ProxyInfo`` our engine makes. One module holds both, so the
two sides of the protocol cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any, Final

from .._engine._models import ProtocolEvent, ProxyInfo, ProxyStats
from .._exceptions import InvalidError
from .._toxics._spec import ConnectionSelector, ToxicSpec, check_stream
from .._values import key_text, spelled

_INT64: Final = (-(2**63), 2**63 - 1)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _joined(path: str, key: object) -> str:
    """``path.key``; a key that is not a plain word is shown as its (short) repr."""
    text = key_text(key)
    return f"{path}.{text}" if path else text


def _check_int_range(value: object, where: str) -> None:
    """Integers must fit in 64 bits, as in Toxiproxy; bigger ones break timers."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((_joined(path, key), v) for key, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(item))
        elif isinstance(item, int) and not _INT64[0] <= item <= _INT64[1]:
            raise InvalidError(
                f"{where}: {spelled(path or 'value', item)} is not valid: "
                f"out of range for a 64-bit integer"
            )


def load_json(raw: bytes, where: str, *, strict: bool = False) -> object:
    """``raw`` parsed, or ``InvalidError`` naming ``where`` and the line and column.

    ``strict`` reads numbers as Toxiproxy's API does: NaN and Infinity are
    refused, and so is an integer that does not fit in 64 bits.
    """
    try:
        value = json.loads(raw, parse_constant=_reject_constant if strict else None)
    except json.JSONDecodeError as exc:
        raise InvalidError(
            f"{where}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # undecodable bytes, absurd nesting, NaN
        raise InvalidError(f"{where}: not valid JSON: {exc}") from None
    if strict:
        _check_int_range(value, where)
    return value


# -- what a Toxiproxy server answers -----------------------------------------------------------


def toxic_from_json(data: Mapping[str, Any]) -> ToxicSpec:
    connections = data.get("connections")
    return ToxicSpec(
        name=str(data["name"]),
        type=str(data["type"]),
        stream=check_stream(data.get("stream") or "downstream"),
        toxicity=float(data.get("toxicity", 1.0)),
        attributes=MappingProxyType(dict(data.get("attributes") or {})),
        connections=None if connections in (None, "") else ConnectionSelector.parse(connections),
        start_after=int(data.get("start_after") or 0),
        duration=None if data.get("duration") is None else int(data["duration"]),
    )


def proxy_from_json(data: Mapping[str, Any]) -> ProxyInfo:
    return ProxyInfo(
        name=str(data["name"]),
        listen=str(data["listen"]),
        upstream=str(data["upstream"]),
        enabled=bool(data.get("enabled", True)),
        toxics=tuple(toxic_from_json(toxic) for toxic in data.get("toxics") or ()),
    )


STATS_HEADER: Final = "x-asyncfaults-stats"
"""Asked with ``1`` on adding or deleting a toxic, ``asyncfaults serve`` answers with
the proxy's counters in this header (JSON, after the add, before the delete): a fault
window's two ends cost one request each, not two. Other clients ignore it, and the
body stays Toxiproxy's."""


def stats_to_json(stats: ProxyStats) -> dict[str, Any]:
    """``asyncfaults serve``'s counters of a proxy, as ``stats_from_json`` reads them."""
    out: dict[str, Any] = {item.name: getattr(stats, item.name) for item in fields(stats)}
    out["toxics_hit"] = dict(stats.toxics_hit)
    out["phases"] = {str(number): phase for number, phase in stats.phases.items()}
    return out


def stats_from_json(data: Mapping[str, Any]) -> ProxyStats:
    """``asyncfaults serve``'s counters (a real Toxiproxy keeps none)."""
    return ProxyStats(
        accepted=int(data["accepted"]),
        open=int(data["open"]),
        clients_open=int(data.get("clients_open", data["open"])),
        closed=int(data["closed"]),
        bytes_upstream=int(data["bytes_upstream"]),
        bytes_downstream=int(data["bytes_downstream"]),
        upstream_errors=int(data["upstream_errors"]),
        toxics_hit=MappingProxyType(dict(data["toxics_hit"])),
        phases=MappingProxyType(
            {int(number): str(phase) for number, phase in (data.get("phases") or {}).items()}
        ),
    )


def events_from_json(data: list[Mapping[str, Any]]) -> tuple[ProtocolEvent, ...]:
    """``asyncfaults serve``'s protocol events of a proxy (``GET /proxies/{name}/events``)."""
    return tuple(
        ProtocolEvent(
            connection=int(item["connection"]),
            at=float(item["at"]),
            text=str(item["text"]),
            injected=bool(item.get("injected", False)),
            repeats=int(item.get("repeats", 1)),
            until=float(item.get("until", item["at"])),
        )
        for item in data
    )
