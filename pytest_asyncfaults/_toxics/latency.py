"""``latency``: delay each chunk by ``latency`` ms, plus or minus ``jitter`` ms.

The delay counts from when the chunk was read, not from when this toxic got
to it, and the chunk's stamp moves forward by the delay: two stacked latency
toxics add up (as in Toxiproxy). Order is kept: a chunk never overtakes the
one before it. Jitter is drawn per chunk, as Toxiproxy does, from the
stage's seeded random source, in whole ms in ``[-jitter, jitter)``.
"""

from __future__ import annotations

from typing import final

from .._values import MILLISECONDS
from ._stage import Attributes, Data, Event, Stage, kinds, ms


@final
class Latency(Stage):
    type_name = "latency"
    attribute_kinds = kinds(latency=MILLISECONDS, jitter=MILLISECONDS)

    def configure(self, attributes: Attributes) -> None:
        self._latency = self.int_value(attributes, "latency")
        self._jitter = self.int_value(attributes, "jitter")

    def _delay_ms(self) -> int:
        if self._jitter > 0:
            return self._latency + self._rng.randrange(-self._jitter, self._jitter)
        return self._latency

    def on_data(self, chunk: Data, now: float) -> None:
        stamp = chunk.stamp + ms(self._delay_ms())
        self._release(Data(chunk.data, stamp), stamp)

    def interrupt(self, now: float) -> list[Event]:
        # What leaves early was delayed only until now, and its stamp must say
        # so: else a latency toxic after this one would still wait out the rest
        # of the delay of the toxic that went away.
        return [
            Data(event.data, min(event.stamp, now)) if isinstance(event, Data) else event
            for event in super().interrupt(now)
        ]
