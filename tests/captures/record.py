"""Records the byte streams the protocol readers are tested on (``*.json`` beside this file).

Real clients against real servers, through a relay that keeps each direction's
chunks as the sockets gave them: asyncpg and psql against a throwaway
PostgreSQL cluster (SCRAM login, simple and extended queries, a pipelined
``executemany`` in a transaction, a unique violation, COPY both ways), and
aiosmtplib against aiosmtpd (a plain session, and one with AUTH LOGIN and
AUTH PLAIN). The passwords are throwaway ones of a cluster and a server long
gone. Run it again with ``.venv/bin/python tests/captures/record.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from pytest_asyncfaults._address import free_port
from pytest_asyncfaults._services._postgres import PostgresCluster
from pytest_asyncfaults._services._smtp import SmtpServer

HERE = Path(__file__).resolve().parent


class Relay:
    """Forwards connections to ``upstream``, keeping every chunk: ``[["c"|"s", hex], ...]``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sessions: list[list[list[str]]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunks: list[list[str]] = []
        self.sessions.append(chunks)
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, tag: str) -> None:
            while data := await source.read(65536):
                chunks.append([tag, data.hex()])
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()

        await asyncio.gather(
            pump(reader, up_writer, "c"), pump(up_reader, writer, "s"), return_exceptions=True
        )
        writer.close()
        up_writer.close()

    async def start(self) -> int:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        return port


async def postgres() -> list[list[list[str]]]:
    with PostgresCluster() as cluster:
        relay = Relay((cluster.host, cluster.port))
        port = await relay.start()
        dsn = cluster.dsn.replace(f":{cluster.port}/", f":{port}/")
        conn = await asyncpg.connect(dsn)
        await conn.execute("CREATE TABLE t (id int primary key, name text)")
        await conn.execute("INSERT INTO t VALUES ($1, $2)", 1, "a")
        async with conn.transaction():
            await conn.executemany("INSERT INTO t VALUES ($1, $2)", [(2, "b"), (3, "c"), (4, "d")])
        await conn.fetch("SELECT * FROM t ORDER BY id")
        with contextlib.suppress(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO t VALUES ($1, $2)", 1, "dup")
        await conn.copy_records_to_table("t", records=[(5, "e"), (6, "f")])
        await conn.copy_from_table("t", output=io.BytesIO())
        await conn.execute("SELECT 1; SELECT 2")
        await conn.close()
        password = dsn.split("@")[0].rsplit(":", 1)[1]
        psql = await asyncio.create_subprocess_exec(
            "psql",
            *("-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "SELECT 42"),
            "postgres",
            env={**os.environ, "PGPASSWORD": password},
            stdout=asyncio.subprocess.DEVNULL,
        )
        await psql.wait()
        await asyncio.sleep(0.2)
    return relay.sessions


class _Accept:
    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        return AuthResult(success=True)


async def smtp() -> list[list[list[str]]]:
    message = EmailMessage()
    message["From"] = "app@example.com"
    message["To"] = "ops@example.com, audit@example.com"
    message["Subject"] = "Upload march.csv processed"
    message.set_content("200 rows imported.\n.a line that starts with a dot\n\nend\n")
    sessions = []
    with SmtpServer() as server:
        relay = Relay((server.host, server.port))
        port = await relay.start()
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
        await asyncio.sleep(0.1)
        sessions += relay.sessions
    auth_port = free_port()
    controller = Controller(
        _Recorder(),
        hostname="127.0.0.1",
        port=auth_port,
        authenticator=_Accept(),
        auth_require_tls=False,
        server_hostname="localhost",
    )
    controller.start()
    try:
        relay = Relay(("127.0.0.1", auth_port))
        port = await relay.start()
        for method in ("LOGIN", "PLAIN"):
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
            await client.connect()
            await client.ehlo()
            if method == "LOGIN":
                await client.auth_login("app", "throwaway")
            else:
                await client.auth_plain("app", "throwaway")
            await client.send_message(message)
            await client.quit()
        await asyncio.sleep(0.1)
        sessions += relay.sessions
    finally:
        controller.stop()
    return sessions


class _Recorder:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def main() -> None:
    (HERE / "postgres.json").write_text(json.dumps(asyncio.run(postgres())) + "\n")
    (HERE / "smtp.json").write_text(json.dumps(asyncio.run(smtp())) + "\n")


if __name__ == "__main__":
    main()
