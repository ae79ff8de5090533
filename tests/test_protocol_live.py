"""The protocol toxics on real clients and real servers, through the run's proxies.

asyncpg, SQLAlchemy's async engine and psql against the run's PostgreSQL
cluster; aiosmtplib against its aiosmtpd server. An injected error must be
the error the client would get from the server itself: the same exception
class (compared side by side with the server raising the same SQLSTATE), the
same session state after it (a failed transaction is failed on the server
too), and the client (or its pool) working again once the toxic is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import asyncpg
import pytest
import pytest_asyncio

from pytest_asyncfaults import Faults, PostgresServer, SmtpServer
from pytest_asyncfaults._backends._toxiproxy import ToxiproxyHost
from pytest_asyncfaults._run import describe_faults

pytestmark = [pytest.mark.asyncio, pytest.mark.plugin]

TIMEOUT = 10.0


@pytest.fixture
def protocol(faults: Faults) -> Faults:
    """The test's proxies, on a backend with protocol toxics (a real Toxiproxy has none)."""
    backend = faults.backend
    if isinstance(backend, ToxiproxyHost) and not backend.client.extensions:
        pytest.skip("a real Toxiproxy has no protocol toxics")
    return faults


@pytest.fixture
def via(postgres_server: PostgresServer, protocol: Faults) -> str:
    """The database's DSN through the proxy ``faults.postgres``."""
    return postgres_server.dsn_via(protocol.postgres)


@pytest_asyncio.fixture
async def table(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A table of this test's own, made and dropped directly on the server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_server.dsn, timeout=TIMEOUT)
    try:
        await conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text)")
        yield name
        await conn.execute(f"DROP TABLE {name}")
    finally:
        await conn.close()


async def count(postgres_server: PostgresServer, table: str) -> int:
    conn = await asyncpg.connect(postgres_server.dsn, timeout=TIMEOUT)
    try:
        rows: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return rows
    finally:
        await conn.close()


def raise_sql(sqlstate: str, message: str) -> str:
    """A statement the server fails with this SQLSTATE and message itself."""
    return (
        f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{sqlstate}', MESSAGE = '{message}'; END $$"
    )


CASES = [
    ("40001", "could not serialize access due to concurrent update", asyncpg.SerializationError),
    ("40P01", "deadlock detected", asyncpg.DeadlockDetectedError),
    ("57014", "canceling statement due to statement timeout", asyncpg.QueryCanceledError),
    ("23505", "duplicate key value violates unique constraint", asyncpg.UniqueViolationError),
    ("55P03", "could not obtain lock on row in relation", asyncpg.LockNotAvailableError),
]


@pytest.mark.parametrize(("sqlstate", "message", "expected"), CASES)
async def test_asyncpg_gets_the_class_the_server_itself_would_give(
    protocol: Faults,
    via: str,
    postgres_server: PostgresServer,
    table: str,
    sqlstate: str,
    message: str,
    expected: type[Exception],
) -> None:
    direct = await asyncpg.connect(postgres_server.dsn, timeout=TIMEOUT)
    conn = await asyncpg.connect(via, timeout=TIMEOUT)
    try:
        with pytest.raises(asyncpg.PostgresError) as real:
            await direct.execute(raise_sql(sqlstate, message))
        async with protocol.postgres.pg_error(sqlstate, match=f"^INSERT INTO {table}"):
            with pytest.raises(expected) as injected:
                await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "a")
            assert await conn.fetchval("SELECT 1") == 1  # other statements pass
        assert type(injected.value) is type(real.value) is expected
        assert injected.value.sqlstate == real.value.sqlstate == sqlstate  # type: ignore[attr-defined]
        assert str(injected.value) == str(real.value) == message
        assert not conn.is_in_transaction()
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "a")  # the toxic is gone
        assert await count(postgres_server, table) == 1
    finally:
        await conn.close()
        await direct.close()


