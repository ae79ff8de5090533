"""Threads running the app's code: where work handed to a thread is stuck.

FastAPI runs a sync ``def`` endpoint or background task in a worker thread,
and ``asyncio.to_thread``, ``run_in_executor`` and anyio's ``run_sync`` do the
same for any call. The task that handed the work over only awaits a future:
its await chain ends there, and the line that hangs (``smtplib.SMTP(...)``
without a timeout, in the case study) is in the thread. A hang report shows
each pool worker whose stack holds the app's code, as py-spy would; idle
workers hold none and are left out.

A thread the app starts and leaves running outlives the test that started it
(one more each test, with a lifespan per test), and a non-daemon one keeps the
Python process from exiting: pytest hangs after its summary. ``ThreadWatch``
keeps where each thread was started (``Thread.start``, patched while a watch
runs: threads start rarely) and tells, at the end of a test, which of those it
started are left.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Final, final

from .._frames import (
    Frame,
    describe_site,
    format_stack,
    is_library,
    is_own,
    is_stdlib,
    stack_from,
    stack_of,
    stack_site,
)

STACK_DEPTH: Final = 40
"""Frames kept per thread, innermost first: enough to reach the app's line from a
driver's socket read, and the pool's worker loop at the outer end."""
_POOL_WORKERS: Final = ("/concurrent/futures/thread.py", "/anyio/_backends/_asyncio.py")
"""Where the worker loops of the pools that run work for a task live: the stdlib's
executor (``to_thread``, ``run_in_executor``) and anyio's (``run_sync``, Starlette's
``run_in_threadpool``, FastAPI's sync endpoints and background tasks)."""


def _pool_worker(stack: tuple[Frame, ...]) -> bool:
    return any(filename.replace("\\", "/").endswith(_POOL_WORKERS) for filename, _, _ in stack)


def app_threads() -> list[tuple[str, tuple[Frame, ...]]]:
    """Each pool worker running the app's code now: its name and stack.

    Only threads a task handed work to: a thread the app (or a test's fake
    server) started itself is not waiting on any task's behalf."""
    current = threading.get_ident()
    found = []
    for thread in threading.enumerate():
        ident = thread.ident
        if ident is None or ident == current:
            continue
        stack = stack_of(ident, STACK_DEPTH)
        if _pool_worker(stack) and any(not is_library(filename) for filename, _, _ in stack):
            found.append((thread.name, stack))
    return found


def format_threads(indent: str = "  ") -> list[str]:
    """The report's section on threads at work for the app; empty when there are none."""
    threads = app_threads()
    if not threads:
        return []
    lines = ["Threads running the app's code now (work handed to a thread), outermost first:"]
    for name, stack in threads:
        lines.append(f"{indent}thread {name!r}:")
        lines.append(format_stack(stack, indent=indent + "    "))
    lines.append("")
    return lines


# -- threads left running --------------------------------------------------------------------

_original_start: Final = threading.Thread.start
_started_at: weakref.WeakKeyDictionary[threading.Thread, tuple[Frame, ...]] = (
    weakref.WeakKeyDictionary()
)
"""Where each thread started while a watch ran was started, innermost first."""
_watches = 0
_watches_lock = threading.Lock()
START_DEPTH: Final = 20


