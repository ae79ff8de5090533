"""Adopting the plugin in an app configured by its environment: one ini line, no code.

The app here is written the common way: it reads ``DATABASE_URL`` (a DSN with a
user and a password) from the environment when it is imported. The user's whole
configuration is ``asyncfaults_app`` and ``asyncfaults_env = DATABASE_URL={postgres.dsn}``:
the placeholder starts ``postgres_server`` (this run's server, named by DSN), and the
app reaches it through ``faults.postgres``. Each inner run is a pytest of its own
(a subprocess: the app's module is imported afresh, as in a user's run).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
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
    # -rN: pytest's short summary would repeat the message's first line on a wide terminal
    result = run(pytester, postgres_server, "-rN", *backend_args)
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

    # told it is not concerned, the plugin lets it run: the blackhole then misses the app
    # (it answers 200 from the server itself), and the fault that touched nothing says so
    result = run(pytester, postgres_server, *backend_args, "--asyncfaults-early-import=off")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert 200 == 503*", "*postgres: blackhole on, 0 connections*"])
    assert "imported before asyncfaults_env" not in result.stdout.str()


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


# -- the environment: overrides, flags, errors ---------------------------------------------------

PLAIN_INI: Final = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"


def test_an_overridden_asyncfaults_env_is_applied_and_restored(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(PLAIN_INI)
    pytester.makeconftest(
        textwrap.dedent(
            """
            import os

            import pytest


            @pytest.fixture
            def asyncfaults_env(faults):
                return {"ECHO_PORT": str(faults.echo.port), "APP_MODE": "test"}
            """
        )
    )
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os


            def test_applied(asyncfaults_env, faults):
                assert os.environ["ECHO_PORT"] == str(faults.echo.port)
                assert os.environ["APP_MODE"] == "test"


            def test_restored():
                assert "ECHO_PORT" not in os.environ and "APP_MODE" not in os.environ
            """
        )
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--asyncfaults-proxy=echo=127.0.0.1:9", *backend_args
    )
    result.assert_outcomes(passed=2)


def test_env_and_proxies_from_the_command_line(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(PLAIN_INI + "asyncfaults_env =\n    A=from-ini\n    B=from-ini\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os


            def test_env(asyncfaults_env, faults):
                assert faults.one.upstream == "127.0.0.1:9"
                assert faults.two.upstream == "127.0.0.1:10"
                assert os.environ["A"] == "from-ini"
                assert os.environ["B"] == f"{faults.two.host}:{faults.two.port}"
            """
        )
    )
    pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--asyncfaults-proxy=one=127.0.0.1:9",
        "--asyncfaults-proxy",
        "two=127.0.0.1:10",
        "--asyncfaults-env=B={two.listen}",
        *backend_args,
    ).assert_outcomes(passed=1)


def test_a_bad_placeholder_is_one_message_naming_what_fixes_it(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(PLAIN_INI + "asyncfaults_env =\n    CACHE_URL=redis://{redis.listen}/0\n")
    pytester.makepyfile("async def test_app(app_client): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rN", *backend_args)
    result.assert_outcomes(errors=1)
    message = (
        "asyncfaults_env CACHE_URL='redis://{redis.listen}/0' cannot be filled in: no proxy "
        "named 'redis' in this test (proxies: none); {postgres.FIELD} and {smtp.FIELD} start "
        "the postgres_server and smtp_server fixtures, other proxies are declared in "
        "asyncfaults_proxies (or --asyncfaults-proxy NAME=HOST:PORT)"
    )
    result.stdout.fnmatch_lines([message])
    assert result.stdout.str().count("cannot be filled in") == 1
    assert "Traceback" not in result.stdout.str()


def test_a_dsn_placeholder_needs_a_proxy_that_knows_the_dsn(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(
        PLAIN_INI
        + "asyncfaults_proxies =\n    postgres=127.0.0.1:5432\n"
        + "asyncfaults_env =\n    DATABASE_URL={postgres.dsn}\n"
    )
    pytester.makepyfile("def test_app(asyncfaults_env): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rN", *backend_args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "asyncfaults_env DATABASE_URL='{postgres.dsn}' cannot be filled in: the proxy "
            "'postgres' (127.0.0.1:* -> 127.0.0.1:5432) has no DSN: it was declared by its "
            "address alone; use the postgres_server fixture*"
        ]
    )


def test_a_proxy_given_as_a_dsn_knows_it(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(PLAIN_INI + "asyncfaults_env =\n    DATABASE_URL={db.dsn}\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os


            def test_dsn(asyncfaults_env, faults):
                assert faults.db.upstream == "127.0.0.1:5999"
                assert os.environ["DATABASE_URL"] == (
                    f"postgresql://app:s3cret-pw@{faults.db.listen}/shop?sslmode=disable"
                )
                assert os.environ["DATABASE_URL"] == "shown"  # fails: the report is masked
            """
        )
    )
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--asyncfaults-proxy=db=postgresql://app:s3cret-pw@127.0.0.1:5999/shop?sslmode=disable",
        "--junitxml=junit.xml",
        *backend_args,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*postgresql://app:***@127.0.0.1:*/shop?sslmode=disable*"])
    assert "s3cret-pw" not in result.stdout.str()
    assert "s3cret-pw" not in (pytester.path / "junit.xml").read_text()


