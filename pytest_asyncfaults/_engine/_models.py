"""Read-only views the engine hands out: a proxy's settings and its counters."""

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
    """

    accepted: int = 0
    open: int = 0
    clients_open: int = 0
    closed: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0
    upstream_errors: int = 0
    toxics_hit: Mapping[str, int] = field(default_factory=dict)


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
