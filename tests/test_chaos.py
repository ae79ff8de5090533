"""Chaos scenarios through pytest itself (pytester): one run per scenario file,
the faults on at the body's start, the expectations judged after it, and what
each run came to in the terminal matrix, the JSON report, JUnit XML and the
timeline of a failure.

The inner runs talk to a real echo server on loopback through a proxy of the
plugin's backend (``faults.echo``, declared in the inner ini file), with short
deadlines so the module stays quick.
"""

from __future__ import annotations

import json
import re
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    # For the type only: at run time this module may share a run with the example's
    # tests, whose conftest module then holds the name "conftest".
    from conftest import Peer

pytest_plugins = ["pytester"]

ALL_TYPES = (
    "latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, noop, "
    "pg_login, pg_error, pg_delay, pg_hang, pg_cut, smtp_reply, smtp_delay, smtp_cut"
)

ASYNCIO = "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
INI = (
    "[pytest]\n" + ASYNCIO + "asyncfaults_scenarios = scenarios\n"
    "asyncfaults_proxies =\n    echo={echo}\n"
)
"""The inner runs' ini: scenario files in ./scenarios, the proxy ``echo`` to the echo server."""
QUIET_LOOP = "asyncfaults_blocked_loop = off\n"
"""Added to every inner ini: the scenario alone watches the loop (max_stall_ms),
and a slow first request on a busy machine is no false finding of the blocked-loop check."""

JOBS = '''
"""Background work of the inner tests: a round trip to the echo server through a proxy."""
import asyncio
import logging

log = logging.getLogger("app")
running = set()
held = []


async def ask(proxy, limit=None):
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        writer.write(b"ping")
        async with asyncio.timeout(limit):
            return await reader.readexactly(4)
    finally:
        writer.close()
        await writer.wait_closed()


async def hold(proxy):
    """A round trip, then the connection kept open: what cleaned_up is about."""
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(b"ping")
    await reader.readexactly(4)
    held.append(writer)


def start(coro, *, logged=True):
    """A job kept alive by the app; its failure read, and logged unless it is not."""
    task = asyncio.create_task(coro, name="job")
    running.add(task)

    def done(task):
        running.discard(task)
        if not task.cancelled() and task.exception() is not None and logged:
            log.error("the job failed", exc_info=task.exception())

    task.add_done_callback(done)
    return task
'''

CONFTEST = """
import pytest
from jobs import held


@pytest.fixture
async def close_held():
    yield
    while held:
        held.pop().close()
"""

NO_FAULTS = 'description = "no faults"\n'
"""A scenario file without faults or expectations (an empty one is refused)."""

HEALTHY = """
[expect]
settle = 2
outcome = "completed"
"""

BLACKHOLE = """
description = "the echo server stops answering"

[[faults]]
proxy = "echo"
toxic = "timeout"
attributes = { timeout = 0 }

[expect]
settle = 1
outcome = "failed"
exception = "TimeoutError"
logged = true
cleaned_up = true
"""


def make_project(
    pytester: pytest.Pytester,
    echo: Peer,
    scenarios: dict[str, str],
    tests: dict[str, str],
) -> None:
    """An inner project: its ini, the jobs module, scenario files and test modules.

    The test modules' names are used nowhere else, by no other inner run nor by
    a module of this suite: an in-process run would find that module imported.
    """
    pytester.makeini(INI.format(echo=echo.address) + QUIET_LOOP)
    pytester.makepyfile(jobs=JOBS)
    pytester.makeconftest(CONFTEST)
    for name, text in scenarios.items():
        pytester.makefile(".toml", **{f"scenarios/{name}": text})
    pytester.makepyfile(**{name: textwrap.dedent(source) for name, source in tests.items()})


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--asyncfaults-timeline-dir",
        str(pytester.path / "timelines"),
        *args,
    )


def run_with_report(
    pytester: pytest.Pytester, *args: str
) -> tuple[pytest.RunResult, dict[tuple[str, str], tuple[str, str]]]:
    """A run, and (test, scenario) -> (outcome, reason) from its JSON report."""
    result = run(pytester, "--asyncfaults-report", "report.json", *args)
    document = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    verdicts = {
        (row["test"].rsplit("::", 1)[-1], row["scenario"]): (row["outcome"], row["reason"])
        for row in document["results"]
    }
    return result, verdicts


