"""Where proxies live, driven from any thread: a target on a loop of its own.

The target is either the embedded engine (``FaultCore``) or a client of a
Toxiproxy HTTP API (a real Toxiproxy, or ``asyncfaults serve``). Both speak
``ProxyTarget``; ``ProxyHost`` runs one on a private event loop in a daemon
thread and offers every operation twice: blocking (fixtures, the CLI) and
awaitable from any other loop (the test's). Keeping the target off the test's
loop is what lets faults keep time while the app under test blocks its loop.
Every call is bounded: a target that does not answer raises ``EngineError``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Final, Generic, ParamSpec, Protocol, Self, TypeVar

from .._engine._loop import new_event_loop
from .._engine._models import ProtocolEvent, ProxyInfo, ProxyStats
from .._exceptions import EngineError
from .._frames import machinery_call
from .._toxics._spec import ToxicSpec

T = TypeVar("T")
P = ParamSpec("P")

CALL_TIMEOUT: Final = 10.0
"""Bound on any call into a host, in seconds."""
STOP_TIMEOUT: Final = 5.0


def _start_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task of ``coro`` on ``loop`` (its thread): run at once up to its first wait where
    asyncio can (3.12+), so an operation that never waits ends with no turn of the loop."""
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, eager_start=True)
    return loop.create_task(coro)


def _settle(answer: asyncio.Future[T], task: asyncio.Task[T]) -> None:
    """Hand a host task's outcome to the caller's future (on the caller's loop)."""
    if answer.done():
        return
    if task.cancelled():
        answer.cancel()
    elif (exc := task.exception()) is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(task.result())


class ProxyTarget(Protocol):
    """The proxy operations every backend offers, all on the host's loop."""

    async def create_proxy(
        self, name: str, upstream: str, listen: str = ..., enabled: bool = ...
    ) -> ProxyInfo: ...
    async def update_proxy(
        self,
        name: str,
        *,
        upstream: str | None = None,
        listen: str | None = None,
        enabled: bool | None = None,
    ) -> ProxyInfo: ...
    async def delete_proxy(self, name: str) -> None: ...
    async def proxy_info(self, name: str) -> ProxyInfo: ...
    async def proxies(self) -> dict[str, ProxyInfo]: ...
    async def stats(self, name: str) -> ProxyStats: ...
    async def protocol_events(self, name: str) -> tuple[ProtocolEvent, ...]: ...
    async def toxics(self, proxy: str) -> tuple[ToxicSpec, ...]: ...
    async def toxic(self, proxy: str, name: str) -> ToxicSpec: ...
    async def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicSpec: ...
    async def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, object] | None = None,
        toxicity: float | None = None,
    ) -> ToxicSpec: ...
    async def remove_toxic(self, proxy: str, name: str) -> None: ...
    async def open_toxic(
        self, proxy: str, spec: ToxicSpec, *, counted: bool = False
    ) -> tuple[ToxicSpec, ProxyStats | None]:
        """``add_toxic``, and with ``counted`` the proxy's counters just after (None
        from a server that keeps none): one call for a fault window's start."""

    async def close_toxic(
        self, proxy: str, name: str, *, counted: bool = False
    ) -> ProxyStats | None:
        """With ``counted`` the proxy's counters, then ``remove_toxic``; a toxic or proxy
        already gone is no error. One call for a fault window's end."""

    async def reset(self) -> None: ...


TargetT = TypeVar("TargetT", bound=ProxyTarget)


