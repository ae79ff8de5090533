"""Each silent-failure detector: a minimal bug from the seed articles fails with
a message naming the bug class, the task and the line to fix; its corrected
twin passes. Run through pytest itself, one process per run (as users run it:
the in-process pytester shares framework state between runs)."""

from __future__ import annotations

import re
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

INI = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"

CASES = {
    "never_retrieved": (
        """
        import asyncio
        import pytest

        async def send_notification():
            raise ConnectionError("smtp down")

        async def test_bug(tasks):
            task = asyncio.create_task(send_notification())  # BUG: never awaited
            await asyncio.sleep(0.05)

        async def test_fixed(tasks):
            task = asyncio.create_task(send_notification())
            with pytest.raises(ConnectionError):
                await task
        """,
        [
            "*[never_retrieved] Task 'Task-*' failed with ConnectionError: smtp down, and nobody "
            "awaited it or read its exception*",
            "*created at {file}:{line:BUG: never awaited} in test_bug: `task = asyncio.create*",
        ],
    ),
    "not_logged": (
        """
        import asyncio
        import logging

        import pytest
        from fastapi import FastAPI

        log = logging.getLogger("app")
        running = set()

        async def import_rows():
            raise ValueError("bad row 17")

        def forget(task):
            running.discard(task)
            try:
                task.result()
            except ValueError:
                pass  # BUG: swallowed without a trace

        def report(task):
            running.discard(task)
            try:
                task.result()
            except ValueError:
                log.exception("import failed")

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

        async def test_bug(app_client, tasks):
            await app_client.post("/import/bug")
            await tasks.settle(within=2)

        async def test_fixed(app_client, tasks):
            await app_client.post("/import/fixed")
            (await tasks.settle(within=2)).assert_failed(ValueError)
        """,
        [
            "*[not_logged] Task 'Task-*' failed with ValueError: bad row 17, and no ERROR log "
            "record carries it*",
            "*created at {file}:{line:task = asyncio.create_task(import_rows())} in start_import*",
        ],
    ),
    "swallowed_cancel": (
        """
        import asyncio

        async def stubborn():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return "ignored"  # BUG: the cancellation goes nowhere

        async def polite():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise

        async def test_bug(tasks):
            task = asyncio.create_task(stubborn())
            await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.wait([task])

        async def test_fixed(tasks):
            task = asyncio.create_task(polite())
            await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.wait([task])
        """,
        [
            "*[swallowed_cancel] Task 'Task-*' was cancelled (1 request) and returned normally*",
            "*caught at: {file}:{line:except asyncio.CancelledError:} "
            "(except clauses that catch it and do not re-raise)*",
            "*created at {file}:{line:task = asyncio.create_task(stubborn())} in test_bug*",
        ],
    ),
    "never_awaited": (
        """
        import pytest
        from fastapi import BackgroundTasks, FastAPI

        async def process_csv(path):
            return path

        app = FastAPI()

        @app.post("/bug")
        async def upload_bug(background: BackgroundTasks):
            background.add_task(process_csv("data.csv"))  # BUG: a coroutine, not a function
            return {}

        @app.post("/fixed")
        async def upload_fixed(background: BackgroundTasks):
            background.add_task(process_csv, "data.csv")
            return {}

        @pytest.fixture
        def asgi_app():
            return app

        async def test_bug(app_client, tasks):
            await app_client.post("/bug")
            await tasks.settle(within=2)

        async def test_fixed(app_client, tasks):
            await app_client.post("/fixed")
            (await tasks.settle(within=2)).assert_completed()
        """,
        [
            "*[never_awaited] coroutine 'process_csv' was created and never awaited*",
            "*created at {file}:{line:BUG: a coroutine} in upload_bug: "
            '`background.add_task(process_csv("data.csv"))*',
        ],
    ),
    "lost": (
        """
        import asyncio
        import gc

        async def job(done):
            await done  # nothing else holds the task or this future

        async def test_bug(tasks):
            asyncio.create_task(job(asyncio.get_running_loop().create_future()))  # BUG
            await asyncio.sleep(0.01)
            gc.collect()

        async def test_fixed(tasks):
            running = set()
            done = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(job(done))
            running.add(task)
            task.add_done_callback(running.discard)
            await asyncio.sleep(0.01)
            gc.collect()
            done.set_result(None)
            await task
        """,
        [
            "*[lost] Task 'Task-*' was garbage-collected while still pending*",
            "*created at {file}:{line:  # BUG} in test_bug*",
        ],
    ),
    "leaks": (
        """
        import asyncio
        import contextlib

        import pytest
        from starlette.applications import Starlette

        async def refresh_metrics():
            while True:
                await asyncio.sleep(0.05)

        @contextlib.asynccontextmanager
        async def leaky(app):
            asyncio.create_task(refresh_metrics(), name="metrics")  # BUG: never stopped
            yield

        @contextlib.asynccontextmanager
        async def tidy(app):
            task = asyncio.create_task(refresh_metrics(), name="metrics")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        @pytest.fixture
        def asgi_app(request):
            return Starlette(lifespan=leaky if request.node.name == "test_bug" else tidy)

        async def test_bug(app_client):
            pass

        async def test_fixed(app_client):
            pass
        """,
        [
            "*[leaks] Task 'metrics' of the app's lifespan was still running after the lifespan "
            "shut down*",
            "*created at {file}:{line:BUG: never stopped} in leaky*",
        ],
    ),
    "blocked_loop": (
        """
        import asyncio
        import time

        import pytest
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def report_bug(request):
            time.sleep(0.3)  # BUG: blocks the event loop
            return PlainTextResponse("ok")

        async def report_fixed(request):
            await asyncio.sleep(0.3)
            return PlainTextResponse("ok")

        @pytest.fixture
        def asgi_app():
            return Starlette(routes=[Route("/bug", report_bug), Route("/fixed", report_fixed)])

        async def test_bug(app_client):
            await app_client.get("/bug")

        async def test_fixed(app_client):
            await app_client.get("/fixed")
        """,
        [
            "*[blocked_loop] *the event loop was blocked for 0.* s at "
            "{file}:{line:BUG: blocks} in report_bug*",
        ],
    ),
    "abandoned": (
        """
        import asyncio
        import pytest

        async def fetch_orders():
            await asyncio.sleep(0.2)
            return []

        async def fetch_user():
            raise LookupError("no such user")

        async def test_bug(tasks):
            with pytest.raises(LookupError):
                await asyncio.gather(fetch_orders(), fetch_user())  # BUG: sibling abandoned
            await asyncio.sleep(0.3)

        async def test_fixed(tasks):
            results = await asyncio.gather(fetch_orders(), fetch_user(), return_exceptions=True)
            assert isinstance(results[1], LookupError)
        """,
        [
            "*[abandoned] asyncio.gather failed with LookupError: no such user and left 1 sibling "
            "task(s) running that nobody awaits*",
            "*gather at {file}:{line:BUG: sibling} in test_bug*",
        ],
    ),
}


