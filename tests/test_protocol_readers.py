"""The protocol readers, without sockets: PostgreSQL's v3 protocol and SMTP, both ways.

Fed the byte streams of real sessions (``tests/captures``, recorded from
asyncpg, psql and aiosmtplib against real servers by ``record.py``), in the
chunks the sockets gave, then cut again at random: the same messages, the
same offsets, whatever the chunking, and every byte of each stream framed
exactly once. Then the edges: what is not the protocol, TLS, a client that
joins late, a body's dot line split anywhere.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from pytest_asyncfaults._toxics._pgwire import (
    PgMessage,
    PgSession,
    error_fields,
    error_response,
    message,
    shorten_sql,
)
from pytest_asyncfaults._toxics._smtpwire import SmtpItem, SmtpSession

CAPTURES = Path(__file__).resolve().parent / "captures"

Chunks = list[tuple[str, bytes]]
Item = TypeVar("Item")


def sessions(name: str) -> list[Chunks]:
    raw = json.loads((CAPTURES / name).read_text())
    return [[(tag, bytes.fromhex(data)) for tag, data in session] for session in raw]


PG = sessions("postgres.json")
SMTP = sessions("smtp.json")


def rechunk(chunks: Chunks, rng: random.Random) -> Chunks:
    """The same two streams in other pieces: each chunk cut at random points (one byte at a
    time, sometimes), the order between the two directions kept."""
    out: Chunks = []
    for tag, data in chunks:
        pos = 0
        while pos < len(data):
            size = 1 if rng.random() < 0.2 else rng.randint(1, max(1, len(data)))
            out.append((tag, data[pos : pos + size]))
            pos += size
    return out


class Reader(Protocol[Item]):
    def client(self, data: bytes) -> list[Item]: ...
    def server(self, data: bytes) -> list[Item]: ...


def read(session: Reader[Item], chunks: Chunks) -> tuple[list[Item], list[Item]]:
    """Feed a recorded session to a reader, chunk by chunk: what each side completed."""
    client: list[Item] = []
    server: list[Item] = []
    for tag, data in chunks:
        if tag == "c":
            client += session.client(data)
        else:
            server += session.server(data)
    return client, server


def read_pg(chunks: Chunks) -> tuple[PgSession, list[PgMessage], list[PgMessage]]:
    session = PgSession()
    return session, *read(session, chunks)


def summary(messages: list[PgMessage]) -> list[tuple[object, ...]]:
    return [
        (
            m.kind,
            m.start,
            m.end,
            m.body,
            None if m.statement is None else m.statement.number,
            m.index,
        )
        for m in messages
    ]


def covers(messages: list[PgMessage] | list[SmtpItem], total: int) -> bool:
    """The messages tile the stream: each starts where the one before ended, up to its end."""
    position = 0
    for item in messages:
        if item.start != position:
            return False
        position = item.end
    return position == total


# -- PostgreSQL ------------------------------------------------------------------------------


def test_an_asyncpg_session_reads_message_by_message() -> None:
    session, client, server = read_pg(PG[0])
    kinds = [m.kind for m in client]
    assert kinds[:5] == ["ssl_request", "startup", "p", "p", "Q"]  # TLS offer, SCRAM, a query
    assert server[0].kind == "answer"
    assert server[0].body == b"N"
    assert session.user == session.database == "postgres"
    statements = [m.statement.sql for m in client if m.kind in "QE" and m.statement]
    assert statements == [
        "CREATE TABLE t (id int primary key, name text)",
        "INSERT INTO t VALUES ($1, $2)",
        "BEGIN;",
        *["INSERT INTO t VALUES ($1, $2)"] * 3,  # executemany: three Executes, one Sync
        "COMMIT;",
        "SELECT * FROM t ORDER BY id",
        "INSERT INTO t VALUES ($1, $2)",  # the unique violation
        'COPY "t" FROM STDIN (FORMAT binary) ',
        'COPY "t" TO STDOUT ',
        "SELECT 1; SELECT 2",
    ]
    select = next(m for m in server if m.kind == "C" and m.body.startswith(b"SELECT 4"))
    assert select.statement is not None
    assert select.statement.rows == 4
    copy_out = [m for m in server if m.kind == "d"]
    assert [m.index for m in copy_out] == [1, 2, 3, 4, 5, 6]
    (copy_in,) = [m for m in client if m.kind == "d"]  # asyncpg pipelines the data
    assert copy_in.statement is not None
    assert copy_in.statement.sql.startswith('COPY "t" FROM STDIN')
    violation = next(m for m in server if m.kind == "E")
    assert error_fields(violation.body)["C"] == "23505"
    assert violation.statement is not None
    assert violation.statement.number == 9
    assert session.state == "closed"
    assert session.tx_status == "I"
    assert not session.groups  # every statement's result came to its end
    assert covers(client, sum(len(d) for t, d in PG[0] if t == "c"))
    assert covers(server, sum(len(d) for t, d in PG[0] if t == "s"))


def test_the_transaction_status_follows_ready_for_query() -> None:
    session = PgSession()
    seen = []
    for tag, data in PG[0]:
        if tag == "c":
            session.client(data)
        else:
            session.server(data)
            seen.append(session.phase())
    assert "idle in a transaction" in seen  # between BEGIN and COMMIT
    assert seen[-1] == "idle"
    assert session.phase() == "closed"  # the client's Terminate came last


def test_a_psql_session_reads_too() -> None:
    _, client, server = read_pg(PG[1])
    assert [m.kind for m in client] == ["ssl_request", "startup", "p", "p", "Q", "X"]
    assert [m.kind for m in server][-4:] == ["T", "D", "C", "Z"]
    assert client[4].statement is not None
    assert client[4].statement.sql == "SELECT 42"


@pytest.mark.parametrize("seed", range(30))
def test_any_chunking_reads_the_same_messages(seed: int) -> None:
    rng = random.Random(seed)
    for capture in PG:
        _, client, server = read_pg(capture)
        _, client2, server2 = read_pg(rechunk(capture, rng))
        assert summary(client2) == summary(client)
        assert summary(server2) == summary(server)


def test_the_phase_names_login_statement_and_idle() -> None:
    session = PgSession()
    phases = []
    for tag, data in PG[0][:12]:
        (session.client if tag == "c" else session.server)(data)
        phases.append(session.phase())
    assert phases[0] == "starting up"
    assert "in authentication" in phases
    assert "running statement 1 `CREATE TABLE t (id int primary key, name text)`" in phases
    assert phases[-1] == "idle"


def test_not_postgres_is_opaque_at_once() -> None:
    session = PgSession()
    assert session.client(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []
    assert session.opaque
    assert "not PostgreSQL's protocol" in session.why_opaque
    assert session.client(b"more") == []


def test_random_bytes_are_opaque() -> None:
    rng = random.Random(7)
    for _ in range(200):
        session = PgSession()
        session.client(rng.randbytes(rng.randint(1, 4096)))
        assert session.opaque or session.client_reader.offset < 8


def test_tls_accepted_makes_the_session_opaque() -> None:
    session = PgSession()
    session.client((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
    session.server(b"S")
    assert session.encrypted
    assert session.opaque
    assert session.phase() == "encrypted (not read)"
    assert session.client(b"\x16\x03\x01\x02\x00") == []


def test_gss_then_tls_refused_then_the_startup() -> None:
    """libpq may offer GSS encryption first, then TLS: each gets its one-byte answer."""
    session = PgSession()
    gss = (8).to_bytes(4, "big") + (80877104).to_bytes(4, "big")
    ssl = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
    assert [m.kind for m in session.client(gss)] == ["gssenc_request"]
    assert [(m.kind, m.body) for m in session.server(b"N")] == [("answer", b"N")]
    assert [m.kind for m in session.client(ssl)] == ["ssl_request"]
    assert [(m.kind, m.body) for m in session.server(b"N")] == [("answer", b"N")]
    params = (196608).to_bytes(4, "big") + b"user\0app\0\0"
    (startup,) = session.client((len(params) + 4).to_bytes(4, "big") + params)
    assert startup.kind == "startup"
    assert session.phase() == "in authentication"
    (auth,) = session.server(message(b"R", (0).to_bytes(4, "big")))
    assert auth.kind == "R"
    assert not session.opaque


def test_gss_accepted_makes_the_session_opaque() -> None:
    session = PgSession()
    session.client((8).to_bytes(4, "big") + (80877104).to_bytes(4, "big"))
    session.server(b"G")
    assert session.opaque
    assert session.why_opaque == "the session is encrypted (TLS or GSS)"


def test_a_tracker_lets_a_late_reader_go_on_mid_message() -> None:
    """The engine reads the client's side from the start; a toxic joining later takes over
    exactly there, even in the middle of a message, and knows the statements prepared."""
    capture = [(t, d) for t, d in PG[0]]
    client_bytes = b"".join(d for t, d in capture if t == "c")
    _, full, _ = read_pg(capture)
    execute = next(m for m in full if m.kind == "E")
    cut = execute.start + 3  # inside the Execute that runs a prepared statement
    tracker = PgSession(tracking=True)
    tracker.client(client_bytes[:cut])
    late = PgSession()
    late.joined_late(tracker)
    rest = late.client(client_bytes[cut:])
    first = rest[0]
    assert first.kind == "E"
    assert first.start == execute.start
    assert first.statement is not None
    assert first.statement.sql == "INSERT INTO t VALUES ($1, $2)"
    assert first.statement.number == execute.statement.number  # type: ignore[union-attr]


def test_a_toxics_session_hands_a_tracker_back_that_a_late_reader_goes_on_from() -> None:
    """While a toxic's session reads the client's side in the tracker's place, it must be
    able to give a tracker back, exactly where it stands (mid-message included), knowing
    the statements prepared; and none for a stream that is not PostgreSQL's."""
    capture = [(t, d) for t, d in PG[0]]
    client_bytes = b"".join(d for t, d in capture if t == "c")
    _, full, _ = read_pg(capture)
    execute = next(m for m in full if m.kind == "E")
    cut = execute.start + 3
    toxics = PgSession()
    toxics.client(client_bytes[:cut])
    tracker = toxics.as_tracker()
    assert tracker is not None
    assert tracker.tracking
    assert tracker.client_offset == cut
    late = PgSession()
    late.joined_late(tracker)
    (first, *_) = late.client(client_bytes[cut:])
    assert (first.kind, first.start) == ("E", execute.start)
    assert first.statement is not None
    assert first.statement.sql == "INSERT INTO t VALUES ($1, $2)"
    not_pg = PgSession()
    not_pg.client(b"GET / HTTP/1.1\r\n\r\n")
    assert not_pg.as_tracker() is None


