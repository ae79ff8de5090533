"""``noop``: passes everything through unchanged (Toxiproxy's placeholder toxic)."""

from __future__ import annotations

from typing import final

from ._stage import Stage, kinds


@final
class Noop(Stage):
    type_name = "noop"
    attribute_kinds = kinds()
