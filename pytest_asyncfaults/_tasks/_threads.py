"""Threads running the app's code: where work handed to a thread is stuck.

FastAPI runs a sync ``def`` endpoint or background task in a worker thread,
and ``asyncio.to_thread``, ``run_in_executor`` and anyio's ``run_sync`` do the
same for any call. The task that handed the work over only awaits a future:
its await chain ends there, and the line that hangs (``smtplib.SMTP(...)``
without a timeout, in the case study) is in the thread. A hang report shows
each pool worker whose stack holds the app's code, as py-spy would; idle
workers hold none and are left out.
"""

from __future__ import annotations

import threading
from typing import Final

from .._frames import Frame, format_stack, is_library, stack_of

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
