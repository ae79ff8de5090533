"""The sans-IO contract every toxic implements.

A *stage* is one toxic applied to one stream of one connection. It is fed
events (bytes with the time they were read, end of stream) and a clock value,
and answers with the events that are due now and the next time it wants to be
asked again. It never touches a socket or an event loop, so the same code runs
under the engine, under a fake clock in the unit tests, and in any driver
someone writes later (the h11 idea).

Times are seconds on a monotonic clock (floats); attributes are Toxiproxy's
integer units (ms, KB/s, bytes, us), converted once in ``configure``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, final

from .._values import Kind, kinds_of


@final
@dataclass(frozen=True, slots=True)
class Data:
    """Bytes moving along a stream; ``stamp`` is when they count as read.

    Delaying toxics move the stamp forward by the delay they applied, so that
    stacked latencies add up instead of overlapping (Toxiproxy does the same).
    """

    data: bytes
    stamp: float


@final
class Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


EOF: Final = Marker("EOF")
"""End of this stream: the sender half-closed (the other direction stays open)."""

CLOSE: Final = Marker("CLOSE")
"""Close the whole connection, both directions, after the data queued before it."""

RESET: Final = Marker("RESET")
"""Abort the whole connection at once with a TCP RST on both sides."""

Event = Data | Marker


def kinds(**declared: Kind) -> Mapping[str, Kind]:
    """A toxic's attributes and their kinds, in order: ``kinds(latency=MILLISECONDS)``."""
    return MappingProxyType(declared)


class Stage:
    """Base of every toxic's per-stream state machine.

    The default is a FIFO of events with release times that never go
    backwards: subclasses decide *when* each event leaves by calling
    ``_release``; ``poll`` hands out what is due. Toxics that do something
    else (drop data, close on a timer) override the hooks.
    """

    type_name: ClassVar[str]
    attribute_kinds: ClassVar[Mapping[str, Kind]]
    """Each attribute's name and kind, in Toxiproxy's order: the one place a toxic
    declares what it takes. ``check_attributes`` checks every value against its
    kind (``MILLISECONDS``, ``BYTES``, a ``Text``...) for every door, and an omitted
    one gets the kind's default (0 for numbers, as Toxiproxy). A toxic that only
    names ``attribute_names`` takes whole numbers of 0 to int64 for each."""
    attribute_names: ClassVar[tuple[str, ...]]
    """The names of ``attribute_kinds``, in order (derived from it, or declared alone)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "attribute_kinds" in own:
            cls.attribute_names = tuple(own["attribute_kinds"])
        elif "attribute_names" in own:
            cls.attribute_kinds = kinds_of(None, own["attribute_names"])

    def __init__(self, attributes: Mapping[str, Any], rng: random.Random) -> None:
        self._rng = rng
        self._queue: deque[tuple[float, Event]] = deque()
        self._last_release = float("-inf")
        self._ended = False
        self.holding = 0
        """Bytes queued in this stage (the driver stops reading above a bound)."""
        self.configure(attributes)

    # -- configuration -------------------------------------------------------

    @classmethod
    def check(cls, attributes: Mapping[str, Any]) -> None:
        """Refuse values this toxic cannot work with, once each is an integer >= 0.

        Raise ``InvalidError`` naming the field (``slicer.average_size=0 ...``).
        ``check_attributes`` calls it for every door, so the rule lives with the
        code that would break on such values. Most toxics have no such rule.
        """

    def configure(self, attributes: Mapping[str, Any]) -> None:
        """Take new attribute values; state such as bytes counted is kept."""

    def start(self, now: float) -> None:
        """The stage joins a live stream at ``now`` (timers start here)."""

    # -- input -----------------------------------------------------------------

    def feed(self, event: Event, now: float) -> None:
        """Accept one event from the stream (or the previous toxic)."""
        if self._ended:
            return
        if isinstance(event, Data):
            self.on_data(event, now)
        elif event is RESET:
            self._ended = True
            self.discard()
            self._queue.append((now, RESET))
        else:
            self._ended = event is CLOSE or self._ended
            self.on_end(event, now)

    def on_data(self, chunk: Data, now: float) -> None:
        self._release(chunk, now)

    def discard(self) -> None:
        """A reset overtakes everything: drop what is held, forget pending timers."""
        self._queue.clear()
        self.holding = 0

    def on_end(self, event: Marker, now: float) -> None:
        """EOF or CLOSE from upstream: by default passed on after queued data."""
        self._release(event, now)

    # -- output ----------------------------------------------------------------

    def _release(self, event: Event, when: float) -> None:
        when = max(when, self._last_release)
        self._last_release = when
        self._queue.append((when, event))
        if isinstance(event, Data):
            self.holding += len(event.data)

    def poll(self, now: float) -> list[Event]:
        """Events due at ``now``, in order."""
        queue = self._queue
        out: list[Event] = []
        while queue and queue[0][0] <= now:
            event = queue.popleft()[1]
            if isinstance(event, Data):
                self.holding -= len(event.data)
            out.append(event)
        return out

    def deadline(self) -> float | None:
        """When ``poll`` has something next, or None if nothing is scheduled."""
        return self._queue[0][0] if self._queue else None

    def interrupt(self, now: float) -> list[Event]:
        """The toxic is being updated or removed: let go of everything held.

        Toxiproxy never drops data on the floor when a toxic goes away; what a
        stage holds leaves at once, in order.
        """
        out = [event for _, event in self._queue]
        self._queue.clear()
        self.holding = 0
        self._last_release = float("-inf")
        return out

    def cleanup(self, now: float) -> list[Event]:
        """The toxic is removed for good: anything it must do on the way out."""
        return []


def ms(value: int) -> float:
    """Toxiproxy milliseconds to our seconds."""
    return value / 1000.0
