"""The toxics of one stream of one connection, run in order: still sans-IO.

Events enter the first stage; whatever a stage lets out at ``now`` enters the
next one; what leaves the last stage is for the socket. The engine's driver
asks ``deadline`` when to come back. Toxics can join, change or leave while
data is in flight: what a leaving stage holds moves on to the next one, never
lost, never reordered (Toxiproxy's rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import final

from ._stage import Attributes, Event, Stage


@final
class ToxicChain:
    __slots__ = ("_stages", "active")

    def __init__(self) -> None:
        self._stages: list[tuple[str, Stage]] = []
        self.active = False
        """A toxic is in the chain: bytes go through its stages (else straight on)."""

    @property
    def phase(self) -> str:
        """Where the connection's protocol stands, as the first protocol toxic here says."""
        for _, stage in self._stages:
            phase = stage.phase
            if phase:
                return phase
        return ""

    def __bool__(self) -> bool:
        return bool(self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    @property
    def first(self) -> Stage | None:
        """The stage that gets the stream's bytes as they were read, if any."""
        return self._stages[0][1] if self._stages else None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._stages]

    def stage(self, name: str) -> Stage:
        return self._stages[self._index(name)][1]

    @property
    def holding(self) -> int:
        """Bytes held by the stages, for the driver's read back-pressure."""
        total = 0
        for _, stage in self._stages:
            total += stage.holding
        return total

    def _index(self, name: str) -> int:
        for index, (existing, _) in enumerate(self._stages):
            if existing == name:
                return index
        raise KeyError(name)

    def feed(self, event: Event, now: float) -> list[Event]:
        """One event from the socket; returns what is due out of the chain now."""
        if not self._stages:
            return [event]
        self._stages[0][1].feed(event, now)
        return self.pump(now)

    def pump(self, now: float) -> list[Event]:
        """Move everything due at ``now`` along; returns what leaves the chain."""
        return self._pump_from(0, now)

    def _pump_from(self, first: int, now: float) -> list[Event]:
        stages = self._stages
        last = len(stages) - 1
        out: list[Event] = []
        for index in range(first, last + 1):
            events = stages[index][1].poll(now)
            if not events:
                continue
            if index == last:
                out.extend(events)
            else:
                following = stages[index + 1][1]
                for event in events:
                    following.feed(event, now)
        return out

    def _feed_at(self, index: int, events: Iterable[Event], now: float) -> list[Event]:
        """Feed ``events`` into the stage at ``index`` (or out, past the end)."""
        events = list(events)
        if index >= len(self._stages):
            return events
        stage = self._stages[index][1]
        for event in events:
            stage.feed(event, now)
        return self._pump_from(index, now)

    def deadline(self) -> float | None:
        soonest: float | None = None
        for _, stage in self._stages:
            when = stage.deadline()
            if when is not None and (soonest is None or when < soonest):
                soonest = when
        return soonest

    def append(self, name: str, stage: Stage, now: float) -> list[Event]:
        """A toxic joins at the end of the chain (Toxiproxy's order: as added)."""
        self._stages.append((name, stage))
        self.active = bool(self._stages)
        stage.start(now)
        return self.pump(now)

    def remove(self, name: str, now: float, *, cleanup: bool = True) -> list[Event]:
        """A toxic leaves: what it held goes on, then its clean-up (if any)."""
        index = self._index(name)
        _, stage = self._stages.pop(index)
        self.active = bool(self._stages)
        released = stage.interrupt(now)
        if cleanup:
            released.extend(stage.cleanup(now))
        return self._feed_at(index, released, now)

    def replace(self, name: str, stage: Stage, now: float) -> list[Event]:
        """Swap a toxic's stage (its toxicity was redrawn): the old one lets go first."""
        index = self._index(name)
        released = self._stages[index][1].interrupt(now)
        self._stages[index] = (name, stage)
        stage.start(now)
        return self._feed_at(index + 1, released, now)

    def reconfigure(self, name: str, attributes: Attributes, now: float) -> list[Event]:
        """New attributes for a toxic: held data goes on, counted state stays."""
        index = self._index(name)
        stage = self._stages[index][1]
        released = stage.interrupt(now)
        stage.configure(attributes)
        return self._feed_at(index + 1, released, now)
