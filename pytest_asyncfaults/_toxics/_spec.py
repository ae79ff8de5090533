"""What a proxy and a toxic *are*, validated: pure data, no I/O.

Everything a user or a scenario file says about a toxic passes through
``make_toxic`` / ``update_toxic`` here, so every backend (the embedded engine,
``asyncfaults serve``, a real Toxiproxy) rejects bad input with the same
message: the field, the bad value, and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Literal, final

from .._exceptions import InvalidError
from .._values import INT64_MAX, AttributeValue, fraction, integer, invalid, is_integer, shown
from .._values import name as valid_name
from . import PROTOCOL_TOXICS, TOXIC_TYPES

_SELECTOR_MAX: Final = 200

Stream = Literal["upstream", "downstream"]
STREAMS: Final = ("upstream", "downstream")


@final
@dataclass(frozen=True, slots=True)
class ConnectionSelector:
    """Which connections of a proxy a toxic applies to, by their number.

    Connections are numbered from 1 in the order the proxy accepted them (the
    same count as ``proxy.stats.accepted``). Written as text: ``"3"`` (only
    the third), ``"3+"`` (the third and every later one), ``"2-4"``, or a
    comma list of those (``"1,5+"``). The fraction of connections is the
    toxic's ``toxicity``, drawn from the engine's seed.
    """

    ranges: tuple[tuple[int, int | None], ...]

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        return any(lo <= number and (hi is None or number <= hi) for lo, hi in self.ranges)

    def __str__(self) -> str:
        parts = []
        for lo, hi in self.ranges:
            if hi is None:
                parts.append(f"{lo}+")
            elif hi == lo:
                parts.append(str(lo))
            else:
                parts.append(f"{lo}-{hi}")
        return ",".join(parts)

    @classmethod
    def parse(cls, value: object, *, field_name: str = "connections") -> ConnectionSelector:
        allowed = (
            'a connection number from 1 ("3"), "N+" for N and later, "N-M", '
            'or a comma list of those ("1,5+")'
        )
        if isinstance(value, ConnectionSelector):
            return value
        if is_integer(value):
            integer(field_name, value, minimum=1, allowed=allowed)
            assert isinstance(value, int)
            return cls(((value, value),))
        if not isinstance(value, str) or len(value) > _SELECTOR_MAX:
            raise invalid(field_name, value, allowed)
        text = value.replace(" ", "")
        ranges: list[tuple[int, int | None]] = []
        for part in text.split(","):
            match = re.fullmatch(r"([0-9]{1,19})(\+|-([0-9]{1,19}))?", part)
            if match is None:
                raise invalid(field_name, value, allowed)
            lo = int(match[1])
            hi: int | None = lo
            if match[2] == "+":
                hi = None
            elif match[3] is not None:
                hi = int(match[3])
            if lo < 1 or lo > INT64_MAX or (hi is not None and not lo <= hi <= INT64_MAX):
                raise invalid(field_name, value, allowed)
            ranges.append((lo, hi))
        return cls(tuple(ranges))


_UNSET_WHEN_ZERO: Final = frozenset({"nth", "reset", "delay"})
"""A protocol toxic's integers that mean "not used" at 0: a report leaves them out."""


@final
@dataclass(frozen=True, slots=True)
class ToxicSpec:
    """A toxic as configured: Toxiproxy's fields plus our targeting and timing.

    ``start_after`` (ms after the toxic is added) and ``duration`` (ms it
    stays in effect, ``None`` for as long as it exists) bound it in time; when
    its time is over it acts as removed (a timeout toxic closes what it held)
    but stays listed until removed. ``connections`` limits it to some
    connections by number.
    """

    name: str
    type: str
    stream: Stream = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    connections: ConnectionSelector | None = None
    start_after: int = 0
    duration: int | None = None

    def describe(self) -> str:
        """``timeout downstream timeout=0``, or for a protocol toxic (which reads both
        directions) ``pg_error sqlstate=40001 match='^INSERT'``: its strings left empty
        are left out, one that is not a single word is quoted."""
        parts = [self.type] if self.type in PROTOCOL_TOXICS else [self.type, self.stream]
        for key, value in self.attributes.items():
            if isinstance(value, str):
                if value:
                    word = re.fullmatch(r"[\w.:@<>/-]+", value)
                    parts.append(f"{key}={value if word else repr(value)}")
            elif value or self.type not in PROTOCOL_TOXICS or key not in _UNSET_WHEN_ZERO:
                parts.append(f"{key}={value}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's JSON shape, our extras only where set."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }
        if self.connections is not None:
            out["connections"] = str(self.connections)
        if self.start_after:
            out["start_after"] = self.start_after
        if self.duration is not None:
            out["duration"] = self.duration
        return out


def _check_int(field_name: str, value: object, *, minimum: int = 0) -> int:
    """A whole number of ms from ``minimum`` to int64, as every integer field is told."""
    return integer(field_name, value, minimum=minimum)


