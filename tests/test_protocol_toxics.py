"""The protocol toxics as sans-IO stage pairs: bytes in, bytes and decisions out, a fake clock.

Each toxic's two stages (client to server, and its partner, server to client)
are driven the way the engine drives them; what each lets out is what the
server and the client would receive. The captured sessions of
``tests/captures`` go through every toxic set to match nothing, cut in random
pieces, and come out byte for byte.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest
from test_protocol_readers import PG, SMTP, Chunks, rechunk

from pytest_asyncfaults import InvalidError, make_toxic
from pytest_asyncfaults._toxics import CLOSE, RESET, TOXIC_TYPES, Data, Marker, Stage
from pytest_asyncfaults._toxics._pgwire import (
    PgSession,
    error_fields,
    error_response,
    message,
    query_message,
)
from pytest_asyncfaults._toxics._protocol import ProtocolToxic

_PARAMS = (196608).to_bytes(4, "big") + b"user\0app\0database\0app\0\0"
STARTUP = (len(_PARAMS) + 4).to_bytes(4, "big") + _PARAMS
AUTH_OK = message(b"R", (0).to_bytes(4, "big")) + message(b"Z", b"I")


def ready(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


class Pair:
    """A protocol toxic's two stages driven as the engine drives them, on a fake clock."""

    def __init__(self, toxic_type: str, **attributes: object) -> None:
        spec = make_toxic(toxic_type, attributes=attributes)
        stage = TOXIC_TYPES[toxic_type](spec.attributes, random.Random(1))
        assert isinstance(stage, ProtocolToxic)
        self.toxic = stage
        self.up: Stage = stage
        assert stage.partner is not None
        self.down: Stage = stage.partner
        self.to_server = bytearray()
        self.to_client = bytearray()
        self.closed: list[tuple[str, Marker]] = []
        self.now = 0.0

    def at(self, now: float) -> Pair:
        self.now = now
        self.run()
        return self

    def client(self, data: bytes) -> Pair:
        self.up.feed(Data(data, self.now), self.now)
        self.run()
        return self

    def server(self, data: bytes) -> Pair:
        self.down.feed(Data(data, self.now), self.now)
        self.run()
        return self

    def run(self) -> None:
        for stage, sink, side in (
            (self.up, self.to_server, "up"),
            (self.down, self.to_client, "down"),
        ):
            for event in stage.poll(self.now):
                if isinstance(event, Data):
                    sink += event.data
                else:
                    self.closed.append((side, event))

    def remove(self) -> None:
        """The toxic goes: both stages let go of what they hold."""
        for stage, sink, side in (
            (self.up, self.to_server, "up"),
            (self.down, self.to_client, "down"),
        ):
            for event in stage.interrupt(self.now):
                if isinstance(event, Data):
                    sink += event.data
                else:
                    self.closed.append((side, event))

    def take_server(self) -> bytes:
        data = bytes(self.to_server)
        self.to_server.clear()
        return data

    def take_client(self) -> bytes:
        data = bytes(self.to_client)
        self.to_client.clear()
        return data


def logged_in(toxic_type: str, **attributes: object) -> Pair:
    pair = Pair(toxic_type, **attributes)
    pair.client(STARTUP).server(AUTH_OK)
    pair.take_server()
    pair.take_client()
    return pair


def token_of(sent: bytes) -> str:
    found = re.search(rb"asyncfaults_[0-9a-f]{12}", sent)
    assert found is not None, sent
    return found[0].decode()


def syntax_error(token: str) -> bytes:
    return error_response("ERROR", "42601", f'syntax error at or near "{token}"')


def replay(pair: Pair, chunks: Chunks) -> tuple[bytes, bytes]:
    for tag, data in chunks:
        if tag == "c":
            pair.client(data)
        else:
            pair.server(data)
    pair.at(pair.now + 3600)
    return pair.take_server(), pair.take_client()


