"""The task monitor: every task the test's loop creates, and what became of it.

It hooks ``create_task`` on asyncio's base loop for the thread that runs the
test (``asyncio.create_task``, ``TaskGroup``, ``ensure_future``, ``gather``
and the test runners all go through it), so it sees tasks made in fixtures,
the lifespan, requests and their background phase alike, while the fault
engine's own loop, in another thread, stays out of it. For each task it keeps
where it was created, which request it belongs to (a context variable the
app runner sets), and when it ended; how it ended is read from the task
itself, without retrieving its exception, so "never retrieved" stays
visible.

``settle`` waits for the background work with a deadline; past it, the test
fails with a hang report: each stuck task's await chain down to what it
blocks on, where it was created and how long ago, the faults active at that
moment and the open connections per proxy. The stuck tasks are then
cancelled (bounded), so the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import logging
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, Final, cast, final

from .._exceptions import AsyncFaultsError, HangError
from .._frames import (
    Frame,
    creator_kind,
    exception_chain,
    format_site,
    is_library,
    is_own,
    stack_from,
)
from ._allow import allowed
from ._awaitchain import await_chain, format_chain
from ._context import RequestInfo, Role, current_request, current_role
from ._logs import ErrorLogs
from ._outcome import Outcome, State, TaskOutcome
from ._pools import idle_in_pools
from ._swallow import dropping_site, swallowing_site, swallowing_site_in
from ._threads import format_threads
from ._watchdog import interrupt_past

CANCEL_BOUND: Final = 0.5
"""How long stuck tasks get to end once cancelled: a task ends in a turn or two of the
loop once cancelled, and the test must end within a second of its deadline."""
FAULTS_BOUND: Final = 0.5
"""How long a hang report waits for the faults' state (a child process, a Toxiproxy)."""
AFTER_RESPONSE: Final = 0.02
"""A request's call that runs on this long after its response was sent is in its
after-response phase (Starlette's, FastAPI's and Litestar's background tasks); one that
ends as it answers has none."""
TIMEOUTS_KEPT: Final = 5
"""Timeouts of one task whose fate an outcome tells (a retry loop may time out often)."""
ALIKE_NAMED: Final = 10
"""Tasks named in a report's entry for many alike, beside the one shown in full."""
STACK_DEPTH: Final = 20
UNDECIDED_RECHECK: Final = 0.02
"""How soon settle looks again at a library's task it could not yet tell the app's or
the library's own (it had not run yet)."""
CONNECTIONS_GRACE: Final = 1.0
"""How long settle lets proxy connection counts catch up with sockets the app closed."""

_original_create_task: Final = asyncio.BaseEventLoop.create_task
_LOOP_CALLBACK: Final = asyncio.events.Handle._run.__code__
_ASYNCIO_CREATE_TASK: Final = asyncio.tasks.create_task.__code__
_original_gather: Final = asyncio.tasks.gather
"""Where the event loop calls into a task's step: the bottom of any coroutine's stack."""
_original_exception_handler: Final = asyncio.BaseEventLoop.call_exception_handler
_original_timeout_exit: Final = asyncio.timeouts.Timeout.__aexit__
_EXPIRING: Final = asyncio.timeouts._State.EXPIRING  # type: ignore[attr-defined]
_WAIT_FOR_CODE: Final = getattr(asyncio.tasks.wait_for, "__code__", None)
_monitors: dict[int, TaskMonitor] = {}
_patch_lock = threading.Lock()


def _create_task(loop: asyncio.BaseEventLoop, coro: Any, *args: Any, **kwargs: Any) -> Any:
    task = _original_create_task(loop, coro, *args, **kwargs)
    monitor = _monitors.get(threading.get_ident())
    if monitor is not None:
        monitor._record(task, sys._getframe(1))
    return task


def create_request_task(
    loop: asyncio.AbstractEventLoop, coro: Any, name: str, request: RequestInfo
) -> asyncio.Task[Any]:
    """The task of a request's ASGI call, made by the app runner: recorded as that at once
    (``TaskMonitor._record_request``), with none of the work a task of unknown origin
    needs (who asked for it, a done callback: the runner times the call itself). It is on
    the path of every request."""
    task: asyncio.Task[Any] = _original_create_task(loop, coro, name=name)  # type: ignore[arg-type]
    monitor = _monitors.get(threading.get_ident())
    if monitor is not None:
        monitor._record_request(task, sys._getframe(1), request)
    return task


