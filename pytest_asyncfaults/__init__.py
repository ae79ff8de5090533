"""pytest-asyncfaults: reproduce what production swallows in async web apps.

A fault proxy between the app under test and its services (an embedded,
pure-Python engine with Toxiproxy's toxics, or a real Toxiproxy), and the
tools to see what the app's background work does when they fail.

This module is the whole public surface: every name a user may import or
annotate a fixture with, and nothing else. It imports neither pytest nor an
HTTP server, so importing it (or loading the plugin into an unrelated suite)
stays cheap.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from ._version import __version__ as __version__

if _typing.TYPE_CHECKING:
    from ._backends._embedded import Engine as Engine
    from ._engine._models import ProtocolEvent as ProtocolEvent
    from ._engine._models import ProxyInfo as ProxyInfo
    from ._engine._models import ProxyStats as ProxyStats
    from ._exceptions import AlreadyExistsError as AlreadyExistsError
    from ._exceptions import AsyncFaultsError as AsyncFaultsError
    from ._exceptions import AsyncFaultsWarning as AsyncFaultsWarning
    from ._exceptions import EngineError as EngineError
    from ._exceptions import ExpectationError as ExpectationError
    from ._exceptions import HangError as HangError
    from ._exceptions import InvalidError as InvalidError
    from ._exceptions import LifespanError as LifespanError
    from ._exceptions import ListenError as ListenError
    from ._exceptions import LoopBlockedError as LoopBlockedError
    from ._exceptions import NotFoundError as NotFoundError
    from ._exceptions import OutcomeError as OutcomeError
    from ._exceptions import ScenarioError as ScenarioError
    from ._exceptions import ServiceError as ServiceError
    from ._faults import DownScope as DownScope
    from ._faults import Faults as Faults
    from ._faults import FaultWindow as FaultWindow
    from ._faults import Proxy as Proxy
    from ._faults import ToxicOptions as ToxicOptions
    from ._faults import ToxicScope as ToxicScope
    from ._scenario._model import Expectations as Expectations
    from ._scenario._model import PlannedToxic as PlannedToxic
    from ._scenario._model import Scenario as Scenario
    from ._services._postgres import HasAddress as HasAddress
    from ._services._postgres import PostgresServer as PostgresServer
    from ._services._smtp import ReceivedMail as ReceivedMail
    from ._services._smtp import SmtpServer as SmtpServer
    from ._settings import Settings as Settings
    from ._tasks._context import RequestInfo as RequestInfo
    from ._tasks._monitor import TaskMonitor as TaskMonitor
    from ._tasks._monitor import TaskRecord as TaskRecord
    from ._tasks._outcome import Outcome as Outcome
    from ._tasks._outcome import TaskOutcome as TaskOutcome
    from ._toxics import TOXIC_TYPES as TOXIC_TYPES
    from ._toxics._spec import ConnectionSelector as ConnectionSelector
    from ._toxics._spec import ToxicSpec as ToxicSpec
    from ._toxics._spec import make_toxic as make_toxic

__all__ = (
    "TOXIC_TYPES",
    "AlreadyExistsError",
    "AsyncFaultsError",
    "AsyncFaultsWarning",
    "ConnectionSelector",
    "DownScope",
    "Engine",
    "EngineError",
    "ExpectationError",
    "Expectations",
    "FaultWindow",
    "Faults",
    "HangError",
    "HasAddress",
    "InvalidError",
    "LifespanError",
    "ListenError",
    "LoopBlockedError",
    "NotFoundError",
    "Outcome",
    "OutcomeError",
    "PlannedToxic",
    "PostgresServer",
    "ProtocolEvent",
    "Proxy",
    "ProxyInfo",
    "ProxyStats",
    "ReceivedMail",
    "RequestInfo",
    "Scenario",
    "ScenarioError",
    "ServiceError",
    "Settings",
    "SmtpServer",
    "TaskMonitor",
    "TaskOutcome",
    "TaskRecord",
    "ToxicOptions",
    "ToxicScope",
    "ToxicSpec",
    "__version__",
    "make_toxic",
)

_WHERE: _typing.Final = {
    "Engine": "._backends._embedded",
    "ProtocolEvent": "._engine._models",
    "ProxyInfo": "._engine._models",
    "ProxyStats": "._engine._models",
    "AlreadyExistsError": "._exceptions",
    "AsyncFaultsError": "._exceptions",
    "AsyncFaultsWarning": "._exceptions",
    "EngineError": "._exceptions",
    "ExpectationError": "._exceptions",
    "HangError": "._exceptions",
    "InvalidError": "._exceptions",
    "LifespanError": "._exceptions",
    "LoopBlockedError": "._exceptions",
    "ListenError": "._exceptions",
    "NotFoundError": "._exceptions",
    "OutcomeError": "._exceptions",
    "ScenarioError": "._exceptions",
    "ServiceError": "._exceptions",
    "DownScope": "._faults",
    "Faults": "._faults",
    "FaultWindow": "._faults",
    "Proxy": "._faults",
    "ToxicOptions": "._faults",
    "ToxicScope": "._faults",
    "Expectations": "._scenario._model",
    "PlannedToxic": "._scenario._model",
    "Scenario": "._scenario._model",
    "HasAddress": "._services._postgres",
    "PostgresServer": "._services._postgres",
    "ReceivedMail": "._services._smtp",
    "SmtpServer": "._services._smtp",
    "Settings": "._settings",
    "RequestInfo": "._tasks._context",
    "TaskMonitor": "._tasks._monitor",
    "TaskRecord": "._tasks._monitor",
    "Outcome": "._tasks._outcome",
    "TaskOutcome": "._tasks._outcome",
    "TOXIC_TYPES": "._toxics",
    "ConnectionSelector": "._toxics._spec",
    "ToxicSpec": "._toxics._spec",
    "make_toxic": "._toxics._spec",
}
"""Where each exported name lives. They load on first use (PEP 562): the plugin is
loaded into every suite of a machine it is installed on, and a suite that never
touches a fault should not pay for the engine, the scenarios or the services."""


def __getattr__(name: str) -> _typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_asyncfaults' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    # Exported names claim the package, so reports, reprs and docs say
    # ``pytest_asyncfaults.Outcome``, not where it happens to be defined today.
    if getattr(value, "__module__", "").startswith("pytest_asyncfaults."):
        value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
