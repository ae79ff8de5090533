"""What every protocol toxic shares: two stages, one per direction, reading one session.

A protocol toxic (``pg_error``, ``smtp_reply``...) must read both directions
of its connection: the statement is in what the client sends, the error to
rewrite in what the server answers. It is a pair of stages in the sans-IO
model (Toxiproxy calls such a toxic "bidirectional"): the toxic itself is the
stage of the client-to-server chain, and its ``partner`` the stage of the
server-to-client chain; both feed their bytes to one protocol session and ask
the toxic what to do with each message.

Each face keeps the bytes the toxic has not decided about yet and lets the
rest go at once, as the bytes came: a message is held only while a decision
waits for its end (a statement's text, a reply to rewrite), never longer than
``HOLD_LIMIT`` bytes. What a face can do at a message boundary: pass, drop,
insert bytes before it, delay what follows, hold what follows until the
toxic goes, or cut the connection there. One face can give the client an
answer of its own through the other (``answer``), which the face says on the
connection's bulletin (``nudged``): the engine, after running a chain, asks
the other chain's deadline again when a stage was nudged.

A stream that is not the protocol (or is encrypted) makes both faces stand
aside for good: every byte then passes as it came, as through ``noop``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Protocol

from .._values import WholeNumber
from ._stage import CLOSE, Attributes, Data, Event, Marker, Note, Stage

CUT_RESET: Final = WholeNumber(
    "", maximum=1, what="0 (close the connection) or 1 (reset it, TCP RST)"
)
"""``reset`` of the toxics that cut a connection (``pg_cut``, ``smtp_cut``)."""

HOLD_LIMIT: Final = 1 << 20
"""Bytes of one message a face will hold while a decision waits for its end; a longer one
(a statement of megabytes) passes unread. Below the engine's read back-pressure bound."""