def _start(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
    _started_at[self] = stack_from(sys._getframe(1), START_DEPTH)
    _original_start(self, *args, **kwargs)


def _where(started_at: tuple[Frame, ...]) -> str:
    """Where a thread was started, as a report's line."""
    return describe_site(stack_site(started_at))


@final
@dataclass(frozen=True)
class LeftThread:
    """A thread a test started that was still running when the test (and its app) ended."""

    name: str
    daemon: bool
    started_at: tuple[Frame, ...]
    """Where ``start()`` was called, innermost first; empty if that is not known."""
    stack: tuple[Frame, ...]
    """What it runs now, innermost first."""

    def describe(self) -> str:
        kind = "a daemon thread" if self.daemon else "a non-daemon thread"
        return f"Thread {self.name!r} ({kind}), started at {_where(self.started_at)}"


_WAITING: Final = ("/threading.py", "/queue.py")
_WORKER_LOOPS: Final = (
    ("/concurrent/futures/thread.py", "_worker"),
    ("/anyio/_backends/_asyncio.py", "run"),
)
"""The loops of pool workers, where an idle worker waits for its next piece of work."""


def _idle_worker(stack: tuple[Frame, ...]) -> bool:
    """A pool's worker waiting for work (the pool keeps it, and ends it at exit): inside
    its loop, in a queue's wait, not in a piece of work (a C call like ``time.sleep``
    leaves no frame of its own, but its work item's ``run`` frame shows)."""
    for filename, _, function in stack:
        path = filename.replace("\\", "/")
        if path.endswith(_WAITING):
            continue
        return any(path.endswith(loop) and function == name for loop, name in _WORKER_LOOPS)
    return False


def _ours(thread: threading.Thread) -> bool:
    """The plugin's own threads (the loop watchdog, the engine, the services)."""
    if thread.name.startswith("asyncfaults"):
        return True
    started = _started_at.get(thread, ())
    innermost = next((frame for frame in started if not is_stdlib(frame[0])), None)
    return innermost is not None and is_own(innermost[0])


@final
class ThreadWatch:
    """The threads started while it runs, and which of them a test left behind."""

    def __init__(self) -> None:
        self._before: frozenset[int] = frozenset()
        self._running = False

    def start(self) -> ThreadWatch:
        global _watches
        with _watches_lock:
            if _watches == 0:
                threading.Thread.start = _start  # type: ignore[method-assign]
            _watches += 1
        self._running = True
        self._before = frozenset(id(thread) for thread in threading.enumerate())
        return self

    def stop(self) -> None:
        global _watches
        if not self._running:
            return
        self._running = False
        with _watches_lock:
            _watches -= 1
            if _watches == 0:
                threading.Thread.start = _original_start  # type: ignore[method-assign]

    def _candidates(self) -> list[threading.Thread]:
        current = threading.current_thread()
        return [
            thread
            for thread in threading.enumerate()
            if id(thread) not in self._before
            and thread is not current
            and thread.is_alive()
            and not _ours(thread)
        ]

    async def left(self, grace: float) -> list[LeftThread]:
        """The threads started since ``start()`` still running after ``grace`` seconds:
        those that run the app's code, and every non-daemon one (it blocks the exit).
        Idle pool workers are not left: their pool keeps them on purpose."""
        deadline = time.monotonic() + grace
        while True:
            left = []
            for thread in self._candidates():
                ident = thread.ident
                stack = stack_of(ident, STACK_DEPTH) if ident is not None else ()
                if _idle_worker(stack):
                    continue
                runs_app = any(not is_library(filename) for filename, _, _ in stack)
                if runs_app or not thread.daemon:
                    started = _started_at.get(thread, ())
                    left.append(LeftThread(thread.name, thread.daemon, started, stack))
            if not left or time.monotonic() >= deadline:
                return left
            await asyncio.sleep(0.01)


def release_default_executor(loop: asyncio.AbstractEventLoop) -> bool:
    """Detach the loop's default executor when a worker of it is busy in the app's code,
    shutting it down without waiting; whether it did.

    Closing the loop joins that executor's workers (``shutdown_default_executor``: with
    no bound on Python 3.11, five minutes on 3.12): a ``run_in_executor`` stuck for good
    would hold the test runner there. Detached, the loop closes at once; the worker is
    left to the exit guard."""
    executor = getattr(loop, "_default_executor", None)
    workers = getattr(executor, "_threads", ())
    busy = [
        thread
        for thread in workers
        if thread.is_alive()
        and thread.ident is not None
        and not _idle_worker(stack_of(thread.ident, STACK_DEPTH))
    ]
    if executor is None or not busy:
        return False
    executor.shutdown(wait=False, cancel_futures=True)
    loop._default_executor = None  # type: ignore[attr-defined]
    return True


def exit_blockers() -> list[threading.Thread]:
    """Threads that would keep the interpreter from exiting: alive, non-daemon (a busy
    worker of a ``concurrent.futures`` pool too: the pool joins it at exit), not idle pool
    workers (their pools end them), not the main thread."""
    main = threading.main_thread()
    found = []
    for thread in threading.enumerate():
        if thread is main or thread.daemon or not thread.is_alive() or thread.ident is None:
            continue
        if _idle_worker(stack_of(thread.ident, STACK_DEPTH)):
            continue
        found.append(thread)
    return found


EXIT_BOUND: Final = 1.0
"""How long the interpreter's exit waits for threads that would keep it from exiting."""
_exit_status = 0
_exit_guarded = False


def guard_exit(status: int) -> None:
    """At the interpreter's exit, wait at most ``EXIT_BOUND`` for the threads that would
    keep it from exiting, then exit with ``status`` (the last given) without them.

    A thread the app left running (non-daemon, or a pool worker stuck in the app's
    code) would hang the process after pytest's summary, in ``threading._shutdown``,
    for ever: this runs first in it (``threading._register_atexit``, called last-in
    first-out before the wait), says which threads it leaves, and ends the process.
    """
    global _exit_status, _exit_guarded
    _exit_status = status
    register = getattr(threading, "_register_atexit", None)
    if _exit_guarded or register is None:
        return
    _exit_guarded = True
    register(_exit_without_blockers)


def _exit_without_blockers() -> None:
    deadline = time.monotonic() + EXIT_BOUND
    blockers = exit_blockers()
    for thread in blockers:
        thread.join(max(deadline - time.monotonic(), 0.0))
    blockers = [thread for thread in blockers if thread.is_alive()]
    if not blockers:
        return
    names = "; ".join(
        f"{thread.name!r}, started at {_where(_started_at.get(thread, ()))}" for thread in blockers
    )
    sys.stdout.flush()
    sys.stderr.write(
        f"asyncfaults: not waiting for {len(blockers)} thread(s) of the app that would keep "
        f"Python from exiting ({names}); exiting with status {_exit_status}\n"
    )
    sys.stderr.flush()
    os._exit(_exit_status)
