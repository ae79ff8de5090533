"""Where a task swallows ``CancelledError``: the ``except`` clauses that catch it and go on.

The swallowed-cancel detector names them for a task that returned normally once
cancelled; a hang report names them for a task that did not end at all once
cancelled (it swallows every cancel, in a loop), along its await chain.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from types import CodeType
from typing import Any

from .._frames import short_path, user_first


def swallowing_handlers(code: CodeType | None) -> list[int]:
    """Lines of ``except`` clauses in a function that catch CancelledError without re-raising."""
    if code is None:
        return []
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return []
    try:
        source = inspect.getsource(code)
        tree = ast.parse(textwrap.dedent(source))
    except (OSError, TypeError, SyntaxError):
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler):
            continue
        caught = ast.unparse(node.type) if node.type is not None else ""
        catches = node.type is None or any(
            name in caught for name in ("CancelledError", "BaseException")
        )
        reraises = any(isinstance(inner, ast.Raise) for inner in ast.walk(node))
        if catches and not reraises:
            found.append(code.co_firstlineno + node.lineno - 1)
    return found


def swallowing_site_in(code: CodeType) -> str:
    """The first ``except`` of a function that catches ``CancelledError`` and goes on, as
    a report's line; "" when it has none."""
    handlers = swallowing_handlers(code)
    return _line(code.co_filename, handlers[0]) if handlers else ""


def _line(filename: str, line: int) -> str:
    source = linecache.getline(filename, line).strip()
    where = f"{short_path(filename)}:{line}"
    return f"{where}: `{source}`" if source else where


def swallowing_site(coro: Any) -> str:
    """Where along a coroutine's await chain ``CancelledError`` is caught and not re-raised:
    the app's own ``except`` first (a library's is rarely the one), as a report's line;
    "" when none is found."""
    sites: list[tuple[str, int]] = []
    seen = 0
    while coro is not None and seen < 1000:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if isinstance(code, CodeType):
            sites += [(code.co_filename, line) for line in swallowing_handlers(code)]
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        seen += 1
    chosen = user_first(reversed(sites), lambda site: site[0])
    if chosen is None:
        return ""
    return _line(*chosen)