async def test_a_failed_transaction_is_failed_on_the_server_too(
    protocol: Faults, via: str, postgres_server: PostgresServer, table: str
) -> None:
    conn = await asyncpg.connect(via, timeout=TIMEOUT)
    try:
        async with protocol.postgres.pg_error("40001", match=f"^INSERT INTO {table}", nth=2):
            tx = conn.transaction()
            await tx.start()
            await conn.execute(f"INSERT INTO {table} VALUES (1, 'a')")
            with pytest.raises(asyncpg.SerializationError):
                await conn.execute(f"INSERT INTO {table} VALUES (2, 'b')")
            assert conn.is_in_transaction()
            # The server says so itself: its transaction did fail there.
            with pytest.raises(asyncpg.InFailedSQLTransactionError):
                await conn.fetchval("SELECT 1")
            await tx.rollback()
        assert await count(postgres_server, table) == 0
        assert await conn.fetchval("SELECT 2") == 2
    finally:
        await conn.close()


async def test_executemany_fails_at_the_nth_row_and_nothing_is_half_inserted(
    protocol: Faults, via: str, postgres_server: PostgresServer, table: str
) -> None:
    conn = await asyncpg.connect(via, timeout=TIMEOUT)
    rows = [(i, f"row {i}") for i in range(1, 201)]
    try:
        async with protocol.postgres.pg_error("40001", match=f"^INSERT INTO {table}", nth=100):
            with pytest.raises(asyncpg.SerializationError):
                await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2)", rows)
        assert await count(postgres_server, table) == 0  # one pipeline, its implicit transaction
        events = await protocol.postgres.protocol_events()
        done = [event.text for event in events if event.injected]
        assert any("injected ERROR 40001 (serialization_failure)" in text for text in done)
    finally:
        await conn.close()


