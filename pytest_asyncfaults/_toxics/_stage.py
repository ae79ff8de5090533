"""The sans-IO contract every toxic implements.

A *stage* is one toxic applied to one stream of one connection. It is fed
events (bytes with the time they were read, end of stream) and a clock value,
and answers with the events that are due now and the next time it wants to be
asked again. It never touches a socket or an event loop, so the same code runs
under the engine, under a fake clock in the unit tests, and in any driver
someone writes later (the h11 idea).

Times are seconds on a monotonic clock (floats); attributes are Toxiproxy's
integer units (ms, KB/s, bytes, us), converted once in ``configure``, and for
the protocol toxics a few texts too (a SQLSTATE, a regex, an SMTP command):
each toxic declares its attributes' kinds once, in ``attribute_kinds``.

A protocol toxic reads both directions of a connection: it is a pair of
stages sharing one state, one in each direction's chain (Toxiproxy's
"bidirectional toxic"). Either one may make the other one's output due (an
answer the proxy gives the client itself): it says so on the connection's
``Bulletin`` (``nudged``), and the driver then asks the other chain's
``deadline`` again, which is the whole of the hook.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, final

from .._values import AttributeValue, Kind, kinds_of

Attributes = Mapping[str, AttributeValue]
"""A toxic's attributes as its stage takes them: each of the kind its toxic declares
(``Stage.attribute_kinds``), checked once by ``check_attributes``."""


@final
@dataclass(eq=False, slots=True)
class Note:
    """Something a protocol toxic saw or did on its connection, for the timeline.

    ``injected`` marks what the toxic did (an answer it gave, a cut, a hold),
    as opposed to what it read (a statement, an SMTP command). The same thing
    read again right after is the same note, ``repeats`` times until ``until``
    (the toxic counts on in the note it handed out already).
    """

    at: float
    text: str
    injected: bool = False
    repeats: int = 1
    until: float = 0.0


@final
class Bulletin:
    """What the protocol toxics of one connection have to tell its driver since it last
    looked: notes for the timeline, and whether a stage made output of the other
    direction's chain due (``nudged``: an answer the proxy gives the client, a cut).

    One per connection, shared by the stages of both its chains (the driver hands it to
    each), so that the driver's look after every chunk is two attribute reads, not a walk
    over the stages: it runs after every chunk of every connection with a protocol toxic.
    """

    __slots__ = ("notes", "nudged")

    def __init__(self) -> None:
        self.notes: list[Note] = []
        self.nudged = False


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
    bidirectional: ClassVar[bool] = False
    """A protocol toxic: its stage (client to server) comes with a ``partner`` for the
    other direction, whatever the toxic's ``stream`` says."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "attribute_kinds" in own:
            cls.attribute_names = tuple(own["attribute_kinds"])
        elif "attribute_names" in own:
            cls.attribute_kinds = kinds_of(None, own["attribute_names"])

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._rng = rng
        self._queue: deque[tuple[float, Event]] = deque()
        self._last_release = float("-inf")
        self._ended = False
        self.holding = 0
        """Bytes queued in this stage (the driver stops reading above a bound)."""
        self.partner: Stage | None = None
        """The stage of the same toxic in the other direction's chain, sharing its state."""
        self.bulletin = Bulletin()
        """Where a protocol toxic's stage tells the driver what it saw and did, and that
        output of a chain became due with no data coming its way; the driver hands the
        stages of one connection the same one (a stage built alone keeps its own)."""
        self.shared: dict[str, int] = {}
        """What one toxic counts across all its connections (the Nth statement the proxy
        sees): the driver hands every stage of a toxic the same dict."""
        self.configure(attributes)

    @property
    def phase(self) -> str:
        """Where the connection's protocol stands, for a hang report ("" if unknown)."""
        return ""

    def client_session(self) -> object:
        """What this stage reads of the client's stream, if it can stand in for the driver's
        tracker of the connection (a PostgreSQL toxic's session: the driver then reads the
        stream once, not twice); None for every other stage."""
        return None

    def joined_late(self, tracker: object = None) -> None:
        """The stage joins a connection that has already carried data: it reads the
        streams from the middle. Only the protocol toxics care; ``tracker`` is what the
        driver read of the client's stream from its first byte, if anything."""

    # -- configuration -------------------------------------------------------

    @classmethod
    def check(cls, attributes: Attributes) -> None:
        """Refuse values this toxic cannot work with, once each is of its kind.

        Raise ``InvalidError`` naming the field (``slicer.average_size=0 ...``).
        ``check_attributes`` calls it for every door, with every attribute (an
        omitted one at its kind's default), so the rule across attributes lives
        with the code that would break on such values, and so does "this one must
        be given" (``pg_error.sqlstate``). Most toxics have no such rule.
        """

    @classmethod
    def require(cls, attributes: Attributes, *keys: str) -> None:
        """For ``check``: attributes the toxic cannot do without. One left out is at its
        kind's default, a value its kind refuses (``""`` for a SQLSTATE, 0 for an SMTP
        code): it is told as that value, in the kind's own words."""
        for key in keys:
            kind = cls.attribute_kinds[key]
            kind.check(f"{cls.type_name}.{key}", attributes.get(key, kind.default))

    @classmethod
    def int_value(cls, attributes: Attributes, key: str) -> int:
        """An integer attribute; its kind's default when left out (a stage built by
        hand, in a test): the default is declared once, in ``attribute_kinds``."""
        value = attributes.get(key, cls.attribute_kinds[key].default)
        assert isinstance(value, int), f"{cls.type_name}.{key} is {value!r}, not of its kind"
        return value

    @classmethod
    def text_value(cls, attributes: Attributes, key: str) -> str:
        """A text attribute; its kind's default when left out (see ``int_value``)."""
        value = attributes.get(key, cls.attribute_kinds[key].default)
        assert isinstance(value, str), f"{cls.type_name}.{key} is {value!r}, not of its kind"
        return value

    def configure(self, attributes: Attributes) -> None:
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
        if when < self._last_release:
            when = self._last_release
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