def quiet_loop(detector: str) -> str:
    """Only the blocked-loop case watches the loop: elsewhere a slow first request or a
    gc.collect() on this busy machine would be a true but unrelated finding."""
    return "" if detector == "blocked_loop" else "asyncfaults_blocked_loop = off\n"


@pytest.mark.parametrize("detector", list(CASES))
def test_bug_fails_and_its_fix_passes(
    pytester: pytest.Pytester, detector: str, backend_args: list[str]
) -> None:
    source, expected = CASES[detector]
    source = textwrap.dedent(source)
    pytester.makeini(INI + quiet_loop(detector))
    # One module name per case: a name seen by an earlier run could come back
    # from the import cache.
    pytester.makepyfile(**{f"test_{detector}": source})
    lines = source.splitlines()
    for marker in re.findall(r"\{line:([^}]*)\}", "".join(expected)):
        # makepyfile strips the leading newline: line 1 is the first line of code.
        number = next(index for index, text in enumerate(lines) if marker in text)
        expected = [line.replace(f"{{line:{marker}}}", str(number)) for line in expected]
    expected = [line.replace("{file}", f"test_{detector}.py") for line in expected]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *backend_args)
    result.assert_outcomes(passed=1, failed=1)
    # "[" opens a character class in fnmatch patterns: match it literally.
    result.stdout.fnmatch_lines(["*test_bug*", *(line.replace("[", "[[]") for line in expected)])
    assert "test_fixed FAILED" not in result.stdout.str()


