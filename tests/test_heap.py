"""The heap set aside before a test: the test's checks see what it made, and quickly."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import asyncpg
import pytest

from pytest_asyncfaults._tasks import _pools
from pytest_asyncfaults._tasks._heap import set_aside, thaw

pytest_plugins = ["pytester"]


class Cycle:
    """An object in a reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def aside() -> Iterator[None]:
    yield
    thaw()


def test_what_lived_before_is_set_aside_and_what_the_test_made_is_collected(
    aside: None,
) -> None:
    before = Cycle()
    ballast = [[index] for index in range(200_000)]  # a session's heap
    set_aside()
    started = time.perf_counter()
    gc.collect()
    took = time.perf_counter() - started
    made = Cycle()
    seen = {id(obj) for obj in gc.get_objects()}
    assert id(made) in seen
    assert id(before) not in seen
    assert id(ballast) not in seen
    del made
    assert gc.collect() >= 1  # the test's own cycle is freed by a collection
    assert took < 0.05  # the ballast is not walked
    thaw()
    assert id(before) in {id(obj) for obj in gc.get_objects()}


@pytest.mark.asyncio
async def test_a_pool_alive_before_the_test_is_still_found(aside: None) -> None:
    """An engine made at import holds its pool from before the first test: set aside with
    the rest, it must still be read for its idle connections."""
    pool = asyncpg.create_pool("postgresql://nobody@127.0.0.1:9/none")  # not connected
    set_aside()
    assert id(pool) not in {id(obj) for obj in gc.get_objects()}
    assert any(noted is pool for noted in _pools._noted)
    assert _pools.idle_in_pools() == {}  # read, and no connection in it yet


LEAKY_SUITE = """
import warnings

import pytest

pytest_plugins = ["pytester"]


class Connection:
    '''Warns when collected unclosed, as a driver's connection does; in a cycle, so only
    the collector frees it.'''

    def __init__(self):
        self.me = self

    def __del__(self):
        warnings.warn("unclosed connection", ResourceWarning)


@pytest.fixture
def connection(tasks):
    yield Connection()  # the app's, let go of without closing once the test is over


async def test_leaves_a_connection(tasks, connection):
    pass


async def test_next(tasks):
    pass
"""


def test_what_a_test_let_go_of_is_its_own_tear_downs_warning(
    pytester: pytest.Pytester,
) -> None:
    """Collected after the test's tear-down: the warning is that test's, not the next's."""
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(test_leaky=LEAKY_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_leaves_a_connection*", "*unclosed connection*"]
    )