MATCH_NOTHING: dict[str, dict[str, object]] = {
    "pg_login": {"action": "hold"},  # a login already done is never held (the pg_* below run
    "pg_error": {"sqlstate": "40001", "match": "^NEVER"},  # on a connection from its start)
    "pg_delay": {"delay": 5000, "match": "^NEVER"},
    "pg_hang": {"match": "^NEVER"},
    "pg_cut": {"after_rows": 0, "match": "^NEVER"},
    "smtp_reply": {"command": "rcpt", "code": 550, "nth": 9},
    "smtp_delay": {"command": "mail", "delay": 5000, "nth": 9},
    "smtp_cut": {"after": "data", "nth": 9},
}


@pytest.mark.parametrize("toxic_type", [t for t in MATCH_NOTHING if t != "pg_login"])
@pytest.mark.parametrize("seed", range(8))
def test_matching_nothing_every_byte_passes_as_it_came(toxic_type: str, seed: int) -> None:
    captures = PG if toxic_type.startswith("pg_") else SMTP
    rng = random.Random(seed)
    for capture in captures:
        pair = Pair(toxic_type, **MATCH_NOTHING[toxic_type])
        to_server, to_client = replay(pair, rechunk(capture, rng))
        assert to_server == b"".join(d for t, d in capture if t == "c")
        assert to_client == b"".join(d for t, d in capture if t == "s")
        assert not pair.closed


def test_pg_login_lets_an_established_connection_be() -> None:
    """Joining a connection whose login is over, it has nothing to hold."""
    tracker = PgSession(tracking=True)
    capture = PG[0]
    head = 8  # chunks up to the end of the login
    tracker.client(b"".join(d for t, d in capture[:head] if t == "c"))
    pair = Pair("pg_login", action="refuse")
    pair.toxic.joined_late(tracker)
    to_server, to_client = replay(pair, capture[head:])
    assert to_server == b"".join(d for t, d in capture[head:] if t == "c")
    assert to_client == b"".join(d for t, d in capture[head:] if t == "s")


def test_a_stream_that_is_not_the_protocol_passes_untouched() -> None:
    rng = random.Random(3)
    blob = rng.randbytes(300_000)
    for toxic_type, attributes in MATCH_NOTHING.items():
        pair = Pair(toxic_type, **{**attributes, **({"nth": 0} if "nth" in attributes else {})})
        for offset in range(0, len(blob), 7000):
            pair.client(blob[offset : offset + 7000]).server(blob[offset : offset + 5000])
        assert pair.take_server() == blob, toxic_type
        assert pair.take_client() == b"".join(blob[o : o + 5000] for o in range(0, len(blob), 7000))


# -- pg_error ------------------------------------------------------------------------------


def test_pg_error_swaps_a_query_for_one_that_fails_and_rewrites_its_error() -> None:
    pair = logged_in("pg_error", sqlstate="40001", match="^INSERT")
    pair.client(query_message("INSERT INTO t VALUES (1)"))
    sent = pair.take_server()
    assert b"INSERT" not in sent
    token = token_of(sent)
    assert sent.startswith(b"Q")
    pair.server(syntax_error(token) + ready())
    answer = pair.take_client()
    session = PgSession()
    session.joined_late()
    error, status = session.server(answer)
    assert error_fields(error.body) == {
        "S": "ERROR",
        "V": "ERROR",
        "C": "40001",
        "M": "could not serialize access due to concurrent update",
    }
    assert status.kind == "Z"
    assert status.body == b"I"
    # The next statement does not match: it goes as it came, and so does its answer.
    pair.client(query_message("SELECT 1"))
    assert pair.take_server() == query_message("SELECT 1")
    reply = message(b"C", b"SELECT 1\0") + ready()
    pair.server(reply)
    assert pair.take_client() == reply