async def _timeout_exit(
    self: asyncio.Timeout, exc_type: Any, exc_val: Any, exc_tb: Any
) -> bool | None:
    """``asyncio.timeout()``'s exit (and so ``wait_for``'s, from Python 3.12): a block whose
    deadline passed (its cancel was sent) and that ends with no exception swallowed that
    ``CancelledError``: the timeout did nothing. The task is not left cancelled, so only
    here can it be seen."""
    expired = getattr(self, "_state", None) is _EXPIRING
    try:
        await _original_timeout_exit(self, exc_type, exc_val, exc_tb)
    except TimeoutError as timed_out:
        monitor = _monitors.get(threading.get_ident())
        if expired and monitor is not None:
            monitor._timed_out(timed_out)
        raise
    if expired and exc_type is None:
        monitor = _monitors.get(threading.get_ident())
        if monitor is not None:
            monitor._timeout_swallowed(sys._getframe(1))
    return None


def _call_exception_handler(loop: asyncio.BaseEventLoop, context: dict[str, Any]) -> None:
    """The loop's report of a task collected with its exception never retrieved, whatever
    handler takes it next: anyio's test runner installs its own, so asyncio's "never
    retrieved" line is not logged there."""
    monitor = _monitors.get(threading.get_ident())
    task = context.get("future")
    if monitor is not None and isinstance(task, asyncio.Task) and "exception" in context:
        record = monitor.record_for(task)
        if record is not None:
            record.unretrieved = True
    _original_exception_handler(loop, context)


def _gather(*aws: Any, return_exceptions: bool = False) -> Any:
    outer = _original_gather(*aws, return_exceptions=return_exceptions)
    monitor = _monitors.get(threading.get_ident())
    if monitor is not None and not return_exceptions:
        monitor._watch_gather(outer, sys._getframe(1))
    return outer


def _capture(frame: FrameType | None) -> tuple[CodeType | int, ...]:
    """The creation stack, innermost first, kept as cheaply as possible.

    One flat tuple of code objects and instruction offsets (one allocation,
    little for the garbage collector to scan). ``f_lineno`` would cost a scan
    of each code's line table per frame, for every task of the app: lines,
    names and files are worked out only when a report needs them.
    """
    stack: list[CodeType | int] = []
    depth = 0
    while frame is not None and depth < STACK_DEPTH:
        code = frame.f_code
        if code is _LOOP_CALLBACK:
            break  # below it: the event loop and the test runner, never the answer
        stack += (code, frame.f_lasti)
        frame = frame.f_back
        depth += 1
    return tuple(stack)


@functools.lru_cache(maxsize=16384)
def _line(code: CodeType, offset: int) -> int:
    """The line of ``offset`` in ``code``; cached, as a report on many tasks made at one
    line asks it again and again."""
    for start, end, line in code.co_lines():
        if start <= offset < end and line is not None:
            return line
    return code.co_firstlineno


def _stack(raw: tuple[CodeType | int, ...]) -> tuple[Frame, ...]:
    """A captured stack as frames, innermost first: the work ``_capture`` put off."""
    pairs = cast("Iterator[tuple[CodeType, int]]", zip(raw[0::2], raw[1::2], strict=True))
    return tuple((code.co_filename, _line(code, offset), code.co_name) for code, offset in pairs)


_WAIT_FOR: Final = getattr(asyncio.tasks.wait_for, "__code__", None)


def _asked_by(raw: tuple[CodeType | int, ...]) -> tuple[bool, bool]:
    """Who asked for the task: (a test runner: the test's own task, anyio's runner;
    ``asyncio.wait_for``, for the awaitable it was given).

    One walk past the ``create_task`` plumbing to the frame that asked, on the path
    of every task the app creates."""
    by_wait_for = False
    for index in range(0, len(raw), 2):
        code = raw[index]
        by_wait_for = by_wait_for or code is _WAIT_FOR
        kind = creator_kind(code)  # type: ignore[arg-type]
        if kind != "library":
            return kind == "runner", by_wait_for
    return False, by_wait_for


def _asked_by_app(raw: tuple[CodeType | int, ...]) -> bool:
    """The app asked for the task: the frame past the ``create_task`` plumbing is the
    app's (``create_task(pool.execute(...))``: the app's work, though the coroutine is the
    driver's), or the library function the app called made it (Quart's
    ``add_background_task``: an API to start the app's background work). A task a library
    made deeper down, on its own account (a pool refilling itself while the app acquires),
    is not."""
    callers = [
        code
        for index in range(0, len(raw), 2)
        if creator_kind(code := cast("CodeType", raw[index])) != "library"
        and not is_own(code.co_filename)  # our gather wrapper: plumbing too
    ]
    return any(not is_library(code.co_filename) for code in callers[:2])


