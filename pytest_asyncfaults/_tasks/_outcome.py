"""What became of the background work of a test, and assertions on it.

``await tasks.settle(within=...)`` returns an ``Outcome``: one entry per
background task, with how it ended, whether its failure was logged, and
whether anyone ever looked at its exception. The assertions say what was
expected and what happened, task by task, so a failing test points at the
task and the line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, final

from .._exceptions import OutcomeError
from .._frames import describe_exception, exception_chain

State = Literal["completed", "failed", "cancelled", "pending", "lost"]


@final
@dataclass(frozen=True)
class TaskOutcome:
    """How one background task ended, seen at one moment."""

    name: str
    description: str
    """Its name, what it ran for (a request, the test) and where it was created."""
    state: State
    exception: BaseException | None
    duration: float | None
    logged: bool
    """Its failure was logged at ERROR with the exception attached."""
    retrieved: bool
    """Someone awaited it or read its exception (asyncio would not complain)."""
    dropped: tuple[str, ...] = ()
    """Where it caught a timeout's ``TimeoutError`` and went on, neither re-raising nor
    logging it (``except Exception: pass``): why it "completed" though its work timed out."""

    def __str__(self) -> str:
        if self.state == "failed":
            assert self.exception is not None
            how = f"failed with {describe_exception(self.exception)}"
        elif self.state == "completed":
            how = "completed"
        else:
            how = self.state
        took = "" if self.duration is None else f" after {self.duration:.2f} s"
        dropped = "".join(
            f"\n      a TimeoutError was caught at {site} and dropped: neither re-raised nor logged"
            for site in self.dropped
        )
        return f"{self.description}: {how}{took}{dropped}"


def _listing(entries: Sequence[TaskOutcome]) -> str:
    if not entries:
        return "  (no background task)"
    return "\n".join(f"  - {entry}" for entry in entries)


@final
@dataclass(frozen=True)
class Outcome:
    """The background work of a test, once settled (see ``TaskMonitor.settle``)."""

    entries: tuple[TaskOutcome, ...]
    within: float
    elapsed: float
    error_logs: tuple[logging.LogRecord, ...] = ()
    connections_before: dict[str, int] = field(default_factory=dict)
    connections_after: dict[str, int] = field(default_factory=dict)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def failures(self) -> tuple[TaskOutcome, ...]:
        return tuple(entry for entry in self.entries if entry.state == "failed")

    def _fail(self, expected: str) -> None:
        raise OutcomeError(
            f"expected {expected}, but the background work was:\n{_listing(self.entries)}"
        )

    def assert_completed(self) -> Outcome:
        """Every background task ran to its end without an exception."""
        if any(entry.state != "completed" for entry in self.entries):
            self._fail("every background task to complete")
        return self

    def _matching(self, exc_type: type[BaseException]) -> list[TaskOutcome]:
        """The failures of ``exc_type``, itself or as what it was raised from or while
        handling: a framework that re-raises the app's error as its own (Litestar's
        "Exception caught after response started" from the app's ``TimeoutError``) still
        failed with it, as a scenario's ``expect.exception`` has it."""
        return [
            entry
            for entry in self.failures
            if any(isinstance(cause, exc_type) for cause in exception_chain(entry.exception))
        ]

    def assert_failed(self, exc_type: type[BaseException] = Exception) -> TaskOutcome:
        """A background task failed with ``exc_type`` (within the settle deadline)."""
        matching = self._matching(exc_type)
        if not matching:
            self._fail(f"a background task to fail with {exc_type.__name__} within {self.within} s")
        return matching[0]

    def assert_logged(self, exc_type: type[BaseException] = Exception) -> Outcome:
        """Every failure of ``exc_type`` was logged at ERROR with its traceback."""
        matching = self._matching(exc_type)
        if not matching:
            self._fail(f"a background task to fail with {exc_type.__name__} (and be logged)")
        silent = [entry for entry in matching if not entry.logged]
        if silent:
            logged = (
                "\n".join(f"  - {record.name}: {record.getMessage()}" for record in self.error_logs)
                or "  (none)"
            )
            raise OutcomeError(
                f"expected each {exc_type.__name__} of the background work to be logged at "
                f"ERROR with its traceback, but these were not:\n{_listing(silent)}\n"
                f"ERROR records seen during the test:\n{logged}"
            )
        return self

    def connections_changed(self) -> dict[str, tuple[int, int]]:
        """Per proxy whose count moved: (open before the first request, open now)."""
        return {
            name: (self.connections_before.get(name, 0), count)
            for name, count in self.connections_after.items()
            if count != self.connections_before.get(name, 0)
        }

    def assert_cleaned_up(self) -> Outcome:
        """Nothing of the test is still pending, and proxy connections are back to before."""
        pending = [entry for entry in self.entries if entry.state == "pending"]
        if pending:
            self._fail("no background task left pending")
        changed = self.connections_changed()
        if changed:
            details = ", ".join(
                f"{name}: {before} open before the first request, {after} now"
                for name, (before, after) in changed.items()
            )
            raise OutcomeError(
                f"expected proxy connections back to where they were: {details} (connections "
                f"idle in the app's asyncpg or SQLAlchemy pool are not counted: these are "
                f"held by no running task, one more per request)"
            )
        return self

    def matching(self, predicate: Callable[[TaskOutcome], bool]) -> list[TaskOutcome]:
        return [entry for entry in self.entries if predicate(entry)]
