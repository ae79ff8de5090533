"""The loop watchdog against real blocking calls on the test's own loop.

Blocks last 0.3 s against a 0.1 s threshold, and the negative cases stay far
below theirs: a loaded 2-core machine delays a thread by tens of
milliseconds, not by hundreds, so neither side depends on luck.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_asyncfaults import Engine, InvalidError
from pytest_asyncfaults._frames import library_upkeep
from pytest_asyncfaults._tasks._detectors import blocked_loop
from pytest_asyncfaults._tasks._watchdog import (
    MIN_INTERVAL,
    STOP_BOUND,
    LoopWatchdog,
    Stall,
    _RunQueue,
    format_stall,
)

HERE = Path(__file__).resolve()
SITE = "/venv/lib/python3.11/site-packages"
STDLIB = asyncio.__file__.rsplit("/asyncio/", 1)[0]


def line_of(marker: str) -> int:
    """The line of this file that carries ``marker``: the tests name lines, not numbers."""
    lines = HERE.read_text().splitlines()
    found = [number for number, text in enumerate(lines, 1) if text.rstrip().endswith(marker)]
    assert len(found) == 1, (marker, found)
    return found[0]


def spin(seconds: float) -> int:
    """Pure CPU work, no system call to wait in: the GIL is released only by switching."""
    deadline = time.monotonic() + seconds
    turns = 0
    while time.monotonic() < deadline:  # spin: the loop
        turns += 1  # spin: the body
    return turns


def on_this_loop(threshold: float = 0.1) -> LoopWatchdog:
    return LoopWatchdog(asyncio.get_running_loop(), threshold=threshold)


@pytest.mark.asyncio
async def test_time_sleep_is_one_stall_at_its_line() -> None:
    watchdog = on_this_loop()
    with watchdog:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the bug under test  # blocks: sleep
        await asyncio.sleep(0.05)
    assert len(watchdog.stalls) == 1, watchdog.stalls
    stall = watchdog.stalls[0]
    assert 0.25 <= stall.duration < 1.0
    assert not stall.busy
    frame = stall.blocking_frame
    assert frame is not None
    assert (frame.filename, frame.lineno) == (str(HERE), line_of("# blocks: sleep"))
    assert frame.function == "test_time_sleep_is_one_stall_at_its_line"
    assert frame.source.startswith("time.sleep(0.3)")
    # the event loop and pytest are below it, innermost first, within the bound
    assert 1 < len(stall.stack) <= 30
    assert stall.stack[0][:2] == (str(HERE), frame.lineno)


@pytest.mark.asyncio
async def test_awaiting_is_no_stall() -> None:
    watchdog = on_this_loop()
    with watchdog:
        await asyncio.sleep(0.3)
    assert watchdog.stalls == []


@pytest.mark.asyncio
async def test_cpu_loop_is_a_stall_at_the_loop() -> None:
    watchdog = on_this_loop()
    with watchdog:
        await asyncio.sleep(0.05)
        assert spin(0.3) > 0  # blocks: spin
        await asyncio.sleep(0.05)
    assert len(watchdog.stalls) == 1, watchdog.stalls
    stall = watchdog.stalls[0]
    assert 0.25 <= stall.duration < 1.0
    frame = stall.blocking_frame
    assert frame is not None
    assert frame.function == "spin"
    assert frame.lineno in {line_of("# spin: the loop"), line_of("# spin: the body")}
    assert stall.stack[1][1:] == (line_of("# blocks: spin"), "test_cpu_loop_is_a_stall_at_the_loop")


@pytest.mark.asyncio
async def test_two_blocks_are_two_stalls() -> None:
    watchdog = on_this_loop()
    with watchdog:
        time.sleep(0.3)  # noqa: ASYNC251  # blocks: first
        await asyncio.sleep(0.1)
        time.sleep(0.3)  # noqa: ASYNC251  # blocks: second
        await asyncio.sleep(0.05)
    lines = [stall.blocking_frame.lineno for stall in watchdog.stalls if stall.blocking_frame]
    assert lines == [line_of("# blocks: first"), line_of("# blocks: second")]
    first, second = watchdog.stalls
    assert second.started_at >= first.started_at + first.duration
    assert all(0.25 <= stall.duration < 1.0 for stall in watchdog.stalls)


@pytest.mark.asyncio
async def test_a_block_under_the_threshold_is_no_stall() -> None:
    # 0.05 s against 0.25 s: a margin no scheduler hiccup on a loaded machine crosses
    with LoopWatchdog(asyncio.get_running_loop(), threshold=0.25) as watchdog:
        for _ in range(3):
            time.sleep(0.05)  # noqa: ASYNC251
            await asyncio.sleep(0.05)
    assert watchdog.stalls == []


@pytest.mark.asyncio
async def test_a_busy_turn_of_many_short_callbacks_is_no_blocked_loop() -> None:
    """Ten thousand callbacks of 30 µs in one turn (a fan-out finishing together): the loop
    is late, but no callback held it, so there is no line to blame."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 10_000

    def short(index: int) -> None:
        spin(0.00003)
        if index == count - 1:
            done.set_result(None)

    with on_this_loop() as watchdog:
        await asyncio.sleep(0.05)
        for index in range(count):
            loop.call_soon(short, index)
        await done
        await asyncio.sleep(0.05)
    (stall,) = watchdog.stalls
    assert stall.busy
    assert stall.duration >= 0.2
    assert blocked_loop(watchdog.stalls) == []


