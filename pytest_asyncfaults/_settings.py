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
    never_retrieved: LeakPolicy = "fail"
    """A task failed and nobody awaited it or read its exception."""
    not_logged: LeakPolicy = "fail"
    """Background work failed and no ERROR log record carries the exception."""
    swallowed_cancel: LeakPolicy = "fail"
    """A cancelled task caught CancelledError and returned normally."""
    never_awaited: LeakPolicy = "fail"
    """A coroutine was created and never awaited."""
    lost: LeakPolicy = "fail"
    """A task was garbage-collected while still pending."""
    blocked_loop: LeakPolicy = "fail"
    """The event loop did not turn for longer than ``blocked_loop_threshold``."""
    blocked_loop_threshold: float = 0.1
    """Seconds without a turn of the loop that count as blocked."""
    abandoned: LeakPolicy = "fail"
    """asyncio.gather failed and left sibling tasks running, unawaited."""
    allow: tuple[str, ...] = ()
    """Findings to spare: task-name patterns (``worker-*``) or creation sites (``app.py:12``)."""


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(item.strip() for item in value if item.strip())
    raise InvalidError(
        f"{where}={value!r} is not valid: expected task-name patterns or creation sites "
        f"(file.py or file.py:line)"
    )


def _positive_seconds(value: object, where: str) -> float:
    seconds = _seconds(value, where)
    if seconds <= 0:
        raise InvalidError(f"{where}={value!r} is not valid: expected a number of seconds > 0")
    return seconds


PARSERS: Final[Mapping[str, Callable[[object, str], Any]]] = {
    "settle": _seconds,
    "startup_timeout": _seconds,
    "shutdown_timeout": _seconds,
    "leaks": _policy,
    "leak_grace": _seconds,
    "never_retrieved": _policy,
    "not_logged": _policy,
    "swallowed_cancel": _policy,
    "never_awaited": _policy,
    "lost": _policy,
    "blocked_loop": _policy,
    "blocked_loop_threshold": _positive_seconds,
    "abandoned": _policy,
    "allow": _patterns,
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
        elif (given := option(name)) not in (None, "", []):
            values[name] = parse(given, f"--asyncfaults-{name.replace('_', '-')}")
        elif (given := ini(name)) not in (None, "", []):
            values[name] = parse(given, f"asyncfaults_{name}")
    return Settings(**values)
