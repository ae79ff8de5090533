"""Toxiproxy's toxics as sans-IO state machines, one module per type."""

from __future__ import annotations

from ._stage import CLOSE, EOF, RESET, Data, Event, Marker, Stage
from .bandwidth import Bandwidth
from .latency import Latency
from .limit_data import LimitData
from .noop import Noop
from .reset_peer import ResetPeer
from .slicer import Slicer
from .slow_close import SlowClose
from .timeout import Timeout

TOXIC_TYPES: dict[str, type[Stage]] = {
    cls.type_name: cls
    for cls in (Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData, Noop)
}
"""Every toxic type by its Toxiproxy name, in Toxiproxy's documentation order."""

__all__ = (
    "CLOSE",
    "EOF",
    "RESET",
    "TOXIC_TYPES",
    "Bandwidth",
    "Data",
    "Event",
    "Latency",
    "LimitData",
    "Marker",
    "Noop",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Stage",
    "Timeout",
)