@pytest.mark.asyncio
async def test_one_callback_that_blocks_is_not_busy() -> None:
    with on_this_loop() as watchdog:
        await asyncio.sleep(0.05)
        for _ in range(10):
            spin(0.03)  # blocks: ten short calls in one callback are one block
        await asyncio.sleep(0.05)
    (stall,) = watchdog.stalls
    assert not stall.busy
    assert len(blocked_loop(watchdog.stalls)) == 1


@pytest.mark.asyncio
async def test_the_garbage_collectors_pause_is_not_the_loops_own_stall() -> None:
    """Full collections over a big heap (a long test session's) for 0.3 s in one callback:
    the loop did not turn, but for Python's collector, not for a line of the app's."""
    heap = [[index] for index in range(500_000)]
    with on_this_loop() as watchdog:
        await asyncio.sleep(0.05)
        started = time.monotonic()
        collections = 0
        while time.monotonic() - started < 0.3:
            gc.collect()
            collections += 1
        await asyncio.sleep(0.05)
    assert collections > 0
    assert len(heap) == 500_000
    assert [stall for stall in watchdog.stalls if stall.own > watchdog.threshold] == []


@pytest.mark.asyncio
async def test_a_block_beside_a_collection_counts_the_blocks_own_time() -> None:
    heap = [[index] for index in range(500_000)]
    with on_this_loop() as watchdog:
        await asyncio.sleep(0.05)
        started = time.monotonic()
        while time.monotonic() - started < 0.2:
            gc.collect()
        time.sleep(0.3)  # noqa: ASYNC251  # blocks: beside the collector
        await asyncio.sleep(0.05)
    assert len(heap) == 500_000
    (stall,) = watchdog.stalls
    assert 0.25 <= stall.own < 0.45
    assert stall.collecting >= 0.15
    assert stall.blocking_frame is not None
    assert stall.blocking_frame.lineno == line_of("# blocks: beside the collector")
    assert "in Python's garbage collector" in format_stall(stall).splitlines()[0]