class Item(Protocol):
    """A message (or SMTP line, or reply) complete in one direction, where it lies."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


class Face(Stage):
    """One direction of a protocol toxic (see the module doc).

    ``_read`` feeds the session and returns what completed; ``_decide`` is the
    toxic's call on each of them; ``_decisive`` says where a message whose end
    a decision waits for starts (held from there), or None.
    """

    type_name: ClassVar[str] = ""
    attribute_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._held = bytearray()
        self._out = 0
        """Stream offset up to which bytes are passed on (or dropped); ``_held`` follows."""
        self._stamp = 0.0
        self._hanging = False
        self._not_before = float("-inf")
        self._cut_at: int | None = None
        self._cut_marker: Marker = CLOSE
        self._cut_note = ""
        self._ends: list[Event] = []
        self._fresh: Data | None = None
        """The chunk being decided about, not yet copied into ``_held`` (see ``on_data``)."""
        self._last_note: Note | None = None
        # What the toxic provides (set by ``ProtocolToxic``): read a chunk (the messages it
        # completes), decide about one, where a message a decision waits for starts, and
        # the session (``.opaque``: nothing more can be read).
        self._read: Callable[[bytes], Sequence[Any]] = _nothing
        self._decide: Callable[[Any, float], None] = _ignore
        self._decisive: Callable[[], int | None] = _none
        self._session: _Session = _NO_SESSION
        super().__init__(attributes, rng)

    def _opaque(self) -> bool:
        return self._session.opaque

    # -- bytes in ---------------------------------------------------------------------------------

    def start_at(self, offset: int) -> None:
        """The face reads a stream whose first ``offset`` bytes went by before it joined."""
        self._out = offset

    @property
    def received(self) -> int:
        """Stream offset just past the last byte fed."""
        fresh = self._fresh
        return self._out + len(self._held) + (0 if fresh is None else len(fresh.data))

    def _materialize(self) -> None:
        """The chunk being decided about joins the held bytes (a decision acts on them)."""
        fresh = self._fresh
        if fresh is not None:
            if not self._held:
                self._stamp = fresh.stamp
            self._held += fresh.data
            self.holding += len(fresh.data)
            self._fresh = None

    def on_data(self, chunk: Data, now: float) -> None:
        if self._held or self._hanging or self._cut_at is not None:
            self._on_data_behind(chunk, now)
            return
        if self._session.opaque:
            self._pass(chunk, now)
            return
        # The common case, without a copy: the chunk is decided about as it is, and goes on
        # as it came unless a decision acted on its bytes or a message of it waits for its end.
        self._fresh = chunk
        items = self._read(chunk.data)
        if items:
            self._decide_all(items, now)
        if self._fresh is None or self._ended:
            self._settle(now)
            return
        if self._cut_at is None and not self._hanging:
            start = None if self._session.opaque else self._decisive()
            if start is None or self.received - start > HOLD_LIMIT:
                self._fresh = None
                self._pass(chunk, now)
                return
        self._materialize()
        self._settle(now)

    def _pass(self, chunk: Data, now: float) -> None:
        """``chunk`` goes on whole, as it came."""
        self._out += len(chunk.data)
        self._release(chunk, now if now > self._not_before else self._not_before)

    def _on_data_behind(self, chunk: Data, now: float) -> None:
        """A chunk behind held bytes (or a hold, or a cut point): it joins them, then the
        decisions let go of what they can."""
        if not self._held:
            self._stamp = chunk.stamp
        self._held += chunk.data
        self.holding += len(chunk.data)
        self._decide_all(self._read(chunk.data), now)
        self._settle(now)

    def _decide_all(self, items: Sequence[Any], now: float) -> None:
        if self._hanging:
            return
        decide = self._decide
        for item in items:
            if self._ended or self._hanging:
                break
            if self._cut_at is not None and item.start >= self._cut_at:
                break
            if item.start >= self._out:  # a decision cannot act on bytes gone by
                decide(item, now)

    def on_end(self, event: Marker, now: float) -> None:
        if self._hanging:
            self._ends.append(event)
            return
        self.release_to(self.received, now)
        self._release(event, max(now, self._not_before))

    def _settle(self, now: float) -> None:
        """Let go of every byte no decision waits for; cut if a cut point went by."""
        if self._ended:
            return
        if self._cut_at is not None and self.received > self._cut_at:
            self._cut(now)
            return
        if self._hanging:
            return
        limit = self.received
        if self._cut_at is not None:
            limit = min(limit, self._cut_at)
        if not self._opaque():
            start = self._decisive()
            if start is not None and self.received - start <= HOLD_LIMIT:
                limit = min(limit, max(start, self._out))
        self.release_to(limit, now)

    # -- what a toxic can do ----------------------------------------------------------------------

    def release_to(self, offset: int, now: float) -> None:
        """Pass on the held bytes up to stream offset ``offset``."""
        self._materialize()
        count = offset - self._out
        if count <= 0 or self._hanging:
            return
        data = bytes(self._held[:count])
        del self._held[:count]
        self._out = offset
        self.holding -= count
        self._release(Data(data, self._stamp), max(now, self._not_before))

    def insert(self, data: bytes, now: float) -> None:
        """Bytes of the toxic's own, passed on at the current point of the stream."""
        self._release(Data(data, now), max(now, self._not_before))

    def drop(self, item: Item, now: float) -> None:
        """``item``'s bytes are not passed on."""
        self.release_to(item.start, now)
        self._materialize()
        count = min(item.end, self.received) - self._out
        if count > 0:
            del self._held[:count]
            self._out += count
            self.holding -= count

    def insert_before(self, item: Item, data: bytes, now: float) -> None:
        self.release_to(item.start, now)
        self.insert(data, now)

    def replace(self, item: Item, data: bytes, now: float) -> None:
        self.insert_before(item, data, now)
        self.drop(item, now)

    def delay_from(self, item: Item, when: float, now: float) -> None:
        """What precedes ``item`` goes now; it and everything after it not before ``when``."""
        self.release_to(item.start, now)
        self._not_before = max(self._not_before, when)

    def hang_from(self, item: Item, now: float) -> None:
        """What precedes ``item`` goes now; it and everything after it stay until the toxic
        goes (an update or a removal lets them go, in order)."""
        self.release_to(item.start, now)
        self._hanging = True

    @property
    def hanging(self) -> bool:
        return self._hanging

    def arm_cut(self, offset: int, marker: Marker, note: str = "") -> None:
        """Cut the connection at stream offset ``offset``: nothing from there on is passed, and
        ``marker`` (CLOSE or RESET) goes instead, as soon as a byte past it arrives."""
        offset = max(offset, self._out)
        if self._cut_at is None or offset < self._cut_at:
            self._cut_at, self._cut_marker, self._cut_note = offset, marker, note
            self.bulletin.nudged = True

    def answer(self, data: bytes, now: float, *, close: bool = False) -> None:
        """Give the peer this direction's reader talks to an answer of the toxic's own, at the
        current point of the stream (what is held comes after it); then close, if asked."""
        if self._ended:
            return
        self.bulletin.nudged = True
        self.insert(data, now)
        if close:
            self._finish(CLOSE, now)

    def close_now(self, now: float, note: str = "") -> None:
        """Close the connection here: what was let go goes first, nothing held after it."""
        if note:
            self.note(note, now, injected=True)
        self._finish(CLOSE, now)

    def _cut(self, now: float) -> None:
        assert self._cut_at is not None
        self.release_to(self._cut_at, now)
        if self._cut_note:
            self.note(self._cut_note, now, injected=True)
        self._finish(self._cut_marker, now)

    def _finish(self, marker: Marker, now: float) -> None:
        self._materialize()
        self.holding -= len(self._held)
        self._out += len(self._held)
        self._held.clear()
        self._ends.clear()
        self._hanging = False
        self._release(marker, max(now, self._not_before))
        self._ended = True

    def note(self, text: str, now: float, *, injected: bool = False) -> None:
        """Something to show in the timeline; the same thing again, as the one before it
        (a statement an ``executemany`` runs 200 times), counts as a repeat of that one."""
        last = self._last_note
        if last is not None and not injected and not last.injected and last.text == text:
            last.repeats += 1
            last.until = now
            return
        self._last_note = note = Note(now, text, injected, 1, now)
        self.bulletin.notes.append(note)

    # -- the toxic changes or goes ----------------------------------------------------------------

    def discard(self) -> None:
        super().discard()
        self._fresh = None
        self._held.clear()
        self._ends.clear()
        self._hanging = False

    def interrupt(self, now: float) -> list[Event]:
        """Everything held goes on at once, in order; decisions pending are forgotten."""
        self._materialize()
        out = super().interrupt(now)
        if self._held:
            out.append(Data(bytes(self._held), min(self._stamp, now)))
            self._out += len(self._held)
            self._held.clear()
        out.extend(self._ends)
        self._ends.clear()
        self._hanging = False
        self._not_before = float("-inf")
        self._cut_at = None
        self.holding = 0
        return out


