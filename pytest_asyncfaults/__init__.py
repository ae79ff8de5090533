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

from ._backends._embedded import Engine as Engine
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
from ._services._postgres import ReceivedMail as ReceivedMail
from ._services._postgres import SmtpServer as SmtpServer
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
from ._version import __version__ as __version__

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
    "NotFoundError",
    "Outcome",
    "OutcomeError",
    "PlannedToxic",
    "PostgresServer",
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

# Exported names claim the package, so reports, reprs and docs say
# ``pytest_asyncfaults.Outcome``, not where it happens to be defined today.
for _name in __all__:
    _value = globals()[_name]
    if getattr(_value, "__module__", "").startswith("pytest_asyncfaults."):
        _value.__module__ = "pytest_asyncfaults"
del _name, _value
