"""SMTP (RFC 5321), read in both directions as the bytes go by: sans-IO.

An ``SmtpSession`` is fed each direction's bytes in whatever chunks the
sockets give and hands back what they complete, with where it starts and ends
in its stream: the client's command lines, the end of a message body (the
line with a single dot, or a ``BDAT ... LAST`` chunk), the server's replies
(one or more lines, ``NNN-text`` then ``NNN text``). It never changes a byte.

Replies come in the order of the commands they answer (even when a client
pipelines them), so the session keeps a queue of ``Exchange`` records, the
greeting first, and pairs each reply with the oldest one. A reply also moves
the client's side on: ``354`` to DATA starts the body, ``334`` to AUTH makes
the next line a piece of the exchange rather than a command, ``220`` to
STARTTLS starts TLS (the session cannot read further and says so).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final, final

MAX_LINE: Final = 65536
"""A longer line is not SMTP's (RFC 5321 allows 512 for a command, 1000 in a body)."""

COMMAND_KINDS: Final = (
    "greeting",
    "ehlo",
    "helo",
    "starttls",
    "auth",
    "mail",
    "rcpt",
    "data",
    "end_of_data",
    "rset",
    "noop",
    "quit",
)
"""The points of an SMTP session a toxic can name: the server's greeting, a command by its
verb (``ehlo`` and ``helo`` both mean whichever of EHLO, HELO or LHLO the client sent),
and ``end_of_data``: the end of a message's body, whose reply says whether it was taken."""

_VERBS: Final = {
    "EHLO": "ehlo",
    "HELO": "ehlo",
    "LHLO": "ehlo",
    "STARTTLS": "starttls",
    "AUTH": "auth",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA": "data",
    "BDAT": "bdat",
    "RSET": "rset",
    "NOOP": "noop",
    "QUIT": "quit",
}
_REPLY_LINE: Final = re.compile(rb"[2-5]\d\d(?:[ -]|\r\n)")
_BDAT: Final = re.compile(rb"(?i)BDAT\s+(\d{1,12})(\s+LAST)?\s*\r\n")


def command_kind(name: str) -> str:
    """``helo`` is ``ehlo``: either names the client's hello, whichever verb it used."""
    return "ehlo" if name == "helo" else name


@final
@dataclass(eq=False, slots=True)
class Exchange:
    """One command (or the greeting, or a body's end) waiting for, or given, its reply."""

    kind: str
    number: int
    """The how-manyth of its kind on this connection, from 1."""
    line: str = ""
    """The command as the client wrote it (AUTH's credentials hidden), for notes."""
    tags: dict[str, object] = field(default_factory=dict)
    """What a toxic decided about it (an answer of its own, a cut)."""


@final
@dataclass(eq=False, slots=True)
class SmtpItem:
    """Something complete in one direction: a command, a body's end, a reply."""

    kind: str
    """``command``, ``end_of_data`` (from the client) or ``reply`` (from the server)."""
    start: int
    end: int
    exchange: Exchange | None = None
    """The command it is (client side), or the one it answers (server side)."""
    code: int = 0
    text: str = ""
    answered_after: list[Exchange] = field(default_factory=list)
    """A reply: the exchanges a toxic answers itself that come right after it (the session
    reads a whole chunk before the toxic decides about its items one by one)."""
    next_head: Exchange | None = None
    """A reply: the exchange the server's next reply will answer."""


