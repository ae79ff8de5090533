"""Read-only views the engine hands out: a proxy's settings, its counters, and what its
protocol toxics saw on its connections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, final

from .._toxics._spec import ToxicSpec


@final
@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters of one proxy since it was created, read at one moment.

    ``toxics_hit`` counts, per toxic name, the connection streams the toxic
    was applied to (after targeting and toxicity), so a test can tell a fault
    that fired from one that was drawn away.

    ``open`` counts connections the proxy still holds; ``clients_open`` those of
    them whose client has not closed its side. They differ while the proxy
    still delivers what a client sent before it closed (a bandwidth toxic can
    take long over it): the app let go, the proxy has not yet.

    ``phases`` says, for each open connection a protocol toxic reads, where
    its protocol stands ("authentication", "held in authentication", "waiting
    for the reply to RCPT"...), by connection number: what a hang report
    names.
    """

    accepted: int = 0
    open: int = 0
    clients_open: int = 0
    closed: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0
    upstream_errors: int = 0
    toxics_hit: Mapping[str, int] = field(default_factory=dict)
    phases: Mapping[int, str] = field(default_factory=dict)


@final
@dataclass(frozen=True, slots=True)
class ProtocolEvent:
    """What a protocol toxic saw or did on one connection of a proxy, for the timeline.

    ``at`` is the engine's monotonic clock (``time.monotonic()``: the same clock
    in every process of the machine). A run of events alike (the statements of
    an ``executemany``) is one event: ``repeats`` of them, the last at ``until``.
    ``injected`` marks what the toxic did (an answer of its own, a cut, a hold).
    """

    connection: int
    at: float
    text: str
    injected: bool = False
    repeats: int = 1
    until: float = 0.0

    def describe(self) -> str:
        if self.repeats == 1:
            return self.text
        return f"{self.text} (and {self.repeats - 1} more like it)"

    def to_json(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "at": self.at,
            "text": self.text,
            "injected": self.injected,
            "repeats": self.repeats,
            "until": self.until,
        }


@final
@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """A proxy as configured; ``listen`` shows the port actually bound."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicSpec, ...] = ()

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's JSON shape for a proxy."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.toxics],
        }
