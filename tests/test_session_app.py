"""An app whose SQLAlchemy engine is made at import, on one event loop for the session.

Many apps make their engine or pool when their module is imported. Its
connections belong to the loop they were opened on, so under pytest-asyncio's
function-scoped loops the second test gets "attached to a different loop". The
documented way: the tests (and async fixtures) on the session's loop
(``loop_scope="session"``), the app named in ``asyncfaults_app`` and configured by
``asyncfaults_env``. The plugin still watches each test alone: its tasks, its
settle deadline, its findings, its lifespan.
"""

from __future__ import annotations

from typing import Final

import pytest

from pytest_asyncfaults import PostgresServer

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

SQLA_APP: Final = '''
"""Starlette + SQLAlchemy's async engine made at import, never disposed by the app."""

import asyncio
import logging
import os

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
log = logging.getLogger("sqla_app")
jobs = set()


async def count():
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM pg_class"))).scalar_one()


async def stock(request):
    return JSONResponse({"items": await count(), "loop": id(asyncio.get_running_loop())})


async def audit():
    await count()
    raise RuntimeError("the audit row was refused")  # BUG-AUDIT: nobody logs it


async def refresh():
    async with engine.connect() as conn:  # BUG-HANG: no timeout
        await conn.execute(text("SELECT 1"))


def start(coro):
    task = asyncio.get_running_loop().create_task(coro)
    jobs.add(task)
    task.add_done_callback(jobs.discard)
    return JSONResponse({"started": True})


async def audit_view(request):
    return start(audit())


async def refresh_view(request):
    return start(refresh())


app = Starlette(
    routes=[
        Route("/stock", stock),
        Route("/audit", audit_view, methods=["POST"]),
        Route("/refresh", refresh_view, methods=["POST"]),
    ]
)
'''

INI: Final = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncfaults_app = sqla_app:app
asyncfaults_env =
    DATABASE_URL=postgresql+asyncpg://{postgres.user}:{postgres.password}@{postgres.listen}/{postgres.database}
"""

TESTS: Final = """
import sys

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")
seen = {}


def engine():
    # the app's module, as asyncfaults_app imported it (lazily: after the environment)
    return sys.modules["sqla_app"].engine


async def test_audit(app_client, tasks):
    response = await app_client.get("/stock")
    assert response.status_code == 200
    seen["loop"], seen["engine"] = response.json()["loop"], id(engine())
    assert (await app_client.post("/audit")).status_code == 200
    await tasks.settle(within=3)


async def test_refresh(app_client, tasks, faults):
    response = await app_client.get("/stock")  # the engine's pooled connection, reused
    assert response.status_code == 200
    assert response.json()["loop"] == seen["loop"]  # one loop for the session
    assert id(engine()) == seen["engine"]  # one engine, made at import
    async with faults.postgres.blackhole():
        assert (await app_client.post("/refresh")).status_code == 200
        await tasks.settle(within=1)
"""


def line_of(marker: str) -> int:
    return next(n for n, text in enumerate(SQLA_APP.splitlines(), 0) if marker in text)


def test_a_session_scoped_app_with_an_engine_made_at_import(
    pytester: pytest.Pytester, backend_args: list[str], postgres_server: PostgresServer
) -> None:
    pytester.makepyfile(sqla_app=SQLA_APP, test_session=TESTS)
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-rN",  # the split below reads the reports, not pytest's short summary
        f"--asyncfaults-postgres-dsn={postgres_server.dsn}",
        *backend_args,
        timeout=90,
    )
    text = result.stdout.str()
    result.assert_outcomes(failed=2)
    assert "attached to a different loop" not in text
    audit, refresh = text.split("_ test_refresh _")
    # the first test: its own finding, the failure nobody logged, at its line
    assert "[never_retrieved] Task" in audit
    assert "failed with RuntimeError: the audit row was refused" in audit
    assert f"created at sqla_app.py:{line_of('create_task(coro)')} in start" in audit
    assert "still pending" not in audit
    # the second: its own hang, on the same engine and loop, and not the first's finding
    assert "1 background task still pending after 1 s" in refresh
    assert f"> sqla_app.py:{line_of('BUG-HANG')} in refresh" in refresh
    assert "audit row" not in refresh
    assert postgres_server.password not in text
