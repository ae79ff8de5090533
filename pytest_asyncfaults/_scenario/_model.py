"""Scenario files: a named fault plan and what the app must do under it, as data.

A scenario is a TOML file read with ``tomllib`` and checked against a fixed
schema; nothing in it is ever imported or executed (an exception type is
matched by name along the exception's classes). Every error names the file,
the key, the bad value and what is allowed, because a CI matrix that dies of
a typo must say which typo::

    description = "PostgreSQL stops answering"

    [[faults]]                       # in effect from the start of the test body
    proxy = "postgres"               # a proxy of the test: faults.postgres
    toxic = "timeout"                # a Toxiproxy toxic type
    attributes = { timeout = 0 }     # its attributes, Toxiproxy's names and units
    # optional: stream, toxicity, connections, start_after (ms), duration (ms), name

    [[steps]]                        # a timed plan: each step replaces the last one's faults
    at = 200                         # ms after the test body starts
    faults = [{ proxy = "postgres", toxic = "timeout", attributes = { timeout = 0 } }]

    [expect]                         # checked after the test body
    settle = 10                      # s for the background work to settle
    outcome = "failed"               # "completed", "failed" or "any"
    exception = "TimeoutError"       # with "failed": the type or a base class, by name,
                                     # of the failure or of what it was raised from
    logged = true                    # each failure logged at ERROR with its traceback
    cleaned_up = true                # nothing pending, proxy connections back to before
    no_leaks = true                  # no task of the test left running at its end
    max_stall_ms = 500               # no event-loop stall longer than this

Steps compile to toxics with ``start_after`` and ``duration``, so the engine
keeps their time on its own loop, whatever the app does to the test's loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, final

from .._toxics._spec import ToxicSpec

OutcomeKind = Literal["completed", "failed", "any"]
OUTCOMES: Final = ("completed", "failed", "any")


@final
@dataclass(frozen=True)
class PlannedToxic:
    """One toxic of a plan, on the proxy the test knows by ``proxy``."""

    proxy: str
    spec: ToxicSpec
    key: str
    """Where it was written (``faults[0]``, ``steps[1].faults[0]``), for error messages."""

    def describe(self) -> str:
        spec = self.spec
        extras = []
        if spec.toxicity != 1.0:
            extras.append(f"toxicity={spec.toxicity:g}")
        if spec.connections is not None:
            extras.append(f"connections={spec.connections}")
        if spec.start_after:
            extras.append(f"from {spec.start_after} ms")
        if spec.duration is not None:
            extras.append(f"for {spec.duration} ms")
        tail = f" ({', '.join(extras)})" if extras else ""
        return f"{self.proxy}: {spec.describe()}{tail}"


@final
@dataclass(frozen=True)
class Expectations:
    """What the background work must do under the faults; ``None``: not checked."""

    settle: float | None = None
    """Seconds for the background work to settle; ``None``: the test's ``settle`` setting."""
    outcome: OutcomeKind = "any"
    exception: str | None = None
    logged: bool = False
    cleaned_up: bool = False
    no_leaks: bool | None = None
    """``True``: a task left running fails the test whatever the ``leaks`` setting says."""
    max_stall_ms: int | None = None

    def describe(self) -> str:
        parts = []
        if self.outcome == "failed":
            parts.append(f"fails with {self.exception or 'an exception'}")
        elif self.outcome == "completed":
            parts.append("completes")
        if self.settle is not None:
            parts.append(f"within {self.settle:g} s")
        if self.logged:
            parts.append("logged")
        if self.cleaned_up:
            parts.append("cleaned up")
        if self.no_leaks:
            parts.append("no leaks")
        if self.max_stall_ms is not None:
            parts.append(f"no loop stall over {self.max_stall_ms} ms")
        return ", ".join(parts) or "nothing"


@final
@dataclass(frozen=True)
class Scenario:
    """A named fault plan and its expectations (see the module doc)."""

    name: str
    toxics: tuple[PlannedToxic, ...]
    expect: Expectations = Expectations()
    description: str = ""
    path: Path | None = None

    @property
    def source(self) -> str:
        """How error messages name it: its file, or its name for one built in code."""
        return str(self.path) if self.path is not None else f"scenario {self.name!r}"

    def describe_faults(self) -> str:
        return "; ".join(toxic.describe() for toxic in self.toxics) or "none"

    @property
    def proxies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(toxic.proxy for toxic in self.toxics))

    def __str__(self) -> str:
        return self.name


# -- reading --------------------------------------------------------------------------


# -- faults given on a command line ---------------------------------------------------


# -- judging what happened ------------------------------------------------------------
