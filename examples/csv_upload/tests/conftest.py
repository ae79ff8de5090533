"""What a user of pytest-asyncfaults writes once: the app pointed at the fault proxies.

The plugin gives the real services (``postgres_server``: a throwaway
PostgreSQL cluster; ``smtp_server``: an SMTP server keeping what it gets) and
a proxy in front of each (``faults.postgres``, ``faults.smtp``). The app under
test gets the proxies' addresses, so every fault a test puts on a proxy is
what the app sees; the tests themselves talk to the database directly, around
any fault.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
import pytest_asyncio

EXAMPLE_DIR = Path(__file__).resolve().parents[1]
"""examples/csv_upload: the app's package lives there."""
if str(EXAMPLE_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_DIR))

from csv_upload.common import SCHEMA, Settings  # noqa: E402 - after the path is set
from csv_upload.testing import UploadsTable  # noqa: E402

if TYPE_CHECKING:
    from pytest_asyncfaults import Faults, PostgresServer, SmtpServer


@pytest.fixture
def settings(
    postgres_server: PostgresServer, smtp_server: SmtpServer, faults: Faults, tmp_path: Path
) -> Settings:
    """The app's settings: its database and mail server are the proxies.

    The fixed app's limits are shorter than in production so that a test of
    a fault takes seconds; the buggy app has no limits of its own anyway.
    """
    return Settings(
        database_url=postgres_server.dsn_via(faults.postgres),
        smtp_host=faults.smtp.host,
        smtp_port=faults.smtp.port,
        upload_dir=tmp_path,
        connect_timeout=3.0,
        command_timeout=3.0,
        smtp_timeout=2.0,
        job_timeout=10.0,
        smtp_retry_delay=0.5,
    )


@pytest_asyncio.fixture
async def uploads(postgres_server: PostgresServer) -> UploadsTable:
    """The app's table, created and emptied directly on the server (never through a fault).

    The app does not create its schema at start-up: an app whose lifespan
    waits for a database that does not answer never starts.
    """
    conn = await asyncpg.connect(postgres_server.dsn, timeout=10)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("TRUNCATE uploads RESTART IDENTITY")
    finally:
        await conn.close()
    return UploadsTable(postgres_server.dsn)
