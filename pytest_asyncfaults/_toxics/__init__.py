"""Toxiproxy's toxics as sans-IO state machines, one module per type, and the protocol
toxics of PostgreSQL and SMTP (``postgres``, ``smtp``) that only the embedded engine has."""

from __future__ import annotations

from ._stage import CLOSE, EOF, RESET, Data, Event, Marker, Stage
from .bandwidth import Bandwidth
from .latency import Latency
from .limit_data import LimitData
from .noop import Noop
from .postgres import PgCut, PgDelay, PgError, PgHang, PgLogin
from .reset_peer import ResetPeer
from .slicer import Slicer
from .slow_close import SlowClose
from .smtp import SmtpCut, SmtpDelay, SmtpReply
from .timeout import Timeout

TOXIPROXY_TYPES: tuple[type[Stage], ...] = (
    Latency,
    Bandwidth,
    SlowClose,
    Timeout,
    ResetPeer,
    Slicer,
    LimitData,
    Noop,
)
PROTOCOL_TYPES: tuple[type[Stage], ...] = (
    PgLogin,
    PgError,
    PgDelay,
    PgHang,
    PgCut,
    SmtpReply,
    SmtpDelay,
    SmtpCut,
)
TOXIC_TYPES: dict[str, type[Stage]] = {
    cls.type_name: cls for cls in (*TOXIPROXY_TYPES, *PROTOCOL_TYPES)
}
"""Every toxic type by its name: Toxiproxy's, in its documentation order, then the protocol
toxics only the embedded engine has (a real Toxiproxy refuses them)."""
PROTOCOL_TOXICS: frozenset[str] = frozenset(cls.type_name for cls in PROTOCOL_TYPES)

__all__ = (
    "CLOSE",
    "EOF",
    "PROTOCOL_TOXICS",
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
