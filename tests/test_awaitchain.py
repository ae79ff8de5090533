"""Await chains of real tasks blocked in real places, walked and printed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pytest_asyncfaults import _frames
from pytest_asyncfaults._frames import ChainFrame, format_site, short_path, stack_site
from pytest_asyncfaults._tasks import _awaitchain
from pytest_asyncfaults._tasks._awaitchain import (
    MAX_DEPTH,
    AwaitChain,
    _Walk,
    await_chain,
    format_chain,
)

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
SITE = "/venv/lib/python3.11/site-packages"

Spawn = Callable[..., asyncio.Task[Any]]


@contextlib.asynccontextmanager
async def spawned() -> AsyncIterator[Spawn]:
    """Tasks for one test, all cancelled and awaited at its end, whatever happens."""
    tasks: list[asyncio.Task[Any]] = []

    def spawn(coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        tasks.append(task)
        return task

    try:
        yield spawn
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def blocked(task: asyncio.Task[Any], function: str, within: float = 5.0) -> AwaitChain:
    """The task's chain once it blocks in ``function`` (its innermost frame)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        chain = await_chain(task)
        started = not chain.leaf.startswith("nothing yet")
        if started and chain.frames and chain.frames[-1].function == function:
            return chain
        assert loop.time() < deadline, f"never blocked in {function}: {chain}"
        await asyncio.sleep(0.005)


def functions(chain: AwaitChain) -> list[str]:
    return [frame.function for frame in chain.frames]


def paths(chain: AwaitChain) -> list[str]:
    return [short_path(frame.filename) for frame in chain.frames]


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths print relative to the working directory: make it the repository's."""
    monkeypatch.chdir(ROOT)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback listener that never accepts, so never answers: reads block for good."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


# -- the user's coroutines, blocked in various places -------------------------------------


async def inner_sleep() -> None:
    await asyncio.sleep(30)


async def outer_sleep() -> None:
    await inner_sleep()


async def wait_event(event: asyncio.Event) -> None:
    await event.wait()


