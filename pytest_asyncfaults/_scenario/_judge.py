"""Judging what happened against a scenario's expectations: pure, one verdict per expectation.

Both the pytest harness and ``asyncfaults repro`` judge with these, so a
scenario means the same in a test and on the command line. Each unmet
expectation says what was expected and what happened, in full and in a few
words for the matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

from .._frames import exception_chain
from .._tasks._outcome import Outcome
from ._model import Expectations


def exception_matches(exception: BaseException, type_name: str) -> bool:
    """Is ``exception`` of the type named (or a subclass)? By name: nothing is imported.

    ``"TimeoutError"`` matches by class name; a dotted name matches the
    class's full name, or its package and class name (``asyncpg.PostgresError``
    for ``asyncpg.exceptions.PostgresError``, as the package exports it).
    """
    package, _, short = type_name.rpartition(".")
    for cls in type(exception).__mro__:
        if not package:
            if cls.__name__ == type_name:
                return True
        elif cls.__name__ == short and (
            f"{cls.__module__}.{cls.__qualname__}" == type_name
            or cls.__module__.split(".")[0] == package.split(".")[0]
        ):
            return True
    return False


def failure_matches(exception: BaseException, type_name: str) -> bool:
    """``exception_matches`` for the exception or one it was raised from or while handling.

    A failure is "a timeout" when a timeout started it, whatever the clean-up
    raised on top (asyncpg's rollback on a connection the timeout closed raises
    ``InterfaceError`` while handling the ``TimeoutError``).
    """
    return any(exception_matches(cause, type_name) for cause in exception_chain(exception))


@final
@dataclass(frozen=True)
class Unmet:
    """One expectation that did not hold: a few words for a table, the whole story for a report."""

    short: str
    detail: str


def _state(entry_state: str, exception: BaseException | None) -> str:
    if exception is not None:
        return f"failed with {type(exception).__name__}"
    return entry_state


def judge_outcome(expect: Expectations, outcome: Outcome) -> list[Unmet]:
    """The expectations on a settled outcome that did not hold (pending work is a hang)."""
    unmet = []
    entries = outcome.entries
    if expect.outcome == "completed":
        bad = [entry for entry in entries if entry.state != "completed"]
        if bad:
            unmet.append(
                Unmet(
                    f"expected completed, {bad[0].name!r} {_state(bad[0].state, bad[0].exception)}",
                    "expected every background task to complete, but:\n"
                    + "\n".join(f"  - {entry}" for entry in bad),
                )
            )
    elif expect.outcome == "failed":
        wanted = expect.exception or "Exception"
        matching = [
            entry
            for entry in outcome.failures
            if entry.exception is not None and failure_matches(entry.exception, wanted)
        ]
        if not matching:
            seen = ", ".join(
                f"{entry.name!r} {_state(entry.state, entry.exception)}" for entry in entries
            )
            unmet.append(
                Unmet(
                    f"expected {'a failure' if expect.exception is None else 'a ' + wanted}, "
                    f"got: {seen or 'no background task'}",
                    f"expected the background work to fail with {wanted} within "
                    f"{outcome.within:g} s, but it was:\n"
                    + ("\n".join(f"  - {entry}" for entry in entries) or "  (no background task)"),
                )
            )
    if expect.logged:
        silent = [entry for entry in outcome.failures if not entry.logged]
        if silent:
            first = silent[0]
            assert first.exception is not None
            unmet.append(
                Unmet(
                    f"{type(first.exception).__name__} of {first.name!r} not logged",
                    "expected each failure to be logged at ERROR with its traceback, but these "
                    "were not:\n" + "\n".join(f"  - {entry}" for entry in silent),
                )
            )
    if expect.cleaned_up:
        changed = outcome.connections_changed()
        if changed:
            words = ", ".join(
                f"{name} {after} open (was {before})" for name, (before, after) in changed.items()
            )
            unmet.append(
                Unmet(
                    f"connections left: {words}",
                    f"expected proxy connections back to where they were before the first "
                    f"request: {words}",
                )
            )
    return unmet


def judge_stalls(expect: Expectations, stalls: Iterable[tuple[float, str]]) -> list[Unmet]:
    """``(duration s, where)`` of each loop stall, against ``max_stall_ms``."""
    if expect.max_stall_ms is None:
        return []
    limit = expect.max_stall_ms / 1000
    over = [(duration, where) for duration, where in stalls if duration > limit]
    if not over:
        return []
    worst = max(over)
    return [
        Unmet(
            f"loop stalled {worst[0]:.2f} s (max {expect.max_stall_ms} ms)",
            f"expected no event-loop stall over {expect.max_stall_ms} ms, but:\n"
            + "\n".join(f"  - {duration:.2f} s at {where}" for duration, where in over),
        )
    ]
