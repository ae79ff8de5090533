"""``allow`` spares a task the same way in every check: settle, leaks and the detectors,
by its name or by any frame of its creation (the app's line, or a library's own file).

The library here is a pool that starts a maintenance task for itself, as asyncpg's
does when a connection breaks: it lives in a ``site-packages`` directory, as an
installed library does.
"""

from __future__ import annotations

import pytest
from pathological import INI

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

POOL_LIB = """
import asyncio

_maintenance_tasks = set()


async def _maintain():
    await asyncio.Event().wait()  # the pool's own work, for as long as the pool lives


def acquire():
    task = asyncio.create_task(_maintain())
    _maintenance_tasks.add(task)
    return "connection"
"""

TESTS = """
import pool_lib

async def test_uses_the_pool(tasks):
    assert pool_lib.acquire() == "connection"  # the app's line
    await tasks.settle(within=0.5)
"""


@pytest.mark.parametrize(
    ("allow", "passes"),
    [
        ("", False),
        ("pool_lib.py", True),  # the library's own file
        ("test_uses.py:4", True),  # the app's line that asked the library
        ("test_uses.py:5", False),  # another line of the app
        ("Task-*", True),  # a name pattern
    ],
)
def test_allow_spares_a_task_in_settle_and_leaks_by_name_or_any_creation_frame(
    pytester: pytest.Pytester, backend_args: list[str], allow: str, passes: bool
) -> None:
    pytester.mkdir("site-packages")
    (pytester.path / "site-packages" / "pool_lib.py").write_text(POOL_LIB)
    pytester.makeini(INI + (f"asyncfaults_allow = {allow}\n" if allow else ""))
    pytester.makeconftest(
        "import sys, pathlib\n"
        "sys.path.insert(0, str(pathlib.Path(__file__).parent / 'site-packages'))\n"
    )
    pytester.makepyfile(test_uses=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *backend_args, timeout=60)
    if passes:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*1 background task still pending after 0.5 s*"])
