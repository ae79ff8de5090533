"""Faults given on a command line (``--toxic postgres:timeout:timeout=0``), as a scenario.

``asyncfaults repro`` and ``asyncfaults proxy`` take either a scenario file or
inline faults; both become the same ``Scenario``, so everything after the
command line treats them alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._exceptions import InvalidError, ScenarioError
from .._toxics import TOXIC_TYPES
from .._values import shown, spelled, takes_text
from ._model import PlannedToxic, Scenario
from ._toml import FAULT_KEYS, load_scenario, parse_scenario


def _scalar(text: str) -> object:
    """A value as the toxic's validator should see it: an integer, a number, or text.

    ASCII digits only, and not more than Python reads (4300 digits): a longer
    run of digits stays text, which the validator then refuses by name.
    """
    if re.fullmatch(r"-?[0-9]{1,4000}", text):
        return int(text)
    if re.fullmatch(r"-?[0-9]{1,400}\.[0-9]{0,400}|-?\.[0-9]{1,400}", text):
        return float(text)
    return text


def _items(options: str, field: str, text: str) -> list[str]:
    """``key=value`` items split at commas, except inside single or double quotes (a regex
    or a message may hold a comma: ``match='^INSERT INTO t \\(a, b\\)'``)."""
    items: list[str] = []
    current: list[str] = []
    quote = ""
    for char in options:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    if quote:
        raise ScenarioError(f"{spelled(field, text)} is not valid: a quote ({quote}) is not closed")
    items.append("".join(current))
    return [item for item in items if item.strip()]


def _unquote(value: str) -> str:
    """A string attribute's value, its surrounding quotes (if any) taken off."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_inline_toxic(text: str, *, field: str = "--toxic") -> PlannedToxic:
    """``proxy:toxic[:key=value,...]``, e.g. ``postgres:latency:latency=200,stream=upstream``
    or ``postgres:pg_error:sqlstate=40001,match='^INSERT INTO uploads'``.

    Keys are the toxic's attributes and the fault options of a scenario
    (``stream``, ``toxicity``, ``connections``, ``start_after``, ``duration``, ``name``);
    a protocol toxic's string attributes are taken as written (quoted, they may hold commas).
    """
    proxy, sep, rest = text.partition(":")
    toxic, _, options = rest.partition(":")
    if not sep or not proxy or not toxic:
        raise ScenarioError(
            f"{spelled(field, text)} is not valid: expected proxy:toxic[:key=value,...], "
            f"e.g. postgres:timeout:timeout=0 or smtp:reset_peer"
        )
    table: dict[str, Any] = {"proxy": proxy, "toxic": toxic, "attributes": {}}
    allowed = TOXIC_TYPES[toxic].attribute_names if toxic in TOXIC_TYPES else ()
    kinds = TOXIC_TYPES[toxic].attribute_kinds if toxic in TOXIC_TYPES else {}
    texts = {key for key, kind in kinds.items() if takes_text(kind)}
    for item in _items(options, field, text):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ScenarioError(
                f"{spelled(field, text)}: {shown(item)} is not valid: expected key=value"
            )
        if key in FAULT_KEYS and key not in ("proxy", "toxic", "attributes"):
            table[key] = _scalar(value.strip())
        elif key in texts:
            table["attributes"][key] = _unquote(value)  # "40001" stays a string
        elif key in allowed or toxic not in TOXIC_TYPES:
            table["attributes"][key] = _scalar(value.strip())
        else:
            options_allowed = [k for k in FAULT_KEYS if k not in ("proxy", "toxic", "attributes")]
            raise ScenarioError(
                f"{spelled(field, text)}: {shown(key)} is not valid: expected {toxic}'s attributes "
                f"({', '.join(allowed) or 'none'}) or {', '.join(options_allowed)}"
            )
    scenario = parse_scenario({"faults": [table]}, name="inline", source=spelled(field, text))
    return replace(scenario.toxics[0], key=field)


def scenario_from_options(
    file: str | None, toxics: Sequence[str], proxies: Iterable[str]
) -> Scenario | None:
    """What ``--scenario FILE`` or ``--toxic ...`` of a command say, on the ``--proxy`` names."""
    if file is not None and toxics:
        raise InvalidError("--scenario and --toxic were both given: choose one")
    scenario = load_scenario(Path(file)) if file is not None else None
    if scenario is None and toxics:
        scenario = inline_scenario(toxics)
    if scenario is None:
        return None
    known = list(proxies)
    for toxic in scenario.toxics:
        if toxic.proxy not in known:
            where = f"{scenario.source}: {toxic.key}.proxy" if file is not None else "--toxic proxy"
            raise ScenarioError(
                f"{where}={toxic.proxy!r} is not a proxy given with --proxy: expected one of "
                f"{', '.join(known)}"
            )
    return scenario


def inline_scenario(texts: Sequence[str], *, field: str = "--toxic") -> Scenario:
    """A scenario made of faults given on a command line; no expectations of its own."""
    toxics = [parse_inline_toxic(text, field=field) for text in texts]
    taken: set[tuple[str, str]] = set()
    for toxic in toxics:
        if (toxic.proxy, toxic.spec.name) in taken:
            raise ScenarioError(
                f"{field}: two faults named {toxic.spec.name!r} on {toxic.proxy!r}: "
                f"give one of them name=..."
            )
        taken.add((toxic.proxy, toxic.spec.name))
    return Scenario("inline", tuple(toxics), description=", ".join(texts))