async def fetch(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await reader.read(100)
    finally:
        writer.close()
        await writer.wait_closed()


async def await_task(task: asyncio.Task[Any]) -> None:
    await task


async def guarded() -> None:
    await asyncio.wait_for(inner_sleep(), 30)


async def both(first: asyncio.Task[Any], second: asyncio.Task[Any]) -> None:
    await asyncio.gather(first, second)


async def bounded() -> None:
    async with asyncio.timeout(30):
        await asyncio.sleep(20)


async def ticks() -> AsyncIterator[int]:
    while True:
        await asyncio.sleep(25)
        yield 1


async def consume() -> None:
    async for _ in ticks():
        pass


class Gate:
    """An awaitable with a generator ``__await__``, as older libraries write them."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __await__(self) -> Generator[Any, None, bool]:
        return (yield from self.event.wait().__await__())


async def through_gate(gate: Gate) -> None:
    await gate


async def spin() -> None:
    while True:
        await asyncio.sleep(0)


# -- walking -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sleep_in_two_nested_user_coroutines() -> None:
    async with spawned() as spawn:
        chain = await blocked(spawn(outer_sleep()), "sleep")
        assert functions(chain) == ["outer_sleep", "inner_sleep", "sleep"]
        outer, inner, sleep = chain.frames
        assert (outer.filename, outer.source) == (str(HERE), "await inner_sleep()")
        assert (inner.filename, inner.source) == (str(HERE), "await asyncio.sleep(30)")
        assert short_path(sleep.filename) == "asyncio/tasks.py"
        assert chain.user_frame() is inner
        assert chain.leaf.startswith("asyncio.sleep timer (30 s, due in ")
        assert chain.hops == ()


@pytest.mark.asyncio
async def test_event_wait() -> None:
    async with spawned() as spawn:
        chain = await blocked(spawn(wait_event(asyncio.Event())), "wait")
        assert functions(chain) == ["wait_event", "wait"]
        assert paths(chain)[-1] == "asyncio/locks.py"
        assert chain.leaf == "an Event's waiter (the event is not set)"
        assert chain.user_frame() is chain.frames[0]
        assert chain.frames[0].source == "await event.wait()"


@pytest.mark.asyncio
@pytest.mark.usefixtures("in_root")
async def test_socket_read_that_never_gets_an_answer(silent_server: int) -> None:
    async with spawned() as spawn:
        chain = await blocked(spawn(fetch(silent_server)), "_wait_for_data")
        assert functions(chain) == ["fetch", "read", "_wait_for_data"]
        assert paths(chain) == [
            "tests/test_awaitchain.py",
            "asyncio/streams.py",
            "asyncio/streams.py",
        ]
        user = chain.user_frame()
        assert user is not None
        assert user.source == "return await reader.read(100)"
        assert chain.leaf == (
            f"a StreamReader read() waiting for data from 127.0.0.1:{silent_server} "
            "(0 bytes buffered, no EOF yet)"
        )
        fetch_line, read_line, wait_line = (frame.lineno for frame in chain.frames)
        assert format_chain(chain).splitlines() == [
            f"    > tests/test_awaitchain.py:{fetch_line} in fetch",
            "          return await reader.read(100)",
            f"      asyncio/streams.py:{read_line} in read",
            "          await self._wait_for_data('read')",
            f"      asyncio/streams.py:{wait_line} in _wait_for_data",
            "          await self._waiter",
            f"      waiting on: {chain.leaf}",
        ]


@pytest.mark.asyncio
async def test_a_task_awaiting_another_goes_on_into_it() -> None:
    async with spawned() as spawn:
        worker = spawn(outer_sleep(), name="worker")
        chain = await blocked(spawn(await_task(worker)), "sleep")
        assert functions(chain) == ["await_task", "outer_sleep", "inner_sleep", "sleep"]
        assert chain.hops == ((1, "Task 'worker'"),)
        assert chain.user_frame() is chain.frames[2]
        assert chain.leaf.startswith("asyncio.sleep timer")
        lines = format_chain(chain, indent="").splitlines()
        assert lines[2:4] == ["  -- awaiting Task 'worker' --", "  " + chain.frames[1].location()]


@pytest.mark.asyncio
async def test_wait_for_reaches_the_awaited_coroutine() -> None:
    async with spawned() as spawn:
        chain = await blocked(spawn(guarded()), "sleep")
        assert functions(chain) == ["guarded", "wait_for", "inner_sleep", "sleep"]
        assert chain.user_frame() is chain.frames[2]
        assert chain.leaf.startswith("asyncio.sleep timer (30 s")
        if sys.version_info < (3, 12):  # wait_for ran the coroutine in a task of its own
            ((index, label),) = chain.hops
            assert index == 2
            assert label.startswith("Task 'Task-")
            assert "(wait_for's inner task, times out in " in label
        else:
            assert chain.hops == ()


@pytest.mark.asyncio
@pytest.mark.usefixtures("in_root")
async def test_gather_describes_its_children() -> None:
    async with spawned() as spawn:
        first = spawn(inner_sleep(), name="first")
        second = spawn(wait_event(asyncio.Event()), name="second")
        await asyncio.sleep(0)
        chain = await blocked(spawn(both(first, second)), "both")
        assert functions(chain) == ["both"]
        assert chain.frames[0].source == "await asyncio.gather(first, second)"
        sleep_line = inner_sleep.__code__.co_firstlineno + 1
        event_line = wait_event.__code__.co_firstlineno + 1
        assert chain.leaf == (
            "asyncio.gather of 2, 2 pending: "
            f"Task 'first' at tests/test_awaitchain.py:{sleep_line} in inner_sleep; "
            f"Task 'second' at tests/test_awaitchain.py:{event_line} in wait_event"
        )


@pytest.mark.asyncio
async def test_inside_async_with_timeout() -> None:
    async with spawned() as spawn:
        chain = await blocked(spawn(bounded()), "sleep")
        assert functions(chain) == ["bounded", "sleep"]
        assert chain.user_frame() is chain.frames[0]
        assert chain.frames[0].source == "await asyncio.sleep(20)"
        assert chain.leaf.startswith("asyncio.sleep timer (20 s")


@pytest.mark.asyncio
async def test_inside_an_async_generator_iterated_by_async_for() -> None:
    async with spawned() as spawn:
        chain = await blocked(spawn(consume()), "sleep")
        assert functions(chain) == ["consume", "ticks", "sleep"]
        assert chain.frames[0].source == "async for _ in ticks():"
        assert chain.frames[1].source == "await asyncio.sleep(25)"
        assert chain.user_frame() is chain.frames[1]
        assert chain.leaf.startswith("asyncio.sleep timer (25 s")


@pytest.mark.asyncio
async def test_generator_based_await_and_coroutine_wrapper() -> None:
    async with spawned() as spawn:
        chain = await blocked(spawn(through_gate(Gate())), "wait")
        assert functions(chain) == ["through_gate", "__await__", "wait"]
        assert chain.frames[1].source == "return (yield from self.event.wait().__await__())"
        assert chain.user_frame() is chain.frames[1]
        assert chain.leaf == "an Event's waiter (the event is not set)"


@pytest.mark.asyncio
async def test_locks_and_queues_say_what_they_are() -> None:
    lock = asyncio.Lock()
    semaphore = asyncio.Semaphore(0)
    empty: asyncio.Queue[int] = asyncio.Queue()
    full: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    full.put_nowait(1)
    async with spawned() as spawn, lock:
        cases = [
            (lock.acquire(), "acquire", "a Lock's waiter (the lock is held; 1 waiting)"),
            (semaphore.acquire(), "acquire", "a Semaphore's waiter (no slot free; 1 waiting)"),
            (empty.get(), "get", "an empty Queue's get (until something is put)"),
            (full.put(2), "put", "a full Queue's put (maxsize 1, until something is taken)"),
        ]
        for coro, function, leaf in cases:
            chain = await blocked(spawn(coro), function)
            assert chain.leaf == leaf


@pytest.mark.asyncio
async def test_sleep_zero_is_a_yield_to_the_loop() -> None:
    async with spawned() as spawn:
        chain = await blocked(spawn(spin()), "__sleep0")
        assert functions(chain) == ["spin", "sleep", "__sleep0"]
        assert chain.leaf == "asyncio.sleep(0): the task runs again on the next loop iteration"


@pytest.mark.asyncio
async def test_done_not_started_and_running_tasks() -> None:
    async with spawned() as spawn:
        finished = spawn(asyncio.sleep(0))
        await finished
        assert await_chain(finished) == AwaitChain((), "done")
        cancelled = spawn(inner_sleep())
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        assert await_chain(cancelled) == AwaitChain((), "done")

        fresh = spawn(outer_sleep())
        chain = await_chain(fresh)
        assert functions(chain) == ["outer_sleep"]
        assert chain.leaf.startswith("nothing yet: not started")

        me = asyncio.current_task()
        assert me is not None
        chain = await_chain(me)
        assert chain.frames[-1].function == "test_done_not_started_and_running_tasks"
        assert chain.leaf.startswith("nothing: it is running right now")


@pytest.mark.asyncio
async def test_never_raises() -> None:
    class Broken:
        def done(self) -> bool:
            return False

        def get_coro(self) -> object:
            raise RuntimeError("no coroutine for you")

    chain = await_chain(cast("asyncio.Task[Any]", Broken()))
    assert chain == AwaitChain(
        (), "unknown: the walk stopped on RuntimeError('no coroutine for you')"
    )

    class Worse(Broken):
        def done(self) -> bool:
            raise RuntimeError("no state either")

    assert await_chain(cast("asyncio.Task[Any]", Worse())).leaf.startswith("unknown: ")


# -- Python 3.14's capture_call_graph --------------------------------------------------------


def fake_graph(frames: list[Any]) -> Callable[[asyncio.Task[Any]], SimpleNamespace]:
    """A stand-in for ``asyncio.capture_call_graph``: call_stack is innermost first."""

    def capture(task: asyncio.Task[Any]) -> SimpleNamespace:
        entries = [SimpleNamespace(frame=frame) for frame in reversed(frames)]
        return SimpleNamespace(future=task, call_stack=tuple(entries), awaited_by=())

    return capture


def coroutine_frames(task: asyncio.Task[Any]) -> list[Any]:
    """The task's coroutine frames, as the call graph of 3.14 walks them."""
    frames = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_await"):
        frames.append(coro.cr_frame)
        coro = coro.cr_await
    return frames


@pytest.mark.asyncio
async def test_call_graph_agreeing_with_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    async with spawned() as spawn:
        task = spawn(outer_sleep())
        walked = await blocked(task, "sleep")
        monkeypatch.setattr(
            asyncio, "capture_call_graph", fake_graph(coroutine_frames(task)), raising=False
        )
        assert await_chain(task).frames == walked.frames


@pytest.mark.asyncio
async def test_call_graph_wins_when_it_sees_more(monkeypatch: pytest.MonkeyPatch) -> None:
    async with spawned() as spawn:
        task = spawn(outer_sleep())
        walked = await blocked(task, "sleep")
        extra = sys._getframe()
        graph = [*coroutine_frames(task), extra]
        monkeypatch.setattr(asyncio, "capture_call_graph", fake_graph(graph), raising=False)
        chain = await_chain(task)
        assert chain.frames[:3] == walked.frames
        assert chain.frames[3].function == "test_call_graph_wins_when_it_sees_more"
        assert chain.leaf == "a Future (pending)"


@pytest.mark.asyncio
async def test_call_graph_failing_leaves_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    def capture(task: asyncio.Task[Any]) -> None:
        raise RuntimeError("not today")

    async with spawned() as spawn:
        task = spawn(outer_sleep())
        walked = await blocked(task, "sleep")
        monkeypatch.setattr(asyncio, "capture_call_graph", capture, raising=False)
        assert await_chain(task) == walked


# -- printing --------------------------------------------------------------------------------


def lib(package: str, index: int) -> ChainFrame:
    return ChainFrame(f"{SITE}/{package}/mod{index}.py", index, f"f{index}", f"call{index}()")


def user(index: int) -> ChainFrame:
    return ChainFrame(str(ROOT / "app.py"), index, f"u{index}", f"await u{index + 1}()")


@pytest.mark.usefixtures("in_root")
def test_format_folds_library_runs_over_six_but_not_the_user_frames() -> None:
    frames = (
        user(1),
        *(lib("asyncpg", i) for i in range(10, 20)),
        user(2),
        *(lib("httpx", i) for i in range(20, 26)),
        user(3),
        *(lib("asyncio", i) for i in range(40, 45)),
    )
    chain = AwaitChain(frames, "a Future (pending)")
    assert chain.user_frame() is frames[18]
    assert format_chain(chain, indent="").splitlines() == [
        "  app.py:1 in u1",
        "      await u2()",
        "  asyncpg/mod10.py:10 in f10",
        "      call10()",
        "  ... 8 frames in asyncpg ...",
        "  asyncpg/mod19.py:19 in f19",
        "      call19()",
        "  app.py:2 in u2",
        "      await u3()",
        *(
            line
            for i in range(20, 26)
            for line in (f"  httpx/mod{i}.py:{i} in f{i}", f"      call{i}()")
        ),
        "> app.py:3 in u3",
        "      await u4()",
        *(
            line
            for i in range(40, 45)
            for line in (f"  asyncio/mod{i}.py:{i} in f{i}", f"      call{i}()")
        ),
        "  waiting on: a Future (pending)",
    ]


@pytest.mark.usefixtures("in_root")
def test_format_never_folds_the_innermost_three() -> None:
    frames = (
        user(1),
        *(lib("anyio", i) for i in range(30, 34)),
        *(lib("httpx", i) for i in range(34, 37)),
        *(lib("asyncio", i) for i in range(40, 43)),
    )
    lines = format_chain(AwaitChain(frames, "an Event's waiter"), indent="  ").splitlines()
    assert lines == [
        "  > app.py:1 in u1",
        "        await u2()",
        "    anyio/mod30.py:30 in f30",
        "        call30()",
        "    ... 5 frames in anyio, httpx ...",
        "    httpx/mod36.py:36 in f36",
        "        call36()",
        *(
            line
            for i in range(40, 43)
            for line in (f"    asyncio/mod{i}.py:{i} in f{i}", f"        call{i}()")
        ),
        "    waiting on: an Event's waiter",
    ]


def test_format_of_an_empty_chain_and_of_frames_without_source() -> None:
    assert format_chain(AwaitChain((), "done")) == "      waiting on: done"
    frame = ChainFrame("<frozen importlib._bootstrap>", 7, "_load", "")
    assert format_chain(AwaitChain((frame,), "x"), indent="").splitlines() == [
        "> <frozen importlib._bootstrap>:7 in _load",
        "  waiting on: x",
    ]


# -- paths and sites -------------------------------------------------------------------------


@pytest.mark.usefixtures("in_root")
def test_short_path() -> None:
    assert short_path(f"{SITE}/asyncpg/connection.py") == "asyncpg/connection.py"
    assert short_path("/usr/lib/python3/dist-packages/yaml/__init__.py") == "yaml/__init__.py"
    assert short_path(asyncio.streams.__file__) == "asyncio/streams.py"
    assert short_path(contextlib.__file__) == "contextlib.py"
    assert short_path(str(HERE)) == "tests/test_awaitchain.py"
    assert short_path("/elsewhere/app/main.py") == "/elsewhere/app/main.py"
    assert short_path("<frozen importlib._bootstrap>") == "<frozen importlib._bootstrap>"
    assert short_path("") == ""


def test_the_plugins_own_files_print_as_its_package_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editable install is not under site-packages: its files still print short, so a
    folded run of frames names the package, not a path on the user's disk."""
    monkeypatch.chdir(tmp_path)
    assert short_path(_frames.__file__) == "pytest_asyncfaults/_frames.py"
    assert short_path(_awaitchain.__file__) == "pytest_asyncfaults/_tasks/_awaitchain.py"


def test_user_frame_rule() -> None:
    mine = ChainFrame(str(HERE), 1, "mine", "")
    plugin = ChainFrame(str(ROOT / "pytest_asyncfaults" / "_monitor.py"), 2, "record", "")
    stdlib = ChainFrame(asyncio.tasks.__file__, 3, "sleep", "")
    installed = lib("starlette", 4)
    assert mine.is_user
    assert not any(frame.is_user for frame in (plugin, stdlib, installed))
    assert AwaitChain((mine, plugin, stdlib), "").user_frame() is mine
    # no frame of the user's: the innermost library outside the stdlib and the plugin
    assert AwaitChain((installed, plugin, stdlib), "").user_frame() is installed
    assert AwaitChain((plugin, stdlib), "").user_frame() is stdlib  # else the innermost
    assert AwaitChain((), "done").user_frame() is None


@pytest.mark.usefixtures("in_root")
def test_stack_site_and_format_site() -> None:
    here = sys._getframe().f_lineno  # where the "task" is created
    stack = [
        (asyncio.tasks.__file__, 1, "create_task"),
        (str(ROOT / "pytest_asyncfaults" / "_monitor.py"), 2, "_create_task"),
        (f"{SITE}/anyio/_backends/_asyncio.py", 3, "start_soon"),
        (str(HERE), here, "test_stack_site_and_format_site"),
        (f"{SITE}/_pytest/python.py", 4, "pytest_pyfunc_call"),
    ]
    site = stack_site(stack)
    source = 'here = sys._getframe().f_lineno  # where the "task" is created'
    assert site == ChainFrame(str(HERE), here, "test_stack_site_and_format_site", source)
    assert format_site(stack) == (
        f"tests/test_awaitchain.py:{here} in test_stack_site_and_format_site: `{source}`"
    )
    assert format_site(stack, source=False) == (
        f"tests/test_awaitchain.py:{here} in test_stack_site_and_format_site"
    )
    only_library = stack[:3]  # the library that asked, past asyncio and the plugin
    fallback = stack_site(only_library)
    assert fallback is not None
    assert (fallback.filename, fallback.function) == (stack[2][0], "start_soon")
    assert format_site(only_library, source=False) == "anyio/_backends/_asyncio.py:3 in start_soon"
    only_asyncio = stack[:2]  # nothing else: the innermost frame
    assert format_site(only_asyncio, source=False) == "asyncio/tasks.py:1 in create_task"
    assert stack_site([]) is None
    assert format_site([]) == "an unknown place"


# -- limits ----------------------------------------------------------------------------------


async def deep(levels: int) -> None:
    if levels:
        await deep(levels - 1)
    else:
        await asyncio.sleep(30)


@pytest.mark.asyncio
async def test_a_walk_is_capped() -> None:
    async with spawned() as spawn:
        task = spawn(deep(120))
        await blocked(task, "sleep")
        walk = _Walk(depth=100)
        leaf = walk.task(task)
        assert len(walk.frames) == 100
        assert leaf == "(chain cut at 100 frames)"
        assert {frame.function for frame in walk.frames} == {"deep"}


@pytest.mark.asyncio
async def test_a_deep_chain_keeps_its_culprit_and_folds_the_middle() -> None:
    async with spawned() as spawn:
        task = spawn(deep(800))
        chain = await blocked(task, "sleep")
        assert len(chain.frames) == 802  # deep x 801, then asyncio.sleep
        assert MAX_DEPTH > 802
        text = format_chain(chain)
        assert "await asyncio.sleep(30)" in text  # the culprit, innermost
        assert "... 752 frames more (the chain is 802 deep) ..." in text
        assert len(text.splitlines()) < 120