# -- the seed ------------------------------------------------------------------------------------


def test_a_fresh_seed_is_in_the_header_and_in_a_failing_tests_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(PLAIN_INI)
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_fails(asyncfaults_backend, faults):
                print("SEED", asyncfaults_backend.seed)
                assert False
            """
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(
        [
            r"asyncfaults: embedded fault engine in process, seed (\d+) \(fresh: repeat with "
            r"--asyncfaults-seed=\1\)"
        ]
    )
    seed = next(line.split()[1] for line in result.stdout.lines if line.startswith("SEED "))
    result.stdout.fnmatch_lines(
        [
            f"*asyncfaults: embedded fault engine in process, seed {seed} (fresh*",
            "*- asyncfaults -*",
            f"seed {seed}: repeat this run with --asyncfaults-seed={seed}",
        ]
    )


def test_xdist_workers_share_the_controllers_seed(pytester: pytest.Pytester) -> None:
    pytester.makeini(PLAIN_INI)
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest


            @pytest.mark.parametrize("n", range(4))
            def test_seed(asyncfaults_backend, n):
                print("SEED", asyncfaults_backend.seed)
                assert False
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", timeout=RUN_BOUND)
    result.assert_outcomes(failed=4)
    seeds = {line.split()[1] for line in result.stdout.lines if line.startswith("SEED ")}
    assert len(seeds) == 1, seeds
    result.stdout.fnmatch_lines([f"*seed {seeds.pop()} (fresh*"])


# -- timelines without pytest's cache ------------------------------------------------------------


def test_timelines_without_the_cache_go_under_the_rootdir(pytester: pytest.Pytester) -> None:
    pytester.makeini(PLAIN_INI)
    pytester.makepyfile(
        textwrap.dedent(
            """
            import asyncio


            async def test_hangs(tasks):
                asyncio.get_running_loop().create_task(asyncio.sleep(30), name="stuck")
                await tasks.settle(within=0.2)
            """
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    timelines = list((pytester.path / ".asyncfaults" / "timelines").glob("*.html"))
    assert len(timelines) == 1, result.stdout.str()
    result.stdout.fnmatch_lines([f"Timeline of this test: {timelines[0]} (open it in a browser)"])


def test_repro_takes_a_dsn_and_prints_no_password(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    (tmp_path / "dsn_app.py").write_text(DSN_APP)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_asyncfaults",
            "repro",
            "dsn_app:app",
            "--app-dir",
            str(tmp_path),
            f"--proxy=postgres={postgres_server.dsn}",
            "--env=DATABASE_URL={postgres.dsn}",
            "--env=DB_PASSWORD={postgres.password}",
            "--request=GET /count",
            "--within=5",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_BOUND,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "GET /count -> 200" in out
    assert f"env DATABASE_URL=postgresql://{postgres_server.user}:***@127.0.0.1:" in out
    assert "env DB_PASSWORD=***" in out
    assert postgres_server.password not in out


def test_an_smtp_placeholder_starts_the_smtp_server(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(PLAIN_INI + "asyncfaults_env =\n    SMTP={smtp.host}:{smtp.port}\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os
            import smtplib


            def test_mail(asyncfaults_env, faults, request):
                # the test never named smtp_server: the placeholder started it
                server = request.getfixturevalue("smtp_server")
                assert faults.smtp.upstream == server.address
                assert os.environ["SMTP"] == faults.smtp.listen
                with smtplib.SMTP(faults.smtp.host, faults.smtp.port, timeout=10) as client:
                    client.sendmail("a@example.org", ["b@example.org"], "Subject: hi\\n\\nhello")
                assert [mail.subject for mail in server.messages] == ["hi"]
            """
        )
    )
    pytester.runpytest("-p", "no:cacheprovider", *backend_args).assert_outcomes(passed=1)


