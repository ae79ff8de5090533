"""The engine's own event loop: asyncio, with timers that keep their word.

``epoll_wait`` takes whole milliseconds and CPython rounds the wait up, so a
plain asyncio timer fires up to 1 ms late (0.5 ms on average): too coarse for
a latency toxic that should be exact. When a timer is pending we wait on the
epoll descriptor with ``select()`` instead, whose timeout is in microseconds,
then collect the events without blocking. Waits without a timer (the common
case with no toxics) take the plain path and cost nothing extra.
"""

from __future__ import annotations

import asyncio
import select
import selectors
from typing import final


@final
class PreciseEpollSelector(selectors.EpollSelector):
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            try:
                select.select([self.fileno()], [], [], timeout)
            except (ValueError, OSError):
                # Descriptor above FD_SETSIZE: the millisecond wait still works.
                return super().select(timeout)
            timeout = 0
        return super().select(timeout)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A selector loop with precise timers where epoll exists, a plain one elsewhere."""
    if hasattr(selectors, "EpollSelector"):
        return asyncio.SelectorEventLoop(PreciseEpollSelector())
    return asyncio.new_event_loop()
