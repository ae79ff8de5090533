"""PostgreSQL toxics: what a database does to an app, at the protocol phase it does it.

- ``pg_login``: new connections are held, delayed or refused at their login
  (startup and authentication); established ones carry on as before.
- ``pg_error``: chosen statements fail with an error of a given SQLSTATE.
- ``pg_delay`` / ``pg_hang``: chosen statements reach the server late, or
  not while the toxic is there.
- ``pg_cut``: the connection is cut in the middle of a chosen statement's
  result (after N rows), or of the data of a ``COPY ... FROM STDIN``.

Statements are chosen by ``match`` (a regex searched in the SQL text, as
Python's ``re.search``: ``^INSERT INTO uploads``) and ``nth`` (only the Nth
statement that matches, counted from 1 across the proxy's connections since
the toxic was added; 0: every one).

``pg_error`` does not answer for the server: it hands the server, in place of
the statement, one that fails at once (a syntax error carrying a token), and
rewrites that error into the one asked for. The server itself then skips the
rest of the pipeline up to the next Sync, rolls back what an implicit
transaction did, and reports the transaction status (``ReadyForQuery``
``I``, ``T`` or ``E``) of a session that really did fail there, so the
session is as consistent as after a real error. An error PostgreSQL sends as
FATAL (admin_shutdown, crash_shutdown...) ends the connection after it, as
the server does; the server sees the client go and rolls back.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any, Final, final

from .._values import COUNT, MILLISECONDS, OneOf, Regex, Text, out_of_range
from ._pgwire import (
    PgMessage,
    PgSession,
    Statement,
    error_fields,
    error_response,
    parse_message,
    query_message,
    shorten_sql,
)
from ._protocol import CUT_RESET, ProtocolToxic
from ._stage import CLOSE, RESET, Attributes, kinds, ms

CONDITIONS: Final[dict[str, tuple[str, str]]] = {
    "40001": ("serialization_failure", "could not serialize access due to concurrent update"),
    "40P01": ("deadlock_detected", "deadlock detected"),
    "57014": ("query_canceled", "canceling statement due to statement timeout"),
    "57P01": ("admin_shutdown", "terminating connection due to administrator command"),
    "57P02": (
        "crash_shutdown",
        "terminating connection because of crash of another server process",
    ),
    "57P03": ("cannot_connect_now", "the database system is starting up"),
    "57P05": ("idle_session_timeout", "terminating connection due to idle-session timeout"),
    "25P03": (
        "idle_in_transaction_session_timeout",
        "terminating connection due to idle-in-transaction timeout",
    ),
    "53300": ("too_many_connections", "sorry, too many clients already"),
    "53100": ("disk_full", "could not extend file: No space left on device"),
    "53200": ("out_of_memory", "out of memory"),
    "55P03": ("lock_not_available", "could not obtain lock on row in relation"),
    "23505": ("unique_violation", "duplicate key value violates unique constraint"),
    "23503": ("foreign_key_violation", "insert or update violates foreign key constraint"),
    "23502": ("not_null_violation", "null value in column violates not-null constraint"),
    "08006": ("connection_failure", "connection failure"),
    "08P01": ("protocol_violation", "protocol violation"),
    "28P01": ("invalid_password", "password authentication failed"),
    "3D000": ("invalid_catalog_name", "database does not exist"),
}
"""Well-known SQLSTATEs: their condition name and the message PostgreSQL gives (the
default ``message`` of a toxic that sends one)."""

FATAL: Final = frozenset({"57P01", "57P02", "57P03", "57P05", "25P03", "53300", "28P01", "3D000"})
"""SQLSTATEs PostgreSQL sends as FATAL, closing the connection after them."""

_COPY_IN: Final = re.compile(r"(?is)^\s*copy\b.*\bfrom\s+stdin\b")
LOGIN_ACTIONS: Final = ("hold", "delay", "refuse")

_SQLSTATE_WHAT: Final = "a SQLSTATE, 5 characters of 0-9 and A-Z (e.g. {})".format(
    ", ".join(f"{code} {name}" for code, (name, _) in list(CONDITIONS.items())[:5])
)
SQLSTATE: Final = Text(pattern="[0-9A-Z]{5}", what=_SQLSTATE_WHAT)
"""``pg_error``'s SQLSTATE, which it must be given (``check``)."""
LOGIN_SQLSTATE: Final = Text(
    pattern="(?:[0-9A-Z]{5})?", what=_SQLSTATE_WHAT + ", or '' for 53300 too_many_connections"
)
MESSAGE: Final = Text(what="an error message")
"""An ErrorResponse's ``M`` field: a C string on the wire, hence no NUL."""
MATCH: Final = Regex()
"""``match``: searched in a statement's SQL; compiled when given, so a bad one is refused
at once rather than by the engine's thread at the first statement."""