@pytest.mark.parametrize("detector", list(CASES))
def test_each_detector_can_warn_or_be_off(
    pytester: pytest.Pytester, detector: str, backend_args: list[str]
) -> None:
    source, _ = CASES[detector]
    for policy in ("off", "warn"):
        pytester.makeini(INI + quiet_loop(detector) + f"asyncfaults_{detector} = {policy}\n")
        for old in pytester.path.glob("test_*.py"):
            old.unlink()
        pytester.makepyfile(**{f"test_{detector}_{policy}": textwrap.dedent(source)})
        # This run treats warnings as errors; the inner run must show them as warnings.
        shown = "always::pytest_asyncfaults.AsyncFaultsWarning"
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", shown, *backend_args)
        if policy == "off":
            result.assert_outcomes(passed=2)
        else:
            result.assert_outcomes(passed=2, warnings=1)
            result.stdout.fnmatch_lines(
                ["*AsyncFaultsWarning: asyncfaults: 1 silent failure found*", f"*[[]{detector}]*"]
            )


CLEAN_APP = """
import asyncio
import contextlib
import logging

import pytest
from fastapi import BackgroundTasks, FastAPI

log = logging.getLogger("clean")
running: set[asyncio.Task] = set()


def keep(task):
    running.add(task)
    task.add_done_callback(running.discard)


async def fetch(n):
    await asyncio.sleep(0.01 * n)
    return n


async def guarded_write():
    # shield: the write finishes even if the caller is cancelled.
    await asyncio.shield(asyncio.sleep(0.02))


async def nightly_report():
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(1)
    except TimeoutError:
        log.warning("report took too long, skipped")


async def send_mail(to):
    try:
        async with asyncio.timeout(0.5):
            await asyncio.sleep(0.02)
    except TimeoutError:
        log.exception("mail to %s timed out", to)
        raise


@contextlib.asynccontextmanager
async def lifespan(app):
    ticker = asyncio.create_task(asyncio.sleep(3600), name="ticker")
    yield
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker


app = FastAPI(lifespan=lifespan)


@app.post("/order")
async def order(background: BackgroundTasks):
    async with asyncio.TaskGroup() as group:
        first = group.create_task(fetch(1))
        second = group.create_task(fetch(2))
    keep(asyncio.create_task(guarded_write()))
    keep(asyncio.create_task(nightly_report()))
    background.add_task(send_mail, "a@example.com")
    results = await asyncio.gather(fetch(1), fetch(0), return_exceptions=True)
    return {"sum": first.result() + second.result() + sum(results)}


@pytest.fixture
def asgi_app():
    return app


async def test_clean_app(app_client, tasks):
    response = await app_client.post("/order")
    assert response.json() == {"sum": 4}
    outcome = await tasks.settle(within=5)
    outcome.assert_completed().assert_cleaned_up()


async def test_cancellation_that_is_honoured(tasks):
    task = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
"""


