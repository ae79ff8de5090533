"""``reset_peer``: on the first data or EOF, wait ``timeout`` ms, then reset.

The reset closes both sides of the connection with ``SO_LINGER`` 0, so each
peer sees a TCP RST (``ECONNRESET``) rather than a clean close. Data that
arrives from the trigger on is dropped, as the reset would discard it.
"""

from __future__ import annotations

import random
from typing import final

from .._values import MILLISECONDS
from ._stage import RESET, Attributes, Data, Event, Marker, Stage, kinds, ms


@final
class ResetPeer(Stage):
    type_name = "reset_peer"
    attribute_kinds = kinds(timeout=MILLISECONDS)

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._reset_at: float | None = None
        super().__init__(attributes, rng)

    def configure(self, attributes: Attributes) -> None:
        self._timeout = ms(self.int_value(attributes, "timeout"))

    def _trigger(self, now: float) -> None:
        if self._reset_at is None:
            self._reset_at = now + self._timeout

    def on_data(self, chunk: Data, now: float) -> None:
        self._trigger(now)

    def on_end(self, event: Marker, now: float) -> None:
        self._trigger(now)
        self._ended = False  # still owes the reset; keep answering polls

    def discard(self) -> None:
        super().discard()
        self._reset_at = None

    def poll(self, now: float) -> list[Event]:
        if self._reset_at is not None and now >= self._reset_at:
            self._reset_at = None
            self._ended = True
            return [RESET]
        return super().poll(now)

    def deadline(self) -> float | None:
        queued = super().deadline()
        if self._reset_at is None:
            return queued
        return self._reset_at if queued is None else min(queued, self._reset_at)