_RUNS: Final = frozenset({"Q", "E"})
"""Messages that run a statement: a Query, an Execute."""


@functools.lru_cache(maxsize=512)
def _statement_note(sql: str) -> str:
    return "statement: " + shorten_sql(sql)


def condition(sqlstate: str) -> str:
    """``40001 (serialization_failure)``, or the bare code when it is not a known one."""
    name = CONDITIONS.get(sqlstate, ("", ""))[0]
    return f"{sqlstate} ({name})" if name else sqlstate


class _PgToxic(ProtocolToxic):
    """A toxic reading a PostgreSQL session (see ``_pgwire``)."""

    session: PgSession

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self.session = PgSession()
        self._login_done_noted = False
        super().__init__(attributes, rng)

    def read_server(self, data: bytes) -> list[PgMessage]:
        return self.session.server(data, items=self.server_items())

    def server_items(self) -> bool:
        """Whether the toxic decides about the server's messages now (else they are only
        read, quickly): during the login by default."""
        return not self._login_done_noted

    def joined_late(self, tracker: object = None) -> None:
        self.session.joined_late(tracker)
        self.start_at(self.session.client_offset)

    def client_session(self) -> PgSession:
        return self.session

    @property
    def phase(self) -> str:
        return self.session.phase()

    def client_item(self, item: Any, now: float) -> None:
        msg: PgMessage = item
        statement = msg.statement
        if statement is not None and msg.kind in _RUNS:
            self.note(_statement_note(statement.sql), now)
        elif msg.kind == "startup":
            session = self.session
            self.note(f"startup: user {session.user}, database {session.database}", now)
        self.client_message(msg, now)

    def server_item(self, item: Any, now: float) -> None:
        msg: PgMessage = item
        if msg.kind == "Z" and self.session.state == "ready" and not self._login_done_noted:
            self._login_done_noted = True
            self.server.note("logged in (ReadyForQuery)", now)
        self.server_message(msg, now)

    def client_message(self, msg: PgMessage, now: float) -> None:
        """The toxic's decision about a message from the client."""

    def server_message(self, msg: PgMessage, now: float) -> None:
        """The toxic's decision about a message from the server."""


class _StatementToxic(_PgToxic):
    """A toxic acting on the statements that ``match`` (and, with ``nth``, the Nth of them)."""

    def configure(self, attributes: Attributes) -> None:
        match = self.text_value(attributes, "match")
        self._match = re.compile(match) if match else None
        self._nth = self.int_value(attributes, "nth")

    def selects(self, statement: Statement) -> bool:
        """Whether this statement is one the toxic acts on (counting the matches)."""
        if self._match is not None and not self._match.search(statement.sql):
            return False
        matched = self.count("matched")
        return self._nth == 0 or matched == self._nth

    def client_decisive(self) -> int | None:
        partial = self.session.client_reader.partial
        if partial is not None and partial[0] in ("Q", "E"):
            return partial[1]
        return None


