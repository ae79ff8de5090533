"""The app under test, run in process: its lifespan, and a client that talks to it.

The lifespan runs with asgi-lifespan under our own deadlines: when startup or
shutdown overruns, the error is what the lifespan is awaiting (its await
chain), not a bare ``TimeoutError``. The client is an ``httpx.AsyncClient``
over ``ServerLikeTransport``, which answers like uvicorn: the response comes
back when its body is complete, and the rest of the ASGI call runs on as
tracked background work.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Any, Final, final

import httpx
from asgi_lifespan import LifespanManager

from .._exceptions import InvalidError, LifespanError
from .._tasks._context import RequestInfo, current_role
from .._tasks._monitor import TaskMonitor
from ._transport import ServerLikeTransport

ASGIApp = Callable[..., Any]
BASE_URL: Final = "http://testserver"


def load_app(spec: str, *, field: str = "asyncfaults_app") -> ASGIApp:
    """``"package.module:attribute"`` to the ASGI app it names, with a clear error."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise InvalidError(f"{field}={spec!r} is not valid: expected 'package.module:app'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidError(f"{field}={spec!r}: cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InvalidError(
                f"{field}={spec!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise InvalidError(f"{field}={spec!r} is not an ASGI app: {type(target).__name__}")
    return target  # type: ignore[no-any-return]


@final
class AppRunner:
    """Starts and stops the app's lifespan on the test's loop, within bounds."""

    def __init__(
        self,
        app: ASGIApp,
        monitor: TaskMonitor,
        *,
        startup_timeout: float,
        shutdown_timeout: float,
    ) -> None:
        self.app = app
        self.monitor = monitor
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self._manager: LifespanManager | None = None
        self._lock: asyncio.Lock | None = None
        self.transport: ServerLikeTransport | None = None

    @property
    def started(self) -> bool:
        return self._manager is not None

    async def start(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._manager is not None:
                return
            manager = LifespanManager(self.app, startup_timeout=None, shutdown_timeout=None)
            await self._bounded(manager.__aenter__(), self.startup_timeout, "startup")
            self._manager = manager
            await self.monitor.take_connection_baseline()
            # Each request gets a shallow copy of the lifespan's state, as uvicorn
            # gives it (asgi-lifespan's own wrapper would share one dict).
            state = getattr(manager, "_state", None)
            self.transport = (
                ServerLikeTransport(
                    self.app, on_request=self._on_request, on_timeout=self._on_timeout, state=state
                )
                if isinstance(state, dict)
                else ServerLikeTransport(
                    manager.app, on_request=self._on_request, on_timeout=self._on_timeout
                )
            )

    def _on_request(self, request: RequestInfo, task: asyncio.Task[None]) -> None:
        self.monitor.request_started(request, task)

    async def _on_timeout(self, task: asyncio.Task[None], request: RequestInfo, what: str) -> str:
        """A request the client gave up on: the hang report of its task, which is cancelled
        so the run goes on (what it awaits is the line to fix)."""
        # The call's own task and what it started for this request (a streaming
        # response's body runs in a task of its own): the culprit is in one of them.
        stuck = [
            record
            for record in self.monitor.records
            if not record.done and (record.task is task or record.request is request)
        ]
        why = f"of {request} #{request.id}, which {what}"
        if not stuck:
            return f"asyncfaults: the ASGI call {why}"
        return await self.monitor.hang_report(stuck, why)

    async def stop(self) -> None:
        manager, self._manager = self._manager, None
        if manager is None:
            return
        if self.transport is not None:
            await self.transport.aclose()
        await self._bounded(manager.__aexit__(None, None, None), self.shutdown_timeout, "shutdown")

    async def _bounded(self, step: Any, limit: float, phase: str) -> None:
        """Run a lifespan step in the lifespan's context; past ``limit``, report where it hangs."""
        token = current_role.set("lifespan")
        try:
            task = asyncio.ensure_future(step)
        finally:
            current_role.reset(token)
        done, _ = await asyncio.wait({task}, timeout=limit)
        if done:
            try:
                task.result()
            except Exception as exc:
                raise LifespanError(
                    f"asyncfaults: the app's lifespan {phase} failed: {type(exc).__name__}: {exc}"
                ) from exc
            return
        stuck = [
            record
            for record in self.monitor.records
            if record.role == "lifespan" and not record.done
        ]
        report = await self.monitor.hang_report(
            stuck, f"of the app's lifespan still pending after {limit:g} s ({phase} limit)"
        )
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)
        raise LifespanError(report)


@final
class _LazyTransport(httpx.AsyncBaseTransport):
    """Starts the app's lifespan on first use, so fixtures may use the client early."""

    def __init__(self, runner: AppRunner) -> None:
        self._runner = runner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._runner.transport
        if transport is None:
            await self._runner.start()
            transport = self._runner.transport
            assert transport is not None
        return await transport.handle_async_request(request)


DEFAULT_TIMEOUT: Final = 5.0
"""httpx's own default for every timeout of a client, in seconds."""


def make_client(
    runner: AppRunner, *, timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` bound to the app in process, served like uvicorn serves it.

    Its timeouts are httpx's, and the transport keeps them: a request that gets
    no answer in time raises ``httpx.ReadTimeout`` with the hang report of its
    task. ``None`` leaves requests unbounded (``repro`` bounds them itself)."""
    return httpx.AsyncClient(transport=_LazyTransport(runner), base_url=BASE_URL, timeout=timeout)
