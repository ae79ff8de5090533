"""The same bug gives the same outcome on every framework: a background job that fails.

Starlette runs a response's background tasks inside the ASGI call; Litestar does
too, but re-raises the job's error as its own ("Exception caught after response
started") from the app's; Quart's ``add_background_task`` runs the job in a task
of its own that catches the error, logs it and returns. Each way,
``assert_failed`` and ``assert_logged`` see the app's ``ValueError``.
"""

from __future__ import annotations

import pytest
from pathological import INI

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

JOB = """
async def job():
    raise ValueError("row 17 is bad")  # the app's bug
"""

APPS = {
    "starlette": """
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def signup(request):
    return PlainTextResponse("ok", background=BackgroundTask(job))


app = Starlette(routes=[Route("/signup", signup)])
""",
    "litestar": """
from litestar import Litestar, get
from litestar.background_tasks import BackgroundTask


@get("/signup", background=BackgroundTask(job))
async def signup() -> str:
    return "ok"


app = Litestar([signup])
""",
    "quart": """
from quart import Quart

app = Quart(__name__)


@app.route("/signup")
async def signup():
    app.add_background_task(job)
    return "ok"
""",
}

TESTS = """
import pytest
from app_module import app


@pytest.fixture
def asgi_app():
    return app


async def test_the_job_failed_and_was_logged(app_client, tasks):
    assert (await app_client.get("/signup")).text == "ok"
    outcome = await tasks.settle(within=2)
    failed = outcome.assert_failed(ValueError)
    outcome.assert_logged(ValueError)
    print("FAILED WITH", type(failed.exception).__name__)
"""


@pytest.mark.parametrize("framework", list(APPS))
def test_a_failed_background_job_is_the_same_outcome_on_every_framework(
    pytester: pytest.Pytester, backend_args: list[str], framework: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(app_module=JOB + APPS[framework])
    pytester.makepyfile(test_job=TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", *backend_args, timeout=60
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*FAILED WITH *"])