@final
class PgError(_StatementToxic):
    """``pg_error``: the chosen statements fail with ``sqlstate`` and ``message``."""

    type_name = "pg_error"
    attribute_kinds = kinds(sqlstate=SQLSTATE, message=MESSAGE, match=MATCH, nth=COUNT)

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._pending: dict[str, Statement] = {}
        super().__init__(attributes, rng)

    @classmethod
    def check(cls, attributes: Attributes) -> None:
        cls.require(attributes, "sqlstate")

    def configure(self, attributes: Attributes) -> None:
        super().configure(attributes)
        self._sqlstate = self.text_value(attributes, "sqlstate")
        self._message = (
            self.text_value(attributes, "message")
            or CONDITIONS.get(
                self._sqlstate,
                ("", f"error injected by pytest-asyncfaults (pg_error {self._sqlstate})"),
            )[1]
        )
        self._severity = "FATAL" if self._sqlstate in FATAL else "ERROR"

    def client_message(self, msg: PgMessage, now: float) -> None:
        statement = msg.statement
        if statement is None or msg.kind not in _RUNS or not self.selects(statement):
            return
        token = f"asyncfaults_{self._rng.getrandbits(48):012x}"
        self._pending[token] = statement
        failing = f"/* pg_error {self._sqlstate} injected by pytest-asyncfaults */ {token}"
        if msg.kind == "Q":
            self.replace(msg, query_message(failing), now)
        else:
            # The portal's Bind went through: the server fails here, then skips to Sync.
            self.insert_before(msg, parse_message("asyncfaults_injected", failing), now)

    def server_items(self) -> bool:
        return bool(self._pending) or not self._login_done_noted

    def server_decisive(self) -> int | None:
        if not self._pending:
            return None
        partial = self.session.server_reader.partial
        return partial[1] if partial is not None and partial[0] == "E" else None

    def server_message(self, msg: PgMessage, now: float) -> None:
        if msg.kind == "Z" and msg.group is not None and self._pending:
            # A token the server never reported: an earlier error skipped our statement.
            for token, statement in list(self._pending.items()):
                if statement in msg.group.statements:
                    del self._pending[token]
            return
        if msg.kind != "E" or not self._pending:
            return
        text = error_fields(msg.body).get("M", "")
        for token, statement in self._pending.items():
            if token in text:
                del self._pending[token]
                answer = error_response(self._severity, self._sqlstate, self._message)
                self.server.replace(msg, answer, now)
                self.server.note(
                    f"injected {self._severity} {condition(self._sqlstate)} for statement "
                    f"{statement.number}: {self._message}",
                    now,
                    injected=True,
                )
                if self._severity == "FATAL":
                    self.server.close_now(now, "connection closed after the FATAL error")
                return


@final
class PgLogin(_PgToxic):
    """``pg_login``: a new connection's login is held, delayed by ``delay`` ms, or refused
    with ``sqlstate`` (53300 too_many_connections by default, or 57P03 cannot_connect_now)."""

    type_name = "pg_login"
    attribute_kinds = kinds(
        action=OneOf(LOGIN_ACTIONS, default="hold"),
        delay=MILLISECONDS,
        sqlstate=LOGIN_SQLSTATE,
        message=MESSAGE,
    )

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._login_at: float | None = None
        self._held_login = False
        super().__init__(attributes, rng)

    @classmethod
    def check(cls, attributes: Attributes) -> None:
        if cls.text_value(attributes, "action") == "delay" and not cls.int_value(
            attributes, "delay"
        ):
            raise out_of_range(
                "pg_login.delay", 0, "with action='delay', give the delay in ms (> 0)"
            )

    def configure(self, attributes: Attributes) -> None:
        self._action = self.text_value(attributes, "action")
        self._delay = ms(self.int_value(attributes, "delay"))
        self._sqlstate = self.text_value(attributes, "sqlstate") or "53300"
        self._message = (
            self.text_value(attributes, "message")
            or CONDITIONS.get(
                self._sqlstate, ("", "connection refused by pytest-asyncfaults (pg_login)")
            )[1]
        )

    @property
    def phase(self) -> str:
        if self._held_login and self.server.hanging:
            return "held in authentication"
        return self.session.phase()

    def server_items(self) -> bool:
        return self._login_at is not None or not self._login_done_noted

    def client_decisive(self) -> int | None:
        if self._action != "refuse":
            return None
        partial = self.session.client_reader.partial
        return partial[1] if partial is not None and partial[0] == "startup" else None

    def client_message(self, msg: PgMessage, now: float) -> None:
        if msg.kind != "startup":
            return
        if self._action == "refuse":
            self.drop(msg, now)
            self.server.answer(
                error_response("FATAL", self._sqlstate, self._message), now, close=True
            )
            self.note(f"login refused: FATAL {condition(self._sqlstate)}", now, injected=True)
            return
        self._login_at = now

    def server_message(self, msg: PgMessage, now: float) -> None:
        if self._login_at is None:
            return
        login_at, self._login_at = self._login_at, None
        if self._action == "hold":
            self._held_login = True
            self.server.hang_from(msg, now)
            self.server.note(
                "login held: the server's answer is kept from the client", now, injected=True
            )
        else:
            self.server.delay_from(msg, login_at + self._delay, now)
            self.server.note(f"login delayed by {self._delay * 1000:g} ms", now, injected=True)