async def test_admin_shutdown_is_what_pg_terminate_backend_gives(
    protocol: Faults, via: str, postgres_server: PostgresServer, table: str
) -> None:
    """A FATAL 57P01 ends the connection in the middle of the work, as the server's own does
    (asyncpg then says the connection closed, with the server's message), and the open
    transaction is gone with it."""
    victim = await asyncpg.connect(postgres_server.dsn, timeout=TIMEOUT)
    killer = await asyncpg.connect(postgres_server.dsn, timeout=TIMEOUT)
    conn = await asyncpg.connect(via, timeout=TIMEOUT)

    async def insert_rows(connection: asyncpg.Connection, first: int) -> None:
        async with connection.transaction():
            for i in range(first, first + 5):
                await connection.execute(f"INSERT INTO {table} VALUES ($1, 'x')", i)
            await connection.fetchval("SELECT pg_sleep(10)")

    try:
        real_work = asyncio.create_task(insert_rows(victim, 100))
        await asyncio.sleep(0.5)  # inserting, in its transaction, when the server is stopped
        await killer.fetchval("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        with pytest.raises(asyncpg.InterfaceError) as real:
            await asyncio.wait_for(real_work, TIMEOUT)
        async with protocol.postgres.pg_error("57P01", match=f"^INSERT INTO {table}", nth=3):
            with pytest.raises(asyncpg.InterfaceError) as injected:
                await insert_rows(conn, 1)
        assert str(injected.value) == str(real.value)
        cause, real_cause = injected.value.__context__, real.value.__context__
        assert type(cause) is type(real_cause) is asyncpg.ConnectionDoesNotExistError
        assert str(cause) == str(real_cause)
        assert "terminating connection due to administrator command" in str(cause)
        assert conn.is_closed()
        assert victim.is_closed()
        assert await count(postgres_server, table) == 0  # nothing half-inserted
    finally:
        for each in (conn, victim, killer):
            with contextlib.suppress(Exception):
                await each.close()


async def test_an_asyncpg_pool_recovers_once_the_toxics_are_gone(
    protocol: Faults, via: str
) -> None:
    pool = await asyncpg.create_pool(via, min_size=2, max_size=2, timeout=TIMEOUT)
    lazy = await asyncpg.create_pool(via, min_size=0, max_size=2, timeout=TIMEOUT)
    assert pool is not None
    assert lazy is not None
    try:
        async with protocol.postgres.pg_error("57P01", match="^SELECT 42"):
            with pytest.raises(asyncpg.ConnectionDoesNotExistError, match="administrator"):
                await pool.fetchval("SELECT 42")
            assert await pool.fetchval("SELECT 1") == 1  # the other connection is fine
        async with protocol.postgres.pg_login("refuse"):
            with pytest.raises(asyncpg.TooManyConnectionsError):
                await lazy.fetchval("SELECT 42")  # a new connection: refused
            for _ in range(4):
                assert await pool.fetchval("SELECT 43") == 43  # the pool's own go on
        for each in (pool, lazy):
            for _ in range(4):
                assert await each.fetchval("SELECT 42") == 42
    finally:
        await asyncio.wait_for(pool.close(), TIMEOUT)
        await asyncio.wait_for(lazy.close(), TIMEOUT)


@pytest.mark.parametrize("goes", ["removed", "redrawn_away"])
async def test_a_toxic_that_read_in_the_trackers_place_hands_over_when_it_goes(
    protocol: Faults, via: str, goes: str
) -> None:
    """A connection made under a protocol toxic is read once: the toxic's reading stands in
    for the engine's tracker. When it goes (removed, or its toxicity set to 0: a noop
    takes its place), a tracker goes on from there, so that a toxic joining later still
    knows the statements prepared before (asyncpg runs a prepared statement by its name
    alone: only its Parse, made under the first toxic, has the SQL)."""
    reader = protocol.postgres.pg_delay(1, match="^NEVER SENT")
    await reader.__aenter__()
    reading, conn = True, None
    try:
        conn = await asyncpg.connect(via, timeout=TIMEOUT)
        statement = await conn.prepare("SELECT $1::int + 1 AS handed_over")
        if goes == "removed":
            reading = False
            await reader.__aexit__(None, None, None)
        else:
            await reader.update(toxicity=0.0)
        async with protocol.postgres.pg_error("40001", match="handed_over"):
            with pytest.raises(asyncpg.SerializationError):
                await statement.fetchval(1)
        assert await statement.fetchval(1) == 2
    finally:
        if conn is not None:
            await asyncio.wait_for(conn.close(), TIMEOUT)
        if reading:
            await reader.__aexit__(None, None, None)


async def test_pg_login_refuse_gives_the_asyncpg_class_of_its_sqlstate(
    protocol: Faults, via: str
) -> None:
    async with protocol.postgres.pg_login("refuse"):
        with pytest.raises(asyncpg.TooManyConnectionsError, match="too many clients already"):
            await asyncpg.connect(via, timeout=TIMEOUT)
    async with protocol.postgres.pg_login("refuse", sqlstate="57P03"):
        with pytest.raises(asyncpg.CannotConnectNowError, match="starting up"):
            await asyncpg.connect(via, timeout=TIMEOUT)
    conn = await asyncpg.connect(via, timeout=TIMEOUT)
    await conn.close()


async def test_pg_login_hold_hangs_new_connections_and_spares_established_ones(
    protocol: Faults, via: str
) -> None:
    established = await asyncpg.connect(via, timeout=TIMEOUT)
    try:
        async with protocol.postgres.pg_login("hold") as toxic:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncpg.connect(via, timeout=1)
            assert time.monotonic() - started >= 0.9
            assert await established.fetchval("SELECT 7") == 7
            waiting = asyncio.create_task(asyncpg.connect(via, timeout=TIMEOUT))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            stats = await protocol.postgres.read_stats()
            held = [n for n, phase in stats.phases.items() if phase == "held in authentication"]
            assert held
            lines = await describe_faults(protocol)
            assert f"postgres: connection {held[-1]} held in authentication" in lines
            assert toxic.hits >= 2
        late = await asyncio.wait_for(waiting, TIMEOUT)  # the held login goes on
        assert await late.fetchval("SELECT 8") == 8
        await late.close()
    finally:
        await established.close()


async def test_pg_login_delay_and_a_time_window(protocol: Faults, via: str) -> None:
    async with protocol.postgres.pg_login("delay", delay=400):
        started = time.monotonic()
        conn = await asyncpg.connect(via, timeout=TIMEOUT)
        took = time.monotonic() - started
        started = time.monotonic()
        assert await conn.fetchval("SELECT 1") == 1
        after = time.monotonic() - started
        await conn.close()
    assert took >= 0.4
    assert after < 0.4  # only the login waits
    async with protocol.postgres.pg_login("refuse", duration=300):
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await asyncpg.connect(via, timeout=TIMEOUT)
        await asyncio.sleep(1.0)  # the window (0.3 s) closed by itself
        conn = await asyncpg.connect(via, timeout=TIMEOUT)
        await conn.close()


async def test_pg_login_on_the_second_connection_only(protocol: Faults, via: str) -> None:
    accepted = (await protocol.postgres.read_stats()).accepted
    async with protocol.postgres.pg_login("refuse", connections=f"{accepted + 2}"):
        first = await asyncpg.connect(via, timeout=TIMEOUT)
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await asyncpg.connect(via, timeout=TIMEOUT)
        third = await asyncpg.connect(via, timeout=TIMEOUT)
    await first.close()
    await third.close()


async def test_pg_delay_and_pg_hang_act_on_matching_statements(protocol: Faults, via: str) -> None:
    conn = await asyncpg.connect(via, timeout=TIMEOUT)
    try:
        async with protocol.postgres.pg_delay(300, match="pg_sleep"):
            started = time.monotonic()
            await conn.fetchval("SELECT pg_sleep(0)")
            assert time.monotonic() - started >= 0.3
            started = time.monotonic()
            await conn.fetchval("SELECT 1")
            assert time.monotonic() - started < 0.3
        async with protocol.postgres.pg_hang(match="^SELECT 'stuck'"):
            with pytest.raises(TimeoutError):
                await conn.fetchval("SELECT 'stuck'", timeout=0.5)
            phases = (await protocol.postgres.read_stats()).phases
            assert any(p.startswith("held at statement") for p in phases.values()), phases
    finally:
        conn.terminate()


async def test_pg_cut_in_a_result_and_in_a_copy(
    protocol: Faults, via: str, postgres_server: PostgresServer, table: str
) -> None:
    conn = await asyncpg.connect(via, timeout=TIMEOUT)
    async with protocol.postgres.pg_cut(3, match="generate_series"):
        with pytest.raises(asyncpg.ConnectionDoesNotExistError):
            await conn.fetch("SELECT * FROM generate_series(1, 10)")
    assert conn.is_closed()
    conn = await asyncpg.connect(via, timeout=TIMEOUT)
    try:
        async with protocol.postgres.pg_cut(1, match="^COPY"):
            with pytest.raises(asyncpg.ConnectionDoesNotExistError):
                await conn.copy_records_to_table(
                    table, records=[(i, "x") for i in range(1000)], timeout=TIMEOUT
                )
        assert await count(postgres_server, table) == 0
    finally:
        conn.terminate()


async def test_sqlalchemy_maps_an_injected_error_as_the_servers_own(
    protocol: Faults, via: str, table: str
) -> None:
    from sqlalchemy import exc, text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(via.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        seen: dict[str, type[Any]] = {}
        async with engine.connect() as conn:
            for sqlstate, message, _ in CASES[:3] + CASES[3:4]:
                with pytest.raises(exc.DBAPIError) as real:
                    await conn.execute(text(raise_sql(sqlstate, message)))
                await conn.rollback()
                async with protocol.postgres.pg_error(sqlstate, match=f"INSERT INTO {table}"):
                    with pytest.raises(exc.DBAPIError) as injected:
                        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'a')"))
                await conn.rollback()
                assert type(injected.value) is type(real.value), sqlstate
                assert type(injected.value.orig) is type(real.value.orig), sqlstate
                assert injected.value.orig.sqlstate == sqlstate  # type: ignore[union-attr]
                seen[sqlstate] = type(injected.value)
        # SQLAlchemy 2.1 maps a unique violation to IntegrityError, the others to DBAPIError.
        assert seen["23505"] is exc.IntegrityError
    finally:
        await engine.dispose()


def psql(dsn: str, sql: str) -> subprocess.CompletedProcess[str]:
    parts = urlsplit(dsn)
    return subprocess.run(
        [
            *("psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", str(parts.hostname)),
            *("-p", str(parts.port), "-U", str(parts.username), "-c", sql),
            parts.path.lstrip("/"),
        ],
        env={**os.environ, "PGPASSWORD": parts.password or "", "PGCONNECT_TIMEOUT": "10"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_psql_sees_the_same_errors(
    protocol: Faults, via: str, postgres_server: PostgresServer, table: str
) -> None:
    message = "could not serialize access due to concurrent update"
    real = await asyncio.to_thread(psql, postgres_server.dsn, raise_sql("40001", message))
    async with protocol.postgres.pg_error("40001", match="^INSERT"):
        injected = await asyncio.to_thread(psql, via, f"INSERT INTO {table} VALUES (1, 'a')")
    assert injected.returncode == real.returncode == 1
    assert injected.stderr.splitlines()[0] == real.stderr.splitlines()[0] == f"ERROR:  {message}"
    async with protocol.postgres.pg_login("refuse"):
        refused = await asyncio.to_thread(psql, via, "SELECT 1")
    assert refused.returncode == 2
    assert "FATAL:  sorry, too many clients already" in refused.stderr
    assert await count(postgres_server, table) == 0


# -- SMTP ------------------------------------------------------------------------------------


def mail(subject: str = "Upload march.csv processed") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "uploads@example.com"
    message["To"] = "ops@example.com"
    message["Subject"] = subject
    message.set_content("200 rows imported.\n")
    return message


async def send(protocol: Faults, message: EmailMessage) -> None:
    await aiosmtplib.send(
        message, hostname=protocol.smtp.host, port=protocol.smtp.port, timeout=TIMEOUT
    )


async def test_a_refused_recipient_is_never_seen_by_the_server(
    protocol: Faults, smtp_server: SmtpServer
) -> None:
    async with protocol.smtp.smtp_reply("rcpt", 550, text="5.1.1 No such user here"):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await send(protocol, mail())
        client = aiosmtplib.SMTP(hostname=protocol.smtp.host, port=protocol.smtp.port)
        await client.connect(timeout=TIMEOUT)
        await client.mail("uploads@example.com")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as one:
            await client.rcpt("ops@example.com")
        await client.quit()
    (first,) = refused.value.recipients
    assert (first.code, first.message) == (550, "5.1.1 No such user here")
    assert one.value.code == 550
    assert smtp_server.messages == []


async def test_greylisting_refuses_the_first_attempt_and_accepts_the_retry(
    protocol: Faults, smtp_server: SmtpServer
) -> None:
    async with protocol.smtp.smtp_reply("rcpt", 451, nth=1):  # the first RCPT from now on
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await send(protocol, mail())
        assert refused.value.recipients[0].code == 451
        assert "Greylisted" in refused.value.recipients[0].message
        await send(protocol, mail())  # the retry, on a new connection
    assert len(smtp_server.messages) == 1


async def test_data_refused_and_the_end_of_data_refused(
    protocol: Faults, smtp_server: SmtpServer
) -> None:
    async with protocol.smtp.smtp_reply("data", 554):
        with pytest.raises(aiosmtplib.SMTPDataError) as at_data:
            await send(protocol, mail())
    assert at_data.value.code == 554
    async with protocol.smtp.smtp_reply("end_of_data", 552):
        with pytest.raises(aiosmtplib.SMTPDataError) as at_end:
            await send(protocol, mail())
    assert at_end.value.code == 552
    assert at_end.value.message.startswith("5.3.4")
    await asyncio.sleep(0.2)
    assert smtp_server.messages == []  # the server never had the final dot


async def test_a_cut_after_data_is_the_ambiguous_delivery(
    protocol: Faults, smtp_server: SmtpServer
) -> None:
    async with protocol.smtp.smtp_cut(after="data"):
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(protocol, mail())
    await asyncio.sleep(0.2)
    assert len(smtp_server.messages) == 1  # ...yet the server took it
    events = [e.text for e in await protocol.smtp.protocol_events() if e.injected]
    assert "connection closed before the reply to the end of data" in events


async def test_greeting_421_and_a_delayed_mail_from(
    protocol: Faults, smtp_server: SmtpServer
) -> None:
    async with protocol.smtp.smtp_reply("greeting", 421):
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as closing:
            await send(protocol, mail())
    assert closing.value.code == 421
    async with protocol.smtp.smtp_reply("mail", 450):
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as sender:
            await send(protocol, mail())
    assert sender.value.code == 450
    async with protocol.smtp.smtp_delay("mail", 400):
        started = time.monotonic()
        await send(protocol, mail())
        assert time.monotonic() - started >= 0.4
