"""Per-test settings: marker over command line over ini file over default.

Every setting exists three ways with one spelling: ``--asyncfaults-settle``,
the ini key ``asyncfaults_settle``, and ``@pytest.mark.asyncfaults(settle=...)``.
A bad value names where it came from, the value, and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal, final

from ._exceptions import InvalidError
from ._values import TEXT_MAX, invalid, seconds, shown

LeakPolicy = Literal["fail", "warn", "off"]


def _seconds(value: object, where: str) -> float:
    """Seconds >= 0 and at most a week, as a number (the marker) or text (a flag, the ini)."""
    return seconds(where, value, text=True)


def _policy(value: object, where: str) -> LeakPolicy:
    if value in ("fail", "warn", "off"):
        return value
    raise invalid(where, value, "'fail', 'warn' or 'off'")


LibraryTasks = Literal["ignore", "watch"]


def _library_tasks(value: object, where: str) -> LibraryTasks:
    if value in ("ignore", "watch"):
        return value
    raise invalid(where, value, "'ignore' or 'watch'")


def _setting(default: Any, parse: Callable[[object, str], Any], help: str) -> Any:
    """A field of ``Settings`` with what the command line, the ini file and the marker need."""
    return field(default=default, metadata={"parse": parse, "help": help})


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    if isinstance(value, list | tuple) and all(
        isinstance(item, str) and "\x00" not in item and len(item) <= TEXT_MAX for item in value
    ):
        return tuple(item.strip() for item in value if item.strip())
    raise invalid(where, value, "task-name patterns or creation sites (file.py or file.py:line)")


def _positive_seconds(value: object, where: str) -> float:
    return seconds(where, value, positive=True, text=True)


@final
@dataclass(frozen=True)
class Settings:
    """What the harness does around one test: the one table of per-test settings.

    Each field carries its parser and its help text, from which the plugin makes
    the ``--asyncfaults-…`` option, the ``asyncfaults_…`` ini key and the marker
    keyword: a setting is added here, and only here.
    """

    settle: float = _setting(
        5.0, _seconds, "default deadline of tasks.settle(), in seconds (default 5)"
    )
    startup_timeout: float = _setting(
        10.0, _seconds, "bound on the app's lifespan startup, in seconds (default 10)"
    )
    shutdown_timeout: float = _setting(
        10.0, _seconds, "bound on the app's lifespan shutdown, in seconds (default 10)"
    )
    timeout: float = _setting(
        60.0,
        _positive_seconds,
        "bound on a whole async test (the app's start, the body, the scenario's checks), "
        "in seconds (default 60)",
    )
    leaks: LeakPolicy = _setting(
        "fail", _policy, "tasks of a test still running when it ends: fail (default), warn or off"
    )
    leak_grace: float = _setting(
        0.2, _seconds, "how long the end of a test waits before calling a task a leak (default 0.2)"
    )
    never_retrieved: LeakPolicy = _setting(
        "fail", _policy, "a task failed and nobody read its exception: fail (default), warn, off"
    )
    not_logged: LeakPolicy = _setting(
        "fail", _policy, "background work failed with no ERROR log of it: fail (default), warn, off"
    )
    swallowed_cancel: LeakPolicy = _setting(
        "fail", _policy, "a cancelled task returned normally: fail (default), warn, off"
    )
    never_awaited: LeakPolicy = _setting(
        "fail", _policy, "a coroutine was never awaited: fail (default), warn, off"
    )
    lost: LeakPolicy = _setting(
        "fail", _policy, "a task was garbage-collected while pending: fail (default), warn, off"
    )
    blocked_loop: LeakPolicy = _setting(
        "fail", _policy, "the event loop did not turn for too long: fail (default), warn, off"
    )
    blocked_loop_threshold: float = _setting(
        0.1, _positive_seconds, "seconds without a turn of the loop that count as blocked (0.1)"
    )
    threads: LeakPolicy = _setting(
        "fail",
        _policy,
        "threads a test started and left running (the app's code, or non-daemon): fail "
        "(default), warn, off",
    )
    abandoned: LeakPolicy = _setting(
        "fail", _policy, "asyncio.gather left sibling tasks running: fail (default), warn, off"
    )
    early_import: LeakPolicy = _setting(
        "fail",
        _policy,
        "the app's module was imported before asyncfaults_env was applied (it read its "
        "settings without the proxies): fail (default), warn, off (an app that reads them "
        "only when it starts)",
    )
    untouched_faults: LeakPolicy = _setting(
        "warn",
        _policy,
        "a fault no connection went through while it was on (is the app pointed at the "
        "proxy?): warn (default), fail, off",
    )
    library_tasks: LibraryTasks = _setting(
        "ignore",
        _library_tasks,
        "tasks a library starts for its own objects (a pool's maintenance, a driver's "
        "cancel request): ignore (default) or watch them as the app's background work",
    )
    allow: tuple[str, ...] = _setting(
        (), _patterns, "findings to spare: task-name patterns or creation sites (file.py:line)"
    )


PARSERS: Final[Mapping[str, Callable[[object, str], Any]]] = {
    setting.name: setting.metadata["parse"] for setting in fields(Settings)
}
HELP: Final[Mapping[str, str]] = {
    setting.name: setting.metadata["help"] for setting in fields(Settings)
}
MANY: Final = frozenset({"allow"})
"""Settings given as a list: repeated on the command line, one a line in the ini file."""


def marker_field(name: str) -> str:
    """How a message names a marker keyword: ``@pytest.mark.asyncfaults(settle='x')``."""
    return f"@pytest.mark.asyncfaults({name}=)"


def resolve(
    marker_kwargs: Mapping[str, object],
    option: Callable[[str], object],
    ini: Callable[[str], object],
    *,
    marker_args: tuple[object, ...] = (),
) -> Settings:
    """Settings for one test, validated, from its marker, the command line and the ini file.

    A flag given empty (``--asyncfaults-settle=``) is a bad value, not the default:
    only a flag not given at all (``None``) falls through to the ini file.
    """
    if marker_args:
        raise InvalidError(
            f"@pytest.mark.asyncfaults({', '.join(shown(arg) for arg in marker_args)}) is not "
            f"valid: expected settings as keywords, e.g. @pytest.mark.asyncfaults(settle=10)"
        )
    unknown = set(marker_kwargs) - set(PARSERS)
    if unknown:
        raise InvalidError(
            f"@pytest.mark.asyncfaults({shown(sorted(unknown)[0])[1:-1]}=...) is not a setting: "
            f"expected one of {', '.join(PARSERS)}"
        )
    values: dict[str, Any] = {}
    for name, parse in PARSERS.items():
        if name in marker_kwargs:
            values[name] = parse(marker_kwargs[name], marker_field(name))
        elif (given := option(name)) is not None:
            values[name] = parse(given, f"--asyncfaults-{name.replace('_', '-')}")
        elif (given := ini(name)) not in (None, "", []):
            values[name] = parse(given, f"asyncfaults_{name}")
    return Settings(**values)