@final
class PgDelay(_StatementToxic):
    """``pg_delay``: the chosen statements reach the server ``delay`` ms late (and what the
    client sends after them waits behind them)."""

    type_name = "pg_delay"
    attribute_kinds = kinds(delay=MILLISECONDS, match=MATCH, nth=COUNT)

    def configure(self, attributes: Attributes) -> None:
        super().configure(attributes)
        self._delay = ms(self.int_value(attributes, "delay"))

    def client_message(self, msg: PgMessage, now: float) -> None:
        statement = msg.statement
        if statement is not None and msg.kind in _RUNS and self.selects(statement):
            self.delay_from(msg, now + self._delay, now)
            self.note(
                f"statement {statement.number} delayed by {self._delay * 1000:g} ms",
                now,
                injected=True,
            )


@final
class PgHang(_StatementToxic):
    """``pg_hang``: the chosen statement does not reach the server while the toxic is there
    (nor does anything the client sends after it); it goes on when the toxic goes."""

    type_name = "pg_hang"
    attribute_kinds = kinds(match=MATCH, nth=COUNT)

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._held_statement: Statement | None = None
        super().__init__(attributes, rng)

    @property
    def phase(self) -> str:
        held = self._held_statement
        if held is not None and self.hanging:
            return f"held at statement {held.number} `{held.short(60)}`"
        return self.session.phase()

    def client_message(self, msg: PgMessage, now: float) -> None:
        statement = msg.statement
        if statement is not None and msg.kind in _RUNS and self.selects(statement):
            self._held_statement = statement
            self.hang_from(msg, now)
            self.note(f"statement {statement.number} held", now, injected=True)


@final
class PgCut(_StatementToxic):
    """``pg_cut``: the connection is closed (``reset`` 1: reset) once ``after_rows`` rows of
    a chosen statement's result reached the client, before the next message of that result;
    for a ``COPY ... FROM STDIN``, once ``after_rows`` of the client's CopyData reached the
    server. ``after_rows`` 0 cuts before any of the result (the statement ran; its answer
    never comes). A result of fewer rows is not cut."""

    type_name = "pg_cut"
    attribute_kinds = kinds(after_rows=COUNT, match=MATCH, nth=COUNT, reset=CUT_RESET)

    def server_items(self) -> bool:
        return True  # rows of a statement to cut, and which statement is current

    def configure(self, attributes: Attributes) -> None:
        super().configure(attributes)
        self.session.want_current = True
        self._after = self.int_value(attributes, "after_rows")
        self._marker = RESET if self.int_value(attributes, "reset") else CLOSE

    def _how(self, statement: Statement) -> str:
        verb = "reset" if self._marker is RESET else "closed"
        return f"connection {verb} after {self._after} row(s) of statement {statement.number}"

    def client_message(self, msg: PgMessage, now: float) -> None:
        statement = msg.statement
        if statement is None:
            return
        if msg.kind in ("Q", "E"):
            if not self.selects(statement):
                return
            statement.cut = True
            if self._after == 0:
                if _COPY_IN.match(statement.sql):
                    self.arm_cut(msg.end, self._marker, self._how(statement))
                elif self.session.current is statement:
                    self.server.arm_cut(self.server.received, self._marker, self._how(statement))
        elif msg.kind == "d" and statement.cut and msg.index == self._after:
            self.arm_cut(msg.end, self._marker, self._how(statement))

    def server_message(self, msg: PgMessage, now: float) -> None:
        statement = msg.statement
        if (
            msg.kind in ("D", "d")
            and statement is not None
            and statement.cut
            and msg.index == self._after
        ):
            self.server.arm_cut(msg.end, self._marker, self._how(statement))
            return
        current = msg.current
        if (
            self._after == 0
            and current is not None
            and current.cut
            and not _COPY_IN.match(current.sql)
        ):
            self.server.arm_cut(msg.end, self._marker, self._how(current))


PG_TOXICS: Final = (PgLogin, PgError, PgDelay, PgHang, PgCut)