class ProtocolToxic(Face):
    """A protocol toxic: this stage reads what the client sends; ``server`` (its partner)
    what the server sends. Subclasses implement ``read_server`` and the ``client_*`` and
    ``server_*`` hooks, and give ``session`` before this ``__init__``: its ``client`` reads
    the client's stream (no method of the toxic's own between: it runs for every chunk)."""

    bidirectional = True
    session: _ToxicSession

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self.server = ServerFace(self, rng)
        super().__init__(attributes, rng)
        self.partner = self.server
        self.server.partner = self
        self._read, self.server._read = self.session.client, self.read_server
        self._decide, self.server._decide = self.client_item, self.server_item
        self._decisive, self.server._decisive = self.client_decisive, self.server_decisive
        self._session = self.server._session = self.session

    def count(self, key: str) -> int:
        """One more of ``key`` across the toxic's connections (see ``Stage.shared``): the
        how-manyth this one is."""
        self.shared[key] = self.shared.get(key, 0) + 1
        return self.shared[key]

    # -- hooks ------------------------------------------------------------------------------------

    def read_server(self, data: bytes) -> Sequence[Any]:
        raise NotImplementedError

    def client_item(self, item: Any, now: float) -> None:
        """Decide about one message from the client (default: pass it)."""

    def server_item(self, item: Any, now: float) -> None:
        """Decide about one message from the server (default: pass it)."""

    def client_decisive(self) -> int | None:
        return None

    def server_decisive(self) -> int | None:
        return None


class ServerFace(Face):
    """The server-to-client stage of a protocol toxic: its decisions are the toxic's."""

    def __init__(self, toxic: ProtocolToxic, rng: random.Random) -> None:
        self.toxic = toxic
        super().__init__({}, rng)


class _Session(Protocol):
    @property
    def opaque(self) -> bool: ...


class _NoSession:
    opaque = True


_NO_SESSION: Final[_Session] = _NoSession()


class _ToxicSession(_Session, Protocol):
    """A protocol toxic's session: it also reads the client's stream."""

    def client(self, data: bytes) -> Sequence[Any]: ...


def _nothing(data: bytes) -> Sequence[Any]:
    return ()


def _ignore(item: Any, now: float) -> None:
    return None


def _none() -> int | None:
    return None