@contextlib.contextmanager
def sharing_one_cpu() -> Iterator[None]:
    """This thread and two spinning processes pinned to one CPU: it waits for the CPU."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs CPU affinity")
    before = os.sched_getaffinity(0)
    cpu = min(before)
    hogs = [
        subprocess.Popen(
            [sys.executable, "-c", SPINNER, str(cpu)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for hog in hogs:
            assert hog.stdout is not None
            assert hog.stdout.readline() == "spinning\n"
        os.sched_setaffinity(0, {cpu})
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)
    finally:
        for hog in hogs:
            hog.kill()
            hog.communicate()


@pytest.mark.asyncio
async def test_a_collection_on_a_busy_machine_is_told_apart_once() -> None:
    """The collector's time holds its own waits for the CPU: a stall less both must not
    take them off twice (0.3 s of ``time.sleep`` after collections on a shared CPU)."""
    heap = [[index] for index in range(500_000)]
    with sharing_one_cpu(), on_this_loop() as watchdog:
        await asyncio.sleep(0.05)
        started = time.monotonic()
        while time.monotonic() - started < 0.2:
            gc.collect()
        time.sleep(0.3)  # noqa: ASYNC251  # blocks: on a busy machine
        await asyncio.sleep(0.05)
    assert len(heap) == 500_000
    (stall,) = [stall for stall in watchdog.stalls if stall.duration > 0.3]
    assert 0.28 <= stall.own < 0.45, stall


@pytest.mark.asyncio
async def test_another_threads_collection_is_the_blocks_own_time() -> None:
    """A loop in ``time.sleep`` does not want the GIL: another thread's collections did
    not hold it up, and its stall is the app's whole."""
    heap = [[index] for index in range(500_000)]
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            gc.collect()

    collector = threading.Thread(target=collect)
    with on_this_loop() as watchdog:
        await asyncio.sleep(0.05)
        collector.start()
        try:
            time.sleep(0.3)  # noqa: ASYNC251  # blocks: while another thread collects
        finally:
            done.set()
            collector.join()
        await asyncio.sleep(0.05)
    assert len(heap) == 500_000
    (stall,) = [stall for stall in watchdog.stalls if stall.duration > 0.25]
    assert stall.collecting == 0.0
    assert stall.own >= 0.28


@pytest.mark.asyncio
async def test_stop_during_a_block_closes_the_stall() -> None:
    watchdog = on_this_loop()
    watchdog.start()
    time.sleep(0.3)  # noqa: ASYNC251  # blocks: then stop
    watchdog.stop()
    assert len(watchdog.stalls) == 1
    stall = watchdog.stalls[0]
    assert 0.25 <= stall.duration < 1.0
    assert stall.blocking_frame is not None
    assert stall.blocking_frame.lineno == line_of("# blocks: then stop")


@pytest.mark.asyncio
async def test_stop_is_bounded_idempotent_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold=5.0)  # sleeps 1.25 s per look
    watchdog.start()
    assert watchdog.running
    assert {thread.name for thread in set(threading.enumerate()) - before} == {
        "asyncfaults-loop-watchdog"
    }
    started = time.monotonic()
    watchdog.stop()
    assert time.monotonic() - started < STOP_BOUND  # woken, not waited out
    assert set(threading.enumerate()) == before
    assert not watchdog.running
    watchdog.stop()
    with pytest.raises(RuntimeError, match="already started"):
        watchdog.start()
    await asyncio.sleep(0.05)  # the heartbeat was cancelled: nothing fires on the loop
    assert watchdog.stalls == []


@pytest.mark.asyncio
async def test_start_from_another_thread_is_refused() -> None:
    """Its stack would be the wrong one: the thread that called start() is the one watched."""
    watchdog = on_this_loop()
    with pytest.raises(RuntimeError, match="loop's own thread"):
        await asyncio.to_thread(watchdog.start)
    assert not watchdog.running


def test_a_loop_that_is_not_running_is_not_blocked() -> None:
    """Test runners stop the loop between fixtures and the test: that is no stall."""
    loop = asyncio.new_event_loop()
    try:
        watchdog = LoopWatchdog(loop, threshold=0.05)
        watchdog.start()  # before the loop runs, as a runner would
        loop.run_until_complete(asyncio.sleep(0.05))
        time.sleep(0.3)  # the loop is stopped meanwhile
        loop.run_until_complete(asyncio.sleep(0.05))
        watchdog.stop()
    finally:
        loop.close()
    assert watchdog.stalls == []


def test_a_stall_open_when_the_loop_stops_is_closed() -> None:
    async def blocks() -> None:
        time.sleep(0.3)  # noqa: ASYNC251  # blocks: then the loop stops

    loop = asyncio.new_event_loop()
    try:
        watchdog = LoopWatchdog(loop, threshold=0.05)
        watchdog.start()
        loop.run_until_complete(blocks())
        time.sleep(0.2)  # no beat comes: the watchdog sees the loop stopped
        assert len(watchdog.stalls) == 1
        watchdog.stop()
    finally:
        loop.close()
    stall = watchdog.stalls[0]
    assert 0.25 <= stall.duration < 1.0
    assert stall.blocking_frame is not None
    assert stall.blocking_frame.lineno == line_of("# blocks: then the loop stops")


