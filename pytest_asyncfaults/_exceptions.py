"""Every exception and warning pytest-asyncfaults raises on purpose, in one tree.

Callers catch the branch they care about; nothing else from our internals
should ever reach a user as a bare traceback::

    AsyncFaultsError                  base of everything below                        500
     ├── InvalidError (ValueError)    bad input: the field, the value, what is allowed 400
     │    └── ScenarioError           a bad scenario file or inline fault: file, key   400
     ├── NotFoundError (LookupError)  no proxy / toxic of that name                    404
     ├── AlreadyExistsError           a proxy / toxic of that name exists              409
     ├── ListenError (OSError)        a proxy could not listen (port in use, address)  500
     ├── EngineError (RuntimeError)   the fault engine is not running, or mute         500
     ├── ServiceError (RuntimeError)  PostgreSQL / SMTP not found, started, reached    500
     │
     │   what a test fails with (AssertionError: pytest reports a failure):
     ├── HangError                    background work pending at a deadline: the report
     │    └── LoopBlockedError        raised into code that blocked the loop past a deadline
     ├── LifespanError                the app's lifespan did not start or stop, or failed
     ├── OutcomeError                 an assertion on a test's background work failed
     └── ExpectationError             a scenario's expectations did not hold

    AsyncFaultsWarning (UserWarning)     a check set to "warn" found something

The number after each error is its HTTP status, as a class attribute
(``status``): ``asyncfaults serve`` answers an error with it, and the client
of a Toxiproxy API maps a status back onto the same tree with
``error_for_status``: no second table exists. Where Toxiproxy has its own
words for the same mistake ("proxy not found"), the error carries them too
(``toxiproxy``, set with ``in_toxiproxy_words``): ``serve`` answers with
Toxiproxy's words, and with ours beside them, so a client that compares the
text sees Toxiproxy's.
"""

from __future__ import annotations

from typing import ClassVar, Final, TypeVar

__all__ = (
    "AlreadyExistsError",
    "AsyncFaultsError",
    "AsyncFaultsWarning",
    "EngineError",
    "ExpectationError",
    "HangError",
    "InvalidError",
    "LifespanError",
    "ListenError",
    "LoopBlockedError",
    "NotFoundError",
    "OutcomeError",
    "ScenarioError",
    "ServiceError",
    "error_for_status",
)


class AsyncFaultsError(Exception):
    """Base of every error pytest-asyncfaults raises on purpose."""

    status: ClassVar[int] = 500
    """The HTTP status ``asyncfaults serve`` answers this error with (Toxiproxy's)."""
    toxiproxy: str | None = None
    """Toxiproxy 2.12's own message for the same error, word for word, if it has one."""


class InvalidError(AsyncFaultsError, ValueError):
    """Bad input: the message names the field, the bad value and what is allowed."""

    status = 400


class ScenarioError(InvalidError):
    """A scenario file (or an inline fault) is not valid; the message names file and key."""


class NotFoundError(AsyncFaultsError, LookupError):
    """A proxy or toxic of that name does not exist."""

    status = 404


class AlreadyExistsError(AsyncFaultsError):
    """A proxy or toxic of that name already exists."""

    status = 409


class ListenError(AsyncFaultsError, OSError):
    """A proxy could not open its listening socket."""


class EngineError(AsyncFaultsError, RuntimeError):
    """The fault engine is not running, or did not answer within its bound."""


class ServiceError(AsyncFaultsError, RuntimeError):
    """A real service (PostgreSQL, SMTP) could not be found, started or reached."""


class HangError(AsyncFaultsError, AssertionError):
    """Background work was still pending at a deadline; the message is the hang report."""

    short: str = ""
    """The same in a few words, for a summary table ("" when the report's first line will do)."""


class LoopBlockedError(HangError):
    """Raised into the code that held the event loop past the test's deadline.

    ``time.sleep``, a sync socket read, a CPU loop: nothing on the loop can run
    while they do, not even the deadline's own timer, so the watchdog thread
    interrupts the main thread with a signal and this is raised where it blocks;
    the message is the stall report with the blocking line."""


class LifespanError(AsyncFaultsError, AssertionError):
    """The app's lifespan did not start or stop in time, or failed; the message says where."""


class OutcomeError(AsyncFaultsError, AssertionError):
    """An assertion on the background work of a test did not hold."""


class ExpectationError(AsyncFaultsError, AssertionError):
    """A scenario's expectations did not hold; the message says which and what happened."""

    short: str = ""
    """Which ones, in a few words, for the matrix."""


class AsyncFaultsWarning(UserWarning):
    """A check of pytest-asyncfaults set to "warn" found something."""


E = TypeVar("E", bound=AsyncFaultsError)


def in_toxiproxy_words(error: E, words: str) -> E:
    """``error``, carrying what Toxiproxy 2.12 says in its place (its ``api.go`` errors)."""
    error.toxiproxy = words
    return error


_BY_STATUS: Final[dict[int, type[AsyncFaultsError]]] = {
    cls.status: cls for cls in (InvalidError, NotFoundError, AlreadyExistsError)
}
"""The statuses that name one branch; every other one is the base's."""


def error_for_status(status: int, message: str) -> type[AsyncFaultsError]:
    """The class of error a Toxiproxy API's answer ``status`` / ``message`` stands for.

    A failed listen is the one error Toxiproxy answers with a bare 500 and
    nothing else to tell it by: its message ("listen tcp ...: bind: address
    already in use") is the only signal, so that is read here, once.
    """
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ListenError if "listen" in message else AsyncFaultsError
    return cls


# They are raised (and printed in failure reports) before anyone imports them from
# the package: they say where a user finds them, as the facade does for the rest.
for _name in __all__:
    globals()[_name].__module__ = "pytest_asyncfaults"
del _name
