"""PostgreSQL's v3 wire protocol, read in both directions as the bytes go by: sans-IO.

A ``PgSession`` is fed each direction's bytes in whatever chunks the sockets
give, and hands back the messages they complete, with where each one starts
and ends in its stream (so a toxic can hold, cut or insert at a message
boundary) and, for those that matter, their body. It never changes a byte:
what the toxic passes on is the caller's business.

The connection opens untyped (PostgreSQL's "startup phase"): the client may
ask for TLS or GSS encryption first (8 bytes; the server answers with one
byte, ``S``/``G`` to go ahead, ``N`` not to), then sends its StartupMessage
(a length, the protocol version, ``name\\0value\\0`` pairs); every message
after that is a type byte and an int32 length counting itself. An encrypted
session cannot be read: the session says so (``encrypted``) and the toxics
stand aside. So do they for a stream that is not PostgreSQL's (``opaque``).

Beyond framing, the session keeps what the toxics need to know which
statement a message is about: prepared statements and portals by name, the
statements in flight grouped by the ``Sync`` (or simple ``Query``) their
``ReadyForQuery`` answers, the server's rows counted against the statement
they belong to, the transaction status of the last ``ReadyForQuery``.

Statements are the client's ``Query`` messages and ``Execute`` messages; an
extended-protocol statement's SQL is the one its portal was bound from.
"""

from __future__ import annotations

import functools
import re
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Final, final

SSL_REQUEST: Final = 80877103
GSSENC_REQUEST: Final = 80877104
CANCEL_REQUEST: Final = 80877102
MAX_STARTUP: Final = 10000
"""PostgreSQL refuses a startup packet longer than this (``MAX_STARTUP_PACKET_LENGTH``)."""
MAX_MESSAGE: Final = 1 << 30
"""PostgreSQL's own bound on a message (``PQ_LARGE_MESSAGE_LIMIT`` is 1 GB)."""

FRONTEND_TYPES: Final = frozenset(b"BCcdDEfFHpPQSX")
"""Bind, Close, CopyDone, CopyData, Describe, Execute, CopyFail, FunctionCall, Flush,
password/SASL response, Parse, Query, Sync, Terminate."""
BACKEND_TYPES: Final = frozenset(b"123AcCdDEGHIKnNRsStTvVWZ")
"""ParseComplete, BindComplete, CloseComplete, Notification, CopyDone, CommandComplete,
CopyData, DataRow, ErrorResponse, CopyIn/OutResponse, EmptyQuery, BackendKeyData, NoData,
Notice, Authentication, PortalSuspended, ParameterStatus, ParameterDescription,
RowDescription, NegotiateProtocolVersion, FunctionCallResponse, CopyBoth, ReadyForQuery."""
_BULK: Final = frozenset(b"dD")
"""CopyData and DataRow: counted, never kept (they are most of a big result)."""
_LENGTH: Final = struct.Struct("!I")
_ROWS: Final = frozenset(b"Dd")
_STATEMENTS: Final = frozenset(b"QE")
_NAMES: Final = frozenset(b"PBCX")
"""Client messages the tracker reads: Parse, Bind and Close name statements and portals,
Terminate ends the session."""
_DONE: Final = frozenset(b"CIs")
"""CommandComplete, EmptyQueryResponse, PortalSuspended: a statement's result ended."""
_MEANINGFUL: Final = frozenset(b"ZE")
"""ReadyForQuery and ErrorResponse: what else changes what the session knows."""
_KINDS: Final = tuple(chr(code) for code in range(256))


@final
@dataclass(eq=False, slots=True)
class Statement:
    """One statement the client ran on this connection (a ``Query`` or an ``Execute``)."""

    sql: str
    number: int
    """Counted from 1 on the connection, in the order the client sent them."""
    simple: bool
    """A simple ``Query`` (which may hold several SQL statements), not an ``Execute``."""
    rows: int = 0
    """Rows of its result the server sent so far (DataRow, or CopyData of a COPY TO)."""
    rows_in: int = 0
    """CopyData the client sent for it (a COPY FROM STDIN)."""
    done: bool = False
    cut: bool = False
    """A ``pg_cut`` chose it: its result (or its COPY data) is to be cut."""

    def short(self, limit: int = 72) -> str:
        return shorten_sql(self.sql, limit)


