"""``slow_close``: hold the end of the stream for ``delay`` ms.

Data passes untouched; only the EOF (or the connection close) waits, as when
a server lingers before closing its socket.
"""

from __future__ import annotations

from typing import final

from .._values import MILLISECONDS
from ._stage import Attributes, Marker, Stage, kinds, ms


@final
class SlowClose(Stage):
    type_name = "slow_close"
    attribute_kinds = kinds(delay=MILLISECONDS)

    def configure(self, attributes: Attributes) -> None:
        self._delay = ms(self.int_value(attributes, "delay"))

    def on_end(self, event: Marker, now: float) -> None:
        self._release(event, now + self._delay)
