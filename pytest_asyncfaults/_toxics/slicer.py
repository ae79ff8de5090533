"""``slicer``: cut each chunk into pieces of about ``average_size`` bytes.

Piece sizes vary by up to ``size_variation`` bytes around the average and
pieces leave ``delay`` us apart, which exposes parsers that assume one
``recv`` returns one message. The cut points follow Toxiproxy's scheme: halve
around the middle, shifted at random within the variation, until a piece is
within the variation of the average.
"""

from __future__ import annotations

import itertools
import random
from typing import final

from .._exceptions import InvalidError
from .._values import BYTES, MICROSECONDS
from ._stage import Attributes, Data, Event, Stage, kinds


@final
class Slicer(Stage):
    type_name = "slicer"
    attribute_kinds = kinds(average_size=BYTES, size_variation=BYTES, delay=MICROSECONDS)

    def __init__(self, attributes: Attributes, rng: random.Random) -> None:
        self._busy_until = float("-inf")
        super().__init__(attributes, rng)

    @classmethod
    def check(cls, attributes: Attributes) -> None:
        """``cut_points`` must end: halving toward an average of 0 bytes never does, and a
        variation as big as the average lets a cut shift past the start of its piece."""
        average, variation = (
            cls.int_value(attributes, "average_size"),
            cls.int_value(attributes, "size_variation"),
        )
        if average < 1:
            raise InvalidError(f"slicer.average_size={average!r} is not valid: must be >= 1")
        if variation >= average:
            raise InvalidError(
                f"slicer.size_variation={variation!r} is not valid: "
                f"must be less than average_size ({average})"
            )

    def configure(self, attributes: Attributes) -> None:
        self._average = self.int_value(attributes, "average_size")
        self._variation = self.int_value(attributes, "size_variation")
        self._delay = self.int_value(attributes, "delay") / 1_000_000

    def cut_points(self, size: int) -> list[int]:
        """Offsets that split ``size`` bytes into pieces: ``[0, a, b, ..., size]``."""
        points = [0]
        pending = [(0, size)]
        rng, average, variation = self._rng, self._average, self._variation
        while pending:
            start, end = pending.pop()
            if (end - start) - average <= variation:
                points.append(end)
                continue
            shift = rng.randrange(-variation, variation) if variation > 0 else 0
            middle = start + (end - start) // 2 + shift
            # Right half is split after the left one: push it first.
            pending.append((middle, end))
            pending.append((start, middle))
        return points

    def on_data(self, chunk: Data, now: float) -> None:
        points = self.cut_points(len(chunk.data))
        at = max(now, self._busy_until)
        data = chunk.data
        for begin, end in itertools.pairwise(points):
            self._release(Data(data[begin:end], chunk.stamp), at)
            at += self._delay
        self._busy_until = at

    def interrupt(self, now: float) -> list[Event]:
        out = super().interrupt(now)
        self._busy_until = float("-inf")  # the pieces let go: no schedule left to wait for
        return out
