"""Per-test settings: marker over command line over ini file over default.

Every setting exists three ways with one spelling: ``--asyncfaults-settle``,
the ini key ``asyncfaults_settle``, and ``@pytest.mark.asyncfaults(settle=...)``.
A bad value names where it came from, the value, and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, final

from ._exceptions import InvalidError

LeakPolicy = Literal["fail", "warn", "off"]


def _seconds(value: object, where: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise InvalidError(f"{where}={value!r} is not valid: expected a number of seconds >= 0")
    return seconds


def _policy(value: object, where: str) -> LeakPolicy:
    if value in ("fail", "warn", "off"):
        return value
    raise InvalidError(f"{where}={value!r} is not valid: expected 'fail', 'warn' or 'off'")


@final
@dataclass(frozen=True)
class Settings:
    """What the harness does around one test."""

    settle: float = 5.0
    """Default deadline of ``tasks.settle()``, in seconds."""
    startup_timeout: float = 10.0
    """Bound on the app's lifespan startup."""
    shutdown_timeout: float = 10.0
    """Bound on the app's lifespan shutdown."""
    leaks: LeakPolicy = "fail"
    """Tasks of the test still running when it ends: fail the test, warn, or say nothing."""
    leak_grace: float = 0.2
    """How long the end of a test waits for background work before calling it a leak."""


PARSERS: Final[Mapping[str, Callable[[object, str], Any]]] = {
    "settle": _seconds,
    "startup_timeout": _seconds,
    "shutdown_timeout": _seconds,
    "leaks": _policy,
    "leak_grace": _seconds,
}


def resolve(
    marker_kwargs: Mapping[str, object],
    option: Callable[[str], object],
    ini: Callable[[str], object],
) -> Settings:
    """Settings for one test, validated, from its marker, the command line and the ini file."""
    unknown = set(marker_kwargs) - set(PARSERS)
    if unknown:
        raise InvalidError(
            f"@pytest.mark.asyncfaults({sorted(unknown)[0]}=...) is not a setting: "
            f"expected one of {', '.join(PARSERS)}"
        )
    values: dict[str, Any] = {}
    for name, parse in PARSERS.items():
        if name in marker_kwargs:
            values[name] = parse(marker_kwargs[name], f"@pytest.mark.asyncfaults({name})")
        elif (given := option(name)) not in (None, ""):
            values[name] = parse(given, f"--asyncfaults-{name.replace('_', '-')}")
        elif (given := ini(name)) not in (None, ""):
            values[name] = parse(given, f"asyncfaults_{name}")
    return Settings(**values)