def test_pg_error_fails_an_execute_where_it_is_in_the_pipeline() -> None:
    """A failing Parse goes just before the Execute: the server reports the error there and
    skips the rest up to Sync, as after a real error."""
    pair = logged_in("pg_error", sqlstate="40P01", match="^UPDATE", nth=2)
    parse = message(b"P", b"s1\0UPDATE t SET x = $1\0\0\0")
    bind = message(b"B", b"\0s1\0\0\0\0\0\0\0")
    execute = message(b"E", b"\0\0\0\0\0")
    sync = message(b"S", b"")
    pair.client(parse + bind + execute + bind + execute + sync)
    sent = pair.take_server()
    token = token_of(sent)
    injected = sent[len(parse + bind + execute + bind) : -len(execute + sync)]
    assert injected.startswith(b"P")
    assert sent == parse + bind + execute + bind + injected + execute + sync  # the 2nd one
    answers = message(b"1", b"") + message(b"2", b"") + message(b"C", b"UPDATE 1\0")
    pair.server(answers + message(b"2", b"") + syntax_error(token) + ready(b"T"))
    got = pair.take_client()
    assert got.startswith(answers + message(b"2", b""))
    assert b"40P01" in got
    assert b"deadlock detected" in got
    assert got.endswith(ready(b"T"))


def test_pg_error_leaves_the_servers_own_errors_alone() -> None:
    pair = logged_in("pg_error", sqlstate="40001")
    pair.client(query_message("SELECT 1"))
    token_of(pair.take_server())
    real = error_response("ERROR", "57014", "canceling statement due to user request")
    pair.server(real + ready())
    assert pair.take_client() == real + ready()  # not ours: the token is not in it


def test_pg_error_fatal_closes_after_the_error_as_the_server_does() -> None:
    pair = logged_in("pg_error", sqlstate="57P01", match="INSERT")
    pair.client(query_message("INSERT INTO t VALUES (1)"))
    token = token_of(pair.take_server())
    pair.server(syntax_error(token) + ready(b"T"))
    got = pair.take_client()
    assert b"SFATAL\0" in got
    assert b"C57P01\0" in got
    assert b"administrator command" in got
    assert not got.endswith(ready(b"T"))  # no ReadyForQuery after a FATAL error
    assert pair.closed == [("down", CLOSE)]


def test_pg_error_message_and_an_unknown_sqlstate() -> None:
    pair = logged_in("pg_error", sqlstate="XX000", message="the disk said no")
    pair.client(query_message("SELECT 1"))
    pair.server(syntax_error(token_of(pair.take_server())) + ready())
    got = pair.take_client()
    assert b"CXX000\0Mthe disk said no\0" in got


def test_pg_error_waits_for_a_split_error_before_rewriting_it() -> None:
    pair = logged_in("pg_error", sqlstate="40001")
    pair.client(query_message("SELECT 1"))
    answer = syntax_error(token_of(pair.take_server())) + ready()
    for byte in answer:
        pair.server(bytes([byte]))
    got = pair.take_client()
    assert b"C40001\0" in got
    assert b"asyncfaults_" not in got


# -- pg_login --------------------------------------------------------------------------------


def test_pg_login_refuse_answers_the_startup_itself_and_closes() -> None:
    pair = Pair("pg_login", action="refuse")
    ssl = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
    pair.client(ssl).server(b"N")
    assert pair.take_server() == ssl
    assert pair.take_client() == b"N"
    pair.client(STARTUP[:10]).client(STARTUP[10:])
    assert pair.take_server() == b""  # the server never sees the login
    got = pair.take_client()
    assert error_fields(got[5:]) == {
        "S": "FATAL",
        "V": "FATAL",
        "C": "53300",
        "M": "sorry, too many clients already",
    }
    assert pair.closed == [("down", CLOSE)]


def test_pg_login_refuse_with_cannot_connect_now() -> None:
    pair = Pair("pg_login", action="refuse", sqlstate="57P03")
    pair.client(STARTUP)
    assert b"C57P03\0Mthe database system is starting up\0" in pair.take_client()


