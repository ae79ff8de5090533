"""Library-owned tasks: the work a library starts for its own objects is not the app's.

A driver's pool refills itself, a driver sends a cancel request for the query
its caller gave up on: the app asked for neither and cannot wait for them, so
settle and the leak check leave them alone, while a library's task that runs the
app's code (Quart's ``add_background_task``) stays the app's. The library here
is a module installed under a ``site-packages`` directory, as a real one is.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pytest_asyncfaults import HangError, TaskMonitor

pytestmark = pytest.mark.asyncio

LIBRARY = '''
import asyncio


class Pool:
    """A pool that refills itself when a connection breaks, in a task of its own."""

    def __init__(self):
        self.refills = set()

    def acquire(self):
        return self._acquire_impl()

    def _acquire_impl(self):
        self._broke()

    def _broke(self):
        task = asyncio.get_running_loop().create_task(self._refill())
        self.refills.add(task)

    async def _refill(self):
        await asyncio.sleep(30)

    def add_background_task(self, func):
        """An API to start the caller's work: a wrapper coroutine of the library's."""
        return asyncio.get_running_loop().create_task(self._wrapper(func))

    async def _wrapper(self, func):
        await func()
'''


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[ModuleType]:
    root = tmp_path / "site-packages"
    (root / "fakedriver").mkdir(parents=True)
    (root / "fakedriver" / "__init__.py").write_text(textwrap.dedent(LIBRARY))
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("fakedriver")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("fakedriver", None)


def monitor(*, library_tasks: bool = False) -> TaskMonitor:
    return TaskMonitor(default_within=1.0, library_tasks=library_tasks)


async def test_a_pools_own_refill_is_not_waited_for(lib: ModuleType) -> None:
    watched = monitor().install()
    try:
        pool = lib.Pool()
        pool.acquire()  # deep inside, the pool starts its refill
        outcome = await asyncio.wait_for(watched.settle(within=1.0), 0.5)
        assert len(outcome) == 0
        (refill,) = pool.refills
        assert not refill.done()
        assert watched.pending() == []
    finally:
        watched.uninstall()
    refill.cancel()


async def test_a_refill_started_from_a_loop_callback_is_the_librarys(lib: ModuleType) -> None:
    watched = monitor().install()
    try:
        pool = lib.Pool()
        asyncio.get_running_loop().call_soon(pool._broke)  # a protocol's connection_lost
        await asyncio.sleep(0)
        outcome = await watched.settle(within=1.0)
        assert len(outcome) == 0
    finally:
        watched.uninstall()
    for task in pool.refills:
        task.cancel()


async def test_watching_library_tasks_is_a_setting(lib: ModuleType) -> None:
    watched = monitor(library_tasks=True).install()
    try:
        pool = lib.Pool()
        pool.acquire()
        with pytest.raises(HangError, match="_refill"):
            await watched.settle(within=0.2)
    finally:
        watched.uninstall()


async def test_a_library_coroutine_the_app_made_a_task_of_is_the_apps(lib: ModuleType) -> None:
    watched = monitor().install()
    try:
        pool = lib.Pool()
        job = asyncio.create_task(pool._refill())  # the app's own fire-and-forget
        with pytest.raises(HangError, match=r"test_library_tasks\.py"):
            await watched.settle(within=0.2)
        assert job.cancelled()
    finally:
        watched.uninstall()


async def test_a_library_wrapper_running_the_apps_work_is_waited_for(lib: ModuleType) -> None:
    watched = monitor().install()
    done = []

    async def send_mail() -> None:
        await asyncio.sleep(0.2)
        done.append(True)

    try:
        pool = lib.Pool()
        pool.add_background_task(send_mail)
        outcome = await watched.settle(within=2.0)
        assert done == [True]
        assert [entry.state for entry in outcome] == ["completed"]
    finally:
        watched.uninstall()


async def test_a_task_slow_to_clean_up_is_not_said_to_swallow() -> None:
    """A ``finally`` that waits on a dead database, after the cancel: the task is still
    cleaning up, it swallows nothing."""
    watched = monitor().install()

    async def release_to_a_dead_database() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(1.0)  # the release's round trip

    try:
        job = asyncio.create_task(release_to_a_dead_database(), name="write")
        with pytest.raises(HangError) as caught:
            await watched.settle(within=0.1)
        report = str(caught.value)
        assert "swallows" not in report
        assert "'write' did not end within 0.5 s of being cancelled: it is still cleaning " in (
            report
        )
        assert "test_library_tasks.py:" in report.split("still cleaning up at ")[1]
        assert "await asyncio.sleep(1.0)" in report.split("still cleaning up at ")[1]
    finally:
        watched.uninstall()
    await asyncio.wait({job}, timeout=2)
