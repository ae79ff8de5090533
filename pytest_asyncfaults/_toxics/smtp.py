"""SMTP toxics: what a mail server does to an app, at the command it does it.

- ``smtp_reply``: a command (or the greeting, or the end of a message's
  body) gets a reply of the toxic's own: greylisting (451), a full mailbox
  (452, 552), a refused recipient (550), a server closing (421, which then
  closes the connection). The server never sees the command, so its state
  stays what the client believes it is (a refused RCPT is no recipient).
- ``smtp_delay``: a command reaches the server ``delay`` ms late (the
  greeting reaches the client late).
- ``smtp_cut``: the connection is cut after a command reached the server,
  before its reply reaches the client. After ``data`` (the default), the
  server has the whole message and takes it, and the client never learns:
  the ambiguous delivery that makes a retry send the mail twice.

``command`` (``after`` for ``smtp_cut``) names the point: ``greeting``,
``ehlo`` (EHLO or HELO), ``starttls``, ``auth``, ``mail``, ``rcpt``,
``data`` (the DATA command; for ``smtp_cut``, the whole message: its end),
``end_of_data`` (the line with the single dot, or the last BDAT chunk),
``rset``, ``noop``, ``quit``. ``nth`` picks the Nth time it comes, counted
across the proxy's connections since the toxic was added (0: every time):
``smtp_reply("rcpt", 451, nth=1)`` is greylisting, the retry goes through.

A reply of the toxic's own to ``end_of_data`` cannot let the server take the
message either, so the dot never reaches the server: the server's side of
the connection stays in its DATA phase, and the toxic answers the client on
its own from then on (221 to QUIT, 421 and a close to anything else). The
connection's close then ends the server's DATA without a message.
"""

from __future__ import annotations

import random
from typing import Any, Final, final

from .._values import COUNT, MILLISECONDS, OneOf, Text, WholeNumber, out_of_range
from ._protocol import CUT_RESET, ProtocolToxic
from ._smtpwire import (
    COMMAND_KINDS,
    Exchange,
    SmtpItem,
    SmtpSession,
    command_kind,
    describe_exchange,
)
from ._stage import CLOSE, RESET, Attributes, kinds, ms

DEFAULT_TEXT: Final[dict[int, str]] = {
    221: "2.0.0 Bye",
    250: "2.0.0 OK",
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.0 Mailbox unavailable, try again later",
    451: "4.7.1 Greylisted, please try again later",
    452: "4.3.1 Insufficient system storage",
    454: "4.7.0 TLS not available due to temporary reason",
    500: "5.5.2 Syntax error, command unrecognized",
    503: "5.5.1 Bad sequence of commands",
    535: "5.7.8 Authentication credentials invalid",
    550: "5.1.1 Mailbox unavailable",
    551: "5.1.6 User not local",
    552: "5.3.4 Message size exceeds fixed maximum message size",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Transaction failed",
}
"""RFC 5321's meaning of each code, with an enhanced status code: the default ``text``."""

_CLOSING: Final = b"421 4.3.2 Service not available, closing transmission channel\r\n"
_BYE: Final = b"221 2.0.0 Bye\r\n"


COMMAND: Final = OneOf(COMMAND_KINDS)
"""Where an SMTP toxic acts; ``smtp_reply`` and ``smtp_delay`` must be given one."""
CODE: Final = WholeNumber(
    "",
    minimum=200,
    maximum=599,
    what="an SMTP reply code from 200 to 599 (e.g. 421, 450, 451, 452, 550, 552, 554)",
)
REPLY_TEXT: Final = Text(pattern=r"[^\r\n\x00]*", what="one line of text, without CR, LF or NUL")
"""A reply's text: a CR or LF in it would end the reply there and start another."""


def reply_line(code: int, text: str) -> bytes:
    return f"{code} {text or DEFAULT_TEXT.get(code, 'injected by pytest-asyncfaults')}\r\n".encode()


