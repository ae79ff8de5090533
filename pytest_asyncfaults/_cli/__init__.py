"""The ``asyncfaults`` command: ``serve``, ``proxy``, ``repro``, ``report`` and ``demo``."""

from __future__ import annotations

from ._main import main as main
