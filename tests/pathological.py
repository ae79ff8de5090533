"""What the never-hang suites share: the inner project's ini, the bounds, a bounded run.

Each case runs a user's suite in a pytest of its own (a subprocess, so that a
regression that hangs fails the case at ``RUN_BOUND`` instead of hanging this
suite) and times it: a failing test must end within its deadline plus the
bounded clean-up, plus ``SLACK`` for pytest's own start on a loaded machine.
"""

from __future__ import annotations

import time
from typing import Final

import pytest

from pytest_asyncfaults._tasks._monitor import CANCEL_BOUND as CANCEL_BOUND

INI: Final = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

RUN_BOUND: Final = 60.0
"""Past this the inner run counts as hung (``Pytester.TimeoutExpired``)."""
SLACK: Final = 4.0
"""What pytest's own start and the clean-up may add, on a loaded machine."""


def run_bounded(
    pytester: pytest.Pytester, backend_args: list[str], *args: str
) -> tuple[pytest.RunResult, float]:
    """The inner suite's result and how long it took, in a pytest bounded by ``RUN_BOUND``."""
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        *backend_args, "-p", "no:cacheprovider", *args, timeout=RUN_BOUND
    )
    return result, time.monotonic() - started


def assert_ended(
    result: pytest.RunResult,
    took: float,
    *,
    within: float,
    lines: list[str],
    passed: int = 1,
    failed: int = 1,
) -> None:
    """The inner run ended as it must: its outcomes, the report's lines (culprit included),
    and within ``within`` seconds (its deadline, the bounded clean-up, ``SLACK``)."""
    result.assert_outcomes(passed=passed, failed=failed)
    result.stdout.fnmatch_lines(lines)
    assert took < within, f"the run took {took:.1f} s"
