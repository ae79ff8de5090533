"""The one walk along an exception's causes: it ends on a chain that loops.

Every report that asks "was this failure surfaced / logged / a timeout at
heart" walks ``__cause__`` / ``__context__``; a chain can loop (code that
sets ``__context__`` by hand, a re-raise inside its own handler), and one of
the copies this walk replaced looped forever on such a chain. Each caller is
run in a thread with a deadline, so a regression fails instead of hanging.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from pytest_asyncfaults._frames import exception_chain
from pytest_asyncfaults._scenario._judge import failure_matches
from pytest_asyncfaults._tasks import _detectors
from pytest_asyncfaults._tasks._monitor import TaskMonitor

DEADLINE = 5.0


def within_deadline(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or a failure if it did not return within ``DEADLINE`` s."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), f"still running after {DEADLINE} s: the walk loops"
    assert len(result) == 1
    return result[0]


def cyclic() -> tuple[BaseException, BaseException]:
    a, b = ValueError("a"), KeyError("b")
    a.__context__ = b
    b.__context__ = a
    return a, b


def test_the_chain_lists_each_exception_once_in_order() -> None:
    root = OSError("root")
    middle = TimeoutError("middle")
    top = RuntimeError("top")
    middle.__cause__ = root
    top.__context__ = middle
    assert list(exception_chain(top)) == [top, middle, root]
    assert list(exception_chain(None)) == []


def test_the_cause_wins_over_the_context_as_python_prints_them() -> None:
    cause, context, top = OSError("cause"), OSError("context"), RuntimeError("top")
    top.__cause__ = cause
    top.__context__ = context
    assert list(exception_chain(top)) == [top, cause]


def test_a_cyclic_chain_ends() -> None:
    a, b = cyclic()
    assert within_deadline(lambda: list(exception_chain(a))) == [a, b]


def test_surfaced_ends_on_a_cyclic_chain() -> None:
    """The not-logged detector asks whether a failure reached the test's own error."""
    a, b = cyclic()
    monitor = TaskMonitor()
    unrelated = LookupError("never raised from")
    assert within_deadline(lambda: _detectors._surfaced(unrelated, monitor, a)) is False
    assert within_deadline(lambda: _detectors._surfaced(b, monitor, a)) is True


def test_failure_matches_ends_on_a_cyclic_chain() -> None:
    a, _ = cyclic()
    assert within_deadline(lambda: failure_matches(a, "KeyError")) is True
    assert within_deadline(lambda: failure_matches(a, "TimeoutError")) is False


def test_was_logged_ends_on_a_cyclic_chain() -> None:
    a, b = cyclic()
    monitor = TaskMonitor()
    record = logging.LogRecord("app", logging.ERROR, __file__, 1, "boom", None, (type(a), a, None))
    monitor.error_logs.append(record)
    assert within_deadline(lambda: monitor.was_logged(b)) is True
    assert within_deadline(lambda: monitor.was_logged(LookupError("other"))) is False


def test_the_package_own_frames_are_judged_from_its_root() -> None:
    """Frames anywhere in the package are machinery; a module moved deeper must not
    widen or narrow that (its directory is computed from its own file)."""
    import pytest_asyncfaults
    from pytest_asyncfaults import _frames

    root = os.path.dirname(os.path.abspath(pytest_asyncfaults.__file__))
    assert root == _frames._OWN_DIR
    assert _frames.is_library(os.path.join(root, "_tasks", "_monitor.py"))
    assert not _frames.is_library(os.path.join(os.path.dirname(root), "tests", "test_x.py"))
