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
import logging
import re
import sys
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, final

import httpx
from asgi_lifespan import LifespanManager

from .._exceptions import InvalidError, LifespanError, LoopBlockedError
from .._frames import describe_exception, leaves, raised_at
from .._tasks._context import RequestInfo, current_role
from .._tasks._monitor import CANCEL_BOUND, TaskMonitor
from .._tasks._watchdog import interrupt_past
from .._values import invalid
from ._transport import ServerLikeTransport

ASGIApp = Callable[..., Any]
BASE_URL: Final = "http://testserver"


_DOTTED: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def check_app_spec(field: str, spec: object) -> str:
    """``package.module:attribute``, both parts dotted Python names (no path, no ``..``)."""
    if not isinstance(spec, str) or len(spec) > 1000:
        raise invalid(field, spec, "'package.module:app'")
    module_name, sep, attribute = spec.partition(":")
    if not sep or not _DOTTED.fullmatch(module_name) or not _DOTTED.fullmatch(attribute):
        raise invalid(field, spec, "'package.module:app' (dotted Python names, not a path)")
    return spec


def load_app(spec: str, *, field: str = "asyncfaults_app") -> ASGIApp:
    """``"package.module:attribute"`` to the ASGI app it names, with a clear error."""
    check_app_spec(field, spec)
    module_name, _, attribute = spec.partition(":")
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
class _LifespanWatch:
    """What the app itself says of its lifespan: a ``lifespan.startup.failed`` or
    ``lifespan.shutdown.failed``, with the exception it was handling when it said so.

    asgi-lifespan acts on a failure only when the app raises it too (Starlette,
    Litestar); Quart says it and goes on waiting, so the manager would wait out the
    whole limit. Frameworks send the message from inside their ``except`` block: the
    exception being handled there is the app's own, with its traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failed: asyncio.Future[tuple[str, BaseException | None]] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watched(message: Any) -> None:
            failed = self.failed
            if message.get("type") in _FAILED and failed is not None and not failed.done():
                failed.set_result((str(message.get("message", "")), sys.exception()))
            await send(message)

        await self.app(scope, receive, watched)


_FAILED: Final = frozenset({"lifespan.startup.failed", "lifespan.shutdown.failed"})
FAILED_GRACE: Final = 0.05
"""How long a lifespan step the app said failed gets to end on its own."""


def _failure(phase: str, message: str, exception: BaseException | None) -> str:
    """The app's lifespan failure as a report: the exception and the app's line it came
    from, else the message the app sent."""
    head = f"asyncfaults: the app's lifespan {phase} failed"
    if exception is None:
        text = " ".join(message.split()) if message else "(the app gave no message)"
        return f"{head}: {text[:500]}"
    parts = []
    for leaf in leaves(exception):
        if isinstance(leaf, LoopBlockedError):  # its report names the line already
            parts.append(str(leaf).removeprefix("asyncfaults: "))
        else:
            parts.append(f"{describe_exception(leaf)}\n  raised at {raised_at(leaf)}")
    return f"{head}: " + "\n".join(parts)


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
        self._watch = _LifespanWatch(app)
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
            manager = LifespanManager(self._watch, startup_timeout=None, shutdown_timeout=None)
            await self._bounded(manager.__aenter__(), self.startup_timeout, "startup")
            self._manager = manager
            await self.monitor.take_connection_baseline()
            # Each request gets a shallow copy of the lifespan's state, as uvicorn
            # gives it (asgi-lifespan's own wrapper would share one dict).
            state = getattr(manager, "_state", None)
            self.transport = (
                ServerLikeTransport(self.app, on_timeout=self._on_timeout, state=state)
                if isinstance(state, dict)
                else ServerLikeTransport(manager.app, on_timeout=self._on_timeout)
            )

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
        failed = self._watch.failed = asyncio.get_running_loop().create_future()
        logged_before = len(self.monitor.error_logs)
        with interrupt_past(limit, f"the lifespan's {phase} limit ({limit:g} s)"):
            await asyncio.wait({task, failed}, timeout=limit, return_when=FIRST_COMPLETED)
        self._watch.failed = None
        if task.done():
            try:
                task.result()
            except Exception as exc:
                raise LifespanError(_failure(phase, "", exc)) from exc
            if not failed.done():
                return
        if failed.done():
            # Said at once, by the app: nothing is left to wait for.
            failed.cancel()
            message, exception = failed.result()
            # A framework that raises it too ends the step in a turn or two; one that
            # only said it (Quart) leaves the step waiting for good: it is cancelled.
            await asyncio.wait({task}, timeout=FAILED_GRACE)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_BOUND)
            if task.done() and not task.cancelled() and task.exception() is not None:
                exception = exception or task.exception()
            raise LifespanError(_failure(phase, message, exception))
        failed.cancel()
        stuck = [
            record
            for record in self.monitor.records
            if record.role == "lifespan" and not record.done
        ]
        report = await self.monitor.hang_report(
            stuck, f"of the app's lifespan still pending after {limit:g} s ({phase} limit)"
        )
        report += _logged_meanwhile(phase, self.monitor.error_logs[logged_before:])
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_BOUND)
        raise LifespanError(report)


LOGGED_SHOWN: Final = 5
"""The app's error records a lifespan hang report quotes (the first ones: the cause)."""


def _logged_meanwhile(phase: str, records: Sequence[logging.LogRecord]) -> str:
    """What the app logged at ERROR while its lifespan step hung: a startup that retries a
    login refused for a wrong password hangs, and the refusal is the cause to read first."""
    if not records:
        return ""
    lines = [f"\n\nThe app logged, while its {phase} ran:"]
    for record in records[:LOGGED_SHOWN]:
        line = f"  {record.levelname} {record.name}: {' '.join(record.getMessage().split())}"
        exception = record.exc_info[1] if record.exc_info else None
        if exception is not None:
            line += f": {describe_exception(exception)}"
        lines.append(line[:300])
    if len(records) > LOGGED_SHOWN:
        lines.append(f"  ... and {len(records) - LOGGED_SHOWN} more")
    return "\n".join(lines)


@final
class _LazyTransport(httpx.AsyncBaseTransport):
    """Starts the app's lifespan on first use, so fixtures may use the client early."""

    def __init__(self, runner: AppRunner) -> None:
        self._runner = runner

    def handle_async_request(self, request: httpx.Request) -> Coroutine[Any, Any, httpx.Response]:
        """The transport's own coroutine once the app is up: no frame of this one's on
        the path of every request."""
        transport = self._runner.transport
        if transport is None:
            return self._start_then(request)
        return transport.handle_async_request(request)

    async def _start_then(self, request: httpx.Request) -> httpx.Response:
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