@final
class SmtpSession:
    """Both directions of one SMTP connection, read together (see the module doc)."""

    def __init__(self) -> None:
        self.client_state = "command"
        """command, data (DATA sent, its reply not in), body, bdat, auth, closed."""
        self.encrypted = False
        self.broken = ""
        self.expected: deque[Exchange] = deque([Exchange("greeting", 1)])
        """Exchanges waiting for their reply, oldest first."""
        self._counts: dict[str, int] = {"greeting": 1}
        self._client_offset = 0
        self._client_buffer = bytearray()
        """Client bytes of a line (or a BDAT command) not complete yet."""
        self._client_start = 0
        self._bdat_left = 0
        self._bdat: Exchange | None = None
        self._bdat_start = 0
        self._tail = b""
        """The last bytes of the body read so far (a dot line may straddle two chunks)."""
        self._server_offset = 0
        self._server_buffer = bytearray()
        self._server_start = 0
        self._reply_lines: list[bytes] = []
        self._reply_start = 0

    @property
    def opaque(self) -> bool:
        return self.encrypted or bool(self.broken)

    @property
    def why_opaque(self) -> str:
        if self.encrypted:
            return "the session is encrypted (STARTTLS)"
        return f"not SMTP ({self.broken})" if self.broken else ""

    def joined_late(self, tracker: object = None) -> None:
        """Reading starts mid-connection: take it to be between commands, no reply due."""
        self.expected.clear()

    @property
    def client_offset(self) -> int:
        return self._client_offset

    def exchange(self, kind: str, line: str = "") -> Exchange:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return Exchange(kind, self._counts[kind], line)

    # -- the client's side ----------------------------------------------------------------

    @property
    def client_partial(self) -> tuple[str, int] | None:
        """What the client has begun and not finished: a command line, or maybe a body's end."""
        if self.opaque:
            return None
        if self.client_state == "body":
            tail = self._tail
            # The dot line starts after the last CRLF; while what follows it is still "",
            # "." or ".\r", it may yet be the end of the body.
            cut = tail.rfind(b"\r\n")
            if cut >= 0 and tail[cut + 2 :] in (b"", b".", b".\r"):
                return ("end_of_data", self._client_offset - (len(tail) - cut - 2))
            return None
        if self._client_buffer or self.client_state == "bdat":
            return ("command", self._client_start)
        return None

    def client(self, data: bytes) -> list[SmtpItem]:
        out: list[SmtpItem] = []
        pos, size = 0, len(data)
        while pos < size and not self.opaque and self.client_state != "closed":
            state = self.client_state
            if state == "body":
                pos = self._read_body(data, pos, out)
            elif state == "bdat":
                take = min(self._bdat_left, size - pos)
                self._bdat_left -= take
                pos += take
                if not self._bdat_left:
                    self.client_state = "command"
                    assert self._bdat is not None
                    end = self._client_offset + pos
                    out.append(SmtpItem(self._bdat.kind, self._bdat_start, end, self._bdat))
                    self.expected.append(self._bdat)
                    self._bdat = None
            else:
                pos = self._read_line(data, pos, out)
        self._client_offset += size
        return out

    def _read_line(self, data: bytes, pos: int, out: list[SmtpItem]) -> int:
        if not self._client_buffer:
            self._client_start = self._client_offset + pos
        end = data.find(b"\n", pos)
        if end < 0:
            self._client_buffer += data[pos:]
            if len(self._client_buffer) > MAX_LINE:
                self.broken = f"a client line over {MAX_LINE} bytes"
            return len(data)
        self._client_buffer += data[pos : end + 1]
        line = bytes(self._client_buffer)
        self._client_buffer.clear()
        start, stop = self._client_start, self._client_offset + end + 1
        if self.client_state == "auth":
            self.client_state = "command"
            exchange = self.exchange("auth_data", "(credentials hidden)")
            self.expected.append(exchange)
            out.append(SmtpItem("command", start, stop, exchange))
            return end + 1
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        verb = text.split(" ", 1)[0].upper()
        kind = _VERBS.get(verb, "other")
        shown = (
            "AUTH " + text[5:].split(" ", 1)[0] + " (credentials hidden)"
            if kind == "auth"
            else text
        )
        exchange = self.exchange(kind, shown)
        if kind == "bdat":
            match = _BDAT.fullmatch(line)
            if match is None:
                self.broken = f"a BDAT command without a size: {text[:40]!r}"
                return end + 1
            if match[2]:
                exchange = Exchange("end_of_data", self._count("end_of_data"), text)
            self._bdat, self._bdat_start = exchange, start
            self._bdat_left = int(match[1])
            self.client_state = "bdat" if self._bdat_left else "command"
            if not self._bdat_left:
                self.expected.append(exchange)
                out.append(SmtpItem(exchange.kind, start, stop, exchange))
            return end + 1
        if kind == "data":
            self.client_state = "data"
        self.expected.append(exchange)
        out.append(SmtpItem("command", start, stop, exchange))
        return end + 1

    def _count(self, kind: str) -> int:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return self._counts[kind]

    def _read_body(self, data: bytes, pos: int, out: list[SmtpItem]) -> int:
        window = self._tail + data[pos:]
        found = window.find(b"\r\n.\r\n")
        if found < 0:
            self._tail = window[-4:]
            return len(data)
        # The dot line starts just after the CRLF that ends the body's last line.
        dot = found + 2 - len(self._tail)  # relative to pos
        stop = pos + found + 5 - len(self._tail)
        start = self._client_offset + pos + dot
        exchange = self.exchange("end_of_data")
        self.expected.append(exchange)
        out.append(SmtpItem("end_of_data", start, self._client_offset + stop, exchange))
        self.client_state = "command"
        self._tail = b""
        return stop

    # -- the server's side ------------------------------------------------------------------

    @property
    def server_partial(self) -> int | None:
        """Where a reply begun and not finished starts, if one is."""
        if self.opaque or not (self._reply_lines or self._server_buffer):
            return None
        return self._reply_start

    def server(self, data: bytes) -> list[SmtpItem]:
        out: list[SmtpItem] = []
        pos, size = 0, len(data)
        while pos < size and not self.opaque:
            if not self._server_buffer:
                self._server_start = self._server_offset + pos
                if not self._reply_lines:
                    self._reply_start = self._server_start
            end = data.find(b"\n", pos)
            if end < 0:
                self._server_buffer += data[pos:]
                if len(self._server_buffer) > MAX_LINE:
                    self.broken = f"a server line over {MAX_LINE} bytes"
                elif not _could_be_reply(bytes(self._server_buffer[:4])):
                    self.broken = f"a reply that starts {bytes(self._server_buffer[:8])!r}"
                break
            self._server_buffer += data[pos : end + 1]
            line = bytes(self._server_buffer)
            self._server_buffer.clear()
            pos = end + 1
            if not _REPLY_LINE.match(line):
                self.broken = f"a reply line {line[:40]!r}"
                break
            self._reply_lines.append(line)
            if line[3:4] != b"-":
                out.append(self._reply(self._server_offset + pos))
        self._server_offset += size
        return out

    def _reply(self, end: int) -> SmtpItem:
        lines, self._reply_lines = self._reply_lines, []
        code = int(lines[0][:3])
        text = " / ".join(line[4:].rstrip(b"\r\n").decode("utf-8", "replace") for line in lines)
        exchange = self.expected.popleft() if self.expected else None
        item = SmtpItem("reply", self._reply_start, end, exchange, code, text)
        self.replied(exchange, code)
        item.answered_after = self.take_answered()
        item.next_head = self.expected[0] if self.expected else None
        return item

    def take_answered(self) -> list[Exchange]:
        """The exchanges at the head of the queue that a toxic answers itself, taken off it
        (the state they lead to applied): the toxic gives their answers now."""
        taken = []
        while self.expected and "answer" in self.expected[0].tags:
            exchange = self.expected.popleft()
            code = exchange.tags["answer_code"]
            assert isinstance(code, int)
            self.replied(exchange, code)
            taken.append(exchange)
        return taken

    def replied(self, exchange: Exchange | None, code: int) -> None:
        """An exchange got its reply (the server's, or one a toxic gave): what follows."""
        kind = "" if exchange is None else exchange.kind
        if code == 421 or kind == "quit":
            self.client_state = "closed"
        elif kind == "data":
            if code == 354:
                self.client_state = "body"
                self._tail = b"\r\n"  # the DATA line's own end: an empty body is just "."
            else:
                self.client_state = "command"
        elif kind == "starttls" and 200 <= code < 300:
            self.encrypted = True
        elif kind in ("auth", "auth_data") and code == 334:
            self.client_state = "auth"

    def phase(self) -> str:
        if self.encrypted:
            return "encrypted after STARTTLS (not read)"
        if self.opaque:
            return ""
        if self.client_state == "closed":
            return "closing"
        if self.client_state == "body":
            return "sending a message body"
        if self.expected:
            head = self.expected[0]
            if head.kind == "greeting":
                return "waiting for the greeting"
            return f"waiting for the reply to {describe_exchange(head)}"
        return "between commands"


def _could_be_reply(prefix: bytes) -> bool:
    """The first bytes of a line may still become a reply line (``NNN `` or ``NNN-``)."""
    for index, byte in enumerate(prefix[:4]):
        if index == 0 and byte not in b"2345":
            return False
        if 0 < index < 3 and not 48 <= byte <= 57:
            return False
        if index == 3 and byte not in b" -\r":
            return False
    return True


def describe_exchange(exchange: Exchange) -> str:
    if exchange.kind == "end_of_data":
        return "the end of data"
    if exchange.kind == "greeting":
        return "the greeting"
    if exchange.kind == "auth_data":
        return "the AUTH exchange"
    return exchange.line.split(" ", 1)[0].upper() if exchange.line else exchange.kind.upper()