def test_no_password_in_a_timeline_or_a_json_report(tmp_path: Path) -> None:
    from pytest_asyncfaults._address import mask_secrets, register_secret
    from pytest_asyncfaults._scenario._matrix import MatrixRow, dump_document, matrix_document
    from pytest_asyncfaults._timeline import Timeline, write_timeline

    register_secret("hunter2-known-password")
    reason = (
        "InvalidPasswordError: postgresql://app:url-password@127.0.0.1:5432/db; "
        "DB_PASSWORD=hunter2-known-password"
    )
    page = write_timeline(
        Timeline(title="t", summary=reason, end=1.0), tmp_path / "timeline.html"
    ).read_text()
    document = dump_document(
        matrix_document(
            seed=1,
            scenarios=[],
            rows=[MatrixRow("test_x", "db", "failed", reason, 0.1, None, "test_x[db]")],
        )
    )
    for text in (page, document, mask_secrets(reason)):
        assert "url-password" not in text
        assert "hunter2-known-password" not in text
        assert "postgresql://app:***@127.0.0.1:5432/db" in text


def test_a_startup_that_retries_a_refused_login_says_why_it_hangs(
    pytester: pytest.Pytester, backend_args: list[str], postgres_server: PostgresServer
) -> None:
    """The app's startup retries its database login for good, as apps do; a wrong password
    made that a lifespan hang whose cause was only in the captured log: it is in the report."""
    wrong = postgres_server.dsn_via(postgres_server).replace(
        f":{postgres_server.password}@", ":not-the-password@"
    )
    pytester.makeini(PLAIN_INI + "asyncfaults_startup_timeout = 2\n")
    pytester.makeconftest(
        textwrap.dedent(
            f"""
            import asyncio
            import logging
            from contextlib import asynccontextmanager

            import asyncpg
            import pytest
            from starlette.applications import Starlette

            log = logging.getLogger("retrying_app")


            @asynccontextmanager
            async def lifespan(app):
                while True:  # retry until the database lets us in
                    try:
                        app.state.db = await asyncpg.connect({wrong!r}, timeout=2)
                        break
                    except Exception:
                        log.exception("cannot log in to the database, retrying")
                        await asyncio.sleep(0.3)
                yield
                await app.state.db.close()


            @pytest.fixture
            def asgi_app():
                return Starlette(lifespan=lifespan)
            """
        )
    )
    pytester.makepyfile("async def test_app(app_client):\n    await app_client.get('/')\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *backend_args, timeout=60)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*of the app's lifespan still pending after 2 s (startup limit)*",
            "The app logged, while its startup ran:",
            "  ERROR retrying_app: cannot log in to the database, retrying: "
            "InvalidPasswordError: password authentication failed for user*",
        ]
    )
    assert "not-the-password" not in result.stdout.str()
