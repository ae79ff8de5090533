"""Threads an app starts and leaves running: a finding, and never a hung exit.

A non-daemon thread left running keeps Python from exiting: pytest would hang
after its summary. So does a worker of asyncio's default executor stuck in the
app's code (the pool joins its workers at exit). Each case runs in a pytest of
its own, which must exit on its own, with the finding naming where the thread
was started; a fixed app that stops its thread at shutdown passes clean.
"""

from __future__ import annotations

import pytest
from pathological import INI, run_ends

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

APP = """
import asyncio
import contextlib
import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

stop = threading.Event()


def poll():
    while not stop.is_set():
        time.sleep(0.05)


def spin_forever():
    while True:
        time.sleep(0.05)  # the thread's loop: it never checks a flag


async def non_daemon(request):
    threading.Thread(target=spin_forever, name="poller").start()  # the culprit: non-daemon
    return PlainTextResponse("ok")


async def daemon(request):
    threading.Thread(target=spin_forever, name="beat", daemon=True).start()  # the culprit: daemon
    return PlainTextResponse("ok")


async def executor(request):
    asyncio.get_running_loop().run_in_executor(None, time.sleep, 3600)  # the culprit: executor
    return PlainTextResponse("ok")


async def ok(request):
    return PlainTextResponse("ok")


@contextlib.asynccontextmanager
async def lifespan(app):
    stop.clear()
    thread = threading.Thread(target=poll, name="stopped-at-shutdown")
    thread.start()
    yield
    stop.set()
    thread.join(1)


ROUTES = [
    Route("/non-daemon", non_daemon),
    Route("/daemon", daemon),
    Route("/executor", executor),
    Route("/ok", ok),
]


@pytest.fixture
def asgi_app():
    return Starlette(routes=ROUTES, lifespan=lifespan)
"""

CASES = {
    "non-daemon": [
        "*[[]threads] Thread 'poller' (a non-daemon thread), started at conftest.py:* in "
        "non_daemon: `*# the culprit: non-daemon`*keeps the Python process from exiting*",
        "*> conftest.py:* in spin_forever*",
    ],
    "daemon": [
        "*[[]threads] Thread 'beat' (a daemon thread), started at conftest.py:* in daemon: "
        "`*# the culprit: daemon`*",
        "*> conftest.py:* in spin_forever*",
    ],
    "executor": [
        "*[[]threads] Thread 'asyncio_*' (a non-daemon thread), started at conftest.py:* in "
        "executor: `*# the culprit: executor`*",
    ],
}


@pytest.mark.parametrize("path", list(CASES))
def test_a_thread_left_running_is_a_finding_and_the_run_still_exits(
    pytester: pytest.Pytester, backend_args: list[str], path: str
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(APP)
    pytester.makepyfile(
        f"""
        async def test_leaves_a_thread(app_client, tasks):
            assert (await app_client.get("/{path}")).text == "ok"

        async def test_the_next_one(app_client, tasks):
            assert (await app_client.get("/ok")).text == "ok"
        """
    )
    result = run_ends(pytester, backend_args, deadline=0.0, lines=CASES[path])
    if path != "daemon":  # a daemon thread does not hold the exit up
        assert "not waiting for 1 thread(s) of the app that would keep Python from exiting" in (
            result.stderr.str()
        )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_thread_stopped_at_shutdown_is_no_finding(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(APP)
    pytester.makepyfile(
        """
        async def test_ok(app_client, tasks):
            assert (await app_client.get("/ok")).text == "ok"
        """
    )
    result = pytester.runpytest_subprocess(*backend_args, "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
    assert "not waiting" not in result.stderr.str()


def test_a_non_daemon_thread_left_in_an_xdist_worker_does_not_hang_the_run(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(APP)
    pytester.makepyfile(
        """
        async def test_leaves_a_thread(app_client, tasks):
            assert (await app_client.get("/non-daemon")).text == "ok"

        async def test_the_next_one(app_client, tasks):
            assert (await app_client.get("/ok")).text == "ok"
        """
    )
    run_ends(pytester, backend_args, "-n", "2", deadline=0.0, lines=CASES["non-daemon"][:1])


def test_with_the_threads_detector_off_a_stuck_executor_still_cannot_hang_the_run(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI + "asyncfaults_threads = off\n")
    pytester.makeconftest(APP)
    pytester.makepyfile(
        """
        async def test_leaves_a_thread(app_client, tasks):
            assert (await app_client.get("/executor")).text == "ok"
        """
    )
    result = pytester.runpytest_subprocess(*backend_args, "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