_PASSWORD: Final = re.compile(r"(?i)(password\s+)'(?:[^']|'')*'")


@functools.lru_cache(maxsize=512)
def shorten_sql(sql: str, limit: int = 72) -> str:
    """One line of SQL for a note or a report: spaces squeezed, passwords hidden, cut.

    Cached: an app runs the same few statements over and over."""
    text = _PASSWORD.sub(r"\1'***'", " ".join(sql.split()))
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@final
@dataclass(eq=False, slots=True)
class Group:
    """Statements whose results one ``ReadyForQuery`` closes (a Sync's, or a Query's)."""

    statements: list[Statement] = field(default_factory=list)
    closed: bool = False
    """The client sent its Sync (or it is a Query): a ReadyForQuery will end it."""
    errored: bool = False
    """The server reported an error in it: the rest of its statements are skipped."""
    current: int = 0
    """Index of the statement the server's next result messages belong to."""


@final
@dataclass(eq=False, slots=True)
class PgMessage:
    """A message complete in one direction: its type, where it lies, its body."""

    kind: str
    """The type byte as a character (``"Q"``, ``"E"``...), or for the untyped packets of
    the startup phase ``"startup"``, ``"ssl_request"``, ``"gssenc_request"``,
    ``"cancel_request"``, and for the server's one-byte answer to them ``"answer"``."""
    start: int
    """Offset of its first byte in its direction's stream."""
    end: int
    """Offset just past its last byte."""
    body: bytes = b""
    """What follows the length (CopyData and DataRow bodies are not kept)."""
    statement: Statement | None = None
    """The statement it runs (Query, Execute, the client's CopyData) or belongs to (the
    server's rows, completion, error)."""
    index: int = 0
    """A row's number in its statement's result (a CopyData's, for the client's)."""
    current: Statement | None = None
    """A server message: the statement the server's next result messages belong to, once
    this one is read. (The session reads a whole chunk before the toxic decides about its
    messages one by one: what the session says then is as of the chunk's end.)"""
    group: Group | None = None
    """A ReadyForQuery: the group it closed."""