def _runs_app_code(task: asyncio.Task[Any]) -> bool | None:
    """Whether a pending task is in the app's code now (a frame of its await chain is the
    app's); ``None`` before its first step, when nothing can be told yet."""
    coro = task.get_coro()
    if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
        return None
    return any(frame.is_user for frame in await_chain(task).frames)


@final
@dataclass(eq=False, slots=True)
class TaskRecord:
    """One task of the test: where it came from and when it ended.

    It holds its task weakly: a task the app keeps no reference to may be
    garbage-collected while pending, and the monitor must not hide that.
    """

    ref: weakref.ref[asyncio.Task[Any]] | None
    last_name: str
    created_at: float
    raw_stack: tuple[CodeType | int, ...]
    request: RequestInfo | None
    role: Role | None
    runner: bool
    ended_at: float | None = None
    request_call: bool = False
    """The ASGI call of ``request`` itself (its tail runs BackgroundTasks)."""
    code: CodeType | None = None
    """The code of the task's coroutine function (kept: the task may be gone by report time)."""

    lost: bool = False
    """Garbage-collected while still pending: nobody held a reference to it."""
    final_state: State | None = None
    final_exception: BaseException | None = None
    """How it ended, kept for when the task object itself is gone."""
    final_cancel_requests: int = 0
    """Cancellations asked of it and not withdrawn, when it ended (``Task.cancelling()``)."""
    hung_at: float | None = None
    """When a hang report found it still pending (then it was cancelled), for the timeline."""
    hang_chain: str = ""
    """Its await chain as that report printed it."""
    inner: bool = False
    """The task ``asyncio.wait_for`` makes of its awaitable on Python 3.11: a part of
    its awaiter's ``await``, whose failure the awaiter receives (3.12 makes none): not
    an entry of the outcome, nor a failure to log, though what it does to a cancel
    (swallow it) is still seen."""
    handled: BaseException | None = None
    """The error a framework's wrapper task (its coroutine is the framework's) caught and
    logged while it ran: Quart's ``add_background_task`` does so, and returns."""
    abandoned: bool = False
    """It did not end when cancelled (it swallows ``CancelledError``): reported once, then
    left behind, out of asyncio's sight, so that nothing waits for it again."""
    unretrieved: bool = False
    """The loop reported it collected with its exception never retrieved."""
    cancelled_by_harness: bool = False
    """The harness cancelled it (a hang report's clean-up, the end of the test): what it
    does with that cancel is reported there, not as the app's swallowed cancel."""
    library: bool | None = None
    """Library-owned work (``TaskMonitor.library_owned``), once that is settled."""
    timeouts: list[BaseException] | None = None
    """The ``TimeoutError``\\ s its timeouts raised, held until the task ends (``dropped``)."""
    dropped: list[str] | None = None
    """Where it caught a timeout's ``TimeoutError`` and let it go, neither re-raised nor
    logged: why work that was meant to fail with it "completed"."""

    @property
    def task(self) -> asyncio.Task[Any] | None:
        return None if self.ref is None else self.ref()

    @property
    def finished_at(self) -> float | None:
        """When the task ended (for the ASGI call of a request, as the app runner saw it)."""
        if self.request_call and self.request is not None:
            return self.request.ended_at
        return self.ended_at

    def ended(self, task: asyncio.Task[Any]) -> None:
        """Done callback of the task: note how it ended, without retrieving anything."""
        self.ended_at = time.monotonic()
        self.last_name = task.get_name()
        self.final_cancel_requests = task.cancelling()
        if task.cancelled():
            self.final_state = "cancelled"
        else:
            self.final_exception = getattr(task, "_exception", None) or self.handled
            self.final_state = "completed" if self.final_exception is None else "failed"

    def settle_timeouts(self, logged: Callable[[BaseException], bool]) -> None:
        """Once the task ended: each timeout it raised either left it (its failure, or
        what that was raised from), was logged, or was dropped where it was caught. The
        exceptions (and the frames their tracebacks hold) are let go of here."""
        raised, self.timeouts = self.timeouts, None
        if not raised or self.state != "completed":
            return  # a failure or a cancel says what became of the work itself
        for timed_out in raised:
            if logged(timed_out):
                continue
            site = dropping_site(timed_out)
            if site:
                self.dropped = [*(self.dropped or ()), site]

    def collected(self, _: object) -> None:
        """Weak reference callback: the task object is gone."""
        if self.finished_at is None:  # it never ended: it died pending
            self.lost = True
            self.ended_at = time.monotonic()

    @property
    def cancel_requests(self) -> int:
        task = self.task
        return self.final_cancel_requests if task is None else task.cancelling()

    @property
    def stack(self) -> tuple[Frame, ...]:
        """Where the task was created, innermost frame first."""
        return _stack(self.raw_stack)

    @property
    def name(self) -> str:
        """The task's name now (``asyncio.create_task`` names a task after creating it)."""
        task = self.task
        if task is not None:
            self.last_name = task.get_name()
        return self.last_name

    @property
    def done(self) -> bool:
        task = self.task
        return task is None or task.done()

    @property
    def exception(self) -> BaseException | None:
        """The task's exception, read without marking it retrieved; for a framework's
        wrapper that caught and logged the app's error (Quart's background tasks), that
        error: the app's work failed though its task returned."""
        if self.request_call and self.request is not None:
            return self.request.error
        task = self.task
        if task is None:
            return self.final_exception
        if not task.done() or task.cancelled():
            return None
        return getattr(task, "_exception", None) or self.handled

    @property
    def state(self) -> State:
        task = self.task
        if task is None:
            if self.lost:
                return "lost"
            if self.request_call:
                return "failed" if self.exception is not None else "completed"
            return self.final_state or "completed"
        if not task.done():
            return "pending"
        if task.cancelled():
            return "cancelled"
        return "failed" if self.exception is not None else "completed"

    @property
    def retrieved(self) -> bool:
        task = self.task
        return task is None or not getattr(task, "_log_traceback", False)

    def describe(self) -> str:
        if self.request_call and self.request is not None:
            what = f"the ASGI call of {self.request}"
            sent, ended = self.request.response_complete_at, self.request.ended_at
            if sent is not None and (ended is None or ended - sent > AFTER_RESPONSE):
                what += " (after its response was sent: its background tasks)"
        elif self.request is not None:
            what = f"a task of {self.request}"
        elif self.role == "lifespan":
            what = "a task of the app's lifespan"
        else:
            what = "a task of the test"
        site = format_site(self.stack)
        return f"Task {self.name!r}, {what}, created at {site}"


