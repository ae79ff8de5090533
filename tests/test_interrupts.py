"""A blocked loop is interrupted at the deadline that applies, not at the test's.

The app blocks the loop (``time.sleep(3600)``) where each deadline applies: in a
handler the test awaits (the request's read timeout), in background work the
test settles (the settle deadline), in the lifespan's startup and shutdown
(their limits). Each test's own deadline stays at 60 s: ending within a second
of the 1-second deadline shows which one fired.
"""

from __future__ import annotations

import pytest
from pathological import (
    INI,
    run_ends,
)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

APP = """
import asyncio
import contextlib
import time

import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def handler(request):
    time.sleep(3600)  # the culprit: in a handler
    return PlainTextResponse("late")


async def later():
    await asyncio.sleep(0.2)
    time.sleep(3600)  # the culprit: in background work


async def background(request):
    return PlainTextResponse("ok", background=BackgroundTask(later))


async def ok(request):
    return PlainTextResponse("ok")


@contextlib.asynccontextmanager
async def startup(app):
    time.sleep(3600)  # the culprit: in startup
    yield


@contextlib.asynccontextmanager
async def shutdown(app):
    yield
    time.sleep(3600)  # the culprit: in shutdown


ROUTES = [Route("/handler", handler), Route("/background", background), Route("/ok", ok)]


@pytest.fixture
def asgi_app(request):
    lifespan = {"startup": startup, "shutdown": shutdown}.get(getattr(request, "param", ""))
    return Starlette(routes=ROUTES, lifespan=lifespan)
"""

CASES = {
    "handler": (
        "await app_client.get('/handler', timeout=1)",
        "*ReadTimeout*GET /handler #*got no response within 1 s (the read timeout)*",
        "in a handler",
        "the read timeout of GET /handler (1 s)",
    ),
    "background": (
        "assert (await app_client.get('/background')).text == 'ok'\n"
        "            await tasks.settle(within=1)",  # indented as the body below is
        "*[[]blocked_loop] the event loop was blocked for * s at conftest.py:*",
        "in background work",
        "the settle deadline (1 s)",
    ),
    "startup": (
        "await app_client.get('/ok')",
        "*the app's lifespan startup failed: the event loop was blocked for * s at conftest.py:*",
        "in startup",
        "the lifespan's startup limit (1 s)",
    ),
    "shutdown": (
        "assert (await app_client.get('/ok')).text == 'ok'",
        "*the app's lifespan shutdown failed: the event loop was blocked for * s at conftest.py:*",
        "in shutdown",
        "the lifespan's shutdown limit (1 s)",
    ),
}


RUNS = [(where, "pytest-asyncio") for where in CASES] + [
    ("handler", "anyio"),  # a request's bound under anyio's runner too
    ("background", "anyio"),
]


@pytest.mark.parametrize(("where", "runner"), RUNS)
def test_a_blocked_loop_is_interrupted_at_the_deadline_that_applies(
    pytester: pytest.Pytester, backend_args: list[str], where: str, runner: str
) -> None:
    body, headline, culprit, deadline = CASES[where]
    pytester.makeini(INI if runner == "pytest-asyncio" else "[pytest]\n")
    pytester.makeconftest(APP)
    marker = "@pytest.mark.anyio" if runner == "anyio" else ""
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        {marker}
        @pytest.mark.parametrize("asgi_app", [{where!r}], indirect=True)
        @pytest.mark.asyncfaults(timeout=60, startup_timeout=1, shutdown_timeout=1)
        async def test_blocked(app_client, tasks):
            {body}

        {marker}
        async def test_the_next_one(app_client, tasks):
            assert (await app_client.get("/ok")).text == "ok"
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=1.0,
        lines=[
            headline,
            f"*time.sleep(3600)  # the culprit: {culprit}",
            f"*Interrupted past {deadline} so the run goes on*",
        ],
    )
