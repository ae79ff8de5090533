"""A lifespan that fails is reported at once, with the app's exception and its line.

Frameworks tell a failed startup or shutdown two ways: Starlette and Litestar
send ``lifespan.startup.failed`` and raise; Quart only sends it and goes on
waiting. Either way the test fails within a second (not at the 30-second
limit), naming the exception and the app's line it came from, and the next
test of the run passes.
"""

from __future__ import annotations

import pytest
from pathological import (
    INI,
    run_ends,
)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

APPS = {
    "starlette-asyncpg": """
import contextlib

import asyncpg
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from pytest_asyncfaults._address import free_port

DSN = f"postgresql://app@127.0.0.1:{free_port()}/app"  # nothing listens there


async def ok(request):
    return PlainTextResponse("ok")


def make(fails):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        if fails == "startup":
            app.state.pool = await asyncpg.create_pool(DSN)  # the culprit: startup
        yield
        if fails == "shutdown":
            await asyncpg.connect(DSN)  # the culprit: shutdown

    return Starlette(routes=[Route("/", ok)], lifespan=lifespan)
""",
    "quart": """
import asyncio

from quart import Quart


def make(fails):
    app = Quart(__name__)

    @app.route("/")
    async def ok():
        return "ok"

    @app.before_serving
    async def connect():
        if fails == "startup":
            await asyncio.wait_for(asyncio.Event().wait(), 0.01)  # the culprit: startup

    @app.after_serving
    async def disconnect():
        if fails == "shutdown":
            raise RuntimeError("the pool would not close")  # the culprit: shutdown

    return app
""",
    "litestar": """
from litestar import Litestar, get


@get("/")
async def ok() -> str:
    return "ok"


def make(fails):
    def connect():
        if fails == "startup":
            raise ConnectionError("the database is not there")  # the culprit: startup

    def disconnect():
        if fails == "shutdown":
            raise ConnectionError("the database went away")  # the culprit: shutdown

    return Litestar([ok], on_startup=[connect], on_shutdown=[disconnect])
""",
}

EXPECTED = {
    ("starlette-asyncpg", "startup"): "*startup failed: ConnectionRefusedError: *",
    ("starlette-asyncpg", "shutdown"): "*shutdown failed: ConnectionRefusedError: *",
    ("quart", "startup"): "*startup failed: TimeoutError",
    ("quart", "shutdown"): "*shutdown failed: RuntimeError: the pool would not close",
    ("litestar", "startup"): "*startup failed: ConnectionError: the database is not there",
    ("litestar", "shutdown"): "*shutdown failed: ConnectionError: the database went away",
}


@pytest.mark.parametrize(("framework", "phase"), list(EXPECTED))
def test_a_failed_lifespan_is_reported_at_once_with_the_apps_line(
    pytester: pytest.Pytester, backend_args: list[str], framework: str, phase: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(app_module=APPS[framework])
    pytester.makeconftest(
        """
        import pytest
        from app_module import make

        @pytest.fixture
        def asgi_app(request):
            return make(getattr(request, "param", None))
        """
    )
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.parametrize("asgi_app", [{phase!r}], indirect=True)
        @pytest.mark.asyncfaults(startup_timeout=30, shutdown_timeout=30)
        async def test_failing(app_client, tasks):
            assert (await app_client.get("/")).status_code == 200

        async def test_the_next_one(app_client, tasks):
            assert (await app_client.get("/")).status_code == 200
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=0.0,
        lines=[
            f"*asyncfaults: the app's lifespan {EXPECTED[framework, phase].lstrip('*')}",
            f"*raised at app_module.py:* in *# the culprit: {phase}`",
        ],
    )
