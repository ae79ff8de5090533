"""Every request is bounded: ``app_client`` honours httpx's timeouts, and past one the
test fails with the hang report of that request's task, never with silence.

Each case runs as a user's suite would (pytester), against a real app: a
handler that waits forever, a stream that never ends, and the README's own
shape on an endpoint that queries PostgreSQL inside the handler, blackholed.
Each run must end within its read timeout plus a margin for pytest itself,
and the test after the hung one must pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pathological import (
    INI,
    run_bounded,
    run_ends,
)

from pytest_asyncfaults import PostgresServer

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin


STUCK_APP = """
import asyncio
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route


async def stuck(request):
    await asyncio.Event().wait()  # the culprit: waits for nothing, forever
    return PlainTextResponse("never")


async def endless(request):
    async def body():
        yield b"first piece"
        await asyncio.Event().wait()  # the stream's culprit
    return StreamingResponse(body())


async def ok(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/stuck", stuck), Route("/endless", endless), Route("/ok", ok)])


@pytest.fixture
def asgi_app():
    return app
"""


def test_a_handler_that_never_answers_fails_within_the_read_timeout(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(STUCK_APP)
    pytester.makepyfile(
        """
        async def test_stuck(app_client, tasks):
            await app_client.get("/stuck", timeout=1.0)

        async def test_the_next_one(app_client, tasks):
            assert (await app_client.get("/ok")).text == "ok"
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=1.0,
        lines=[
            "*ReadTimeout*GET /stuck #*got no response within 1 s (the read timeout)*",
            "*conftest.py:*in stuck*",
            "*await asyncio.Event().wait()  # the culprit*",
            "*Cancelled 1 stuck task so the run goes on.*",
        ],
    )


def test_the_client_default_timeout_bounds_a_request_too(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(
        STUCK_APP
        + """

@pytest.fixture
def app_client(app_client):
    app_client.timeout = __import__("httpx").Timeout(0.5)
    return app_client
"""
    )
    pytester.makepyfile(
        """
        async def test_stuck(app_client, tasks):
            await app_client.get("/stuck")
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=0.5,
        passed=0,
        lines=["*got no response within 0.5 s (the read timeout)*"],
    )


def test_a_timeout_is_httpxs_own_exception_and_can_be_expected(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(STUCK_APP)
    pytester.makepyfile(
        """
        import httpx
        import pytest

        async def test_expected(app_client, tasks):
            with pytest.raises(httpx.ReadTimeout) as caught:
                await app_client.get("/stuck", timeout=0.5)
            assert "await asyncio.Event().wait()" in str(caught.value)
            # the stuck call was cancelled with the report: nothing leaks
        """
    )
    result, _ = run_bounded(pytester, backend_args)
    result.assert_outcomes(passed=1)


def test_a_stream_that_never_ends_times_out_per_piece(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(STUCK_APP)
    pytester.makepyfile(
        """
        async def test_endless(app_client, tasks):
            await app_client.get("/endless", timeout=1.0)

        async def test_the_next_one(app_client, tasks):
            assert (await app_client.get("/ok")).text == "ok"
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=1.0,
        lines=[
            "*ReadTimeout*GET /endless #*sent no more of its body within 1 s (the read timeout)*",
            "*await asyncio.Event().wait()  # the stream's culprit*",
        ],
    )


def test_the_readmes_shape_on_a_handler_that_queries_a_blackholed_database(
    pytester: pytest.Pytester, postgres_server: PostgresServer, backend_args: list[str]
) -> None:
    """``async with faults.postgres.blackhole(): await app_client.get("/articles")``, where
    the handler itself queries PostgreSQL (no timeout: the bug): the test fails within the
    request's timeout with the handler's line and the fault that was on. So does each row
    of a chaos matrix under the shipped scenarios, and the matrix goes on to its end."""
    pytester.makeini(INI)
    pytester.makeconftest(
        """
import asyncpg
import pytest
from fastapi import FastAPI


def create_app(dsn):
    app = FastAPI()

    @app.get("/articles")
    async def articles():
        connection = await asyncpg.connect(dsn)  # no timeout: hangs while the database does
        try:
            return [dict(row) for row in await connection.fetch("SELECT 1 AS id")]
        finally:
            await connection.close()

    return app


@pytest.fixture
def asgi_app(postgres_server, faults):
    return create_app(postgres_server.dsn_via(faults.postgres))
"""
    )
    pytester.makepyfile(
        """
        import pytest

        async def test_articles_under_a_database_stall(app_client, tasks, faults):
            async with faults.postgres.blackhole():
                response = await app_client.get("/articles", timeout=2.0)
            assert response.status_code == 200

        @pytest.mark.chaos("db_blackhole", "db_latency_spike")
        async def test_articles_under_chaos(app_client, tasks):
            assert (await app_client.get("/articles", timeout=2.0)).status_code == 200

        async def test_articles(app_client, tasks):
            assert (await app_client.get("/articles", timeout=10.0)).json() == [{"id": 1}]
        """
    )
    run_ends(
        pytester,
        backend_args,
        f"--asyncfaults-postgres-dsn={postgres_server.dsn}",
        f"--asyncfaults-scenarios={SCENARIOS}",
        deadline=2.0,
        failed=3,  # the blackhole, and each row of the shipped scenarios' matrix
        lines=[
            "*ReadTimeout*GET /articles #*got no response within 2 s (the read timeout)*",
            "*> conftest.py:11 in articles*",
            "*asyncpg/connection.py:* in connect*",
            "*Faults active now:",
            "*postgres*timeout*",
        ],
    )