def test_pg_login_hold_keeps_the_servers_answer_until_the_toxic_goes() -> None:
    pair = Pair("pg_login")  # hold is the default
    pair.client(STARTUP)
    assert pair.take_server() == STARTUP  # the server gets the login...
    pair.server(AUTH_OK)
    assert pair.take_client() == b""  # ...its answer is held
    assert pair.toxic.phase == "held in authentication"
    pair.at(3600)
    assert pair.take_client() == b""
    pair.remove()
    assert pair.take_client() == AUTH_OK


def test_pg_login_delay_delays_the_login_only() -> None:
    pair = Pair("pg_login", action="delay", delay=300)
    pair.client(STARTUP).at(0.1).server(AUTH_OK)
    assert pair.take_client() == b""
    pair.at(0.299)
    assert pair.take_client() == b""
    pair.at(0.3)
    assert pair.take_client() == AUTH_OK
    pair.client(query_message("SELECT 1")).server(ready())
    assert pair.take_client() == ready()  # no delay once logged in


# -- pg_delay, pg_hang, pg_cut -----------------------------------------------------------------


def test_pg_delay_delays_the_matching_statement_and_what_follows() -> None:
    pair = logged_in("pg_delay", delay=200, match="^SELECT pg_sleep")
    pair.client(query_message("SELECT 1"))
    assert pair.take_server() == query_message("SELECT 1")
    pair.at(1.0).client(query_message("SELECT pg_sleep(0)")).at(1.05).client(query_message("X"))
    assert pair.take_server() == b""
    pair.at(1.2)
    assert pair.take_server() == query_message("SELECT pg_sleep(0)") + query_message("X")


def test_pg_hang_holds_the_statement_until_the_toxic_goes() -> None:
    pair = logged_in("pg_hang", match="INSERT INTO uploads")
    pair.client(query_message("INSERT INTO uploads VALUES (1)"))
    assert pair.take_server() == b""
    assert pair.toxic.phase.startswith("held at statement 1 `INSERT INTO uploads")
    pair.at(3600)
    assert pair.take_server() == b""
    pair.remove()
    assert pair.take_server() == query_message("INSERT INTO uploads VALUES (1)")


def rows(count: int) -> bytes:
    return b"".join(message(b"D", b"\0\x01\0\0\0\x01" + bytes([48 + i % 10])) for i in range(count))


@pytest.mark.parametrize(("after", "reset"), [(0, 0), (2, 0), (3, 1)])
def test_pg_cut_cuts_after_n_rows_of_the_matching_result(after: int, reset: int) -> None:
    pair = logged_in("pg_cut", after_rows=after, match="FROM uploads", reset=reset)
    pair.client(query_message("SELECT 1"))
    pair.server(rows(1) + message(b"C", b"SELECT 1\0") + ready())
    pair.take_client()
    pair.client(query_message("SELECT * FROM uploads"))
    description = message(b"T", b"\0\0")
    pair.server(description + rows(5) + message(b"C", b"SELECT 5\0") + ready())
    got = pair.take_client()
    assert got == (description + rows(after) if after else b"")
    assert pair.closed == [("down", RESET if reset else CLOSE)]


def test_pg_cut_does_not_cut_a_result_of_fewer_rows() -> None:
    pair = logged_in("pg_cut", after_rows=3, match="FROM uploads")
    pair.client(query_message("SELECT * FROM uploads"))
    answer = rows(2) + message(b"C", b"SELECT 2\0") + ready()
    pair.server(answer)
    assert pair.take_client() == answer
    assert not pair.closed


def test_pg_cut_inside_a_copy_from_stdin_stops_the_data_on_its_way() -> None:
    pair = logged_in("pg_cut", after_rows=2, match="^COPY")
    copy = query_message("COPY uploads FROM STDIN")
    data = [message(b"d", f"{i}\tx\n".encode()) for i in range(5)]
    pair.client(copy + b"".join(data) + message(b"c", b""))
    assert pair.take_server() == copy + data[0] + data[1]
    assert pair.closed == [("up", CLOSE)]