@pytest.mark.parametrize("threshold", [0, -1, 0.0, math.nan, math.inf, True, "0.1", None])
def test_threshold_must_be_a_positive_number(threshold: object) -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(InvalidError, match=r"^threshold=.* expected a number of seconds > 0"):
            LoopWatchdog(loop, threshold=threshold)  # type: ignore[arg-type]
    finally:
        loop.close()


def test_interval_is_a_quarter_of_the_threshold_but_not_below_10_ms() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert LoopWatchdog(loop, threshold=0.1).interval == pytest.approx(0.025)
        assert LoopWatchdog(loop, threshold=1).interval == pytest.approx(0.25)
        assert LoopWatchdog(loop, threshold=0.02).interval == MIN_INTERVAL
        assert LoopWatchdog(loop).threshold == 0.1
    finally:
        loop.close()


# -- the blocking frame and the report, on made-up stacks ---------------------------------------


def made_up_stall() -> Stall:
    here = line_of("# the handler's blocking line")
    return Stall(
        started_at=100.0,
        duration=0.314,
        stack=(  # innermost first
            (f"{SITE}/psycopg2/extras.py", 30, "execute"),
            (str(HERE), here, "handler"),  # the handler's blocking line
            (f"{SITE}/starlette/routing.py", 70, "app"),
            (f"{SITE}/starlette/routing.py", 290, "handle"),
            (f"{SITE}/starlette/middleware/errors.py", 160, "__call__"),
            (f"{STDLIB}/asyncio/events.py", 80, "_run"),
            (f"{STDLIB}/asyncio/base_events.py", 1900, "_run_once"),
        ),
    )


def test_blocking_frame_skips_libraries_and_falls_back_to_the_innermost() -> None:
    stall = made_up_stall()
    frame = stall.blocking_frame
    assert frame is not None
    assert (frame.filename, frame.function) == (str(HERE), "handler")
    assert frame.source == '(str(HERE), here, "handler"),  # the handler\'s blocking line'
    only_library = Stall(1.0, 0.2, stall.stack[2:])
    assert only_library.blocking_frame is not None
    assert only_library.blocking_frame.function == "app"
    assert Stall(1.0, 0.2, ()).blocking_frame is None


def test_format_stall_headline_marks_the_line_and_folds_libraries() -> None:
    here = line_of("# the handler's blocking line")
    text = format_stall(made_up_stall())
    assert text.splitlines() == [
        f"the event loop was blocked for 0.31 s at tests/test_watchdog.py:{here} in handler: "
        '`(str(HERE), here, "handler"),  # the handler\'s blocking line`',
        "      ... 4 frames in asyncio, starlette ...",
        "      starlette/routing.py:70 in app",
        f"    > tests/test_watchdog.py:{here} in handler",
        '          (str(HERE), here, "handler"),  # the handler\'s blocking line',
        "      psycopg2/extras.py:30 in execute",
    ]
    assert format_stall(Stall(1.0, 2.0, ())) == (
        "the event loop was blocked for 2.00 s at an unknown place (no stack was taken)"
    )


@pytest.mark.asyncio
async def test_format_stall_of_a_real_stall() -> None:
    watchdog = on_this_loop()
    with watchdog:
        time.sleep(0.3)  # noqa: ASYNC251  # blocks: reported
    (stall,) = watchdog.stalls
    text = format_stall(stall)
    headline, *stack = text.splitlines()
    assert headline.startswith("the event loop was blocked for 0.")
    assert headline.endswith(
        f" s at tests/test_watchdog.py:{line_of('# blocks: reported')} in "
        "test_format_stall_of_a_real_stall: `time.sleep(0.3)  # noqa: ASYNC251  # blocks: reported`"
    )
    assert stack[-2].startswith("    > tests/test_watchdog.py:")
    assert stack[-1].strip().startswith("time.sleep(0.3)")
    assert len(stack) < 15  # the runner's frames are folded


