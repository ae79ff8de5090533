"""The engine's own event loop: asyncio, with timers that keep their word.

A plain asyncio timer fires late, for three reasons. ``epoll_wait`` takes
whole milliseconds and CPython rounds the wait up (up to 1 ms late, 0.5 ms on
average). Any kernel wait may overshoot by its "slack", 50 us or 0.1 % of the
wait, whichever is more, so that wake-ups can be batched. And a CPU that went
idle during the wait takes time to come back: little on bare metal, 0.1 to
0.3 ms for the halted vCPU of a virtual machine (a CI runner, say). For a
latency toxic that should be exact, that lateness is the whole error.

So when a timer is pending, we sleep on the epoll descriptor with
``select()``, whose timeout is in microseconds, until a little before the
deadline (the slack plus ``SPIN_WINDOW``), then poll for events without
blocking until the deadline comes: the thread is awake and running when the
timer is due. The polling releases the GIL on every turn, and it is capped at
``SPIN_SHARE`` of the wait, so dense short timers (a slicer's) cannot turn it
into a busy loop. With no timer pending (no toxic holding data) the loop
blocks as usual and costs nothing extra.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time
from typing import Final, final

SPIN_WINDOW: Final = 250e-6
"""How long before a deadline to be awake: about what a halted vCPU takes to wake."""
SPIN_SHARE: Final = 0.05
"""Upper bound on the part of a timer wait spent polling instead of sleeping."""
_MIN_SLACK: Final = 50e-6
"""The kernel's default timer slack, the least a wait may overshoot by."""


@final
class PreciseEpollSelector(selectors.EpollSelector):
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return super().select(timeout)
        deadline = time.monotonic() + timeout
        max_early = timeout * SPIN_SHARE
        while True:
            remaining = deadline - time.monotonic()
            # Wake early by the wait's slack and the wake-up time; long waits take
            # two sleeps, the second with a slack small enough to stay early.
            early = min(SPIN_WINDOW + max(remaining / 1000, _MIN_SLACK), max_early)
            wait = remaining - early
            if wait <= 0:
                break
            try:
                ready = select.select([self.fileno()], [], [], wait)[0]
            except (ValueError, OSError):
                # Descriptor above FD_SETSIZE: epoll takes whole milliseconds and
                # rounds up, so wait a millisecond less (or not at all), then poll.
                if wait < 1e-3:
                    break
                events = super().select(wait - 1e-3)
                if events:
                    return events
                continue
            if ready:
                return super().select(0)
        while True:
            events = super().select(0)
            if events or time.monotonic() >= deadline:
                return events


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A selector loop with precise timers where epoll exists, a plain one elsewhere."""
    if hasattr(selectors, "EpollSelector"):
        return asyncio.SelectorEventLoop(PreciseEpollSelector())
    return asyncio.new_event_loop()