# -- SMTP ------------------------------------------------------------------------------------


def smtp_pair(toxic_type: str, **attributes: object) -> Pair:
    pair = Pair(toxic_type, **attributes)
    pair.server(b"220 mail.example.com ESMTP\r\n").client(b"EHLO app\r\n")
    pair.server(b"250-mail.example.com\r\n250 PIPELINING\r\n")
    pair.take_client()
    pair.take_server()
    return pair


def test_smtp_reply_answers_a_recipient_and_the_server_never_sees_it() -> None:
    pair = smtp_pair("smtp_reply", command="rcpt", code=451)
    pair.client(b"MAIL FROM:<app@example.com>\r\n")
    assert pair.take_server() == b"MAIL FROM:<app@example.com>\r\n"
    pair.server(b"250 OK\r\n")
    assert pair.take_client() == b"250 OK\r\n"
    pair.client(b"RCPT TO:<ops@example.com>\r\n")
    assert pair.take_server() == b""
    assert pair.take_client() == b"451 4.7.1 Greylisted, please try again later\r\n"
    pair.client(b"QUIT\r\n")
    assert pair.take_server() == b"QUIT\r\n"


def test_smtp_reply_keeps_the_order_of_pipelined_replies() -> None:
    pair = smtp_pair("smtp_reply", command="rcpt", code=550, text="5.1.1 No such user", nth=1)
    pair.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n")
    assert pair.take_server() == b"MAIL FROM:<a@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n"
    assert pair.take_client() == b""  # the 550 waits for MAIL's reply
    pair.server(b"250 OK\r\n250 OK\r\n354 go on\r\n")
    assert pair.take_client() == b"250 OK\r\n550 5.1.1 No such user\r\n250 OK\r\n354 go on\r\n"


def test_smtp_reply_421_to_the_greeting_closes() -> None:
    pair = Pair("smtp_reply", command="greeting", code=421)
    pair.server(b"220 mail.example.com ESMTP\r\n")
    assert pair.take_client() == (
        b"421 4.3.2 Service not available, closing transmission channel\r\n"
    )
    assert pair.closed == [("down", CLOSE)]


def test_smtp_reply_to_the_end_of_data_keeps_the_dot_from_the_server() -> None:
    pair = smtp_pair("smtp_reply", command="end_of_data", code=552)
    pair.client(b"MAIL FROM:<a@x>\r\n").server(b"250 OK\r\n")
    pair.client(b"RCPT TO:<b@x>\r\n").server(b"250 OK\r\n")
    pair.client(b"DATA\r\n").server(b"354 go on\r\n")
    pair.take_server()
    pair.take_client()
    pair.client(b"Subject: hi\r\n\r\nbody\r\n.")
    assert pair.take_server() == b"Subject: hi\r\n\r\nbody\r\n"  # the "." may be the end: held
    pair.client(b"\r\n")
    assert pair.take_server() == b""
    assert pair.take_client().startswith(b"552 5.3.4")
    pair.client(b"QUIT\r\n")
    assert pair.take_server() == b""  # from the dot on, the server hears nothing more
    assert pair.take_client() == b"221 2.0.0 Bye\r\n"
    assert pair.closed == [("down", CLOSE)]


def test_smtp_delay_delays_the_command() -> None:
    pair = smtp_pair("smtp_delay", command="mail", delay=500)
    pair.at(1.0).client(b"MAIL FROM:<a@x>\r\n")
    assert pair.take_server() == b""
    pair.at(1.5)
    assert pair.take_server() == b"MAIL FROM:<a@x>\r\n"