class _Reader:
    """Frames one direction: messages complete, with their offsets; it stops at nonsense."""

    def __init__(self, types: frozenset[int]) -> None:
        self.types = types
        self.offset = 0
        """Bytes read so far (the stream offset of the next byte)."""
        self.untyped = False
        """In the startup phase: packets with no type byte."""
        self.answers_due = 0
        """One-byte answers to expect first (the server's, to SSL/GSS requests)."""
        self.broken = ""
        """Why the stream is not (or no longer) PostgreSQL's; "" while it is."""
        self._header = bytearray()
        self._kind = 0
        self._start = 0
        self._end = -1
        self._body: bytearray | None = None

    @property
    def at_boundary(self) -> bool:
        """Between typed messages: the next byte starts one."""
        return self._end < 0 and not (self._header or self.untyped or self.answers_due)

    def copy(self) -> _Reader:
        """A reader that goes on from exactly where this one is (mid-message included)."""
        twin = _Reader(self.types)
        twin.offset, twin.untyped, twin.answers_due, twin.broken = (
            self.offset,
            self.untyped,
            self.answers_due,
            self.broken,
        )
        twin._header = bytearray(self._header)
        twin._kind, twin._start, twin._end = self._kind, self._start, self._end
        twin._body = None if self._body is None else bytearray(self._body)
        return twin

    @property
    def partial(self) -> tuple[str, int] | None:
        """The kind and start of a message begun but not complete, if its header is in."""
        if self._end >= 0:
            return (_kind_name(self._kind, self.untyped), self._start)
        if self._header and not self.answers_due:
            return (_kind_name(self._header[0], self.untyped), self._start)
        return None

    def feed(self, data: bytes) -> list[PgMessage]:
        out: list[PgMessage] = []
        pos, size, base = 0, len(data), self.offset
        if self._end < 0 and not (self._header or self.untyped or self.answers_due):
            pos = self._whole_messages(data, out)
            if pos == size:  # the common case: the chunk ends where a message does
                self.offset = base + size
                return out
        while pos < size and not self.broken:
            if self._end < 0:
                if self.answers_due:
                    self.answers_due -= 1
                    out.append(PgMessage("answer", base + pos, base + pos + 1, data[pos : pos + 1]))
                    pos += 1
                    continue
                width = 4 if self.untyped else 5
                if not self._header and size - pos >= width:
                    header: bytes | bytearray = data[pos : pos + width]
                    self._start = base + pos
                    pos += width
                else:
                    if not self._header:
                        self._start = base + pos
                    take = min(width - len(self._header), size - pos)
                    self._header += data[pos : pos + take]
                    pos += take
                    if len(self._header) < width:
                        break
                    header = bytes(self._header)
                    self._header.clear()
                if not self._begin(header):
                    break
            remaining = self._end - (base + pos)
            take = min(remaining, size - pos)
            if self._body is not None and take:
                self._body += data[pos : pos + take]
            pos += take
            if take == remaining:
                out.append(self._complete())
        self.offset = base + size
        return out

    def _whole_messages(self, data: bytes, out: list[PgMessage]) -> int:
        """The common case, quickly: typed messages that start and end in this chunk. Returns
        where the first one that does not (or the chunk's end) starts."""
        pos, size, base = 0, len(data), self.offset
        types, unpack, kinds = self.types, _LENGTH.unpack_from, _KINDS
        while size - pos >= 5:
            kind = data[pos]
            (length,) = unpack(data, pos + 1)
            if kind not in types or not 4 <= length <= MAX_MESSAGE:
                return pos  # the general loop says what is wrong
            end = pos + 1 + length
            if end > size:
                return pos
            body = b"" if kind in _BULK else data[pos + 5 : end]
            out.append(PgMessage(kinds[kind], base + pos, base + end, body))
            pos = end
        return pos

    def _begin(self, header: bytes | bytearray) -> bool:
        if self.untyped:
            kind = 0
            length = int.from_bytes(header[0:4], "big")
            if not 8 <= length <= MAX_STARTUP:
                self.broken = f"a startup packet of {length} bytes"
                return False
            self._end = self._start + length
        else:
            kind = header[0]
            length = int.from_bytes(header[1:5], "big")
            if kind not in self.types:
                self.broken = f"message type {bytes([kind])!r}"
                return False
            if not 4 <= length <= MAX_MESSAGE:
                self.broken = f"a message length of {length}"
                return False
            self._end = self._start + 1 + length
        self._kind = kind
        self._body = None if kind in _BULK else bytearray()
        return True

    def _complete(self) -> PgMessage:
        body = bytes(self._body) if self._body is not None else b""
        if self.untyped:
            code = int.from_bytes(body[0:4], "big")
            body = body[4:]
            kind = _UNTYPED.get(code, "startup" if code >> 16 == 3 else "")
            if not kind:
                self.broken = f"a startup packet with code {code}"
            elif kind in ("startup", "cancel_request"):
                self.untyped = False  # typed messages from here on (none after a cancel)
            message = PgMessage(kind or "startup", self._start, self._end, body)
        else:
            message = PgMessage(chr(self._kind), self._start, self._end, body)
        self._end = -1
        self._body = None
        return message


_UNTYPED: Final = {
    SSL_REQUEST: "ssl_request",
    GSSENC_REQUEST: "gssenc_request",
    CANCEL_REQUEST: "cancel_request",
}


def _kind_name(kind: int, untyped: bool) -> str:
    return "startup" if untyped else chr(kind)


@functools.lru_cache(maxsize=512)
def _text(body: bytes) -> str:
    """A Query's SQL (cached: an app sends the same few over and over)."""
    return body.rstrip(b"\0").decode("utf-8", "replace")


def cstrings(body: bytes, count: int) -> list[bytes]:
    """The first ``count`` NUL-terminated strings of a body (fewer if it is short)."""
    out: list[bytes] = []
    pos = 0
    for _ in range(count):
        end = body.find(b"\0", pos)
        if end < 0:
            break
        out.append(body[pos:end])
        pos = end + 1
    return out


def error_fields(body: bytes) -> dict[str, str]:
    """An ErrorResponse's (or NoticeResponse's) fields by their code letter."""
    fields: dict[str, str] = {}
    for item in body.split(b"\0"):
        if item:
            fields[chr(item[0])] = item[1:].decode("utf-8", "replace")
    return fields


