"""What the app runner knows about the request a piece of code runs for.

A task inherits the context of the code that created it, so every task the
app spawns while handling a request (and the ASGI call's own tail, where
Starlette runs ``BackgroundTasks``) carries the request it belongs to. The
task monitor reads it when the task is created; the hang report prints it.
"""

from __future__ import annotations

import itertools
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final, Literal, final

Role = Literal["lifespan", "request"]

_request_ids = itertools.count(1)


@final
@dataclass(eq=False)
class RequestInfo:
    """One request served in process: when it answered, and how its ASGI call ended."""

    method: str
    path: str
    id: int = field(default_factory=lambda: next(_request_ids))
    started_at: float = field(default_factory=time.monotonic)
    status: int | None = None
    response_complete_at: float | None = None
    """When the last byte of the body was sent: the client got its answer then."""
    ended_at: float | None = None
    """When the whole ASGI call returned (background tasks included)."""
    error: BaseException | None = None
    """What the ASGI call raised, if anything (logged as uvicorn does, never re-raised)."""

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


current_request: Final[ContextVar[RequestInfo | None]] = ContextVar(
    "asyncfaults_current_request", default=None
)
current_role: Final[ContextVar[Role | None]] = ContextVar("asyncfaults_current_role", default=None)
"""Set by the app runner around the lifespan and each ASGI call."""
