"""``timeout``: a blackhole. Data is dropped; the connection stays open.

``timeout`` 0 holds the connection open for as long as the toxic stays.
``timeout`` > 0 closes the connection once ``timeout`` ms pass without data
arriving on this stream (each chunk dropped restarts the wait, exactly as
Toxiproxy's loop does). Removing the toxic closes the connections it held:
they lost data, so they cannot carry on (Toxiproxy's cleanup does the same).
An EOF passes through and ends the wait.
"""

from __future__ import annotations

import random
from typing import final

from .._values import MILLISECONDS
from ._stage import CLOSE, Attributes, Data, Event, Marker, Stage, kinds, ms


@final
class Timeout(Stage):
    type_name = "timeout"
    attribute_kinds = kinds(timeout=MILLISECONDS)

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._close_at: float | None = None
        self._waiting_since: float | None = None  # None: not started, or the wait is over
        super().__init__(attributes, rng)

    def configure(self, attributes: Attributes) -> None:
        self._timeout = ms(self.int_value(attributes, "timeout"))
        if self._waiting_since is not None:
            self._arm(self._waiting_since)

    def start(self, now: float) -> None:
        self._arm(now)

    def _arm(self, now: float) -> None:
        self._waiting_since = now
        self._close_at = now + self._timeout if self._timeout > 0 else None

    def on_data(self, chunk: Data, now: float) -> None:
        self._arm(now)

    def on_end(self, event: Marker, now: float) -> None:
        self._waiting_since = self._close_at = None
        self._release(event, now)

    def poll(self, now: float) -> list[Event]:
        if self._close_at is not None and now >= self._close_at:
            self._waiting_since = self._close_at = None
            self._ended = True
            return [CLOSE]
        return super().poll(now)

    def discard(self) -> None:
        super().discard()
        self._waiting_since = self._close_at = None

    def interrupt(self, now: float) -> list[Event]:
        # An update restarts the wait from now, with the new timeout (Toxiproxy
        # restarts the toxic's loop, and its timer with it).
        out = super().interrupt(now)
        if self._waiting_since is not None:
            self._arm(now)
        return out

    def deadline(self) -> float | None:
        queued = super().deadline()
        if self._close_at is None:
            return queued
        return self._close_at if queued is None else min(queued, self._close_at)

    def cleanup(self, now: float) -> list[Event]:
        return [] if self._ended else [CLOSE]