class _SmtpToxic(ProtocolToxic):
    """A toxic reading an SMTP session (see ``_smtpwire``)."""

    session: SmtpSession

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self.session = SmtpSession()
        super().__init__(attributes, rng)

    def read_server(self, data: bytes) -> list[SmtpItem]:
        return self.session.server(data)

    def joined_late(self, tracker: object = None) -> None:
        self.session.joined_late(tracker)
        self.start_at(self.session.client_offset)

    @property
    def phase(self) -> str:
        return self.session.phase()

    def selects(self, exchange: Exchange, point: str, nth: int) -> bool:
        """Whether the toxic acts on this exchange (counting the ones at its point)."""
        kind = exchange.kind
        if kind != point and not (point == "end_of_data" and kind == "end_of_data"):
            return False
        seen = self.count(point)
        return nth == 0 or seen == nth

    def client_item(self, item: Any, now: float) -> None:
        smtp: SmtpItem = item
        exchange = smtp.exchange
        if exchange is not None:
            self.note(exchange.line or describe_exchange(exchange), now)
            self.client_exchange(smtp, exchange, now)

    def server_item(self, item: Any, now: float) -> None:
        smtp: SmtpItem = item
        self.server.note(f"reply {smtp.code} {smtp.text}"[:120], now)
        self.server_reply(smtp, now)
        if smtp.answered_after:
            self.server.release_to(smtp.end, now)
            for exchange in smtp.answered_after:
                self._give(exchange, now)

    def reply_with(self, exchange: Exchange, code: int, text: str, now: float) -> None:
        """``exchange`` gets this reply from the toxic, right after the ones due before it."""
        exchange.tags["answer"] = reply_line(code, text)
        exchange.tags["answer_code"] = code
        if self.session.server_partial is None:
            for taken in self.session.take_answered():
                self._give(taken, now)

    def _give(self, exchange: Exchange, now: float) -> None:
        data = exchange.tags["answer"]
        code = exchange.tags["answer_code"]
        assert isinstance(data, bytes)
        assert isinstance(code, int)
        close = code == 421 or bool(exchange.tags.get("close"))
        self.server.answer(data, now, close=close)
        self.server.note(
            f"injected reply to {describe_exchange(exchange)}: {data.decode().strip()}",
            now,
            injected=True,
        )

    def client_exchange(self, item: SmtpItem, exchange: Exchange, now: float) -> None:
        """The toxic's decision about a command (or a body's end) from the client."""

    def server_reply(self, item: SmtpItem, now: float) -> None:
        """The toxic's decision about a reply from the server."""

    def client_decisive(self) -> int | None:
        partial = self.session.client_partial
        if partial is None:
            return None
        kind, start = partial
        return start if kind == "command" or self.acts_at("end_of_data") else None

    def acts_at(self, point: str) -> bool:
        return False


@final
class SmtpReply(_SmtpToxic):
    """``smtp_reply``: ``command`` gets the reply ``code`` ``text`` from the toxic."""

    type_name = "smtp_reply"
    attribute_kinds = kinds(command=COMMAND, code=CODE, text=REPLY_TEXT, nth=COUNT)

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._severed = False
        super().__init__(attributes, rng)

    @classmethod
    def check(cls, attributes: Attributes) -> None:
        cls.require(attributes, "command", "code")
        code = cls.int_value(attributes, "code")
        if 300 <= code < 400:
            raise out_of_range(
                "smtp_reply.code",
                code,
                "a 3xx reply asks the client for more (354, 334), which only the server "
                "could take: use 2xx, 4xx or 5xx",
            )
        if cls.text_value(attributes, "command") == "starttls" and code < 300:
            raise out_of_range(
                "smtp_reply.code",
                code,
                "with command='starttls', the client would start TLS with a server that "
                "never agreed to it: use 4xx or 5xx",
            )

    def configure(self, attributes: Attributes) -> None:
        self._command = command_kind(self.text_value(attributes, "command"))
        self._code = self.int_value(attributes, "code")
        self._text = self.text_value(attributes, "text")
        self._nth = self.int_value(attributes, "nth")

    def acts_at(self, point: str) -> bool:
        return self._command == point

    def client_exchange(self, item: SmtpItem, exchange: Exchange, now: float) -> None:
        if self._severed:
            self.drop(item, now)
            exchange.tags["close"] = True
            if exchange.kind == "quit":
                self.reply_with(exchange, 221, _BYE[4:].decode().strip(), now)
            else:
                self.reply_with(exchange, 421, _CLOSING[4:].decode().strip(), now)
            return
        if self._command == "greeting" or not self.selects(exchange, self._command, self._nth):
            return
        self.drop(item, now)
        if exchange.kind == "end_of_data":
            self._severed = True  # the server must never see the dot, nor what follows
        self.reply_with(exchange, self._code, self._text, now)

    def server_decisive(self) -> int | None:
        if self._command != "greeting":
            return None
        expected = self.session.expected
        if expected and expected[0].kind == "greeting":
            return self.session.server_partial
        return None

    def server_reply(self, item: SmtpItem, now: float) -> None:
        exchange = item.exchange
        if self._command != "greeting" or exchange is None or exchange.kind != "greeting":
            return
        if not self.selects(exchange, "greeting", self._nth):
            return
        data = reply_line(self._code, self._text)
        self.server.replace(item, data, now)
        self.server.note(f"injected greeting: {data.decode().strip()}", now, injected=True)
        if self._code == 421:
            self.server.close_now(now, "connection closed after the 421 greeting")


