"""A call from the test's loop onto the engine's thread (``ProxyHost.acall``).

The hop is hand-made (two wake-ups, no concurrent future), so what
``run_coroutine_threadsafe`` gave for free is checked here: the result and the
exception come back as they were, a call past its bound is an ``EngineError``
and stops on the host, a cancelled caller cancels the host's work, and a call
on a stopped host says so.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from pytest_asyncfaults import Engine, EngineError, NotFoundError

pytestmark = pytest.mark.asyncio


class Probe:
    """Host-side work that records where it ran and how it ended."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.ended = threading.Event()
        self.cancelled = False

    async def answer(self, value: int) -> int:
        self.threads.append(threading.current_thread().name)
        return value * 2

    async def fail(self) -> None:
        raise KeyError("the host's own error")

    async def forever(self) -> None:
        self.threads.append(threading.current_thread().name)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.ended.set()


async def test_the_result_and_the_error_come_back_from_the_engines_thread() -> None:
    probe = Probe()
    with Engine(seed=1) as engine:
        assert await engine.acall(probe.answer, 21) == 42
        assert probe.threads == [engine.thread_name]
        with pytest.raises(KeyError, match="the host's own error"):
            await engine.acall(probe.fail)
        with pytest.raises(NotFoundError):  # the engine's own errors, as they are
            await engine.acall(engine.target.stats, "nowhere")


async def test_a_call_past_its_bound_is_an_engine_error_and_stops_on_the_host() -> None:
    probe = Probe()
    with Engine(seed=1, call_timeout=0.2) as engine:
        with pytest.raises(EngineError, match=r"did not answer within 0\.2 s"):
            await engine.acall(probe.forever)
        assert await asyncio.to_thread(probe.ended.wait, 5)
        assert probe.cancelled


async def test_a_cancelled_caller_cancels_the_hosts_work() -> None:
    probe = Probe()
    with Engine(seed=1) as engine:
        call = asyncio.ensure_future(engine.acall(probe.forever))
        while not probe.threads:
            await asyncio.sleep(0.005)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await asyncio.to_thread(probe.ended.wait, 5)
        assert probe.cancelled


async def test_a_call_on_a_stopped_engine_says_so() -> None:
    probe = Probe()
    engine = Engine(seed=1)
    with pytest.raises(EngineError, match="is not running: start it first"):
        await engine.acall(probe.answer, 1)
    with engine:
        pass
    with pytest.raises(EngineError, match="is not running: start it first"):
        await engine.acall(probe.answer, 1)
