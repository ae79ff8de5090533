"""One exception tree for everything pytest-asyncfaults raises on purpose.

Callers catch the branch they care about; nothing else from our internals
should ever reach a user as a bare traceback::

    AsyncFaultsError
     ├── InvalidError (ValueError)     bad input: names the field, the value, what is allowed
     ├── NotFoundError (LookupError)   no proxy / toxic of that name
     ├── AlreadyExistsError            a proxy / toxic of that name exists
     ├── ListenError (OSError)         a proxy could not listen (port in use, bad address)
     └── EngineError (RuntimeError)    the fault engine is not running, or did not answer in time

The HTTP client of a real Toxiproxy server maps its status codes onto the same
branches: 400 -> InvalidError, 404 -> NotFoundError, 409 -> AlreadyExistsError.
"""

from __future__ import annotations


class AsyncFaultsError(Exception):
    """Base of every error pytest-asyncfaults raises on purpose."""


class InvalidError(AsyncFaultsError, ValueError):
    """Bad input: the message names the field, the bad value and what is allowed."""


class NotFoundError(AsyncFaultsError, LookupError):
    """A proxy or toxic of that name does not exist."""


class AlreadyExistsError(AsyncFaultsError):
    """A proxy or toxic of that name already exists."""


class ListenError(AsyncFaultsError, OSError):
    """A proxy could not open its listening socket."""


class EngineError(AsyncFaultsError, RuntimeError):
    """The fault engine is not running, or did not answer within its bound."""
