"""The other pitfalls of the seed articles: each buggy form fails with the finding that
names it, each fixed form passes.

``pitfall_cases.py`` holds the tests as a user would write them; they run here in a
pytest of their own (a subprocess), since a finding fails its test after the body.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent
EXAMPLE_DIR = HERE.parent
PITFALLS = EXAMPLE_DIR / "csv_upload" / "pitfalls.py"

INI = (
    "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    # Only the blocked loop is not a subject here: a slow first request on a busy
    # machine would be a true finding, but not the one under test.
    "asyncfaults_blocked_loop = off\n"
)
CONFTEST = f"import sys\n\nsys.path.insert(0, {str(EXAMPLE_DIR)!r})\n"


def line_of(marker: str) -> int:
    lines = PITFALLS.read_text().splitlines()
    return next(number for number, text in enumerate(lines, 1) if marker in text)


def literal(pattern: str) -> str:
    """``[`` opens a character class in fnmatch patterns: match it literally."""
    return pattern.replace("[", "[[]")


def test_each_buggy_form_fails_with_its_finding_and_each_fix_passes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_pitfalls=(HERE / "pitfall_cases.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=5, failed=5)
    for fixed in ("fire_and_forget", "gather", "swallowed_cancel", "session_monitor"):
        result.stdout.fnmatch_lines([f"PASSED test_pitfalls.py::test_{fixed}_fixed"])
    result.stdout.fnmatch_lines(["PASSED test_pitfalls.py::test_critical_task_fixed"])
    where = "*csv_upload/pitfalls.py:{line} in {function}*"
    # wait_for runs the fetch in a task of its own on 3.11, in the request's task from 3.12
    swallowed_headline = (
        "*[swallowed_cancel] Task '*' was cancelled (1 request) and returned normally*"
        if sys.version_info < (3, 12)
        else "*[swallowed_cancel] In task '*', the timeout at *csv_upload/pitfalls.py:"
        f"{line_of('await asyncio.wait_for(fetch(currency)')} in rate: * expired*"
    )
    result.stdout.fnmatch_lines(
        [
            literal(line)
            for line in [
                "*_ test_fire_and_forget_bug _*",
                "*[lost] Task '*' was garbage-collected while still pending*",
                "  created at "
                + where.format(
                    line=line_of("asyncio.create_task(payments.await_confirmation(order))  #"),
                    function="pay",
                ),
                "*_ test_gather_bug _*",
                "*[abandoned] asyncio.gather failed with ConnectionError: the recommendations "
                "service is down and left 2 sibling task(s) running that nobody awaits*",
                "  gather at "
                + where.format(
                    line=line_of("await asyncio.gather(*parts)  # BUG"), function="dashboard"
                ),
                "*_ test_swallowed_cancel_bug _*",
                swallowed_headline,
                "  caught at: *csv_upload/pitfalls.py:"
                f"{line_of('except asyncio.CancelledError:  # BUG')}*",
                "*_ test_session_monitor_bug _*",
                "*asyncfaults: 2 background tasks still running when the test ended*",
                "*Task 'monitor-s1'*created at "
                + where.format(
                    line=line_of("monitors[session] = asyncio.create_task("),
                    function="start_monitor",
                ),
                "*_ test_critical_task_bug _*",
                "*[never_retrieved] Task '*' failed with LookupError: no user 'grace', and "
                "nobody awaited it or read its exception*",
                "  created at "
                + where.format(
                    line=line_of("asyncio.create_task(fetch_user(user))  #"),
                    function="user_status",
                ),
            ]
        ]
    )