@final
class SmtpDelay(_SmtpToxic):
    """``smtp_delay``: ``command`` reaches the server ``delay`` ms late (the greeting, the
    client); what follows it on the connection waits behind it."""

    type_name = "smtp_delay"
    attribute_kinds = kinds(command=COMMAND, delay=MILLISECONDS, nth=COUNT)

    @classmethod
    def check(cls, attributes: Attributes) -> None:
        cls.require(attributes, "command")

    def configure(self, attributes: Attributes) -> None:
        self._command = command_kind(self.text_value(attributes, "command"))
        self._delay = ms(self.int_value(attributes, "delay"))
        self._nth = self.int_value(attributes, "nth")

    def acts_at(self, point: str) -> bool:
        return self._command == point

    def client_exchange(self, item: SmtpItem, exchange: Exchange, now: float) -> None:
        if self._command != "greeting" and self.selects(exchange, self._command, self._nth):
            self.delay_from(item, now + self._delay, now)
            self.note(
                f"{describe_exchange(exchange)} delayed by {self._delay * 1000:g} ms",
                now,
                injected=True,
            )

    def server_decisive(self) -> int | None:
        if self._command == "greeting" and self.session.expected:
            return self.session.server_partial
        return None

    def server_reply(self, item: SmtpItem, now: float) -> None:
        exchange = item.exchange
        if self._command != "greeting" or exchange is None or exchange.kind != "greeting":
            return
        if self.selects(exchange, "greeting", self._nth):
            self.server.delay_from(item, now + self._delay, now)
            self.server.note(f"greeting delayed by {self._delay * 1000:g} ms", now, injected=True)


@final
class SmtpCut(_SmtpToxic):
    """``smtp_cut``: after ``after`` reached the server, the connection is closed (``reset``
    1: reset) before its reply reaches the client; ``data`` (the default) is the end of the
    message's body: the server takes the mail, the client never learns it did."""

    type_name = "smtp_cut"
    attribute_kinds = kinds(after=OneOf(COMMAND_KINDS, default="data"), nth=COUNT, reset=CUT_RESET)

    def configure(self, attributes: Attributes) -> None:
        after = command_kind(self.text_value(attributes, "after"))
        self._after = "end_of_data" if after == "data" else after
        self._nth = self.int_value(attributes, "nth")
        self._marker = RESET if self.int_value(attributes, "reset") else CLOSE

    def _how(self, exchange: Exchange) -> str:
        verb = "reset" if self._marker is RESET else "closed"
        return f"connection {verb} before the reply to {describe_exchange(exchange)}"

    def server_decisive(self) -> int | None:
        expected = self.session.expected
        if self._after == "greeting" and expected and expected[0].kind == "greeting":
            return self.session.server_partial  # held until it is known to be a greeting
        return None

    def client_exchange(self, item: SmtpItem, exchange: Exchange, now: float) -> None:
        if self._after == "greeting" or not self.selects(exchange, self._after, self._nth):
            return
        exchange.tags["cut"] = True
        expected = self.session.expected
        if expected and expected[0] is exchange and self.session.server_partial is None:
            self.server.arm_cut(self.server.received, self._marker, self._how(exchange))

    def server_reply(self, item: SmtpItem, now: float) -> None:
        exchange = item.exchange
        if (
            self._after == "greeting"
            and exchange is not None
            and exchange.kind == "greeting"
            and self.selects(exchange, "greeting", self._nth)
        ):
            self.server.arm_cut(item.start, self._marker, self._how(exchange))
            return
        head = item.next_head
        if head is not None and head.tags.get("cut"):
            self.server.arm_cut(item.end, self._marker, self._how(head))


SMTP_TOXICS: Final = (SmtpReply, SmtpDelay, SmtpCut)