@final
@dataclass(eq=False)
class GatherRecord:
    """One ``asyncio.gather`` without ``return_exceptions``, and what it left behind."""

    raw_stack: tuple[CodeType | int, ...]
    children: list[TaskRecord]
    failed_with: BaseException | None = None
    abandoned: list[TaskRecord] | None = None
    """Children still running when the gather failed: nobody will await them."""

    @property
    def stack(self) -> tuple[Frame, ...]:
        """Where the gather was called, innermost frame first."""
        return _stack(self.raw_stack)


@final
@dataclass(frozen=True)
class SwallowedTimeout:
    """A timeout that expired and did nothing: the block caught its ``CancelledError``."""

    task_name: str
    site: tuple[Frame, ...]
    """Where the timeout was (the ``async with asyncio.timeout`` or the ``wait_for`` call),
    innermost first."""
    caught_at: str
    """The ``except`` that caught it, as a report's line; "" if not found."""


@final
class TaskMonitor:
    """Every task created on the test's thread while installed (see the module doc)."""

    def __init__(
        self,
        *,
        default_within: float = 5.0,
        connections: Callable[[], Awaitable[dict[str, int]]] | None = None,
        ports: Callable[[], dict[str, int]] | None = None,
        faults_summary: Callable[[], Awaitable[list[str]]] | None = None,
        allow: Iterable[str] = (),
        library_tasks: bool = False,
    ) -> None:
        self.default_within = default_within
        self.allow: tuple[str, ...] = tuple(allow)
        """Tasks spared, by name pattern or creation site (the ``allow`` setting)."""
        self.library_tasks = library_tasks
        """Count library-owned tasks as the app's background work too (the
        ``library_tasks = "watch"`` setting); see ``library_owned``."""
        self.records: list[TaskRecord] = []
        self._by_id: dict[int, TaskRecord] = {}
        self.gathers: list[GatherRecord] = []
        self.swallowed_timeouts: list[SwallowedTimeout] = []
        self._logs = ErrorLogs(self._logged_in_task)
        self.error_logs: list[logging.LogRecord] = self._logs.records
        self._connections = connections
        self._ports = ports
        """Per proxy, the port it listens on: a pool's idle connection to it is no leak."""
        self._faults_summary = faults_summary
        self.connections_before: dict[str, int] | None = None
        self.deadlines: list[tuple[float, float]] = []
        """``(when settle was called, its within)`` of each settle, for the timeline."""
        self._thread: int | None = None

    # -- installing ----------------------------------------------------------------------

    def install(self) -> TaskMonitor:
        thread = threading.get_ident()
        with _patch_lock:
            if thread in _monitors:
                raise AsyncFaultsError("a task monitor is already installed on this thread")
            if not _monitors:
                asyncio.BaseEventLoop.create_task = _create_task  # type: ignore[method-assign,assignment]
                asyncio.gather = asyncio.tasks.gather = _gather
                asyncio.timeouts.Timeout.__aexit__ = _timeout_exit  # type: ignore[method-assign,assignment]
                asyncio.BaseEventLoop.call_exception_handler = _call_exception_handler  # type: ignore[method-assign,assignment]
            _monitors[thread] = self
        self._thread = thread
        self._logs.install()
        return self

    def uninstall(self) -> None:
        self._logs.uninstall()
        with _patch_lock:
            if self._thread is not None and _monitors.get(self._thread) is self:
                del _monitors[self._thread]
            if not _monitors:
                asyncio.BaseEventLoop.create_task = _original_create_task  # type: ignore[method-assign]
                asyncio.gather = asyncio.tasks.gather = _original_gather
                asyncio.timeouts.Timeout.__aexit__ = _original_timeout_exit  # type: ignore[method-assign]
                asyncio.BaseEventLoop.call_exception_handler = _original_exception_handler  # type: ignore[method-assign]
        self._thread = None

    # -- recording -----------------------------------------------------------------------

    def _record(self, task: asyncio.Task[Any], frame: FrameType | None) -> None:
        stack = _capture(frame)
        runner, inner = _asked_by(stack)
        name = task.get_name()
        if frame is not None and frame.f_code is _ASYNCIO_CREATE_TASK:
            # asyncio.create_task names the task only after the loop made it; a
            # task collected before anyone looks again must still have its name.
            given = frame.f_locals.get("name")
            if given is not None:
                name = str(given)
        record = TaskRecord(
            ref=None,
            last_name=name,
            created_at=time.monotonic(),
            raw_stack=stack,
            request=current_request.get(),
            role=current_role.get(),
            runner=runner,
            inner=inner,
            code=getattr(task.get_coro(), "cr_code", None),
        )
        record.ref = weakref.ref(task, record.collected)
        self.records.append(record)
        self._by_id[id(task)] = record
        task.add_done_callback(record.ended)

    def _record_request(
        self, task: asyncio.Task[Any], frame: FrameType | None, request: RequestInfo
    ) -> None:
        """``_record`` for the ASGI call of ``request`` (``create_request_task``)."""
        record = TaskRecord(
            ref=weakref.ref(task),
            last_name=task.get_name(),
            created_at=time.monotonic(),
            raw_stack=_capture(frame),
            request=request,
            role="request",
            runner=False,
            request_call=True,
            code=getattr(task.get_coro(), "cr_code", None),
        )
        self.records.append(record)
        self._by_id[id(task)] = record

    def _watch_gather(self, outer: asyncio.Future[Any], frame: FrameType | None) -> None:
        children = [
            record
            for child in getattr(outer, "_children", ())
            if (record := self.record_for(child)) is not None
        ]
        gather = GatherRecord(_capture(frame), children)
        self.gathers.append(gather)

        def done(future: asyncio.Future[Any]) -> None:
            exception = None if future.cancelled() else getattr(future, "_exception", None)
            if exception is not None:
                gather.failed_with = exception
                gather.abandoned = [record for record in gather.children if not record.done]

        outer.add_done_callback(done)

    def _timeout_swallowed(self, frame: FrameType | None) -> None:
        """``frame`` exited a timeout that expired, with no exception: note where, and the
        ``except`` that swallowed it (in the awaitable ``wait_for`` was given, or in the
        function of the ``async with``)."""
        if frame is None:
            return
        caught_at = ""
        if frame.f_code is _WAIT_FOR_CODE:
            caught_at = swallowing_site(frame.f_locals.get("fut"))
            frame = frame.f_back
        if frame is None:
            return
        if not caught_at:
            caught_at = swallowing_site_in(frame.f_code)
        task = asyncio.current_task()
        self.swallowed_timeouts.append(
            SwallowedTimeout(
                task.get_name() if task is not None else "?",
                stack_from(frame, STACK_DEPTH),
                caught_at,
            )
        )

    def _timed_out(self, exception: TimeoutError) -> None:
        """A timeout of the current task expired and raised ``exception`` into it."""
        task = asyncio.current_task()
        record = None if task is None else self.record_for(task)
        if record is not None and len(record.timeouts or ()) < TIMEOUTS_KEPT:
            record.timeouts = [*(record.timeouts or ()), exception]

    def _logged_in_task(self, task: asyncio.Task[Any], exception: BaseException) -> None:
        """An ERROR record with ``exception`` was logged while ``task`` ran: if the task's
        coroutine is a framework's (not the app's), it is a wrapper that handles the app's
        error by logging it, and that error is its outcome."""
        record = self.record_for(task)
        code = record.code if record is not None else None
        if (
            record is not None
            and record.handled is None
            and code is not None
            and is_library(code.co_filename)
            and not is_own(code.co_filename)
        ):
            record.handled = exception

    def record_for(self, task: asyncio.Task[Any]) -> TaskRecord | None:
        """The task's record: by ``id``, as ``gather`` of ten thousand tasks asks for each,
        and checked by identity, as a collected task's ``id`` may be reused."""
        record = self._by_id.get(id(task))
        return record if record is not None and record.task is task else None

    async def take_connection_baseline(self) -> None:
        """Count the proxies' open connections once, when the app is up, before any request.

        What the lifespan opened (a pool) is the app's steady state; what the
        background work opens beyond it must be closed by the time it settles.
        """
        if self.connections_before is None and self._connections is not None:
            self.connections_before = await self._open_outside_pools()

    # -- what counts as background work ----------------------------------------------------------

    def background(self) -> list[TaskRecord]:
        """The test's tasks other than the runner's, the lifespan's, the current one, the
        libraries' own (``library_owned``) and those ``allow`` spares (by name or creation
        site): settle waits for none of them, and no detector judges them."""
        current = asyncio.current_task()
        return [
            record
            for record in self.records
            if not record.runner
            and record.role != "lifespan"
            and record.task is not current
            and not (self.allow and allowed(self.allow, record.name, record.stack))
            and (self.library_tasks or not self.library_owned(record))
        ]

    def library_owned(self, record: TaskRecord) -> bool:
        """A task a library started for its own long-lived objects: a pool's maintenance,
        a driver's cancel request, a framework's or anyio's internals, this plugin's.

        Its coroutine is a library's, a library asked for it, and it never ran the app's
        code (Quart's ``add_background_task`` wraps the app's function in a coroutine of
        its own: while it runs the app's code, or once it logged the app's error, it is
        the app's work). What it does is the library's to get right: the app cannot fix
        it, nor wait for it (a pool refills itself long after the request that broke a
        connection). Decided once the task ran, and kept.
        """
        if record.library is not None:
            return record.library
        if record.request_call or record.handled is not None:
            return False
        code = record.code
        if code is None or not is_library(code.co_filename) or _asked_by_app(record.raw_stack):
            record.library = False
            return False
        task = record.task
        if task is not None and not task.done():
            running_app = _runs_app_code(task)
            if running_app is None:
                return False  # not started: wait for its first step to tell
            if running_app:
                record.library = False
            return not running_app
        record.library = True
        return True

    def pending(self) -> list[TaskRecord]:
        return [record for record in self.background() if not record.done and not record.abandoned]

    # -- settling ---------------------------------------------------------------------------------

    async def wait(self, within: float) -> list[TaskRecord]:
        """Wait up to ``within`` s for the background work, new tasks too; return what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        with interrupt_past(within, f"the settle deadline ({within:g} s)"):
            while pending := self.pending():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return pending
                if any(_undecided(record) for record in pending):
                    # A library's coroutine not yet at its first step is told the app's
                    # or the library's own at that step: look again then.
                    remaining = min(remaining, UNDECIDED_RECHECK)
                await asyncio.wait(_tasks(pending), timeout=remaining)
        return []

    async def settle(self, within: float | None = None) -> Outcome:
        """Wait for all background work, up to ``within`` s; fail with a hang report past it."""
        within = self.default_within if within is None else within
        started = time.monotonic()
        self.deadlines.append((started, within))
        stuck = await self.wait(within)
        if stuck:
            report = await self.hang_report(
                stuck, f"still pending after {within:g} s (the settle deadline)"
            )
            error = HangError(report)
            count = len(stuck)
            error.short = (
                f"hang: {count} task{'s' if count != 1 else ''} still pending after {within:g} s"
            )
            raise error
        self._settle_timeouts()
        # What the work let go of in a reference cycle (a driver's connection, from Python
        # 3.12 often) is finalised now, not at some later collection: its ResourceWarning
        # ("unclosed connection") belongs to this settle.
        gc.collect()
        after = await self._connections_settle(started + within)
        return self.outcome(within, time.monotonic() - started, after)

    async def _connections_settle(self, deadline: float) -> dict[str, int]:
        """Give closed sockets the moment the proxy needs to count them closed (bounded)."""
        if self._connections is None:
            return {}
        limit = min(deadline, time.monotonic() + CONNECTIONS_GRACE)
        counts = await self._open_outside_pools()
        before = self.connections_before
        # A proxy made after the baseline (in the test's body) had none open before it:
        # the outcome counts it so too, and an idle one costs no wait.
        while (
            before is not None
            and any(count != before.get(name, 0) for name, count in counts.items())
            and time.monotonic() < limit
        ):
            await asyncio.sleep(0.01)
            counts = await self._open_outside_pools()
        return counts

    async def _open_outside_pools(self) -> dict[str, int]:
        """Per proxy, the connections its clients hold, less those idle in the app's pools
        (``_pools``): what a request left behind, whatever the pool keeps."""
        assert self._connections is not None
        counts = await self._connections()
        if self._ports is None or not any(counts.values()):
            return counts
        idle = idle_in_pools()
        if not idle:
            return counts
        ports = self._ports()
        return {
            name: max(count - idle.get(ports.get(name, -1), 0), 0) for name, count in counts.items()
        }

    def _settle_timeouts(self) -> None:
        for record in self.records:
            if record.timeouts and record.done:
                record.settle_timeouts(self.was_logged)

    def outcome(
        self, within: float, elapsed: float, connections_after: dict[str, int] | None = None
    ) -> Outcome:
        self._settle_timeouts()
        entries = []
        for record in self.background():
            if record.inner:
                continue  # its failure is its awaiter's, which the outcome lists
            exception = record.exception
            entries.append(
                TaskOutcome(
                    name=record.name,
                    description=record.describe(),
                    state=record.state,
                    exception=exception,
                    duration=None
                    if (ended := record.finished_at) is None
                    else ended - record.created_at,
                    logged=exception is not None and self.was_logged(exception),
                    retrieved=record.retrieved,
                    dropped=tuple(record.dropped or ()),
                )
            )
        return Outcome(
            entries=tuple(entries),
            within=within,
            elapsed=elapsed,
            error_logs=tuple(self.error_logs),
            connections_before=dict(self.connections_before or {}),
            connections_after=dict(connections_after or {}),
        )

    def was_logged(self, exception: BaseException) -> bool:
        """An ERROR record (not asyncio's own GC-time complaint) carries this exception or
        one of its chain, itself or in the chain of the one it logged (printed as "The
        above exception was the direct cause of..."): the app's error is in the log
        either way, though a framework re-raised it as its own after it was logged."""
        chain = {id(cause) for cause in exception_chain(exception)}
        for record in self.error_logs:
            if record.exc_info is None or record.name == "asyncio":
                continue
            if any(id(logged) in chain for logged in exception_chain(record.exc_info[1])):
                return True
        return False

    # -- reporting ---------------------------------------------------------------------------------

    async def hang_report(self, stuck: Iterable[TaskRecord], why: str) -> str:
        """The report a user reads instead of print-debugging; cancels the stuck tasks after."""
        stuck = list(stuck)
        now = time.monotonic()
        # A library's own waiters (asgi-lifespan's, waiting for the app's shutdown) are
        # cancelled with the rest, but are not what hangs: the report shows the app's.
        shown = [
            record for record in stuck if self.library_tasks or not self.library_owned(record)
        ] or stuck
        count = len(shown)
        lines = [f"asyncfaults: {count} background task{'s' if count != 1 else ''} {why}", ""]
        # Tasks made at one line and stuck on one line are one entry, with a count:
        # 10,000 of them must not bury the report (or take long to print).
        alike: dict[tuple[str, str], list[TaskRecord]] = {}
        for record in shown:
            task = record.task
            record.hung_at = now
            if task is not None:
                record.hang_chain = format_chain(await_chain(task), indent="      ")
            alike.setdefault((format_site(record.stack), record.hang_chain), []).append(record)
        for index, group in enumerate(alike.values(), 1):
            record = group[0]
            lines.append(f"[{index}] {record.describe()}, {now - record.created_at:.2f} s ago")
            if len(group) > 1:
                names = ", ".join(repr(other.name) for other in group[1:ALIKE_NAMED])
                more = (
                    f", ... ({len(group) - ALIKE_NAMED} more)" if len(group) > ALIKE_NAMED else ""
                )
                lines.append(
                    f"    and {len(group) - 1} more task(s) made at the same line and stuck on "
                    f"the same chain: {names}{more}"
                )
            lines.append("    await chain, outermost first:")
            if record.hang_chain:
                lines.append(record.hang_chain)
            lines.append("")
        lines.extend(format_threads())
        if self._faults_summary is not None:
            try:
                summary = await asyncio.wait_for(self._faults_summary(), FAULTS_BOUND)
            except Exception as exc:  # the report must not die of its appendix
                summary = [f"(could not read the faults: {exc})"]
            lines.append("Faults active now:")
            lines.extend(f"  {line}" for line in summary or ["(none)"])
            lines.append("")
        survivors = await self.cancel(stuck)
        total = len(stuck)
        if survivors:
            lines.append(
                f"Cancelled the {total} stuck task{'s' if total != 1 else ''} so the run goes "
                f"on; {len(survivors)} did not end:"
            )
        else:
            lines.append(
                f"Cancelled {total} stuck task{'s' if total != 1 else ''} so the run goes on."
            )
        for record in survivors:
            lines.append(
                f"  {record.name!r} did not end within {CANCEL_BOUND:g} s of being cancelled: "
                f"{_why_not_ended(record.task)}; left behind, so the run goes on without it"
            )
        return "\n".join(lines)

    async def cancel(self, records: Iterable[TaskRecord]) -> list[TaskRecord]:
        """Cancel tasks and wait (bounded) for them to end; return those that did not."""
        records = list(records)
        for record in records:
            record.cancelled_by_harness = True
        tasks = _tasks(record for record in records if not record.done)
        for task in tasks:
            try:
                task.cancel()
            except RecursionError:
                # Tasks awaiting each other (a deadlock) cancel each other forever.
                continue
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_BOUND)
        survivors = [record for record in records if not record.done]
        for record in survivors:
            record.abandoned = True
            if (stubborn := record.task) is not None:
                _abandon(stubborn)
        return survivors


def _undecided(record: TaskRecord) -> bool:
    """Whether ``library_owned`` may still change its mind about a pending task: its
    coroutine is a library's and nothing settled it yet (it has not run, or runs none of
    the app's code so far)."""
    code = record.code
    return record.library is None and code is not None and is_library(code.co_filename)


def _why_not_ended(task: asyncio.Task[Any] | None) -> str:
    """Why a cancelled task goes on: the app's ``except`` that swallows the cancel, else
    what it still awaits (a clean-up of its own: a ``finally`` that releases a pool's
    connection to a dead database waits on the network, swallowing nothing)."""
    if task is None:
        return "it was collected meanwhile"
    site = swallowing_site(task.get_coro(), app_only=True)
    if site:
        return f"it swallows CancelledError at {site}"
    frame = await_chain(task).user_frame()
    if frame is None:
        return "it is still cleaning up (see its chain above)"
    return f"it is still cleaning up at {frame.describe()}"


def _abandon(task: asyncio.Task[Any]) -> None:
    """Take a task that will not end out of asyncio's registry of live tasks.

    Every event-loop runner (``asyncio.run``, pytest-asyncio's, anyio's) cancels
    the tasks ``asyncio.all_tasks()`` lists when it closes the loop, then waits for
    them without a bound: a task that swallows ``CancelledError`` in a loop would
    hang the run there, after its report. Unregistered, it is simply dropped with
    the loop; it was reported already, so its "destroyed but pending" log is not
    wanted either.
    """
    with contextlib.suppress(AttributeError, KeyError, ValueError):
        asyncio.tasks._unregister_task(task)
    with contextlib.suppress(AttributeError):
        task._log_destroy_pending = False  # type: ignore[attr-defined]


def _tasks(records: Iterable[TaskRecord]) -> list[asyncio.Task[Any]]:
    return [task for record in records if (task := record.task) is not None]
