"""The harness never hangs: pathological apps, each in a suite of its own (pytester).

Each case must end on its own, the failing test within its deadline plus the
bounded clean-up, with a report naming the culprit line, and the next test of
the same run must pass. Cases run under pytest-asyncio and, where the runner
matters (the loop's close), under anyio's pytest plugin too.
"""

from __future__ import annotations

import pytest
from pathological import (
    CANCEL_BOUND,
    INI,
    SLACK,
    STUBBORN,
    assert_each_failed_within,
    run_bounded,
    run_ends,
)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin


@pytest.mark.parametrize("runner", ["pytest-asyncio", "anyio"])
def test_a_task_that_swallows_every_cancel_is_reported_once_and_left_behind(
    pytester: pytest.Pytester, backend_args: list[str], runner: str
) -> None:
    pytester.makeini(INI if runner == "pytest-asyncio" else "[pytest]\n")
    pytester.makepyfile(stubborn_app=STUBBORN)
    marker = "" if runner == "pytest-asyncio" else "@pytest.mark.anyio\n"
    pytester.makepyfile(
        "import asyncio\n"
        "import pytest\n"
        "from stubborn_app import stubborn\n\n"
        "@pytest.fixture\n"
        "def anyio_backend():\n"
        "    return 'asyncio'\n\n"
        f"{marker}async def test_stubborn(tasks):\n"
        "    asyncio.create_task(stubborn())\n"
        "    await tasks.settle(within=1)\n\n"
        f"{marker}async def test_the_next_one(tasks):\n"
        "    await asyncio.sleep(0)\n"
    )
    result, took = run_bounded(pytester, backend_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*1 background task still pending after 1 s (the settle deadline)*",
            "*stubborn_app.py:* in stubborn*",
            f"*did not end within {CANCEL_BOUND:g} s of being cancelled: it swallows Cancel*"
            "at stubborn_app.py:*: `except asyncio.CancelledError:  # the culprit*",
        ]
    )
    # the report comes once: the cancel wait is not paid again at the end of the test
    # (counted in the failure itself: with CI set, pytest's summary repeats it whole)
    failures = result.stdout.str().split("short test summary info")[0]
    assert failures.count("it swallows CancelledError") == 1
    assert took < 1.0 + CANCEL_BOUND + 2 * SLACK, f"the run took {took:.1f} s"
    assert_each_failed_within(pytester, 1.0)


@pytest.mark.parametrize("runner", ["pytest-asyncio", "anyio"])
def test_a_body_that_awaits_forever_ends_at_the_test_timeout_with_its_line(
    pytester: pytest.Pytester, backend_args: list[str], runner: str
) -> None:
    pytester.makeini(INI if runner == "pytest-asyncio" else "[pytest]\n")
    marker = "" if runner == "pytest-asyncio" else "@pytest.mark.anyio\n"
    pytester.makepyfile(
        "import asyncio\n"
        "import pytest\n\n"
        "@pytest.fixture\n"
        "def anyio_backend():\n"
        "    return 'asyncio'\n\n"
        f"{marker}@pytest.mark.asyncfaults(timeout=1)\n"
        "async def test_forever(tasks):\n"
        "    await asyncio.Event().wait()  # the culprit: nothing will ever set it\n\n"
        f"{marker}async def test_the_next_one(tasks):\n"
        "    await asyncio.sleep(0)\n"
    )
    run_ends(
        pytester,
        backend_args,
        deadline=1.0,
        lines=[
            "*the test did not end within 1 s (the test timeout)*",
            "*The test itself, outermost first:*",
            "*in test_forever*",
            "*await asyncio.Event().wait()  # the culprit*",
        ],
    )


