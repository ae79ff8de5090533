"""Clean-up is judged by what leaked, not by what the app's pool keeps.

A pool that fills lazily keeps the connection its first request opened: that is
its steady state, the same in the first test as in the tenth. A connection a
request took from the pool and never gave back is the leak, one more per request.
Real asyncpg pools and SQLAlchemy async engines, on a real PostgreSQL server.
"""

from __future__ import annotations

import pytest
from pathological import INI

pytest_plugins = ["pytester"]

ASYNCPG_APP = """
import contextlib

import asyncpg
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

DSN = None


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.pool = await asyncpg.create_pool(DSN, min_size=0, max_size=5)
    yield
    await app.state.pool.close()


async def count(request):
    pool = request.app.state.pool
    if LEAK:
        conn = await pool.acquire()  # the bug: never released
        value = await conn.fetchval("SELECT 1")
    else:
        async with pool.acquire() as conn:
            value = await conn.fetchval("SELECT 1")
    return PlainTextResponse(str(value))


app = Starlette(routes=[Route("/count", count)], lifespan=lifespan)
"""

SQLALCHEMY_APP = """
import os

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

engine = create_async_engine(os.environ["DATABASE_URL"])  # at import, as apps do
by_tenant = []


async def count(request):
    if LEAK:
        conn = await engine.connect()
        by_tenant.append(conn)  # the bug: "kept for the tenant's next request", never closed
        value = (await conn.execute(text("SELECT 1"))).scalar()
    else:
        async with engine.connect() as conn:
            value = (await conn.execute(text("SELECT 1"))).scalar()
    return PlainTextResponse(str(value))


app = Starlette(routes=[Route("/count", count)])
"""

ASYNCPG_TESTS = """
import pytest
import app_module


@pytest.fixture
def asgi_app(postgres_server, faults):
    app_module.DSN = postgres_server.dsn_via(faults.postgres)
    return app_module.app


@pytest.mark.parametrize("run", [1, 2])
async def test_requests_leave_nothing_behind(app_client, tasks, run):
    for _ in range(3):
        assert (await app_client.get("/count")).text == "1"
    (await tasks.settle(within=2)).assert_cleaned_up()
"""

SQLALCHEMY_TESTS = """
import os

import pytest


@pytest.fixture
def asgi_app(postgres_server, faults):
    os.environ["DATABASE_URL"] = postgres_server.dsn_via(faults.postgres).replace(
        "postgresql://", "postgresql+asyncpg://"
    )
    import app_module

    yield app_module.app
    # the engine outlives the test's loop: let its pool go with it
    app_module.engine.sync_engine.dispose(close=False)


@pytest.mark.parametrize("run", [1, 2])
async def test_requests_leave_nothing_behind(app_client, tasks, run):
    for _ in range(3):
        assert (await app_client.get("/count")).text == "1"
    (await tasks.settle(within=2)).assert_cleaned_up()
"""


def run(pytester: pytest.Pytester, app: str, tests: str, *, leak: bool) -> pytest.RunResult:
    # asyncpg's pool.close() waits for the leaked connection: the app's shutdown then runs
    # to its limit (reported beside the test's failure), kept short here.
    pytester.makeini(INI + "asyncfaults_shutdown_timeout = 1\n")
    pytester.makepyfile(app_module=f"LEAK = {leak}\n" + app, test_app=tests)
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")


@pytest.mark.parametrize(
    ("app", "tests"), [(ASYNCPG_APP, ASYNCPG_TESTS), (SQLALCHEMY_APP, SQLALCHEMY_TESTS)]
)
def test_a_pools_idle_connections_are_no_leak_in_any_test(
    pytester: pytest.Pytester, app: str, tests: str
) -> None:
    result = run(pytester, app, tests, leak=False)
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("app", "tests"), [(ASYNCPG_APP, ASYNCPG_TESTS), (SQLALCHEMY_APP, SQLALCHEMY_TESTS)]
)
def test_a_connection_left_per_request_is_a_leak(
    pytester: pytest.Pytester, app: str, tests: str
) -> None:
    result = run(pytester, app, tests, leak=True)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*expected proxy connections back to where they were: postgres: 0 open before the "
            "first request, 3 now*"
        ]
    )


CANCELLED_QUERY_APP = """
import asyncio

import asyncpg
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse
from starlette.routing import Route

DSN = None


async def insert(conn):
    await asyncio.sleep(0.2)
    await conn.fetchval("SELECT length($1)", "x" * 100_000)  # the bug: no timeout, no close


async def job(request):
    conn = await asyncpg.connect(DSN)
    return PlainTextResponse("accepted", status_code=202, background=BackgroundTask(insert, conn))


app = Starlette(routes=[Route("/job", job, methods=["POST"])])
"""

CANCELLED_QUERY_TESTS = """
import pytest
import app_module


@pytest.fixture
def asgi_app(postgres_server, faults):
    app_module.DSN = postgres_server.dsn_via(faults.postgres)
    return app_module.app


async def test_a_job_starved_of_bandwidth(app_client, tasks, faults):
    assert (await app_client.post("/job")).status_code == 202
    async with faults.postgres.bandwidth(1, stream="upstream"):
        await tasks.settle(within=1)
"""


def test_a_cancel_request_the_hang_left_running_goes_and_its_connection_is_said_beside(
    pytester: pytest.Pytester,
) -> None:
    """When the harness cancels a query stuck behind a fault, asyncpg sends PostgreSQL's
    CancelRequest over a new connection, in a task of its own that holds the query's
    connection; under the fault it outlives the test. It is cancelled with the test, and
    the connection the app never closed is said beside the hang report: not an ERROR at
    tear-down under ``filterwarnings = error``, nor pytest's own traceback for its
    transport after the summary."""
    pytester.makeini(INI + "filterwarnings = error\n")
    pytester.makepyfile(app_module=CANCELLED_QUERY_APP, test_app=CANCELLED_QUERY_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*1 background task still pending after 1 s*",
            "*also: ResourceWarning: unclosed connection <asyncpg.connection.Connection*",
        ]
    )
    assert "unclosed transport" not in result.stdout.str() + result.stderr.str()
