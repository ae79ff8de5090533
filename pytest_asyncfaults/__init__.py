"""pytest-asyncfaults: reproduce what production swallows in async web apps.

A fault proxy between the app under test and its services (an embedded,
pure-Python engine with Toxiproxy's toxics, or a real Toxiproxy), and the
tools to see what the app's background work does when they fail.
"""

from __future__ import annotations

from ._backends._embedded import Engine as Engine
from ._engine._core import FaultCore as FaultCore
from ._engine._models import ProxyInfo as ProxyInfo
from ._engine._models import ProxyStats as ProxyStats
from ._exceptions import AlreadyExistsError as AlreadyExistsError
from ._exceptions import AsyncFaultsError as AsyncFaultsError
from ._exceptions import AsyncFaultsWarning as AsyncFaultsWarning
from ._exceptions import EngineError as EngineError
from ._exceptions import InvalidError as InvalidError
from ._exceptions import ListenError as ListenError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import ServiceError as ServiceError
from ._services._postgres import PostgresServer as PostgresServer
from ._services._postgres import ReceivedMail as ReceivedMail
from ._services._postgres import SmtpServer as SmtpServer
from ._toxics import TOXIC_TYPES as TOXIC_TYPES
from ._toxics._spec import ConnectionSelector as ConnectionSelector
from ._toxics._spec import ToxicSpec as ToxicSpec
from ._toxics._spec import make_toxic as make_toxic

__version__ = "0.1.0"

__all__ = (
    "TOXIC_TYPES",
    "AlreadyExistsError",
    "AsyncFaultsError",
    "AsyncFaultsWarning",
    "ConnectionSelector",
    "Engine",
    "EngineError",
    "FaultCore",
    "InvalidError",
    "ListenError",
    "NotFoundError",
    "PostgresServer",
    "ProxyInfo",
    "ProxyStats",
    "ReceivedMail",
    "ServiceError",
    "SmtpServer",
    "ToxicSpec",
    "make_toxic",
)