def test_without_a_tracker_a_late_reader_takes_the_stream_to_be_between_messages() -> None:
    late = PgSession()
    late.joined_late()
    (msg,) = late.client(message(b"Q", b"SELECT 1\0"))
    assert msg.statement is not None
    assert msg.statement.sql == "SELECT 1"
    assert late.phase() == "running statement 1 `SELECT 1`"


def test_an_error_response_round_trips() -> None:
    raw = error_response("FATAL", "57P01", "terminating connection due to administrator command")
    session = PgSession()
    session.joined_late()
    (msg,) = session.server(raw)
    assert msg.kind == "E"
    assert error_fields(msg.body) == {
        "S": "FATAL",
        "V": "FATAL",
        "C": "57P01",
        "M": "terminating connection due to administrator command",
    }


def test_sql_in_notes_is_one_line_without_passwords() -> None:
    sql = "ALTER ROLE app\n   PASSWORD 'hunter2'  VALID UNTIL 'infinity'"
    assert shorten_sql(sql) == "ALTER ROLE app PASSWORD '***' VALID UNTIL 'infinity'"
    assert shorten_sql("SELECT " + "x" * 100, 20) == "SELECT xxxxxxxxxxxx\u2026"


# -- SMTP ------------------------------------------------------------------------------------


def read_smtp(chunks: Chunks) -> tuple[SmtpSession, list[SmtpItem], list[SmtpItem]]:
    session = SmtpSession()
    return session, *read(session, chunks)


