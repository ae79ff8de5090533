"""What the never-hang suites share: the inner project's ini, the bounds, a bounded run.

Each case runs a user's suite in a pytest of its own (a subprocess, so that a
regression that hangs fails the case at ``RUN_BOUND`` instead of hanging this
suite) and times it twice: each failing test, as pytest timed it (its call and
tear-down: a session's first set-up starts the shared servers), must end within
its deadline plus ``ENDED_WITHIN``; the whole run within that plus ``SLACK`` for
pytest's own start on a loaded machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Final

import inner_timing
import pytest

from pytest_asyncfaults._tasks._monitor import CANCEL_BOUND as CANCEL_BOUND

INI: Final = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

STUBBORN: Final = """
import asyncio


async def stubborn():
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # the culprit: swallowed, again and again
            pass
"""
"""A task that swallows every cancel, as a module of an app (``stubborn_app.py``)."""

RUN_BOUND: Final = 60.0
"""Past this the inner run counts as hung (``Pytester.TimeoutExpired``)."""
SLACK: Final = 4.0
"""What a session's set-up (the shared servers) and the clean-up at its end may add, on a
loaded machine."""
ENDED_WITHIN: Final = 1.0
"""A failing test ends this soon after its deadline, report included (the promise)."""
TIMING_PLUGIN: Final = Path(__file__).with_name("inner_timing.py")


def run_bounded(
    pytester: pytest.Pytester, backend_args: list[str], *args: str
) -> tuple[pytest.RunResult, float]:
    """The inner suite's result and how long it took, in a pytest bounded by ``RUN_BOUND``:
    from its session's start (Python's and pytest's own start-up, which a loaded machine
    stretches to seconds, is no part of any promise) to the end of its process."""
    (pytester.path / TIMING_PLUGIN.name).write_text(TIMING_PLUGIN.read_text())
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        *backend_args,
        "-p",
        "no:cacheprovider",
        "-p",
        TIMING_PLUGIN.stem,
        *args,
        timeout=RUN_BOUND,
    )
    ended = time.monotonic()
    session = pytester.path / inner_timing.SESSION
    if session.exists():  # a run that stopped before its session began is timed whole
        started = json.loads(session.read_text())["started"]
    return result, ended - started


def failed_tests_took(pytester: pytest.Pytester) -> dict[str, float]:
    """Each failed test of the last bounded run: how long its call and tear-down took."""
    timings = json.loads((pytester.path / inner_timing.TIMINGS).read_text())
    return {name: seconds for name, (outcome, seconds) in timings.items() if outcome == "failed"}


def assert_each_failed_within(pytester: pytest.Pytester, deadline: float) -> None:
    """Every failed test of the last bounded run ended within ``deadline`` + ``ENDED_WITHIN``."""
    took = failed_tests_took(pytester)
    assert took, "no test failed"
    late = {name: seconds for name, seconds in took.items() if seconds > deadline + ENDED_WITHIN}
    assert not late, f"past {deadline:g} s + {ENDED_WITHIN:g} s: {late}"


def assert_ended(
    result: pytest.RunResult,
    took: float,
    *,
    within: float,
    lines: list[str],
    passed: int = 1,
    failed: int = 1,
    deadline: float | None = None,
    pytester: pytest.Pytester | None = None,
) -> None:
    """The inner run ended as it must: its outcomes, the report's lines (culprit included),
    and within ``within`` seconds (its deadline, the bounded clean-up, ``SLACK``); given
    the ``deadline``, each failed test within it + ``ENDED_WITHIN``."""
    result.assert_outcomes(passed=passed, failed=failed)
    result.stdout.fnmatch_lines(lines)
    assert took < within, f"the run took {took:.1f} s"
    if deadline is not None:
        assert pytester is not None
        assert_each_failed_within(pytester, deadline)


def run_ends(
    pytester: pytest.Pytester,
    backend_args: list[str],
    *args: str,
    deadline: float,
    lines: list[str],
    passed: int = 1,
    failed: int = 1,
) -> pytest.RunResult:
    """Run the inner suite, bounded, and assert it ended as it must (``assert_ended``): each
    failed test within ``deadline`` + ``ENDED_WITHIN``, the whole run within that for each
    failed test and ``SLACK`` twice (pytest's start, the fixtures' servers)."""
    result, took = run_bounded(pytester, backend_args, *args)
    assert_ended(
        result,
        took,
        within=failed * (deadline + ENDED_WITHIN) + 2 * SLACK,
        deadline=deadline,
        pytester=pytester,
        lines=lines,
        passed=passed,
        failed=failed,
    )
    return result