@pytest.mark.asyncio
async def test_waiting_on_the_fault_proxy_is_not_the_apps_stall(engine: Engine) -> None:
    """A blocking ``proxy.stats`` on a slow child or Toxiproxy server is the harness's wait."""
    watchdog = on_this_loop()
    with watchdog:
        engine.call(asyncio.sleep, 0.3)  # blocks: on the fault proxy
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the bug under test  # blocks: the app
        await asyncio.sleep(0.05)
    assert len(watchdog.stalls) == 2, watchdog.stalls
    (finding,) = blocked_loop(watchdog.stalls)
    assert finding.site is not None
    assert finding.site[1] == line_of("# blocks: the app")


def test_a_loggers_traceback_formatting_is_its_upkeep_not_the_apps_block() -> None:
    """loguru's ``diagnose`` tokenizes each frame's source as it formats a traceback, on the
    loop (the first time a file is read, 0.12 s was measured on a loaded machine): judged
    on five times the threshold, where the app's own block is judged on it."""
    import tokenize

    from loguru import _better_exceptions

    app = (__file__, 22, "refresh_member_count")
    formatting = (
        (tokenize.__file__, 408, "tokenize"),
        (_better_exceptions.__file__, 270, "_get_relevant_values"),
        app,
    )
    stdlib_logging = ((logging.__file__, 700, "format"), app)
    assert library_upkeep(formatting)
    assert library_upkeep(stdlib_logging)
    assert blocked_loop([Stall(0.0, 0.12, formatting), Stall(0.0, 0.3, stdlib_logging)], 0.1) == []
    assert len(blocked_loop([Stall(0.0, 0.12, (app,))], 0.1)) == 1


def test_a_stall_in_an_upkeep_library_counts_past_five_thresholds() -> None:
    """A driver's SCRAM login in its compiled protocol, then ``hmac``: the driver's upkeep;
    the same stall in the app's own code (a bcrypt hash: compiled, no frame) is the app's."""
    hmac_frame = (hmac.__file__, 151, "digest")
    driver = ("asyncpg/protocol/protocol.pyx", 166, "auth")
    app = (__file__, 10, "login")
    scram = Stall(0.0, 0.3, (hmac_frame, driver, app))
    bcrypt_hash = Stall(0.0, 0.3, (app,))
    assert blocked_loop([scram], 0.1) == []
    assert len(blocked_loop([Stall(0.0, 0.6, scram.stack)], 0.1)) == 1
    assert len(blocked_loop([bcrypt_hash], 0.1)) == 1


def test_time_the_system_kept_the_loop_off_the_cpu_is_not_the_apps() -> None:
    """A callback that takes 50 ms of CPU on a machine whose other work kept its thread
    waiting 250 ms for a CPU is no 0.3 s block of the app's."""
    stack = ((__file__, 10, "handler"),)
    assert math.isclose(Stall(0.0, 0.3, stack, queued=0.25).own, 0.05)
    assert blocked_loop([Stall(0.0, 0.3, stack, queued=0.25)], 0.1) == []
    assert len(blocked_loop([Stall(0.0, 0.3, stack)], 0.1)) == 1


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


SPINNER = (
    "import os, sys, time\n"
    "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
    "print('spinning', flush=True)\n"
    "end = time.monotonic() + 2.0\n"
    "while time.monotonic() < end: pass\n"
)


def test_the_run_queue_wait_is_read_from_the_system() -> None:
    """Two spinning processes pinned to this thread's CPU: the thread waits for it."""
    if not os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat"):
        pytest.skip("the system keeps no scheduler statistics")
    queue = _RunQueue(threading.get_native_id())
    try:
        with sharing_one_cpu():
            before = queue.seconds()
            started = time.monotonic()
            _spin(0.3)
            waited = queue.seconds() - before
            elapsed = time.monotonic() - started
    finally:
        queue.close()
    assert 0.05 < waited < elapsed, (waited, elapsed)
    assert queue.seconds() == 0.0  # closed: says nothing