def smtp_summary(items: list[SmtpItem]) -> list[tuple[object, ...]]:
    return [
        (
            i.kind,
            i.start,
            i.end,
            i.code,
            i.text,
            None if i.exchange is None else (i.exchange.kind, i.exchange.number, i.exchange.line),
        )
        for i in items
    ]


def test_an_aiosmtplib_session_pairs_each_reply_with_its_command() -> None:
    _, client, server = read_smtp(SMTP[0])
    assert [(i.exchange.kind, i.code) for i in server if i.exchange] == [
        ("greeting", 220),
        ("ehlo", 250),
        ("mail", 250),
        ("rcpt", 250),
        ("rcpt", 250),
        ("data", 354),
        ("end_of_data", 250),
        ("quit", 221),
    ]
    assert [i.kind for i in client] == ["command"] * 5 + ["end_of_data", "command"]
    rcpts = [i.exchange.line for i in client if i.exchange and i.exchange.kind == "rcpt"]
    assert rcpts == ["RCPT TO:<ops@example.com>", "RCPT TO:<audit@example.com>"]
    assert covers(server, sum(len(d) for t, d in SMTP[0] if t == "s"))
    body_end = next(i for i in client if i.kind == "end_of_data")
    stream = b"".join(d for t, d in SMTP[0] if t == "c")
    assert stream[body_end.start : body_end.end] == b".\r\n"
    assert b"\r\n..a line that starts with a dot" in stream[: body_end.start]  # dot-stuffed


