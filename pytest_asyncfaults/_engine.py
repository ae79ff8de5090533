"""The embedded fault engine: ``FaultCore`` on its own loop in its own thread.

An app under test may block its event loop (that is one of the bugs we look
for). Faults must not stall or stretch with it: real Toxiproxy is another
process and keeps its own time, so the engine keeps its own loop. Every call
into it is bounded; a call that does not come back in time raises
``EngineError`` instead of hanging the test run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import threading
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar, final, overload

from ._core import FaultCore
from ._exceptions import EngineError
from ._loop import new_event_loop
from ._spec import ToxicSpec
from ._stats import ProxyInfo, ProxyStats

T = TypeVar("T")
P = ParamSpec("P")

CALL_TIMEOUT: Final = 10.0
"""Bound on any call into the engine, in seconds."""
STOP_TIMEOUT: Final = 5.0


@final
class Engine:
    """The embedded fault proxy, running in a thread of this process.

    Use it as a context manager (``with Engine(seed=1) as engine:``) or call
    ``start``/``stop``. Methods are safe to call from any thread; the ``a``
    variants are for use from another event loop (the test's).
    """

    def __init__(self, *, seed: int | None = None, call_timeout: float = CALL_TIMEOUT) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise EngineError(f"seed={seed!r} is not valid: expected an integer")
        self.seed: int = secrets.randbits(32) if seed is None else seed
        """Fixes every random decision (toxicity, jitter, slicer sizes): print it to repeat."""
        self._call_timeout = call_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core: FaultCore | None = None
        self._stopped = threading.Event()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Engine:
        if self._thread is not None:
            raise EngineError("the engine is already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="asyncfaults-engine", daemon=True
        )
        self._thread.start()
        if not ready.wait(self._call_timeout):
            raise EngineError(f"the engine did not start within {self._call_timeout} s")
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._core = FaultCore(loop, self.seed)
        ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                self._core.close()
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
        return self._thread is not None and not self._stopped.is_set()

    def stop(self) -> None:
        """Close every proxy and connection, end the thread, release the loop."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or self._stopped.is_set():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            raise EngineError(f"the engine thread did not stop within {STOP_TIMEOUT} s")

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- calls into the engine's loop ---------------------------------------------------

    def _submit(
        self, fn: Callable[P, Any], *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[Any]:
        loop, core = self._loop, self._core
        if loop is None or core is None or not self.running:
            raise EngineError("the engine is not running: start it first")

        async def run() -> Any:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                return await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), loop)

    def _wait(self, future: concurrent.futures.Future[T]) -> T:
        try:
            return future.result(self._call_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EngineError(f"the engine did not answer within {self._call_timeout} s") from None

    @overload
    def call(
        self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...
    @overload
    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...
    def call(self, fn: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run ``fn`` on the engine's loop and wait (bounded) for its result."""
        if threading.current_thread() is self._thread:
            raise EngineError("Engine.call from the engine's own thread would deadlock")
        return self._wait(self._submit(fn, *args, **kwargs))

    @overload
    async def acall(
        self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...
    @overload
    async def acall(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...
    async def acall(self, fn: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> Any:
        """``call`` for a coroutine on another loop: waits without blocking that loop."""
        future = self._submit(fn, *args, **kwargs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self._call_timeout)
        except TimeoutError:
            raise EngineError(f"the engine did not answer within {self._call_timeout} s") from None

    @property
    def core(self) -> FaultCore:
        if self._core is None:
            raise EngineError("the engine is not running: start it first")
        return self._core

    # -- the synchronous API (tests, CLI, fixtures) --------------------------------------

    def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> ProxyInfo:
        return self.call(self.core.create_proxy, name, upstream, listen, enabled)

    def update_proxy(
        self,
        name: str,
        *,
        upstream: str | None = None,
        listen: str | None = None,
        enabled: bool | None = None,
    ) -> ProxyInfo:
        return self.call(
            self.core.update_proxy, name, upstream=upstream, listen=listen, enabled=enabled
        )

    def delete_proxy(self, name: str) -> None:
        self.call(self.core.delete_proxy, name)

    def proxy(self, name: str) -> ProxyInfo:
        return self.call(self.core.proxy_info, name)

    def proxies(self) -> dict[str, ProxyInfo]:
        return self.call(self.core.proxies)

    def stats(self, name: str) -> ProxyStats:
        return self.call(self.core.stats, name)

    def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicSpec:
        return self.call(self.core.add_toxic, proxy, spec)

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, object] | None = None,
        toxicity: float | None = None,
    ) -> ToxicSpec:
        return self.call(
            self.core.update_toxic, proxy, name, attributes=attributes, toxicity=toxicity
        )

    def remove_toxic(self, proxy: str, name: str) -> None:
        self.call(self.core.remove_toxic, proxy, name)

    def toxics(self, proxy: str) -> tuple[ToxicSpec, ...]:
        return self.call(self.core.toxics, proxy)

    def reset(self) -> None:
        self.call(self.core.reset)
