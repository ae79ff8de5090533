"""The app runner, the task monitor and the hang report, through pytest itself.

Each scenario runs in a pytest of its own (pytester), three ways: under
pytest-asyncio in strict mode, in auto mode, and under anyio's plugin with
the asyncio backend. The apps are real FastAPI/Starlette apps, the faults go
through the real engine and real loopback sockets.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

RUNNERS = {
    "asyncio-strict": (
        "import pytest\npytestmark = pytest.mark.asyncio\n",
        "asyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n",
        (),
    ),
    "asyncio-auto": (
        "",
        "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n",
        (),
    ),
    "anyio": (
        "import pytest\npytestmark = pytest.mark.anyio\n\n"
        "@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n",
        "",
        ("-p", "no:asyncio"),
    ),
}

APP = textwrap.dedent(
    """
    import asyncio
    import logging
    import os

    from fastapi import BackgroundTasks, FastAPI

    log = logging.getLogger("demoapp")


    async def slow_job():
        await asyncio.sleep(5)


    async def talk_to_service(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"hello")
            await writer.drain()
            return await reader.read(100)  # no timeout: the bug under test
        finally:
            writer.close()


    async def failing_job(logged):
        try:
            raise ValueError("the insert failed")
        except ValueError:
            if logged:
                log.exception("background job failed")
            raise


    def make_app(service_port=None):
        app = FastAPI()

        @app.post("/slow")
        async def slow(background: BackgroundTasks):
            background.add_task(slow_job)
            return {"queued": True}

        @app.post("/service")
        async def service(background: BackgroundTasks):
            background.add_task(talk_to_service, service_port)
            return {"queued": True}

        @app.post("/fail")
        async def fail(background: BackgroundTasks, logged: bool = True):
            background.add_task(failing_job, logged)
            return {"queued": True}

        return app
    """
)

CONFTEST = textwrap.dedent(
    """
    import socket
    import threading

    import pytest

    from demoapp import make_app


    @pytest.fixture(scope="session")
    def echo_port():
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(0.2)
        stop = threading.Event()
        conns = []

        def serve():
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except (TimeoutError, OSError):
                    continue
                conns.append(conn)
                conn.settimeout(10)
                try:
                    while data := conn.recv(1024):
                        conn.sendall(data)
                except OSError:
                    pass
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield server.getsockname()[1]
        stop.set()
        thread.join(5)
        server.close()
        for conn in conns:
            conn.close()


    @pytest.fixture
    async def service_proxy(faults, echo_port):
        return await faults.create("service", f"127.0.0.1:{echo_port}")


    @pytest.fixture
    def asgi_app(service_proxy):
        # An app configured in code: it gets the proxy's port, not the service's.
        return make_app(service_port=service_proxy.port)
    """
)


def setup_suite(pytester: pytest.Pytester, runner: str, tests: str) -> tuple[str, ...]:
    header, ini, args = RUNNERS[runner]
    pytester.makepyfile(demoapp=APP)
    conftest = CONFTEST
    if runner == "asyncio-strict":
        conftest = conftest.replace(
            "@pytest.fixture\nasync def service_proxy",
            "@pytest_asyncio.fixture\nasync def service_proxy",
        ).replace("import pytest\n", "import pytest\nimport pytest_asyncio\n", 1)
    if runner == "anyio":
        conftest = conftest.replace(
            "def asgi_app(service_proxy):", "def asgi_app(service_proxy, anyio_backend):"
        )
    pytester.makeconftest(conftest)
    pytester.makeini(f"[pytest]\n{ini}")
    pytester.makepyfile(test_app_suite=header + textwrap.dedent(tests))
    pytester.syspathinsert()
    return args


@pytest.fixture(params=list(RUNNERS))
def runner(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_response_comes_back_before_the_background_work(
    pytester: pytest.Pytester, runner: str, backend_args: list[str]
) -> None:
    args = setup_suite(
        pytester,
        runner,
        """
        import time

        async def test_slow_background(app_client, tasks):
            started = time.perf_counter()
            response = await app_client.post("/slow")
            assert response.status_code == 200
            assert time.perf_counter() - started < 1.0
            outcome = await tasks.settle(within=10)
            outcome.assert_completed()
            assert 4.5 < time.perf_counter() - started < 9
            assert len(outcome) >= 1
        """,
    )
    result = pytester.runpytest(*args, *backend_args)
    result.assert_outcomes(passed=1)


def test_a_background_task_on_a_blackholed_service_fails_with_a_hang_report(
    pytester: pytest.Pytester, runner: str, backend_args: list[str]
) -> None:
    args = setup_suite(
        pytester,
        runner,
        """
        import time

        async def test_hangs(app_client, tasks, faults):
            async with faults.service.blackhole():
                started = time.perf_counter()
                response = await app_client.post("/service")
                assert response.status_code == 200
                try:
                    await tasks.settle(within=2)
                finally:
                    print(f"SETTLE TOOK {time.perf_counter() - started:.2f}")

        async def test_next_test_runs_clean(app_client, tasks):
            response = await app_client.post("/service")
            assert response.status_code == 200
            outcome = await tasks.settle(within=5)
            outcome.assert_completed().assert_cleaned_up()
        """,
    )
    result = pytester.runpytest("-s", *args, *backend_args)
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    settle_took = float(output.split("SETTLE TOOK ")[1].split()[0])
    assert 1.9 <= settle_took <= 4.0
    result.stdout.fnmatch_lines(
        [
            "*asyncfaults: 1 background task still pending after 2 s (the settle deadline)*",
            "*the ASGI call of POST /service (after its response was sent: its background tasks)*",
            "*await chain, outermost first:*",
            "*demoapp.py:*in talk_to_service*",
            "*return await reader.read(100)  # no timeout: the bug under test*",
            "*asyncio/streams.py:*in _wait_for_data*",
            "*Faults active now:*",
            "*service (127.0.0.1:* -> 127.0.0.1:*): "
            "timeout_downstream (timeout downstream timeout=0)*1 open connection*",
            "*Cancelled 1 stuck task so the run goes on.*",
        ]
    )
    assert "Traceback" not in output


def test_a_failing_background_task_is_reported_not_raised(
    pytester: pytest.Pytester, runner: str, backend_args: list[str]
) -> None:
    args = setup_suite(
        pytester,
        runner,
        """
        async def test_logged(app_client, tasks):
            response = await app_client.post("/fail", params={"logged": True})
            assert response.status_code == 200
            outcome = await tasks.settle(within=5)
            failure = outcome.assert_failed(ValueError)
            assert "the insert failed" in str(failure.exception)
            outcome.assert_logged(ValueError)

        async def test_not_logged_by_the_app_is_logged_by_the_server(app_client, tasks):
            # uvicorn logs what escapes the ASGI call: "Exception in ASGI application".
            response = await app_client.post("/fail", params={"logged": False})
            assert response.status_code == 200
            outcome = await tasks.settle(within=5)
            outcome.assert_failed(ValueError)
            outcome.assert_logged(ValueError)
        """,
    )
    result = pytester.runpytest(*args, *backend_args)
    result.assert_outcomes(passed=2)


def test_assert_logged_fails_clearly_when_nothing_logged(
    pytester: pytest.Pytester, runner: str, backend_args: list[str]
) -> None:
    args = setup_suite(
        pytester,
        runner,
        """
        import asyncio

        async def test_swallowed(tasks):
            async def job():
                raise KeyError("lost")

            task = asyncio.create_task(job())
            outcome = await tasks.settle(within=2)
            outcome.assert_failed(KeyError)
            try:
                outcome.assert_logged(KeyError)
            finally:
                task.exception()  # retrieved: asyncio's own complaint is not the subject
        """,
    )
    result = pytester.runpytest(*args, *backend_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*expected each KeyError of the background work to be logged at ERROR with its "
            "traceback, but these were not:*",
            "*Task 'Task-*', a task of the test, created at test_app_suite.py:*: failed with "
            "KeyError: 'lost'*",
        ]
    )


def test_a_leaked_task_fails_the_test_and_the_next_one_is_clean(
    pytester: pytest.Pytester, runner: str, backend_args: list[str]
) -> None:
    args = setup_suite(
        pytester,
        runner,
        """
        import asyncio

        background = []

        async def test_leaks(tasks):
            background.append(asyncio.create_task(asyncio.sleep(30), name="forgotten"))

        async def test_after(tasks):
            assert background[0].cancelled()
        """,
    )
    result = pytester.runpytest(*args, *backend_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*asyncfaults: 1 background task still running when the test ended*",
            "*Task 'forgotten', a task of the test, created at test_app_suite.py:*",
        ]
    )


def test_lifespan_startup_that_hangs_fails_within_its_limit(
    pytester: pytest.Pytester, runner: str, backend_args: list[str]
) -> None:
    args = setup_suite(
        pytester,
        runner,
        """
        import asyncio
        import contextlib
        import time

        import pytest
        from starlette.applications import Starlette

        async def wait_for_the_database():
            await asyncio.Event().wait()

        @contextlib.asynccontextmanager
        async def lifespan(app):
            await wait_for_the_database()
            yield

        @pytest.fixture
        def asgi_app():
            return Starlette(lifespan=lifespan)

        @pytest.mark.asyncfaults(startup_timeout=1)
        async def test_never_starts(app_client):
            raise AssertionError("the body must not run")
        """,
    )
    result = pytester.runpytest("--durations=1", *args, *backend_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*of the app's lifespan still pending after 1 s (startup limit)*",
            "*in wait_for_the_database*",
            "*await asyncio.Event().wait()*",
        ]
    )
    assert "the body must not run" not in result.stdout.str()
