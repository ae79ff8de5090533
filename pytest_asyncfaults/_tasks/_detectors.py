"""Silent-failure detectors: what production swallows, turned into findings.

Each detector looks at what the task monitor saw during one test and names a
bug class from the articles this plugin was born from, the task, and the
line to fix. They run when the test ends, on its own loop, and each can fail
the test, warn, or stay off; an allow-list spares known tasks by name or by
creation site.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
import types
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, final

from .._frames import (
    Frame,
    describe_exception,
    exception_chain,
    format_site,
    format_stack,
    is_library,
    library_upkeep,
    not_the_apps_stall,
    short_path,
    site_frame,
    stack_site,
)
from ._allow import allowed
from ._monitor import TaskMonitor, TaskRecord
from ._swallow import swallowing_handlers
from ._threads import LeftThread
from ._watchdog import Stall, format_stall

_NEVER_AWAITED: Final = re.compile(r"coroutine '([^']+)' was never awaited")
_ORIGIN_FRAME: Final = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


@final
@dataclass(frozen=True)
class Finding:
    """One bug found: which detector, what it says, and where to fix it."""

    detector: str
    message: str
    task_name: str | None = None
    site: Frame | None = None
    created: tuple[Frame, ...] = ()
    """The whole creation stack of the task it is about, for ``allow`` to match."""

    def allowed_by(self, allow: Sequence[str]) -> bool:
        """Spared by an allow-list entry: a task-name pattern, or ``file.py[:line]`` (the
        site, or any frame of the task's creation: see ``_allow``)."""
        frames = (self.site, *self.created) if self.site is not None else self.created
        return allowed(allow, self.task_name, frames)

    def __str__(self) -> str:
        return f"[{self.detector}] {self.message}"


def _surfaced(
    exception: BaseException, monitor: TaskMonitor, escaped: BaseException | None
) -> bool:
    """Did this exception reach anyone: a log, another failed task, or the test itself?"""
    if monitor.was_logged(exception):
        return True
    seen: list[BaseException] = []
    for record in monitor.records:
        other = record.exception
        if other is not None and other is not exception:
            seen.append(other)
    if escaped is not None:
        seen.append(escaped)
    return any(cause is exception for other in seen for cause in exception_chain(other))


def never_retrieved(monitor: TaskMonitor) -> list[Finding]:
    findings = []
    for record in monitor.background():
        if record.request_call or record.state != "failed" or record.exception is None:
            continue
        if record.task is not None and record.retrieved:
            continue
        if record.task is None and not _logged_by_asyncio_as_unretrieved(monitor, record):
            continue
        exc = record.exception
        findings.append(
            Finding(
                "never_retrieved",
                f"Task {record.name!r} failed with {describe_exception(exc)}, and nobody awaited "
                f'it or read its exception (asyncio would only log "Task exception was never '
                f'retrieved" when it is garbage-collected).\n'
                f"  created at {format_site(record.stack)}\n"
                f"  fix: keep the task and await it, or add a done callback that logs its "
                f"exception",
                record.name,
                site_frame(record.stack),
                record.stack,
            )
        )
    return findings


def _logged_by_asyncio_as_unretrieved(monitor: TaskMonitor, record: TaskRecord) -> bool:
    if record.unretrieved:  # the loop said so, to whichever handler it has
        return True
    return any(
        log.name == "asyncio"
        and "never retrieved" in log.getMessage()
        and log.exc_info is not None
        and log.exc_info[1] is record.exception
        for log in monitor.error_logs
    )


def not_logged(
    monitor: TaskMonitor, escaped: BaseException | None, unretrieved: Iterable[str]
) -> list[Finding]:
    skip = set(unretrieved)
    findings = []
    for record in monitor.background():
        exc = record.exception
        if record.state != "failed" or exc is None or record.name in skip or record.inner:
            # (wait_for's own task hands its failure to its awaiter: logging is theirs)
            continue
        if record.request is None and record.role != "lifespan":
            # A task of the test itself: the test decides what a failure means.
            continue
        if _surfaced(exc, monitor, escaped):
            continue
        what = (
            f"the ASGI call of {record.request}" if record.request_call else f"Task {record.name!r}"
        )
        findings.append(
            Finding(
                "not_logged",
                f"{what} failed with {describe_exception(exc)}, and no ERROR log record "
                f"carries it: in production this failure leaves no trace.\n"
                f"  created at {format_site(record.stack)}\n"
                f"  fix: log it with logger.exception(...) where it is caught, or let it propagate",
                record.name,
                site_frame(record.stack),
                record.stack,
            )
        )
    return findings


def swallowed_cancel(monitor: TaskMonitor) -> list[Finding]:
    findings = []
    for record in monitor.background():
        if (
            record.state != "completed"
            or record.cancel_requests <= 0
            or record.cancelled_by_harness  # its hang or leak report says what it did
        ):
            continue
        code = record.code
        handlers = swallowing_handlers(code)
        if code is not None and handlers and is_library(code.co_filename):
            continue  # a driver's coroutine that catches its cancel by design (asyncpg's
            # cancel request: "we do not care about the result of the cancel")
        where = ""
        if code is not None and handlers:
            places = ", ".join(f"{short_path(code.co_filename)}:{line}" for line in handlers)
            where = f"\n  caught at: {places} (except clauses that catch it and do not re-raise)"
        findings.append(
            Finding(
                "swallowed_cancel",
                f"Task {record.name!r} was cancelled ({record.cancel_requests} request"
                f"{'s' if record.cancel_requests != 1 else ''}) and returned normally: its "
                f"CancelledError was caught and not re-raised, so the timeout or shutdown that "
                f"cancelled it did nothing.{where}\n"
                f"  created at {format_site(record.stack)}\n"
                f"  fix: re-raise CancelledError after cleaning up (or use try/finally)",
                record.name,
                site_frame(record.stack),
                record.stack,
            )
        )
    return findings


def swallowed_timeouts(monitor: TaskMonitor) -> list[Finding]:
    """Timeouts that expired and did nothing, where the app's code caught the cancel."""
    findings = []
    for swallowed in monitor.swallowed_timeouts:
        if not swallowed.site or is_library(swallowed.site[0][0]):
            continue  # a library's own timeout (a driver's), swallowed by its design
        site = stack_site(swallowed.site[:1])
        if site is None:
            continue
        caught = f"\n  caught at: {swallowed.caught_at}" if swallowed.caught_at else ""
        findings.append(
            Finding(
                "swallowed_cancel",
                f"In task {swallowed.task_name!r}, the timeout at {site.describe()} expired, "
                f"but the CancelledError it sent was caught and not re-raised: the block ran "
                f"on past its deadline and returned normally, as if no timeout were there."
                f"{caught}\n"
                f"  fix: re-raise CancelledError after cleaning up (or use try/finally)",
                swallowed.task_name,
                site.frame,
            )
        )
    return findings


def _origin_text(origin: tuple[tuple[str, int, str], ...]) -> str:
    """The shape Python gives a never-awaited warning, so one parser reads both."""
    frames = "".join(f'  File "{path}", line {line}, in {name}\n' for path, line, name in origin)
    return f"Coroutine created at (most recent call last)\n{frames}"


def unawaited_coroutines() -> list[str]:
    """Coroutines made during the test that never started, closed so they stay quiet.

    Python warns about one only when it is garbage-collected, which may be
    long after the test (a worker thread or a traceback can hold it): so the
    heap is searched instead. Only coroutines with an origin count, and the
    origin is recorded only while the harness runs a test.
    """
    try:
        # A task not yet at its first step holds a coroutine that has not started: it
        # will run (or its task is a leak, reported as one), it is not forgotten.
        owned = {id(task.get_coro()) for task in asyncio.all_tasks()}
    except RuntimeError:  # no running loop
        owned = set()
    texts = []
    for obj in gc.get_objects():
        if type(obj) is not types.CoroutineType or obj.cr_origin is None:
            continue
        if inspect.getcoroutinestate(obj) != inspect.CORO_CREATED or id(obj) in owned:
            continue
        texts.append(
            f"coroutine '{obj.cr_code.co_qualname}' was never awaited\n"
            + _origin_text(obj.cr_origin)
        )
        obj.close()
    return texts


def never_awaited(
    caught: Iterable[warnings.WarningMessage], found: Iterable[str] = ()
) -> list[Finding]:
    """From the warnings Python gave, and from ``unawaited_coroutines`` (the same text)."""
    texts = [
        (str(warning.message), warning.filename, warning.lineno)
        for warning in caught
        if issubclass(warning.category, RuntimeWarning)
    ]
    texts += [(text, "", 0) for text in found]
    findings = []
    seen: set[str] = set()
    for text, filename, lineno in texts:
        match = _NEVER_AWAITED.search(text)
        if match is None:
            continue
        origin = [
            (path, int(line), function) for path, line, function in _ORIGIN_FRAME.findall(text)
        ]
        origin.reverse()  # the origin is printed outermost first
        site = site_frame(origin)
        key = f"{match[1]} {site}"
        if key in seen:  # the same coroutine, seen both as a warning and on the heap
            continue
        seen.add(key)
        where = format_site(origin) if origin else f"{short_path(filename)}:{lineno}"
        findings.append(
            Finding(
                "never_awaited",
                f"coroutine {match[1]!r} was created and never awaited: its code never ran.\n"
                f"  created at {where}\n"
                f"  fix: await it, or pass the function and its arguments (add_task(f, x), "
                f"not add_task(f(x)))",
                None,
                site,
            )
        )
    return findings


def lost(monitor: TaskMonitor) -> list[Finding]:
    return [
        Finding(
            "lost",
            f"Task {record.name!r} was garbage-collected while still pending: nothing kept a "
            f"reference to it, so its work stopped half-way without an error.\n"
            f"  created at {format_site(record.stack)}\n"
            f"  fix: keep a strong reference (a set of tasks, discarded in a done callback) or "
            f"use a TaskGroup",
            record.name,
            site_frame(record.stack),
            record.stack,
        )
        for record in monitor.records
        if record.state == "lost"
    ]


def abandoned(monitor: TaskMonitor) -> list[Finding]:
    findings = []
    for gather in monitor.gathers:
        if not gather.abandoned or gather.failed_with is None:
            continue
        exc = gather.failed_with
        names = ", ".join(repr(record.name) for record in gather.abandoned)
        findings.append(
            Finding(
                "abandoned",
                f"asyncio.gather failed with {describe_exception(exc)} and left "
                f"{len(gather.abandoned)} sibling task(s) running that nobody awaits: {names}.\n"
                f"  gather at {format_site(gather.stack)}\n"
                f"  fix: use a TaskGroup (it cancels the siblings), or return_exceptions=True and "
                f"check each result",
                gather.abandoned[0].name,
                site_frame(gather.stack),
            )
        )
    return findings


def lifespan_leaks(records: Iterable[TaskRecord]) -> list[Finding]:
    return [
        Finding(
            "leaks",
            f"Task {record.name!r} of the app's lifespan was still running after the lifespan "
            f"shut down: it outlives the app (one per start, in production).\n"
            f"  created at {format_site(record.stack)}\n"
            f"  fix: cancel and await it in the lifespan's shutdown",
            record.name,
            site_frame(record.stack),
            record.stack,
        )
        for record in records
    ]


def threads(left: Iterable[LeftThread]) -> list[Finding]:
    findings = []
    for thread in left:
        exits = (
            ""
            if thread.daemon
            else "; a non-daemon thread also keeps the Python process from exiting"
        )
        findings.append(
            Finding(
                "threads",
                f"{thread.describe()}, was still running when the test and its app had "
                f"ended: it outlives the app (one more per start, in production){exits}.\n"
                f"  it runs now, outermost first:\n"
                f"{format_stack(thread.stack, indent='    ')}\n"
                f"  fix: stop it when the app shuts down (an Event it checks, then join with "
                f"a timeout), or make the work a task of the loop",
                thread.name,
                site_frame(thread.started_at),
            )
        )
    return findings


def report(findings: Sequence[Finding]) -> str:
    count = len(findings)
    head = f"asyncfaults: {count} silent failure{'s' if count != 1 else ''} found"
    return "\n\n".join([head, *(str(finding) for finding in findings)])


UPKEEP_FACTOR: Final = 5
"""A stall in a library's own upkeep (``library_upkeep``) counts from this many times the
threshold: 0.5 s at the default 0.1 s."""


def blocked_loop(stalls: Iterable[Stall], threshold: float = 0.0) -> list[Finding]:
    """The stalls that are the app's: at least ``threshold`` s of the loop's own time (a
    library's upkeep: ``UPKEEP_FACTOR`` times that), not a busy turn, not the plugin's."""
    findings = []
    for stall in stalls:
        if stall.busy or stall.own < threshold or not_the_apps_stall(stall.stack):
            continue
        if stall.own < threshold * UPKEEP_FACTOR and library_upkeep(stall.stack):
            continue
        findings.append(
            Finding(
                "blocked_loop",
                f"{format_stall(stall)}\n"
                f"  fix: await an async API, or move the blocking call off the loop "
                f"(asyncio.to_thread / run_in_executor)",
                None,
                site_frame(stall.stack),
            )
        )
    return findings
