"""Adopting the plugin in an app configured by its environment: one ini line, no code.

The app here is written the common way: it reads ``DATABASE_URL`` (a DSN with a
user and a password) from the environment when it is imported. The user's whole
configuration is ``asyncfaults_app`` and ``asyncfaults_env = DATABASE_URL={postgres.dsn}``:
the placeholder starts ``postgres_server`` (this run's server, named by DSN), and the
app reaches it through ``faults.postgres``. Each inner run is a pytest of its own
(a subprocess: the app's module is imported afresh, as in a user's run).
"""

from __future__ import annotations

import textwrap
from typing import Final

import pytest

from pytest_asyncfaults import PostgresServer

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

RUN_BOUND: Final = 90.0

DSN_APP: Final = '''
"""An app configured by its environment at import, as twelve-factor apps are."""

import asyncio
import logging
import os

import asyncpg
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://app@127.0.0.1:1/app")
log = logging.getLogger("dsn_app")


async def count(request):
    try:
        conn = await asyncpg.connect(DATABASE_URL, timeout=2)
        try:
            value = await conn.fetchval("SELECT count(*) FROM pg_class", timeout=2)
        finally:
            await conn.close(timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        log.exception("the database failed")
        return JSONResponse({"error": type(exc).__name__}, status_code=503)
    return JSONResponse({"count": value})


app = Starlette(routes=[Route("/count", count)])
'''

INI: Final = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncfaults_app = dsn_app:app
asyncfaults_env =
    DATABASE_URL={postgres.dsn}
    DB_USER={postgres.user}
    DB_PASSWORD={postgres.password}
"""

TESTS: Final = """
import os

import pytest


async def test_happy_path(app_client, tasks, faults):
    # the app's own DSN: the proxy's address, the server's user, password and database
    assert os.environ["DATABASE_URL"] == faults.postgres.dsn
    assert f"@{faults.postgres.listen}/" in os.environ["DATABASE_URL"]
    assert os.environ["DB_USER"] and os.environ["DB_PASSWORD"]
    response = await app_client.get("/count")
    assert response.status_code == 200, response.text
    assert response.json()["count"] > 0
    (await tasks.settle(within=2)).assert_completed()
    assert (await faults.postgres.read_stats()).accepted >= 1


async def test_blackhole(app_client, tasks, faults):
    async with faults.postgres.blackhole():
        response = await app_client.get("/count", timeout=10)
        assert response.status_code == 503
        assert response.json() == {"error": "TimeoutError"}
        await tasks.settle(within=2)
    assert (await faults.postgres.read_stats()).accepted >= 1


async def test_reset(app_client, tasks, faults):
    async with faults.postgres.reset_peer():
        response = await app_client.get("/count", timeout=10)
        assert response.status_code == 503
        assert response.json()["error"] in ("ConnectionResetError", "ConnectionError", "OSError")
        await tasks.settle(within=2)
"""


def run(pytester: pytest.Pytester, postgres_server: PostgresServer, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--asyncfaults-postgres-dsn={postgres_server.dsn}",
        *args,
        timeout=RUN_BOUND,
    )


def test_a_dsn_configured_app_reaches_the_server_through_the_proxy(
    pytester: pytest.Pytester, backend_args: list[str], postgres_server: PostgresServer
) -> None:
    pytester.makepyfile(dsn_app=DSN_APP, test_dsn_app=TESTS)
    pytester.makeini(INI)
    result = run(pytester, postgres_server, *backend_args)
    result.assert_outcomes(passed=3)
    # the password is the server's, and nothing printed shows it
    assert postgres_server.password not in result.stdout.str() + result.stderr.str()


def test_an_app_imported_before_the_environment_stops_the_test(
    pytester: pytest.Pytester,
    backend_args: list[str],
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The silent false negative: the app imported at the top of conftest.py read the
    developer's own DATABASE_URL, so the blackhole never reached it, and the test passed."""
    monkeypatch.setenv("DATABASE_URL", postgres_server.dsn)  # a developer's shell
    pytester.makepyfile(dsn_app=DSN_APP)
    pytester.makeconftest("from dsn_app import app  # noqa: F401 - what many suites do\n")
    pytester.makepyfile(
        test_early=textwrap.dedent(
            """
            async def test_blackhole(app_client, faults):
                async with faults.postgres.blackhole():
                    response = await app_client.get("/count", timeout=10)
                    assert response.status_code == 503
            """
        )
    )
    pytester.makeini(INI)
    result = run(pytester, postgres_server, *backend_args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the app under test comes from the module 'dsn_app' (*dsn_app.py), which was "
            "imported before asyncfaults_env was applied (conftest.py imports it at its top)"
            "*DATABASE_URL*",
            "*Import the app lazily: import it only inside the tests or fixtures that need it*",
            "*or configure it in code*",
        ]
    )
    text = result.stdout.str()
    assert text.count("which was imported before asyncfaults_env") == 1, text  # printed once
    assert postgres_server.password not in text


def test_a_fault_no_connection_went_through_is_a_warning(
    pytester: pytest.Pytester,
    backend_args: list[str],
    postgres_server: PostgresServer,
) -> None:
    """The app configured in code with the server's own address: the fault never touches it."""
    pytester.makepyfile(dsn_app=DSN_APP)
    pytester.makeconftest(
        textwrap.dedent(
            """
            import importlib

            import pytest


            @pytest.fixture
            def asgi_app(postgres_server, monkeypatch):
                monkeypatch.setenv("DATABASE_URL", postgres_server.dsn)  # around the proxy
                import dsn_app

                return importlib.reload(dsn_app).app
            """
        )
    )
    pytester.makepyfile(
        test_missed=textwrap.dedent(
            """
            async def test_blackhole(app_client, tasks, faults):
                async with faults.postgres.blackhole():
                    response = await app_client.get("/count", timeout=10)
                    await tasks.settle(within=2)
                assert response.status_code == 200  # the fault missed the app
            """
        )
    )
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = run(pytester, postgres_server, *backend_args, "-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*postgres: blackhole on, 0 connections: is the app pointed at "
            "faults.postgres (127.0.0.1:*)?*"
        ]
    )