def test_the_test_timeout_is_a_setting_with_a_clear_error(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncfaults(timeout=0)
        async def test_zero(tasks):
            pass
        """
    )
    result, _ = run_bounded(pytester, backend_args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.asyncfaults(timeout=0) is not valid: expected a number of seconds > 0*"]
    )


def test_work_in_a_thread_shows_the_threads_line(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    """The case study's sync ``send_email`` (smtplib, no timeout) as a FastAPI sync background
    task, the SMTP server blackholed: the report shows the line in the worker thread."""
    pytester.makeini(INI)
    pytester.makepyfile(
        mailer=(
            "import smtplib\n\n"
            "def send_email(host, port, to):\n"
            "    with smtplib.SMTP(host, port) as smtp:  # no timeout: the bug\n"
            "        smtp.sendmail('app@example.com', [to], 'Subject: welcome\\r\\n\\r\\nhi')\n"
        )
    )
    pytester.makeconftest(
        """
        import pytest
        from fastapi import BackgroundTasks, FastAPI
        from mailer import send_email

        def create_app(host, port):
            app = FastAPI()

            @app.post("/signup")
            def signup(background: BackgroundTasks):
                background.add_task(send_email, host, port, "new@example.com")
                return {"ok": True}

            return app

        @pytest.fixture
        def asgi_app(smtp_server, faults):
            return create_app(faults.smtp.host, faults.smtp.port)
        """
    )
    pytester.makepyfile(
        """
        async def test_signup_under_a_mail_stall(app_client, tasks, faults):
            async with faults.smtp.blackhole():
                response = await app_client.post("/signup")
                assert response.status_code == 200
                await tasks.settle(within=1)

        async def test_the_next_one(app_client, tasks, smtp_server):
            assert (await app_client.post("/signup")).status_code == 200
            await tasks.settle(within=10)
            assert len(smtp_server.messages) == 1
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=1.0,
        lines=[
            "*still pending after 1 s (the settle deadline)*",
            "*Threads running the app's code now*",
            "*thread '*':",
            "*> mailer.py:4 in send_email*",
            "*with smtplib.SMTP(host, port) as smtp:  # no timeout: the bug*",
        ],
    )


BLOCKING_APP = """
import socket
import time
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def sleeps(request):
    time.sleep(3600)  # the culprit: a sync sleep on the loop
    return PlainTextResponse("late")


async def spins(request):
    while True:  # the culprit: a CPU loop that never yields
        pass


async def ok(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/sleep", sleeps), Route("/spin", spins), Route("/ok", ok)])


@pytest.fixture
def asgi_app():
    return app
"""


@pytest.mark.parametrize(("path", "culprit"), [("/sleep", "time.sleep(3600)"), ("/spin", "pass")])
def test_a_blocked_loop_is_interrupted_at_the_test_timeout_with_its_line(
    pytester: pytest.Pytester, backend_args: list[str], path: str, culprit: str
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(BLOCKING_APP)
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.asyncfaults(timeout=1)
        async def test_blocked(app_client, tasks):
            await app_client.get("{path}")

        async def test_the_next_one(app_client, tasks):
            assert (await app_client.get("/ok")).text == "ok"
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=1.0,
        lines=[
            "*the event loop was blocked for * s at conftest.py:*",
            f"*{culprit}*",
        ],
    )


def test_a_blocking_test_body_is_interrupted_too(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.asyncfaults(timeout=1)
        async def test_sleeps(tasks):
            time.sleep(3600)  # the culprit, in the test itself

        async def test_the_next_one(tasks):
            pass
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=1.0,
        lines=[
            "*the event loop was blocked for * s at*",
            "*time.sleep(3600)  # the culprit, in the test itself*",
            "*Interrupted past the test's deadline*",
        ],
    )


