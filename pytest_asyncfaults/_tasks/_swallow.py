"""Where a task swallows an exception: the ``except`` clauses that catch it and go on.

The swallowed-cancel detector names them for a task that returned normally once
cancelled; a hang report names them for a task that did not end at all once
cancelled (it swallows every cancel, in a loop), along its await chain. An
outcome names the one that dropped a timeout's ``TimeoutError`` (``except
Exception: pass``), when the user expected the work to fail with it.

Read from the source (``ast``), as a user reads it: which names an ``except``
lists, and whether its body has a ``raise``.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from types import CodeType
from typing import Any

from .._frames import is_library, short_path, user_first


def swallowing_handlers(code: CodeType | None) -> list[int]:
    """Lines of ``except`` clauses in a function that catch CancelledError without re-raising."""
    tree = None if code is None else _tree(code)
    if code is None or tree is None:
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


def _tree(code: CodeType) -> ast.AST | None:
    """The parsed source of a function, its lines numbered from ``co_firstlineno``."""
    if not linecache.getlines(code.co_filename):
        return None
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None


def _names(node: ast.expr | None) -> set[str]:
    """The class names an ``except`` lists (``except (TimeoutError, db.Error)``)."""
    if node is None:
        return set()
    return {
        inner.id if isinstance(inner, ast.Name) else inner.attr
        for inner in ast.walk(node)
        if isinstance(inner, ast.Name | ast.Attribute)
    }


def dropping_handler(code: CodeType, line: int, exc_type: type[BaseException]) -> int | None:
    """The line of the innermost ``except`` of a function that catches an ``exc_type``
    raised at ``line`` and does not re-raise; ``None`` when there is none (or the source
    cannot be read)."""
    tree = _tree(code)
    if tree is None:
        return None
    relative = line - code.co_firstlineno + 1
    bases = {cls.__name__ for cls in exc_type.__mro__}
    found: tuple[int, int] | None = None  # (the try's first line, the handler's line)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try | ast.TryStar) or not node.body:
            continue
        if not (node.body[0].lineno <= relative <= (node.body[-1].end_lineno or 0)):
            continue
        for handler in node.handlers:
            names = _names(handler.type)
            if handler.type is not None and not names & bases:
                continue
            reraises = any(isinstance(inner, ast.Raise) for inner in ast.walk(handler))
            if not reraises and (found is None or node.lineno > found[0]):
                found = (node.lineno, handler.lineno)
            break  # the first clause that matches takes it
    return None if found is None else code.co_firstlineno + found[1] - 1


def dropping_site(exception: BaseException) -> str:
    """Where an exception that never left its task was caught and let go: the outermost
    frame its traceback reached is the one that caught it; its ``except`` clause, as a
    report's line ("" when it cannot be told)."""
    tb = exception.__traceback__
    if tb is None:
        return ""
    code = tb.tb_frame.f_code
    handler = dropping_handler(code, tb.tb_lineno, type(exception))
    return _line(code.co_filename, handler if handler is not None else tb.tb_lineno)


def swallowing_site_in(code: CodeType) -> str:
    """The first ``except`` of a function that catches ``CancelledError`` and goes on, as
    a report's line; "" when it has none."""
    handlers = swallowing_handlers(code)
    return _line(code.co_filename, handlers[0]) if handlers else ""


def _line(filename: str, line: int) -> str:
    source = linecache.getline(filename, line).strip()
    where = f"{short_path(filename)}:{line}"
    return f"{where}: `{source}`" if source else where


def swallowing_site(coro: Any, *, app_only: bool = False) -> str:
    """Where along a coroutine's await chain ``CancelledError`` is caught and not re-raised:
    the app's own ``except`` first (a library's is rarely the one), as a report's line;
    "" when none is found (or, with ``app_only``, when only a library's is: a driver that
    catches a cancel on purpose, to clean up and re-raise it later)."""
    sites: list[tuple[str, int]] = []
    seen = 0
    while coro is not None and seen < 1000:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if isinstance(code, CodeType):
            sites += [(code.co_filename, line) for line in swallowing_handlers(code)]
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        seen += 1
    chosen = user_first(reversed(sites), lambda site: site[0])
    if chosen is None or (app_only and is_library(chosen[0])):
        return ""
    return _line(*chosen)