# -- the matrix: one run per scenario -------------------------------------------------


@pytest.mark.plugin
def test_a_chaos_test_runs_once_per_scenario_under_its_faults(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    scenarios = {
        "healthy": HEALTHY,
        "slow": '[[faults]]\nproxy = "echo"\ntoxic = "latency"\nattributes = { latency = 5 }\n',
        "two_faults": """
            [[faults]]
            proxy = "echo"
            toxic = "latency"

            [[faults]]
            proxy = "echo"
            toxic = "slicer"
            stream = "upstream"
            attributes = { average_size = 2 }
            """,
    }
    tests = {
        "test_ids": """
            import pytest

            @pytest.mark.chaos
            @pytest.mark.asyncfaults(untouched_faults="off")  # no connection: not the point
            async def test_upload(tasks, faults, chaos_scenario, request):
                assert request.node.callspec.id == chaos_scenario.name
                on = sorted(toxic.name for toxic in await faults.echo.toxics())
                assert on == sorted(toxic.spec.name for toxic in chaos_scenario.toxics)

            def test_plain():
                pass
            """
    }
    make_project(pytester, echo_server, scenarios, tests)
    collected = run(pytester, "--collect-only", "-q")
    collected.stdout.fnmatch_lines(
        [
            "test_ids.py::test_upload[[]healthy]",
            "test_ids.py::test_upload[[]slow]",
            "test_ids.py::test_upload[[]two_faults]",
            "test_ids.py::test_plain",
            "4 tests collected*",
        ]
    )
    run(pytester, *backend_args).assert_outcomes(passed=4)
    chosen = run(pytester, "-k", "two_faults", *backend_args)
    chosen.assert_outcomes(passed=1, deselected=3)
    chosen.stdout.fnmatch_lines(["1 passed (1 runs of 1 test x 1 scenario)"])


def test_marker_patterns_choose_scenarios(pytester: pytest.Pytester, echo_server: Peer) -> None:
    names = ("db_down", "db_slow", "smtp_reset", "smtp_slow")
    tests = {
        "test_patterns": """
            import pytest

            @pytest.mark.chaos("db_*", "smtp_reset")
            async def test_some(tasks):
                pass

            @pytest.mark.chaos("smtp_reset", "*_reset")
            async def test_each_once(tasks):
                pass
            """
    }
    make_project(pytester, echo_server, dict.fromkeys(names, NO_FAULTS), tests)
    result = run(pytester, "--collect-only", "-q")
    assert [line for line in result.stdout.lines if line.startswith("test_")] == [
        "test_patterns.py::test_some[db_down]",
        "test_patterns.py::test_some[db_slow]",
        "test_patterns.py::test_some[smtp_reset]",
        "test_patterns.py::test_each_once[smtp_reset]",
    ]


@pytest.mark.parametrize(
    ("marker", "ini", "message"),
    [
        (
            '"web_*"',
            "asyncfaults_scenarios = scenarios\n",
            "test_nomatch.py::test_upload: @pytest.mark.chaos('web_*') matches no scenario: "
            "expected one of db_down, smtp_reset",
        ),
        (
            "3",
            "asyncfaults_scenarios = scenarios\n",
            "test_nomatch.py::test_upload: @pytest.mark.chaos(3) is not valid: expected "
            "scenario names or patterns (db_*)",
        ),
        (
            "",
            "",
            "test_nomatch.py::test_upload is marked chaos, but no scenarios are configured: "
            "pass --asyncfaults-scenarios DIR or set the ini key asyncfaults_scenarios",
        ),
    ],
    ids=["no match", "not a pattern", "no scenarios"],
)
def test_a_marker_that_selects_nothing_stops_the_run_with_its_message(
    pytester: pytest.Pytester, marker: str, ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ASYNCIO}{ini}")
    pytester.makefile(
        ".toml", **{"scenarios/db_down": NO_FAULTS, "scenarios/smtp_reset": NO_FAULTS}
    )
    pytester.makepyfile(
        test_nomatch=f"""
        import pytest

        @pytest.mark.chaos({marker})
        async def test_upload(tasks):
            pass

        def test_other():
            pass
        """
    )
    result = run(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting test_nomatch.py*", message])
    output = result.stdout.str()
    assert "Traceback" not in output
    assert "site-packages" not in output  # no frames of pytest's or pluggy's


@pytest.mark.parametrize("given_by", ["ini", "option"])
def test_a_bad_scenario_file_stops_the_run_at_start(
    pytester: pytest.Pytester, given_by: str
) -> None:
    ini = "asyncfaults_scenarios = checks\n" if given_by == "ini" else ""
    pytester.makeini(f"[pytest]\n{ASYNCIO}{ini}")
    pytester.makefile(".toml", **{"checks/fine": HEALTHY})
    typo = pytester.makefile(
        ".toml", **{"checks/typo": '[[faults]]\nproxy = "echo"\ntoxic = "timeoutt"\n'}
    )
    pytester.makepyfile(
        test_typo="""
        import pytest

        @pytest.mark.chaos
        async def test_upload(tasks):
            pass

        def test_other():
            pass
        """
    )
    args = () if given_by == "ini" else ("--asyncfaults-scenarios", "checks")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    shown = typo if given_by == "ini" else typo.relative_to(pytester.path)
    result.stderr.fnmatch_lines(
        [f"ERROR: {shown}: faults[0].toxic='timeoutt' is not valid: expected one of {ALL_TYPES}"]
    )
    assert "Traceback" not in result.stderr.str()
    assert "passed" not in result.stdout.str()


@pytest.mark.plugin
def test_an_unknown_proxy_fails_that_test_naming_file_and_key(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    scenarios = {
        "healthy": HEALTHY,
        "typo_proxy": '[[faults]]\nproxy = "echoo"\ntoxic = "latency"\n',
    }
    tests = {
        "test_proxy": """
            import pytest

            @pytest.mark.chaos
            async def test_upload(tasks):
                pass
            """
    }
    make_project(pytester, echo_server, scenarios, tests)
    result, verdicts = run_with_report(pytester, *backend_args)
    result.assert_outcomes(passed=1, failed=1)
    message = (
        f"{pytester.path / 'scenarios' / 'typo_proxy.toml'}: faults[0].proxy='echoo' is not a "
        f"proxy of this test: expected one of echo (declare it in asyncfaults_proxies, or use "
        f"the fixture that makes it: postgres_server, smtp_server)"
    )
    result.stdout.fnmatch_lines([message])
    outcome, reason = verdicts["test_upload", "typo_proxy"]
    assert outcome == "failed"
    assert message.startswith(reason.removesuffix("..."))
    assert verdicts["test_upload", "healthy"] == ("passed", "")


# -- the expectations -----------------------------------------------------------------


@pytest.mark.plugin
def test_expectations_met_pass_and_unmet_fail_with_the_reason(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    scenarios = {
        "healthy": HEALTHY + "cleaned_up = true\n",
        "blackhole": BLACKHOLE,
        "blackhole_completes": BLACKHOLE.replace('"failed"', '"completed"').replace(
            'exception = "TimeoutError"\n', ""
        ),
        "blackhole_resets": BLACKHOLE.replace('"TimeoutError"', '"ConnectionError"'),
    }
    tests = {
        "test_expect": """
            import pytest
            from jobs import ask, hold, start

            @pytest.mark.chaos
            async def test_careful(tasks, faults):
                start(ask(faults.echo, limit=0.3))

            @pytest.mark.chaos("blackhole")
            async def test_silent(tasks, faults):
                start(ask(faults.echo, limit=0.3), logged=False)

            @pytest.mark.chaos("healthy")
            async def test_holder(tasks, faults, close_held):
                start(hold(faults.echo))
            """
    }
    make_project(pytester, echo_server, scenarios, tests)
    result, verdicts = run_with_report(pytester, *backend_args)
    assert verdicts == {
        ("test_careful", "healthy"): ("passed", ""),
        ("test_careful", "blackhole"): ("passed", ""),
        ("test_careful", "blackhole_completes"): (
            "failed",
            "expected completed, 'job' failed with TimeoutError",
        ),
        ("test_careful", "blackhole_resets"): (
            "failed",
            "expected a ConnectionError, got: 'job' failed with TimeoutError",
        ),
        ("test_silent", "blackhole"): ("failed", "TimeoutError of 'job' not logged"),
        ("test_holder", "healthy"): ("failed", "connections left: echo 1 open (was 0)"),
    }
    result.assert_outcomes(passed=2, failed=4)
    source = pytester.path / "scenarios" / "blackhole_completes.toml"
    result.stdout.fnmatch_lines(
        [
            f"asyncfaults: scenario 'blackhole_completes' ({source}): 1 expectation not met",
            "  faults: echo: timeout downstream timeout=0",
            "  expected: completes, within 1 s, logged, cleaned up",
            "expected every background task to complete, but:",
            "  - Task 'job', a task of the test, created at jobs.py:* in start: *: failed with "
            "TimeoutError* after 0.3* s",
        ]
    )


@pytest.mark.plugin
def test_a_hang_fails_with_the_hang_report_naming_the_fault(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    scenarios = {"blackhole": BLACKHOLE.replace("settle = 1", "settle = 0.5")}
    tests = {
        "test_hang": """
            import pytest
            from jobs import ask, start

            @pytest.mark.chaos
            async def test_patient(tasks, faults):
                start(ask(faults.echo))  # no limit of its own: waits for ever

            @pytest.mark.chaos
            async def test_settles_in_its_body(tasks, faults):
                start(ask(faults.echo))
                await tasks.settle()  # the scenario's deadline by default
            """
    }
    make_project(pytester, echo_server, scenarios, tests)
    result, verdicts = run_with_report(pytester, *backend_args)
    result.assert_outcomes(failed=2)
    hang = ("failed", "hang: 1 task still pending after 0.5 s")
    assert verdicts == {
        ("test_patient", "blackhole"): hang,
        ("test_settles_in_its_body", "blackhole"): hang,
    }
    for test in ("test_patient", "test_settles_in_its_body"):
        result.stdout.fnmatch_lines(
            [
                f"*_ {test}[[]blackhole] _*",
                "asyncfaults: 1 background task still pending after 0.5 s (the settle deadline)",
                "[[]1] Task 'job', a task of the test, created at jobs.py:* in start: *",
                "    await chain, outermost first:",
                "      > jobs.py:* in ask",
                "Faults active now:",
                "  echo (127.0.0.1:* -> 127.0.0.1:*): timeout_downstream (timeout downstream "
                "timeout=0); 1 open connection(s)",
                "Cancelled 1 stuck task so the run goes on.",
            ]
        )


STALL_APP = """
    import asyncio
    import time

    import pytest
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def block(request):
        time.sleep(0.3)  # blocks the event loop
        return PlainTextResponse("ok")

    async def wait(request):
        await asyncio.sleep(0.3)
        return PlainTextResponse("ok")

    @pytest.fixture
    def asgi_app():
        return Starlette(routes=[Route("/block", block), Route("/wait", wait)])

    @pytest.mark.chaos
    async def test_blocking(app_client):
        assert (await app_client.get("/block")).status_code == 200

    @pytest.mark.chaos
    async def test_awaiting(app_client):
        assert (await app_client.get("/wait")).status_code == 200
    """


@pytest.mark.plugin
def test_max_stall_ms_catches_a_blocked_loop_and_not_an_awaited_sleep(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    # The ini turns the blocked-loop detector off: the scenario alone watches the loop.
    make_project(
        pytester,
        echo_server,
        {"stall_200": "[expect]\nmax_stall_ms = 200\n"},
        {"test_stall": STALL_APP},
    )
    result, verdicts = run_with_report(pytester, *backend_args)
    result.assert_outcomes(passed=1, failed=1)
    assert verdicts["test_awaiting", "stall_200"] == ("passed", "")
    outcome, reason = verdicts["test_blocking", "stall_200"]
    assert outcome == "failed"
    assert re.fullmatch(r"loop stalled 0\.\d\d s \(max 200 ms\)", reason), reason
    stalled = float(reason.split()[2])
    assert 0.28 <= stalled < 1.0
    line = STALL_APP.splitlines().index("        time.sleep(0.3)  # blocks the event loop")
    result.stdout.fnmatch_lines(
        [
            "  expected: no loop stall over 200 ms",
            "expected no event-loop stall over 200 ms, but:",
            f"  - 0.* s at test_stall.py:{line} in block: `time.sleep(0.3)  # blocks the event "
            f"loop`",
        ]
    )


LEAKY_APP = """
    import asyncio
    import contextlib

    import pytest
    from starlette.applications import Starlette

    async def tick():
        while True:
            await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        asyncio.create_task(tick(), name="ticker")  # never stopped
        yield

    @pytest.fixture
    def asgi_app():
        return Starlette(lifespan=lifespan)

    @pytest.mark.chaos
    @pytest.mark.asyncfaults(leaks="off")
    async def test_leaks_off(app_client):
        await app_client.get("/")

    @pytest.mark.chaos
    async def test_leaks_fail(app_client):
        await app_client.get("/")
    """


@pytest.mark.plugin
def test_no_leaks_overrides_the_leaks_setting_both_ways(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    scenarios = {
        "strict": "[expect]\nno_leaks = true\n",
        "lenient": "[expect]\nno_leaks = false\n",
        "unsaid": NO_FAULTS,
    }
    make_project(pytester, echo_server, scenarios, {"test_leaky": LEAKY_APP})
    result, verdicts = run_with_report(pytester, *backend_args)
    leak = "[leaks] Task 'ticker' of the app's lifespan was still running after the lifespan"
    outcomes = {key: outcome for key, (outcome, _) in verdicts.items()}
    assert outcomes == {
        ("test_leaks_off", "strict"): "failed",  # the scenario over the setting
        ("test_leaks_off", "lenient"): "passed",
        ("test_leaks_off", "unsaid"): "passed",  # the setting, when the scenario says nothing
        ("test_leaks_fail", "strict"): "failed",
        ("test_leaks_fail", "lenient"): "passed",  # the scenario over the setting
        ("test_leaks_fail", "unsaid"): "failed",
    }
    for key, (outcome, reason) in verdicts.items():
        assert outcome == "passed" or reason.startswith(leak), (key, reason)
    result.assert_outcomes(passed=3, failed=3)


STEPS = """
description = "healthy, then 200 ms of latency from 0.2 s, then healthy again from 0.6 s"

[[steps]]
at = 0
faults = []

[[steps]]
at = 200
faults = [{ proxy = "timed", toxic = "latency", attributes = { latency = 200 } }]

[[steps]]
at = 600
faults = []
"""

STEPS_TEST = """
    import asyncio
    import time

    import pytest

    @pytest.fixture
    async def timed(faults):
        return await faults.create("timed", "{echo}")

    async def round_trip(proxy):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        try:
            started = time.monotonic()
            writer.write(b"ping")
            await asyncio.wait_for(reader.readexactly(4), 5)
            return time.monotonic() - started
        finally:
            writer.close()
            await writer.wait_closed()

    @pytest.mark.chaos
    async def test_steps(tasks, timed):
        began = time.monotonic()  # the scenario's faults went on just before
        probes = []
        for at in (0.05, 0.3, 0.75):
            await asyncio.sleep(max(0.0, at - (time.monotonic() - began)))
            sent = time.monotonic() - began
            probes.append((sent, await round_trip(timed)))
        print("probes (sent, round trip):", probes)
        (early, early_rtt), (mid, mid_rtt), (late, late_rtt) = probes
        # Each probe went out in its phase (100 ms or more from its edges)...
        assert early < 0.1 and 0.2 < mid < 0.4 and late > 0.7, probes
        # ...and met that phase's network: healthy, 200 ms late, healthy again.
        assert early_rtt < 0.15, probes
        assert 0.195 <= mid_rtt < 0.4, probes
        assert late_rtt < 0.15, probes
    """


@pytest.mark.plugin
def test_timed_steps_apply_at_their_times(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    make_project(
        pytester,
        echo_server,
        {"latency_window": STEPS},
        {"test_timed": STEPS_TEST.replace("{echo}", echo_server.address)},
    )
    result = run(pytester, "--asyncfaults-report", "report.json", "-s", *backend_args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*probes (sent, round trip): [[](*"])
    document = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    (scenario,) = document["scenarios"]
    assert scenario["faults"] == [
        "timed: latency downstream latency=200 jitter=0 (from 200 ms, for 400 ms)"
    ]


# -- what a run reports ---------------------------------------------------------------

REPORTED = """
    import pytest
    from jobs import ask, start

    @pytest.mark.chaos
    async def test_careful(tasks, faults):
        start(ask(faults.echo, limit=0.3))

    @pytest.mark.chaos
    async def test_silent(tasks, faults):
        start(ask(faults.echo, limit=0.3), logged=False)

    @pytest.mark.chaos("healthy")
    async def test_skips(tasks):
        pytest.skip("no mail server here")

    def test_plain():
        pass
    """


def properties(testcase: ElementTree.Element) -> dict[str, str]:
    return {
        str(prop.get("name")): str(prop.get("value"))
        for prop in testcase.iterfind("properties/property")
    }


@pytest.mark.plugin
def test_the_matrix_the_json_report_and_junit_say_the_same(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    scenarios = {"healthy": HEALTHY, "blackhole": BLACKHOLE}
    make_project(pytester, echo_server, scenarios, {"test_report": REPORTED})
    report = pytester.path / "out" / "chaos.json"
    report.parent.mkdir()  # a report goes into a directory that exists, never one it makes
    result = run(
        pytester,
        "--asyncfaults-seed",
        "7",
        "--asyncfaults-report",
        "out/chaos.json",
        "--junitxml",
        "junit.xml",
        *backend_args,
    )
    result.assert_outcomes(passed=4, failed=1, skipped=1)
    not_logged = "TimeoutError of 'job' not logged"

    # The terminal: scenarios down, tests across, each failure's reason below.
    result.stdout.re_match_lines(
        [
            r"=+ asyncfaults chaos matrix =+$",
            r"scenario   test_careful  test_silent  test_skips$",
            r"blackhole  passed        FAILED       -$",
            r"healthy    passed        passed       skipped$",
            r"$",
            rf"FAILED blackhole x test_silent: {not_logged}$",
            r"$",
            r"test_careful = test_report.py::test_careful$",
            r"test_silent = test_report.py::test_silent$",
            r"test_skips = test_report.py::test_skips$",
            r"3 passed, 1 failed, 1 skipped \(5 runs of 3 tests x 2 scenarios\)$",
            rf"asyncfaults: chaos report written to {re.escape(str(report))}$",
        ],
        consecutive=True,
    )

    # The JSON report.
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["version"] == 1
    assert document["seed"] == 7
    assert document["scenarios"] == [
        {
            "name": "blackhole",
            "file": str(pytester.path / "scenarios" / "blackhole.toml"),
            "description": "the echo server stops answering",
            "faults": ["echo: timeout downstream timeout=0"],
            "expect": "fails with TimeoutError, within 1 s, logged, cleaned up",
        },
        {
            "name": "healthy",
            "file": str(pytester.path / "scenarios" / "healthy.toml"),
            "description": "",
            "faults": [],
            "expect": "completes, within 2 s",
        },
    ]
    results = document["results"]
    assert [(row["test"], row["scenario"], row["outcome"], row["reason"]) for row in results] == [
        ("test_report.py::test_careful", "blackhole", "passed", ""),
        ("test_report.py::test_careful", "healthy", "passed", ""),
        ("test_report.py::test_silent", "blackhole", "failed", not_logged),
        ("test_report.py::test_silent", "healthy", "passed", ""),
        ("test_report.py::test_skips", "healthy", "skipped", "no mail server here"),
    ]
    assert [row["nodeid"] for row in results] == [
        f"{row['test']}[{row['scenario']}]" for row in results
    ]
    assert all(0 < row["duration"] < 10 for row in results)
    # The blackholed careful job waited its 0.3 s limit: the duration is the test's own.
    assert results[0]["duration"] >= 0.3
    timeline = results[2]["timeline"]
    assert timeline is not None
    assert Path(timeline).is_file()
    assert [row["timeline"] for row in results if row is not results[2]] == [None] * 4
    assert document["summary"] == {"passed": 3, "failed": 1, "error": 0, "skipped": 1}

    # JUnit XML: the same, as properties of each test case.
    cases = {
        str(case.get("name")): properties(case)
        for case in ElementTree.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    }
    assert cases["test_silent[blackhole]"] == {
        "asyncfaults_scenario": "blackhole",
        "asyncfaults_test": "test_report.py::test_silent",
        "asyncfaults_result": "failed",
        "asyncfaults_reason": not_logged,
        "asyncfaults_timeline": timeline,
    }
    assert cases["test_careful[healthy]"] == {
        "asyncfaults_scenario": "healthy",
        "asyncfaults_test": "test_report.py::test_careful",
        "asyncfaults_result": "passed",
        "asyncfaults_reason": "",
    }
    assert cases["test_skips[healthy]"]["asyncfaults_result"] == "skipped"
    assert cases["test_plain"] == {}
    assert len(cases) == 6


@pytest.mark.plugin
def test_a_failure_writes_its_timeline_and_says_where(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    tests = {
        "test_pictured": """
            import asyncio
            import logging

            import pytest

            async def import_rows():
                raise ValueError("bad row 17")

            async def failing():
                try:
                    await asyncio.create_task(import_rows(), name="import")
                except ValueError:
                    logging.getLogger("app").exception("import failed")

            @pytest.mark.chaos
            async def test_unmet(tasks):
                await failing()
                await tasks.settle()

            @pytest.mark.chaos
            async def test_asserts(tasks):
                assert 17 == 18, "half an upload"
            """
    }
    make_project(pytester, echo_server, {"completes": HEALTHY}, tests)
    result = run(pytester, *backend_args)
    result.assert_outcomes(failed=2)
    timelines = pytester.path / "timelines"
    unmet = timelines / "test_pictured.py_test_unmet_completes.html"
    asserts = timelines / "test_pictured.py_test_asserts_completes.html"
    # An unmet expectation: the path ends the failure report.
    result.stdout.fnmatch_lines(
        [
            "expected every background task to complete, but:",
            "  - Task 'import', *: failed with ValueError: bad row 17 after *",
            f"Timeline of this test: {unmet} (open it in a browser)",
        ]
    )
    # A plain assertion: pytest's own report, then the path in a section of its own.
    result.stdout.fnmatch_lines(
        ["E * AssertionError: half an upload", "*asyncfaults timeline*", str(asserts)]
    )
    for path in (unmet, asserts):
        document = path.read_text(encoding="utf-8")
        assert document.startswith("<!DOCTYPE html>")
        assert "<svg" in document
        assert "completes" in document  # the scenario, named in the picture
    assert "half an upload" in asserts.read_text(encoding="utf-8")


@pytest.mark.plugin
def test_a_chaos_test_that_the_harness_cannot_wrap_fails_clearly(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str]
) -> None:
    tests = {
        "test_unwrapped": """
            import pytest

            @pytest.mark.chaos
            async def test_no_tasks(faults):
                pass

            @pytest.mark.chaos
            def test_not_async(tasks):
                pass

            async def test_asks_for_the_scenario(chaos_scenario):
                pass
            """
    }
    make_project(pytester, echo_server, {"healthy": HEALTHY}, tests)
    result, verdicts = run_with_report(pytester, *backend_args)
    result.assert_outcomes(failed=2, errors=1)
    why = (
        "is marked chaos, but the scenario cannot run around it: a chaos test is an async def "
        "that uses the tasks or app_client fixture"
    )
    result.stdout.fnmatch_lines(
        [
            f"test_unwrapped.py::test_no_tasks[[]healthy] {why}",
            f"test_unwrapped.py::test_not_async[[]healthy] {why}",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_asks_for_the_scenario*",
            "the chaos_scenario fixture is given by @pytest.mark.chaos: mark the test instead "
            "of asking for the fixture",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert {key: outcome for key, (outcome, _) in verdicts.items()} == {
        ("test_no_tasks", "healthy"): "failed",
        ("test_not_async", "healthy"): "failed",
    }
    assert verdicts["test_no_tasks", "healthy"][1].startswith(
        "test_unwrapped.py::test_no_tasks[healthy] is marked chaos"
    )