class AttributeWording:
    """How one door words each attribute mistake; what is a mistake is decided once.

    ``check_attributes`` alone holds the rules (a mapping, known names,
    integers >= 0, then the toxic's own ``Stage.check``). This wording is the
    one of the Python API and of the Toxiproxy HTTP API; a scenario file
    subclasses it to name its own keys (``faults[0].attributes.latency``) in
    TOML's terms, because its users read the file, not our keyword arguments.
    """

    @staticmethod
    def names(toxic_type: str, none: str) -> str:
        """The attributes a toxic takes, for "expected ...", or ``none``."""
        return ", ".join(TOXIC_TYPES[toxic_type].attribute_names) or none

    def not_a_mapping(self, toxic_type: str, value: object) -> str:
        names = self.names(toxic_type, "no attributes")
        return f"attributes={shown(value)} is not valid: expected a mapping of {names}"

    def unknown(self, toxic_type: str, key: object) -> str:
        allowed = self.names(toxic_type, "none")
        return f"{toxic_type} attribute {shown(key)} is not valid: {toxic_type} takes {allowed}"

    def bad_value(self, toxic_type: str, key: str, value: object, problem: str) -> str:
        """``problem`` says it as the attribute's kind tells every field of that kind."""
        return problem

    def rule(self, toxic_type: str, message: str) -> str:
        """A rule across attributes broken (``Stage.check``'s own message)."""
        return message


PLAIN: Final = AttributeWording()


def attribute_mapping(
    toxic_type: str, value: object, wording: AttributeWording = PLAIN
) -> Mapping[str, object]:
    """``value`` as attributes to check, or the door's error: it is not a mapping at all.

    Apart from ``check_attributes`` for a door that checks before it merges (an
    update names only the attributes it changes).
    """
    if not isinstance(value, Mapping):
        raise InvalidError(wording.not_a_mapping(toxic_type, value))
    return value


def check_attributes(
    toxic_type: str, attributes: Mapping[str, object], wording: AttributeWording = PLAIN
) -> dict[str, AttributeValue]:
    """Validate a toxic's attributes; omitted ones get their kind's default (0, as Toxiproxy).

    The one validator of every door (Python, the HTTP API, scenario files);
    each value is checked by the kind its toxic declares (``Stage.attribute_kinds``),
    then the toxic's own rule across them (``Stage.check``); ``wording`` is the
    door's way of saying what is wrong.
    """
    stage = TOXIC_TYPES[toxic_type]
    kinds = stage.attribute_kinds
    out: dict[str, AttributeValue] = {key: kind.default for key, kind in kinds.items()}
    for key, value in attribute_mapping(toxic_type, attributes, wording).items():
        if key not in out:
            raise InvalidError(wording.unknown(toxic_type, key))
        try:
            out[key] = kinds[key].check(f"{toxic_type}.{key}", value)
        except InvalidError as exc:
            raise InvalidError(wording.bad_value(toxic_type, key, value, str(exc))) from None
    try:
        stage.check(out)
    except InvalidError as exc:
        raise InvalidError(wording.rule(toxic_type, str(exc))) from None
    return out


def check_type(toxic_type: object) -> str:
    if not isinstance(toxic_type, str) or toxic_type not in TOXIC_TYPES:
        raise InvalidError(
            f"type={shown(toxic_type)} is not a toxic type: "
            f"expected one of {', '.join(TOXIC_TYPES)}"
        )
    return toxic_type


def check_stream(stream: object) -> Stream:
    if isinstance(stream, str) and stream.lower() in STREAMS:
        return "upstream" if stream.lower() == "upstream" else "downstream"
    raise invalid(
        "stream", stream, "'upstream' (client to server) or 'downstream' (server to client)"
    )


def check_toxicity(toxicity: object) -> float:
    return fraction("toxicity", toxicity)


def check_name(field_name: str, name: object) -> str:
    """A proxy's or toxic's name: see ``_values.name`` (URL-safe, bounded, not . or ..)."""
    return valid_name(field_name, name)


def make_toxic(
    toxic_type: str,
    *,
    name: str | None = None,
    stream: str = "downstream",
    toxicity: float = 1.0,
    attributes: Mapping[str, object] | None = None,
    connections: object = None,
    start_after: int = 0,
    duration: int | None = None,
) -> ToxicSpec:
    """Build a validated toxic; the name defaults to ``<type>_<stream>``."""
    toxic_type = check_type(toxic_type)
    checked_stream = check_stream(stream)
    return ToxicSpec(
        name=check_name("name", name if name is not None else f"{toxic_type}_{checked_stream}"),
        type=toxic_type,
        stream=checked_stream,
        toxicity=check_toxicity(toxicity),
        attributes=MappingProxyType(check_attributes(toxic_type, attributes or {})),
        connections=None if connections is None else ConnectionSelector.parse(connections),
        start_after=_check_int("start_after", start_after),
        duration=None if duration is None else _check_int("duration", duration),
    )


def update_toxic(
    spec: ToxicSpec,
    *,
    attributes: Mapping[str, object] | None = None,
    toxicity: float | None = None,
) -> ToxicSpec:
    """Merge an update the way Toxiproxy does: given attributes replace, the rest stay."""
    merged: dict[str, object] = dict(spec.attributes)
    if attributes is not None:
        merged.update(attribute_mapping(spec.type, attributes))
    return replace(
        spec,
        attributes=MappingProxyType(check_attributes(spec.type, merged)),
        toxicity=spec.toxicity if toxicity is None else check_toxicity(toxicity),
    )


def check_spec(spec: ToxicSpec) -> ToxicSpec:
    """A ``ToxicSpec`` built by hand (not by ``make_toxic``), validated the same way.

    The engine checks every toxic it is given, so one made with the dataclass
    directly cannot carry a value the data path would break on.
    """
    if not isinstance(spec, ToxicSpec):
        raise invalid("toxic", spec, "a ToxicSpec, as make_toxic() builds it")
    checked = make_toxic(
        spec.type,
        name=spec.name,
        stream=spec.stream,
        toxicity=spec.toxicity,
        attributes=spec.attributes,
        connections=spec.connections,
        start_after=spec.start_after,
        duration=spec.duration,
    )
    return checked