def test_ten_thousand_tasks_settle_fast_and_the_plugins_time_is_not_the_apps(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import asyncio, time

        async def work():
            await asyncio.sleep(0.01)

        async def stuck():
            await asyncio.Event().wait()  # the culprit of ten thousand

        async def test_many_finish(tasks):
            for index in range(10_000):
                asyncio.create_task(work())
                if index % 500 == 0:
                    await asyncio.sleep(0)  # a fan-out that lets the loop turn
            started = time.monotonic()
            outcome = await tasks.settle(within=10)
            assert len(outcome) == 10_000
            print(f"SETTLED IN {time.monotonic() - started:.2f}")

        async def test_many_stuck(tasks):
            for _ in range(10_000):
                asyncio.create_task(stuck())
            await tasks.settle(within=1)

        async def test_the_next_one(tasks):
            pass
        """
    )
    result, took = run_bounded(pytester, backend_args, "-s")
    result.assert_outcomes(passed=2, failed=1)  # no blocked_loop finding on the plugin's work
    settled = float(result.stdout.str().split("SETTLED IN ")[1].split()[0])
    assert settled < 3.0
    result.stdout.fnmatch_lines(
        [
            "*10000 background tasks still pending after 1 s*",
            "*and 9999 more task(s) made at the same line and stuck on the same chain*",
            "*await asyncio.Event().wait()  # the culprit of ten thousand*",
        ]
    )
    assert len(result.stdout.str()) < 100_000  # one entry, not ten thousand
    assert took < 1.0 + CANCEL_BOUND + 3 * SLACK, f"the run took {took:.1f} s"


def test_keyboardinterrupt_or_systemexit_in_an_app_task_fails_that_test_only(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import asyncio

        async def interrupts():
            raise KeyboardInterrupt  # the culprit

        async def exits():
            raise SystemExit(3)  # the other culprit

        async def test_interrupt(tasks):
            asyncio.create_task(interrupts())
            await asyncio.sleep(0.1)

        async def test_exit(tasks):
            asyncio.create_task(exits())
            await asyncio.sleep(0.1)

        async def test_the_next_one(tasks):
            pass
        """
    )
    result, _ = run_bounded(pytester, backend_args)
    result.assert_outcomes(passed=1, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # not "interrupted"
    result.stdout.fnmatch_lines(
        [
            "*KeyboardInterrupt raised in Task *",
            "*raised at test_*.py:4 in interrupts: `raise KeyboardInterrupt  # the culprit`*",
            "*SystemExit raised in Task *",
            "*raised at test_*.py:7 in exits: `raise SystemExit(3)  # the other culprit`*",
        ]
    )
    assert "Traceback" not in result.stderr.str()


def test_a_sync_driver_read_through_a_blackholed_proxy_is_interrupted(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    """A synchronous client on the loop (a sync driver in an ``async def``) reading from a
    blackholed service: the read blocks the loop; past the timeout it is interrupted."""
    pytester.makeini(INI)
    pytester.makeconftest(
        """
        import socket, threading
        import pytest

        @pytest.fixture
        def service():
            server = socket.create_server(("127.0.0.1", 0))
            yield server.getsockname()[1]
            server.close()
        """
    )
    pytester.makepyfile(
        """
        import socket
        import pytest

        @pytest.mark.asyncfaults(timeout=1)
        async def test_sync_read(tasks, faults, service):
            proxy = await faults.create("service", f"127.0.0.1:{service}")
            async with proxy.blackhole():
                conn = socket.create_connection((proxy.host, proxy.port))
                conn.recv(100)  # the culprit: a sync read on the loop, no timeout

        async def test_the_next_one(tasks):
            pass
        """
    )
    run_ends(
        pytester,
        backend_args,
        deadline=1.0,
        lines=[
            "*the event loop was blocked for * s at*",
            "*conn.recv(100)  # the culprit*",
        ],
    )


@pytest.mark.parametrize("func_only", [False, True])
def test_with_pytest_timeout_the_report_comes_first(
    pytester: pytest.Pytester, backend_args: list[str], func_only: bool
) -> None:
    """pytest-timeout's own report is a stack dump that ends the test (or the run): the
    harness keeps its deadline inside pytest-timeout's, so its report comes first."""
    pytester.makeini(INI + f"timeout = 4\ntimeout_func_only = {str(func_only).lower()}\n")
    pytester.makepyfile(
        """
        import asyncio

        async def test_forever(tasks):
            await asyncio.Event().wait()  # the culprit: nothing will ever set it

        async def test_the_next_one(tasks, faults):
            await asyncio.sleep(0.5)  # ordinary work, well inside both bounds
        """
    )
    result = run_ends(
        pytester,
        backend_args,
        deadline=2.5,
        lines=[
            "*the test did not end within * s (the test timeout, inside pytest-timeout's 4 s)*",
            "*await asyncio.Event().wait()  # the culprit*",
        ],
    )
    assert "+ Timeout +" not in result.stdout.str()
