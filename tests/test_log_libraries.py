"""Apps that log with loguru or structlog: their ERROR records count as logs, as stdlib's do.

The buggy app drops a failed import's exception; the fixed one logs it with
``logger.exception``. With those records unseen, the fixed app would fail
``not_logged`` and ``assert_logged`` could not pass: a false alarm the user
cannot silence but by turning the detector off. structlog is used as it comes
(its own printing loggers, nothing through stdlib logging), with a logger made
and cached at import, before the test.
"""

from __future__ import annotations

import pytest
from pathological import INI

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

APP = """
import asyncio

import pytest
from fastapi import FastAPI
from loguru import logger

running = set()


async def import_rows():
    raise ValueError("bad row 17")


def forget(task):
    running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        pass  # BUG: dropped, nobody hears of it


def report(task):
    running.discard(task)
    try:
        task.result()
    except ValueError:
        logger.exception("import failed")  # logged, with loguru


app = FastAPI()


@app.post("/import/{how}")
async def start_import(how: str):
    task = asyncio.create_task(import_rows())
    running.add(task)
    task.add_done_callback(forget if how == "bug" else report)
    return {"started": True}


@pytest.fixture
def asgi_app():
    return app
"""

TESTS = """
async def test_bug(app_client, tasks):
    await app_client.post("/import/bug")
    await tasks.settle(within=2)


async def test_fixed(app_client, tasks):
    await app_client.post("/import/fixed")
    outcome = await tasks.settle(within=2)
    outcome.assert_logged(ValueError)
    assert "import failed" in [record.getMessage() for record in outcome.error_logs]
"""


STRUCTLOG = """
import structlog

structlog.configure(cache_logger_on_first_use=True)
logger = structlog.get_logger("imports")
logger.info("app module loaded")  # cached now
"""


@pytest.mark.parametrize("library", ["loguru", "structlog"])
def test_a_logging_librarys_records_count_as_logs(
    pytester: pytest.Pytester, backend_args: list[str], library: str
) -> None:
    app = APP if library == "loguru" else APP.replace("from loguru import logger\n", STRUCTLOG)
    pytester.makeini(INI)
    pytester.makeconftest(app)
    pytester.makepyfile(test_imports=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *backend_args, timeout=60)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_bug*", "*[[]not_logged] Task 'Task-*' failed with ValueError: bad row 17*"]
    )
    assert "test_fixed FAILED" not in result.stdout.str()