def message(kind: bytes, body: bytes) -> bytes:
    """A typed message on the wire."""
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def error_response(severity: str, sqlstate: str, text: str) -> bytes:
    """An ErrorResponse as the server writes one (severity, SQLSTATE, message)."""
    fields = [f"S{severity}", f"V{severity}", f"C{sqlstate}", f"M{text}"]
    return message(b"E", b"".join(item.encode() + b"\0" for item in fields) + b"\0")


def query_message(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\0")


def parse_message(name: str, sql: str) -> bytes:
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + b"\0\0")


@final
class PgSession:
    """Both directions of one connection, read together (see the module doc)."""

    def __init__(self, *, tracking: bool = False) -> None:
        self.tracking = tracking
        """Only the client's side is read (the engine's tracker of a connection, see
        ``adopt``): no statements are kept, only the names statements are prepared under."""
        self.client_reader = _Reader(FRONTEND_TYPES)
        self.client_reader.untyped = True
        self.server_reader = _Reader(BACKEND_TYPES)
        self.state = "startup"
        """startup, authentication, ready, cancel (a cancel request's connection), closed."""
        self.encrypted = False
        self.opaque = False
        """Nothing more can be read: not PostgreSQL, or encrypted from here on."""
        self.want_current = False
        """Say on each server message which statement the next ones belong to (``current``);
        only a toxic that needs it (pg_cut) pays for it."""
        self.tx_status = ""
        """The last ReadyForQuery's: I idle, T in a transaction, E in a failed one."""
        self.user = ""
        self.database = ""
        self.count = 0
        """Statements the client sent so far."""
        self.groups: deque[Group] = deque()
        """Groups sent and not yet closed by their ReadyForQuery, oldest first; the last one
        may still be open (the client has not sent its Sync)."""
        self._statements: dict[bytes, str] = {}
        self._portals: dict[bytes, str] = {}
        self._last: Statement | None = None

    @property
    def client_offset(self) -> int:
        """Bytes of the client's stream read so far."""
        return self.client_reader.offset

    @property
    def why_opaque(self) -> str:
        if self.encrypted:
            return "the session is encrypted (TLS or GSS)"
        broken = self.client_reader.broken or self.server_reader.broken
        return f"not PostgreSQL's protocol ({broken})" if broken else ""

    def joined_late(self, tracker: object = None) -> None:
        """Reading starts mid-connection. With the engine's ``tracker`` of the connection (a
        session that read the client's side from its first byte), go on from where it is:
        the client's stream exactly, the statements prepared before. Without one, take both
        directions to be between messages, as an idle pooled connection is, the login over.
        The server's side is taken to be between messages either way."""
        if isinstance(tracker, PgSession) and not tracker.opaque:
            self.client_reader = tracker.client_reader.copy()
            self.state, self.user, self.database = tracker.state, tracker.user, tracker.database
            self.count = tracker.count
            self._statements = dict(tracker._statements)
            self._portals = dict(tracker._portals)
            return
        self.client_reader.untyped = False
        self.state = "ready"

    def as_tracker(self) -> PgSession | None:
        """A tracker that goes on from where this session's reading of the client's side
        stands (the engine's, when a protocol toxic that read in its place goes); None when
        the stream is not PostgreSQL's (or encrypted): there is nothing to track."""
        if self.opaque:
            return None
        tracker = PgSession(tracking=True)
        tracker.client_reader = self.client_reader.copy()
        tracker.state = "ready" if self.state == "authentication" else self.state
        tracker.user, tracker.database, tracker.count = self.user, self.database, self.count
        tracker._statements = dict(self._statements)
        tracker._portals = dict(self._portals)
        return tracker

    @property
    def current(self) -> Statement | None:
        """The statement the server's next result messages belong to, if any.

        Only the oldest group can be answered: the server answers the next one after
        this one's ReadyForQuery. Past an error, the rest of the group is skipped."""
        if not self.groups:
            return None
        group = self.groups[0]
        if group.errored or group.current >= len(group.statements):
            return None
        return group.statements[group.current]

    def in_flight(self) -> Statement | None:
        """The oldest statement still waiting for its result to end."""
        for group in self.groups:
            for statement in group.statements[group.current :]:
                if not statement.done:
                    return statement
        return None

    # -- the client's side ----------------------------------------------------------------

    def client(self, data: bytes) -> list[PgMessage]:
        if self.opaque:
            return []
        reader = self.client_reader
        if self.tracking and reader.at_boundary:
            done = self._track_whole(data)
            if done == len(data):
                return []
            data = data[done:]
        messages = reader.feed(data)
        handle = self._client_message
        for msg in messages:
            handle(msg)
        if reader.broken:
            self.opaque = True
        return messages

    def _query(self, body: bytes) -> Statement:
        """A simple Query: its statement, in a group of its own (its ReadyForQuery ends it)."""
        self.count += 1
        statement = Statement(_text(body), self.count, True)
        groups = self.groups
        if groups and not groups[-1].closed:
            groups[-1].closed = True
        groups.append(Group([statement], True))
        self._last = statement
        return statement

    def _client_message(self, msg: PgMessage) -> None:
        kind = msg.kind
        if self.tracking:
            self._track(msg)
            return
        if kind == "Q":
            msg.statement = self._query(msg.body)
        elif kind == "E":
            self.count += 1
            (portal,) = cstrings(msg.body, 1) or [b""]
            statement = Statement(self._portals.get(portal, ""), self.count, simple=False)
            self._open_group().statements.append(statement)
            msg.statement = self._last = statement
        elif kind == "P":
            parts = cstrings(msg.body, 2)
            if len(parts) == 2:
                self._statements[parts[0]] = parts[1].decode("utf-8", "replace")
        elif kind == "B":
            parts = cstrings(msg.body, 2)
            if len(parts) == 2:
                self._portals[parts[0]] = self._statements.get(parts[1], "")
        elif kind == "C" and msg.body:
            names = self._statements if msg.body[:1] == b"S" else self._portals
            for name in cstrings(msg.body[1:], 1):
                names.pop(name, None)
        elif kind == "S":
            self._close_open_group()
        elif kind == "d":
            if self._last is not None:
                self._last.rows_in += 1
                msg.statement = self._last
                msg.index = self._last.rows_in
        elif kind == "X":
            self.state = "closed"
        elif kind in ("ssl_request", "gssenc_request"):
            self.server_reader.answers_due += 1
        elif kind == "startup":
            self.client_reader.untyped = False
            params = msg.body.split(b"\0")
            pairs = dict(zip(params[0::2], params[1::2], strict=False))
            self.user = pairs.get(b"user", b"").decode("utf-8", "replace")
            self.database = pairs.get(b"database", b"").decode("utf-8", "replace") or self.user
            self.state = "authentication"
        elif kind == "cancel_request":
            self.state = "cancel"
            self.client_reader.untyped = False

    def _track_whole(self, data: bytes) -> int:
        """The tracker's common case: whole messages read in place, a message made only of
        those that name statements and portals. Returns how far it went."""
        pos, size = 0, len(data)
        unpack, types, base = _LENGTH.unpack_from, FRONTEND_TYPES, self.client_reader.offset
        while size - pos >= 5:
            kind = data[pos]
            (length,) = unpack(data, pos + 1)
            end = pos + 1 + length
            if kind not in types or not 4 <= length <= MAX_MESSAGE or end > size:
                break
            if kind in _STATEMENTS:
                self.count += 1
            elif kind in _NAMES:
                msg = PgMessage(_KINDS[kind], base + pos, base + end, data[pos + 5 : end])
                self._track(msg)
            pos = end
        self.client_reader.offset += pos
        return pos

    def _track(self, msg: PgMessage) -> None:
        """The tracker's share of ``_client_message``: names, the count, the login."""
        kind = msg.kind
        if kind in ("Q", "E"):
            self.count += 1
        elif kind in ("P", "B", "C", "X", "startup", "cancel_request"):
            tracking, self.tracking = self.tracking, False
            try:
                self._client_message(msg)
            finally:
                self.tracking = tracking
        if kind == "startup":
            self.state = "ready"  # the tracker never sees the server: count the login as over

    def _open_group(self) -> Group:
        if not self.groups or self.groups[-1].closed:
            self.groups.append(Group())
        return self.groups[-1]

    def _close_open_group(self) -> None:
        if self.groups and not self.groups[-1].closed:
            self.groups[-1].closed = True

    # -- the server's side ----------------------------------------------------------------

    def server(self, data: bytes, *, items: bool = True) -> list[PgMessage]:
        """The server's messages this chunk completes; with ``items`` False, only what the
        session keeps of them is kept (a toxic that has nothing to decide about the server's
        side reads a big result faster that way), and none are returned."""
        if self.opaque:
            return []
        reader = self.server_reader
        if not items and reader.at_boundary:
            done = self._skim(data)
            if done == len(data):
                return []
            data = data[done:]
        messages = reader.feed(data)
        handle = self._server_message
        want_current = self.want_current
        for msg in messages:
            handle(msg)
            if want_current:
                msg.current = self.current
        if reader.broken:
            self.opaque = True
        return messages

    def _skim(self, data: bytes) -> int:
        """``server`` without items: whole messages read in place, what they mean to the
        session applied, no message made. Returns how far it went (a message that does not
        end in this chunk, or one the framing refuses, is left to the reader)."""
        pos, size = 0, len(data)
        unpack, types, base = _LENGTH.unpack_from, BACKEND_TYPES, self.server_reader.offset
        while size - pos >= 5:
            kind = data[pos]
            (length,) = unpack(data, pos + 1)
            end = pos + 1 + length
            if kind not in types or not 4 <= length <= MAX_MESSAGE or end > size:
                break
            if kind in _ROWS or kind in _DONE:
                group = self.groups[0] if self.groups else None
                if group is not None and not group.errored:
                    index = group.current
                    if index < len(group.statements):
                        statement = group.statements[index]
                        if kind in _ROWS:
                            statement.rows += 1
                        elif not statement.simple:
                            statement.done = True
                            group.current = index + 1
            elif kind == 90 and self.state == "ready":  # ReadyForQuery: a group's end
                self.tx_status = _KINDS[data[pos + 5]]
                groups = self.groups
                if groups and groups[0].closed:
                    for statement in groups.popleft().statements:
                        statement.done = True
            elif kind in _MEANINGFUL:
                body = data[pos + 5 : end]
                self._server_message(PgMessage(_KINDS[kind], base + pos, base + end, body))
            pos = end
        self.server_reader.offset += pos
        return pos

    def _server_message(self, msg: PgMessage) -> None:
        kind = msg.kind
        if kind in ("D", "d"):
            statement = self.current
            if statement is not None:
                statement.rows += 1
                msg.statement = statement
                msg.index = statement.rows
        elif kind in ("C", "I", "s"):
            self._finish_current(msg)
        elif kind in ("G", "H", "W"):
            msg.statement = self.current
        elif kind == "E":
            if self.state == "authentication":
                self.state = "closed"
            group = self._head()
            if group is not None:
                msg.statement = self.current
                if msg.statement is not None:
                    msg.statement.done = True
                group.errored = True
        elif kind == "Z":
            self.tx_status = msg.body[:1].decode("ascii", "replace")
            if self.state == "authentication":
                self.state = "ready"
            elif self.groups and self.groups[0].closed:
                msg.group = self.groups.popleft()
                for statement in msg.group.statements:
                    statement.done = True
        elif kind == "answer" and msg.body in (b"S", b"G"):
            self.encrypted = self.opaque = True

    def _head(self) -> Group | None:
        return self.groups[0] if self.groups else None

    def _finish_current(self, msg: PgMessage) -> None:
        group = self._head()
        if group is None or group.errored or group.current >= len(group.statements):
            return
        statement = group.statements[group.current]
        msg.statement = statement
        if statement.simple:
            return  # a Query's statements all answer to its one record; its Z ends it
        statement.done = True
        group.current += 1

    # -- where it stands ----------------------------------------------------------------------

    def phase(self) -> str:
        """The connection's protocol phase, as a hang report says it after "connection 3 "."""
        if self.encrypted:
            return "encrypted (not read)"
        if self.opaque:
            return ""
        if self.state != "ready":
            return {
                "startup": "starting up",
                "authentication": "in authentication",
                "cancel": "sending a cancel request",
            }.get(self.state, self.state)
        statement = self.in_flight()
        if statement is not None:
            return f"running statement {statement.number} `{statement.short(60)}`"
        return {"T": "idle in a transaction", "E": "idle in a failed transaction"}.get(
            self.tx_status, "idle"
        )
