"""``limit_data``: let ``bytes`` bytes through on this stream, then close.

The chunk that crosses the limit is cut at it; the connection is then closed.
The count survives updates of the toxic (Toxiproxy keeps it in the stub's
state), so raising the limit lets more through on the same connection.
"""

from __future__ import annotations

import random
from typing import final

from .._values import BYTES
from ._stage import CLOSE, Attributes, Data, Stage, kinds


@final
class LimitData(Stage):
    type_name = "limit_data"
    attribute_kinds = kinds(bytes=BYTES)

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self.transmitted = 0
        super().__init__(attributes, rng)

    def configure(self, attributes: Attributes) -> None:
        self._limit = self.int_value(attributes, "bytes")

    def on_data(self, chunk: Data, now: float) -> None:
        remaining = max(self._limit - self.transmitted, 0)
        data = chunk.data if len(chunk.data) <= remaining else chunk.data[:remaining]
        if data:
            self.transmitted += len(data)
            self._release(Data(data, chunk.stamp), now)
        if self.transmitted >= self._limit:
            self._ended = True
            self._release(CLOSE, now)