def test_auth_exchanges_never_keep_the_credentials() -> None:
    for capture in SMTP[1:]:
        _, client, server = read_smtp(capture)
        lines = " ".join(i.exchange.line for i in client if i.exchange)
        assert "YXBw" not in lines  # "app", base64
        assert "dGhyb3dhd2F5" not in lines  # "throwaway"
        assert "AGFwcAB0aHJvd2F3YXk=" not in lines
        assert "(credentials hidden)" in lines
        assert [i.code for i in server][-1] == 221
    _, client, server = read_smtp(SMTP[1])
    kinds = [(i.exchange.kind, i.code) for i in server if i.exchange][:4]
    assert kinds == [("greeting", 220), ("ehlo", 250), ("auth", 334), ("auth_data", 235)]


@pytest.mark.parametrize("seed", range(30))
def test_any_chunking_reads_the_same_smtp(seed: int) -> None:
    rng = random.Random(seed)
    for capture in SMTP:
        _, client, server = read_smtp(capture)
        _, client2, server2 = read_smtp(rechunk(capture, rng))
        assert smtp_summary(client2) == smtp_summary(client)
        assert smtp_summary(server2) == smtp_summary(server)


def dot_endings() -> Iterator[bytes]:
    yield b".\r\n"  # an empty body
    yield b"Subject: x\r\n\r\nhello\r\n.\r\n"
    yield b"Subject: x\r\n\r\n..stuffed\r\n.\r\n"
    yield b"Subject: x\r\n\r\n.\r\n"


@pytest.mark.parametrize("body", list(dot_endings()))
def test_the_end_of_a_body_is_found_wherever_the_chunks_split_it(body: bytes) -> None:
    for cut in range(len(body) + 1):
        session = SmtpSession()
        session.server(b"220 hi\r\n")
        session.client(b"DATA\r\n")
        session.server(b"354 go on\r\n")
        items = session.client(body[:cut]) + session.client(body[cut:])
        assert [i.kind for i in items] == ["end_of_data"], cut
        assert items[0].end == len(b"DATA\r\n") + len(body)
        assert items[0].start == items[0].end - 3
        assert session.client_state == "command"


def test_bdat_chunks_are_counted_not_read_as_commands() -> None:
    session = SmtpSession()
    session.server(b"220 hi\r\n")
    data = b"MAIL FROM:<a@b>\r\n" + b"BDAT 13\r\nRCPT TO:<x>\r\n" + b"BDAT 3 LAST\r\n.\r\n"
    items = session.client(data)
    assert [(i.kind, i.exchange.kind if i.exchange else "") for i in items] == [
        ("command", "mail"),
        ("bdat", "bdat"),
        ("end_of_data", "end_of_data"),
    ]
    assert items[1].end - items[1].start == len(b"BDAT 13\r\n") + 13


def test_pipelined_replies_come_in_the_order_of_the_commands() -> None:
    session = SmtpSession()
    session.server(b"220 hi\r\n")
    session.client(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n")
    replies = session.server(b"250 ok\r\n550 no such user\r\n250 ok\r\n354 go\r\n")
    assert [(r.exchange.kind, r.exchange.number, r.code) for r in replies if r.exchange] == [
        ("mail", 1, 250),
        ("rcpt", 1, 550),
        ("rcpt", 2, 250),
        ("data", 1, 354),
    ]
    assert session.client_state == "body"


def test_a_server_that_is_not_smtp_is_opaque() -> None:
    session = SmtpSession()
    session.server(b"HTTP/1.1 200 OK\r\n")
    assert session.opaque
    session = SmtpSession()
    session.server(b"\x00\x00\x00")
    assert session.opaque


def test_starttls_accepted_stops_the_reading() -> None:
    session = SmtpSession()
    session.server(b"220 hi\r\n")
    session.client(b"STARTTLS\r\n")
    session.server(b"220 2.0.0 Ready to start TLS\r\n")
    assert session.encrypted
    assert session.client(b"\x16\x03\x01") == []
    assert session.phase() == "encrypted after STARTTLS (not read)"
