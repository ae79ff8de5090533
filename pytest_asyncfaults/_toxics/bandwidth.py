"""``bandwidth``: pass data at ``rate`` KB/s (1 KB = 1000 bytes, as Toxiproxy).

Each byte takes ``1 / (rate * 1000)`` s to leave after the ones before it;
an idle stream starts from now, so no credit builds up while nothing flows.
Big chunks leave in pieces of at most 100 ms worth of data (as Toxiproxy
splits them), so a slow rate still delivers smoothly. ``rate`` 0 lets
nothing through until the toxic goes away (what Toxiproxy ends up doing).
"""

from __future__ import annotations

import random
from typing import final

from .._values import KILOBYTES_PER_SECOND
from ._stage import Attributes, Data, Event, Marker, Stage, kinds


@final
class Bandwidth(Stage):
    type_name = "bandwidth"
    attribute_kinds = kinds(rate=KILOBYTES_PER_SECOND)

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._busy_until = float("-inf")
        self._stalled: list[Event] = []
        super().__init__(attributes, rng)

    def configure(self, attributes: Attributes) -> None:
        self._rate = self.int_value(attributes, "rate")

    def on_data(self, chunk: Data, now: float) -> None:
        if self._rate <= 0:
            self._stalled.append(chunk)
            self.holding += len(chunk.data)
            return
        bytes_per_second = self._rate * 1000
        piece_size = self._rate * 100
        at = max(now, self._busy_until)
        data = chunk.data
        for offset in range(0, len(data), piece_size):
            piece = data[offset : offset + piece_size]
            at += len(piece) / bytes_per_second
            self._release(Data(piece, chunk.stamp), at)
        self._busy_until = at

    def on_end(self, event: Marker, now: float) -> None:
        if self._stalled:
            # Nothing may overtake the stalled data: the end waits with it.
            self._stalled.append(event)
            return
        super().on_end(event, now)

    def discard(self) -> None:
        super().discard()
        self._stalled = []

    def interrupt(self, now: float) -> list[Event]:
        out = super().interrupt(now)
        out.extend(self._stalled)
        self._stalled = []
        self._busy_until = float("-inf")
        return out
