"""The task monitor on its own: what it records, and what survives the task."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import Iterator

import pytest

from pytest_asyncfaults import HangError, TaskMonitor

pytestmark = pytest.mark.asyncio


@pytest.fixture
def monitor() -> Iterator[TaskMonitor]:
    installed = TaskMonitor(default_within=1.0).install()
    yield installed
    installed.uninstall()


async def fails() -> None:
    raise ValueError("boom")


async def test_creation_site_is_the_line_that_created_the_task(monitor: TaskMonitor) -> None:
    line = sys._getframe().f_lineno + 1
    task = asyncio.create_task(asyncio.sleep(0), name="site")
    await task
    (record,) = [record for record in monitor.records if record.name == "site"]
    filename, lineno, function = record.stack[1]  # [0] is asyncio.create_task itself
    assert filename == __file__
    assert (lineno, function) == (line, "test_creation_site_is_the_line_that_created_the_task")
    assert "test_monitor.py:" in record.describe()


async def test_outcome_survives_the_task_object(monitor: TaskMonitor) -> None:
    task = asyncio.create_task(fails(), name="gone")
    await asyncio.wait([task])
    del task
    gc.collect()
    (record,) = [record for record in monitor.records if record.name == "gone"]
    assert record.task is None
    assert record.state == "failed"
    assert isinstance(record.exception, ValueError)


async def test_a_task_collected_while_pending_is_lost(monitor: TaskMonitor) -> None:
    async def waits_forever() -> None:
        await asyncio.get_running_loop().create_future()  # nobody will ever set it

    asyncio.create_task(waits_forever(), name="orphan")  # noqa: RUF006 - the bug under test
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gc.collect()
    (record,) = [record for record in monitor.records if record.name == "orphan"]
    assert record.state == "lost"
    outcome = await monitor.settle(within=0.5)
    assert [entry.state for entry in outcome if entry.name == "orphan"] == ["lost"]


async def test_exceptions_are_read_without_retrieving_them(monitor: TaskMonitor) -> None:
    task = asyncio.create_task(fails(), name="unread")
    outcome = await monitor.settle()
    (entry,) = [entry for entry in outcome if entry.name == "unread"]
    assert entry.state == "failed"
    assert entry.retrieved is False
    assert task.exception() is not None  # now it is
    assert [r.retrieved for r in monitor.records if r.name == "unread"] == [True]


async def test_settle_past_its_deadline_reports_and_cancels(monitor: TaskMonitor) -> None:
    task = asyncio.create_task(asyncio.Event().wait(), name="stuck")
    with pytest.raises(HangError) as caught:
        await monitor.settle(within=0.2)
    report = str(caught.value)
    assert "1 background task still pending after 0.2 s (the settle deadline)" in report
    assert "Task 'stuck', a task of the test" in report
    assert "Cancelled 1 stuck task so the run goes on." in report
    assert task.cancelled()


async def test_runner_and_current_tasks_are_not_background_work(monitor: TaskMonitor) -> None:
    assert asyncio.current_task() not in [record.task for record in monitor.background()]
    outcome = await monitor.settle(within=0.1)
    assert len(outcome) == 0


async def test_the_task_wait_for_makes_is_part_of_its_awaiters_await(monitor: TaskMonitor) -> None:
    """On 3.11 ``asyncio.wait_for`` runs its awaitable in a task of its own; its failure
    goes to the awaiter (as on 3.12, which makes no task), so it is no background work."""

    async def sends_a_mail() -> None:
        # handled (or swallowed) by the awaiter: its business, seen there
        with contextlib.suppress(ValueError):
            await asyncio.wait_for(fails(), timeout=1)  # a driver's connect, say

    await asyncio.create_task(sends_a_mail(), name="job")
    outcome = await monitor.settle(1)
    assert [entry.name for entry in outcome] == ["job"]
    outcome.assert_completed()


async def test_gather_of_ten_thousand_tasks_is_not_quadratic(monitor: TaskMonitor) -> None:
    """``gather`` looks up each child's record: one lookup, not a scan of all records."""
    tasks = [asyncio.create_task(asyncio.sleep(0)) for _ in range(10_000)]
    started = time.monotonic()
    await asyncio.gather(*tasks)
    took = time.monotonic() - started
    (gathered,) = monitor.gathers
    assert len(gathered.children) == 10_000
    assert {id(record) for record in gathered.children} == {
        id(monitor.record_for(task)) for task in tasks
    }
    assert took < 1.5, f"gather took {took:.2f} s"  # a scan per child: 3 s on a fast machine


async def test_a_reused_id_finds_no_record_of_another_task(monitor: TaskMonitor) -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    record = monitor.record_for(task)
    assert record is not None
    assert record.task is task
    record.ref = None  # as if the task had been collected and its id given to another
    assert monitor.record_for(task) is None


async def test_a_proxy_made_after_the_baseline_costs_settle_no_wait() -> None:
    """The connection baseline is taken when the app is up; a proxy made later (in the
    test's body) had none open before it, so an idle one is settled at once."""
    counts = {"postgres": 1}
    monitor = TaskMonitor(default_within=5.0, connections=lambda: _counts(counts)).install()
    try:
        await monitor.take_connection_baseline()
        counts["made_in_the_body"] = 0
        started = time.monotonic()
        outcome = await monitor.settle()
        took = time.monotonic() - started
    finally:
        monitor.uninstall()
    assert took < 0.5, f"settle waited {took:.2f} s"  # the grace is 1 s
    outcome.assert_cleaned_up()


async def _counts(counts: dict[str, int]) -> dict[str, int]:
    return dict(counts)


async def test_a_failure_re_raised_as_a_frameworks_own_matches_its_cause(
    monitor: TaskMonitor,
) -> None:
    """Litestar re-raises a background task's error as its own exception, ``from`` the
    app's: ``assert_failed`` and ``assert_logged`` follow the chain as scenarios do."""

    class FrameworkError(Exception):
        pass

    async def wrapped() -> None:
        try:
            raise TimeoutError("the database did not answer")
        except TimeoutError as exc:
            logging.getLogger("app").exception("the job failed")
            raise FrameworkError("Exception caught after response started") from exc

    task = asyncio.create_task(wrapped())
    await asyncio.wait([task])
    outcome = await monitor.settle()
    assert isinstance(outcome.assert_failed(TimeoutError).exception, FrameworkError)
    outcome.assert_logged(TimeoutError)
    task.exception()  # retrieved: the test read it


async def drops_its_timeout() -> None:
    try:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    except Exception:  # drops it
        pass


async def logs_its_timeout() -> None:
    try:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    except TimeoutError:
        logging.getLogger("app").exception("timed out")


async def test_a_timeout_dropped_by_an_except_is_named_where_the_work_completed(
    monitor: TaskMonitor,
) -> None:
    """``except Exception: pass`` around a timeout: the work "completes", and the user
    who expected it to fail with ``TimeoutError`` reads where the error went."""
    for job in (drops_its_timeout, logs_its_timeout):
        asyncio.create_task(job(), name=job.__name__)  # noqa: RUF006 - the monitor holds them
    outcome = await monitor.settle(within=2)
    dropped = {entry.name: entry.dropped for entry in outcome}
    (site,) = dropped["drops_its_timeout"]
    assert site.endswith("`except Exception:  # drops it`"), site
    assert "test_monitor.py:" in site
    assert dropped["logs_its_timeout"] == ()
    with pytest.raises(Exception, match=r"(?s)a TimeoutError was caught at .*# drops it"):
        outcome.assert_failed(TimeoutError)
    assert all(record.timeouts is None for record in monitor.records)  # let go of