class ProxyHost(ABC, Generic[TargetT]):
    """A ``ProxyTarget`` on its own loop in its own thread; see the module doc."""

    thread_name = "asyncfaults-host"

    def __init__(self, *, call_timeout: float = CALL_TIMEOUT) -> None:
        self._call_timeout = call_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._target: TargetT | None = None
        self._stopped = threading.Event()
        self._start_error: BaseException | None = None

    @abstractmethod
    async def _open(self, loop: asyncio.AbstractEventLoop) -> TargetT:
        """Make the target, on its loop; raising here fails ``start``."""

    @abstractmethod
    async def _close(self, target: TargetT) -> None:
        """Release the target, on its loop, when the host stops."""

    def describe(self) -> str:
        """One line for the report header."""
        return type(self).__name__

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise EngineError(f"{self.describe()} is already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=self.thread_name, daemon=True
        )
        self._thread.start()
        if not ready.wait(self._call_timeout):
            raise EngineError(f"{self.describe()} did not start within {self._call_timeout} s")
        if self._start_error is not None:
            self._thread.join(STOP_TIMEOUT)
            raise self._start_error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            try:
                self._target = loop.run_until_complete(self._open(loop))
            except BaseException as exc:  # handed to start(), which raises it
                self._start_error = exc
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close(self._target))
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=STOP_TIMEOUT))
                # Let aborted transports run their connection_lost callbacks.
                loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                self._stopped.set()

    @property
    def running(self) -> bool:
        return self._target is not None and not self._stopped.is_set()

    def stop(self) -> None:
        """Release the target (proxies, connections), end the thread, close the loop."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or self._stopped.is_set():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT * 2)
        if thread.is_alive():
            raise EngineError(f"{self.describe()} did not stop within {STOP_TIMEOUT * 2} s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def target(self) -> TargetT:
        if self._target is None or not self.running:
            raise EngineError(f"{self.describe()} is not running: start it first")
        return self._target

    # -- calls onto the host's loop -----------------------------------------------------------

    def _submit(
        self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        loop = self._loop
        if loop is None or not self.running:
            raise EngineError(f"{self.describe()} is not running: start it first")
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), loop)

    @machinery_call
    def call(self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the host's loop and wait (bounded) for its result.

        It blocks the caller's loop (``proxy.stats`` from a test, on a child process
        or a Toxiproxy server), so it is registered as the plugin's own wait: the
        blocked-loop detector does not blame the app for it.
        """
        if threading.current_thread() is self._thread:
            raise EngineError("a blocking call from the host's own thread would deadlock")
        future = self._submit(fn, *args, **kwargs)
        try:
            return future.result(self._call_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EngineError(
                f"{self.describe()} did not answer within {self._call_timeout} s"
            ) from None

    async def acall(
        self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``call`` from a coroutine on another loop: waits without blocking that loop.

        The hop is two wake-ups, one per thread, and nothing else: the host's loop
        runs ``fn`` as a task (eagerly where asyncio can, 3.12+) and hands the
        outcome straight to a future of the caller's loop, with no
        ``concurrent.futures.Future`` in between (``run_coroutine_threadsafe`` and
        ``wrap_future`` cost as much as the wake-ups). A caller cancelled or out of
        time cancels the host's task.
        """
        host = self._loop
        if host is None or not self.running:
            raise EngineError(f"{self.describe()} is not running: start it first")
        here = asyncio.get_running_loop()
        answer: asyncio.Future[T] = here.create_future()
        started: list[asyncio.Task[T]] = []

        def deliver(task: asyncio.Task[T]) -> None:  # on the host's loop
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
                here.call_soon_threadsafe(_settle, answer, task)

        def begin() -> None:  # on the host's loop
            if answer.cancelled():
                return
            task = _start_task(host, fn(*args, **kwargs))
            started.append(task)
            task.add_done_callback(deliver)

        host.call_soon_threadsafe(begin)
        try:
            async with asyncio.timeout(self._call_timeout):
                return await answer
        except TimeoutError:
            self._cancel_started(started)
            raise EngineError(
                f"{self.describe()} did not answer within {self._call_timeout} s"
            ) from None
        except asyncio.CancelledError:
            self._cancel_started(started)
            raise

    def _cancel_started(self, started: list[asyncio.Task[T]]) -> None:
        host = self._loop
        if started and host is not None and not host.is_closed():
            with contextlib.suppress(RuntimeError):
                host.call_soon_threadsafe(started[0].cancel)

    # -- the blocking API (fixtures, CLI, tests) --------------------------------------------------

    def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> ProxyInfo:
        return self.call(self.target.create_proxy, name, upstream, listen, enabled)

    def update_proxy(
        self,
        name: str,
        *,
        upstream: str | None = None,
        listen: str | None = None,
        enabled: bool | None = None,
    ) -> ProxyInfo:
        return self.call(
            self.target.update_proxy, name, upstream=upstream, listen=listen, enabled=enabled
        )

    def delete_proxy(self, name: str) -> None:
        self.call(self.target.delete_proxy, name)

    def proxy(self, name: str) -> ProxyInfo:
        return self.call(self.target.proxy_info, name)

    def proxies(self) -> dict[str, ProxyInfo]:
        return self.call(self.target.proxies)

    def stats(self, name: str) -> ProxyStats:
        return self.call(self.target.stats, name)

    def protocol_events(self, name: str) -> tuple[ProtocolEvent, ...]:
        return self.call(self.target.protocol_events, name)

    def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicSpec:
        return self.call(self.target.add_toxic, proxy, spec)

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, object] | None = None,
        toxicity: float | None = None,
    ) -> ToxicSpec:
        return self.call(
            self.target.update_toxic, proxy, name, attributes=attributes, toxicity=toxicity
        )

    def remove_toxic(self, proxy: str, name: str) -> None:
        self.call(self.target.remove_toxic, proxy, name)

    def toxics(self, proxy: str) -> tuple[ToxicSpec, ...]:
        return self.call(self.target.toxics, proxy)

    def reset(self) -> None:
        self.call(self.target.reset)
