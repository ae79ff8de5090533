"""The embedded fault engine: ``FaultCore`` hosted on its own loop and thread.

An app under test may block its event loop (that is one of the bugs we look
for). Faults must not stall or stretch with it: real Toxiproxy is another
process and keeps its own time, so the engine keeps its own loop.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import final

from .._engine._core import FaultCore
from .._exceptions import InvalidError
from .._values import shown
from ._base import CALL_TIMEOUT, ProxyHost


@final
class Engine(ProxyHost[FaultCore]):
    """The embedded fault proxy, running in a thread of this process.

    Use it as a context manager (``with Engine(seed=1) as engine:``) or call
    ``start``/``stop``. Methods are safe to call from any thread; ``acall``
    reaches the core from another event loop (the test's).
    """

    thread_name = "asyncfaults-engine"

    def __init__(
        self,
        *,
        seed: int | None = None,
        call_timeout: float = CALL_TIMEOUT,
        allow_remote: bool = False,
    ) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidError(f"seed={shown(seed)} is not valid: expected an integer")
        super().__init__(call_timeout=call_timeout)
        self.seed: int = secrets.randbits(32) if seed is None else seed
        self.allow_remote = allow_remote
        """Whether proxies may listen beyond loopback; without it, 0.0.0.0 and :: are
        served on loopback and other addresses refused (``FaultCore._listen``)."""
        """Fixes every random decision (toxicity, jitter, slicer sizes): print it to repeat."""

    def describe(self) -> str:
        return f"the embedded fault engine (seed {self.seed})"

    async def _open(self, loop: asyncio.AbstractEventLoop) -> FaultCore:
        return FaultCore(loop, self.seed, allow_remote=self.allow_remote)

    async def _close(self, target: FaultCore) -> None:
        target.close()