def test_smtp_cut_after_data_lets_the_server_take_the_mail_and_the_client_never_know() -> None:
    pair = smtp_pair("smtp_cut")  # after = data, the default
    pair.client(b"MAIL FROM:<a@x>\r\n").server(b"250 OK\r\n")
    pair.client(b"RCPT TO:<b@x>\r\n").server(b"250 OK\r\n")
    pair.client(b"DATA\r\n").server(b"354 go on\r\n")
    pair.take_client()
    pair.take_server()
    pair.client(b"Subject: hi\r\n\r\nbody\r\n.\r\n")
    assert pair.take_server() == b"Subject: hi\r\n\r\nbody\r\n.\r\n"  # the whole message
    pair.server(b"250 2.0.0 queued as 4F2\r\n")
    assert pair.take_client() == b""
    assert pair.closed == [("down", CLOSE)]


def test_smtp_cut_after_the_greeting_cuts_before_it_reaches_the_client() -> None:
    pair = Pair("smtp_cut", after="greeting", reset=1)
    pair.server(b"220 mail.exa")
    assert pair.take_client() == b""  # held until it is known to be the greeting
    pair.server(b"mple.com ESMTP\r\n")
    assert pair.take_client() == b""
    assert pair.closed == [("down", RESET)]


# -- validation ------------------------------------------------------------------------------

BAD: list[tuple[str, dict[str, object], str]] = [
    ("pg_error", {}, "pg_error.sqlstate='' is not valid: expected a SQLSTATE, 5 characters"),
    ("pg_error", {"sqlstate": "4001"}, "pg_error.sqlstate='4001' is not valid"),
    ("pg_error", {"sqlstate": "40001", "match": "("}, "pg_error.match='(' is not valid: the regex"),
    ("pg_error", {"sqlstate": 40001}, "pg_error.sqlstate=40001 is not valid: expected a SQLSTATE"),
    ("pg_login", {"action": "drop"}, "pg_login.action='drop' is not valid: expected one of 'hold'"),
    ("pg_login", {"action": "delay"}, "pg_login.delay=0 is not valid: with action='delay', give"),
    ("pg_cut", {"reset": 2}, "pg_cut.reset=2 is not valid: expected 0"),
    ("smtp_reply", {"command": "rcpt", "code": 600}, "smtp_reply.code=600 is not valid"),
    ("smtp_reply", {"command": "rcpt", "code": 354}, "smtp_reply.code=354 is not valid: a 3xx"),
    ("smtp_reply", {"command": "ehlo", "code": 550, "text": "a\r\nb"}, "smtp_reply.text='a\\r"),
    ("smtp_reply", {"command": "starttls", "code": 220}, "smtp_reply.code=220 is not valid: with"),
    ("smtp_reply", {"command": "rctp", "code": 550}, "smtp_reply.command='rctp' is not valid"),
    ("smtp_cut", {"after": "body"}, "smtp_cut.after='body' is not valid: expected one of"),
    ("smtp_delay", {"command": "mail", "delay": -1}, "smtp_delay.delay=-1 is not valid"),
]


@pytest.mark.parametrize(("toxic_type", "attributes", "message"), BAD)
def test_bad_attributes_are_refused_naming_field_and_value(
    toxic_type: str, attributes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}"):
        make_toxic(toxic_type, attributes=attributes)


def test_a_long_text_attribute_is_refused_shortened() -> None:
    with pytest.raises(InvalidError) as caught:
        make_toxic("pg_error", attributes={"sqlstate": "40001", "message": "x" * 5000})
    text = str(caught.value)
    assert len(text) < 200
    assert "(5000 characters) is not valid:" in text
    assert text.endswith("at most 4096 characters")


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_toxic("pg_error", attributes={"sqlstate": "40001"}),
        lambda: make_toxic("smtp_cut"),
        lambda: make_toxic("pg_login"),
    ],
)
def test_protocol_toxics_take_the_common_options(build: Callable[[], object]) -> None:
    spec = build()
    assert spec is not None