@pytest.mark.parametrize("runner", ["asyncio-strict", "asyncio-auto", "anyio"])
def test_no_false_alarm_on_correct_code(
    pytester: pytest.Pytester, runner: str, backend_args: list[str]
) -> None:
    header = {
        "asyncio-strict": "import pytest\npytestmark = pytest.mark.asyncio\n",
        "asyncio-auto": "",
        "anyio": "import pytest\npytestmark = pytest.mark.anyio\n\n"
        "@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n",
    }[runner]
    mode = "strict" if runner == "asyncio-strict" else "auto"
    asyncio_ini = (
        ""
        if runner == "anyio"
        else f"asyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makeini(f"[pytest]\n{asyncio_ini}filterwarnings = error\n")
    pytester.makepyfile(test_clean=header + CLEAN_APP)
    args = ("-p", "no:asyncio") if runner == "anyio" else ()
    result = pytester.runpytest_subprocess(*args, *backend_args)
    result.assert_outcomes(passed=2)


def test_allow_list_spares_by_task_name_and_by_site(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI + "asyncfaults_blocked_loop = off\nasyncfaults_allow = test_allow.py:8\n")
    pytester.makepyfile(
        test_allow=textwrap.dedent(
            """
            import asyncio
            import pytest

            async def fails():
                raise ConnectionError("smtp down")

            async def test_spared_by_site(tasks):
                task = asyncio.create_task(fails())
                await asyncio.sleep(0.05)

            @pytest.mark.asyncfaults(allow=["mailer-*"])
            async def test_spared_by_name(tasks):
                task = asyncio.create_task(fails(), name="mailer-1")
                await asyncio.sleep(0.05)

            @pytest.mark.asyncfaults(allow=["other-*"])
            async def test_not_spared(tasks):
                task = asyncio.create_task(fails(), name="mailer-2")
                await asyncio.sleep(0.05)
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *backend_args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*[[]never_retrieved] Task 'mailer-2'*"])


def test_bad_setting_in_a_marker_is_one_clear_error(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_bad=textwrap.dedent(
            """
            import pytest

            @pytest.mark.asyncfaults(leaks="sometimes")
            async def test_one(tasks):
                pass

            @pytest.mark.asyncfaults(setle=3)
            async def test_two(tasks):
                pass
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *backend_args)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.asyncfaults(leaks='sometimes') is not valid: expected 'fail', 'warn' "
            "or 'off'*",
            "*@pytest.mark.asyncfaults(setle=...) is not a setting: expected one of settle,*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


SWALLOWED_UNDER_A_TIMEOUT = {
    # The seed article's pattern: the timeout's cancellation becomes a value.
    "wait_for": """
        import asyncio

        async def fetch_rate():
            try:
                await asyncio.sleep(10)  # the rates service, stalled
                return 1.0
            except asyncio.CancelledError:  # BUG: the timeout's cancel becomes a value
                return 0.5

        async def fetch_rate_fixed():
            await asyncio.sleep(10)
            return 1.0

        async def test_bug(tasks):
            assert await asyncio.wait_for(fetch_rate(), 0.05) == 0.5  # the timeout, swallowed

        async def test_fixed(tasks):
            try:
                await asyncio.wait_for(fetch_rate_fixed(), 0.05)
            except TimeoutError:
                pass
        """,
    "timeout": """
        import asyncio

        async def test_bug(tasks):
            async with asyncio.timeout(0.05):  # the timeout, swallowed
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:  # BUG: the deadline goes nowhere
                    pass

        async def test_fixed(tasks):
            try:
                async with asyncio.timeout(0.05):
                    await asyncio.sleep(10)
            except TimeoutError:
                pass
        """,
}


@pytest.mark.parametrize("how", list(SWALLOWED_UNDER_A_TIMEOUT))
def test_a_cancel_swallowed_under_a_timeout_is_found_with_its_except(
    pytester: pytest.Pytester, backend_args: list[str], how: str
) -> None:
    """``wait_for`` on 3.12+ and ``asyncio.timeout()`` cancel inside the same task: the task
    is not left cancelled when the block swallows it, so only the timeout's exit can tell
    (on 3.11, ``wait_for`` runs its awaitable in a task, found as a cancelled task)."""
    source = textwrap.dedent(SWALLOWED_UNDER_A_TIMEOUT[how]).lstrip("\n")
    pytester.makeini(INI)
    pytester.makepyfile(**{f"test_swallowed_{how}": source})
    except_line = next(
        number for number, text in enumerate(source.splitlines(), 1) if "# BUG" in text
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *backend_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_bug*",
            "*[[]swallowed_cancel]*",
            f"*caught at: *test_swallowed_{how}.py:{except_line}*",
        ]
    )
    if how == "timeout" or sys.version_info >= (3, 12):
        timeout_line = next(
            number
            for number, text in enumerate(source.splitlines(), 1)
            if "# the timeout, swallowed" in text
        )
        result.stdout.fnmatch_lines(
            [f"*the timeout at test_swallowed_{how}.py:{timeout_line} in test_bug*expired*"]
        )


def test_a_dropped_tasks_failure_is_never_retrieved_under_anyios_runner(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    """anyio's runner takes the loop's exception handler for itself, so asyncio's "never
    retrieved" line is never logged: the loop's own report of it is read instead."""
    pytester.makeini("[pytest]\nasyncfaults_blocked_loop = off\n")
    pytester.makepyfile(
        test_dropped=textwrap.dedent(
            """
            import asyncio
            import gc
            import pytest

            pytestmark = pytest.mark.anyio


            @pytest.fixture
            def anyio_backend():
                return "asyncio"


            async def send_notification():
                raise ConnectionError("smtp down")


            async def test_bug(tasks):
                asyncio.create_task(send_notification())  # BUG: dropped
                await asyncio.sleep(0.05)
                gc.collect()
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:asyncio", "-p", "no:cacheprovider", *backend_args
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*[[]never_retrieved] Task 'Task-*' failed with ConnectionError: smtp down*",
            "*created at test_dropped.py:18 in test_bug*",
        ]
    )
    assert "[not_logged]" not in result.stdout.str()
