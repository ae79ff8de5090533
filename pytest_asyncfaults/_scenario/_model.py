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

import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal, final

from .._exceptions import InvalidError, ScenarioError
from .._frames import exception_chain
from .._tasks._outcome import Outcome
from .._toxics import TOXIC_TYPES
from .._toxics._spec import AttributeWording, ToxicSpec, check_attributes, make_toxic

OutcomeKind = Literal["completed", "failed", "any"]
OUTCOMES: Final = ("completed", "failed", "any")

_SCENARIO_KEYS: Final = ("description", "faults", "steps", "expect")
_FAULT_KEYS: Final = (
    "proxy",
    "toxic",
    "attributes",
    "stream",
    "toxicity",
    "connections",
    "start_after",
    "duration",
    "name",
)
_STEP_KEYS: Final = ("at", "faults")
_EXPECT_KEYS: Final = (
    "settle",
    "outcome",
    "exception",
    "logged",
    "cleaned_up",
    "no_leaks",
    "max_stall_ms",
)
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TYPE_NAME: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


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
        attributes = "".join(f" {key}={value}" for key, value in spec.attributes.items())
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
        return f"{self.proxy}: {spec.type} {spec.stream}{attributes}{tail}"


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


class _Reader:
    """Checks one file's values, every error prefixed with the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: object, allowed: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {key}={value!r} is not valid: expected {allowed}")

    def table(self, key: str, value: object, allowed_keys: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, f"a table with the keys {', '.join(allowed_keys)}")
        for name in value:
            if name not in allowed_keys:
                where = f"{key}.{name}" if key else name
                raise ScenarioError(
                    f"{self.source}: {where} is not a key of "
                    f"{key or 'a scenario'}: expected one of {', '.join(allowed_keys)}"
                )
        return value

    def tables(
        self, key: str, value: object, allowed_keys: Sequence[str]
    ) -> list[Mapping[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(key, value, "an array of tables ([[" + key.split(".")[-1] + "]])")
        return [self.table(f"{key}[{i}]", item, allowed_keys) for i, item in enumerate(value)]

    def string(self, key: str, value: object, allowed: str = "a string") -> str:
        if not isinstance(value, str):
            raise self.fail(key, value, allowed)
        return value

    def ms(self, key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(key, value, "a whole number of milliseconds >= 0")
        return value

    def seconds(self, key: str, value: object) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise self.fail(key, value, "a number of seconds > 0")
        return float(value)

    def flag(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def check(self, key: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one of ``_spec``'s checks, its message given the file and the key (if the
        message does not name it already)."""
        try:
            return call(*args, **kwargs)
        except InvalidError as exc:
            where = f"{key}: " if key else ""
            raise ScenarioError(f"{self.source}: {where}{exc}") from None


class _FileWording(AttributeWording):
    """``check_attributes``'s mistakes as a scenario file's reader needs them: the key
    in the file (``faults[0].attributes.latency``), in TOML's terms (a table, a whole
    number)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def not_a_mapping(self, toxic_type: str, value: object) -> str:
        names = self.names(toxic_type, "nothing")
        return f"{self.key}.attributes={value!r} is not valid: expected a table of {names}"

    def unknown(self, toxic_type: str, key: object) -> str:
        allowed = self.names(toxic_type, "none")
        return (
            f"{self.key}.attributes.{key} is not an attribute of {toxic_type}: expected {allowed}"
        )

    def bad_value(self, toxic_type: str, key: str, value: object, problem: str) -> str:
        return (
            f"{self.key}.attributes.{key}={value!r} is not valid: "
            f"expected a whole number >= 0 ({toxic_type}'s {key})"
        )

    def rule(self, toxic_type: str, message: str) -> str:
        return f"{self.key}: {message}"


def _fault(reader: _Reader, key: str, table: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The proxy and ``make_toxic`` arguments of one fault table, each value checked."""
    for required in ("proxy", "toxic"):
        if required not in table:
            raise ScenarioError(
                f"{reader.source}: {key}.{required} is missing: every fault names its proxy "
                f"and its toxic (one of {', '.join(TOXIC_TYPES)})"
            )
    proxy = reader.string(f"{key}.proxy", table["proxy"], "the name of a proxy of the test")
    if not _NAME.fullmatch(proxy):
        raise reader.fail(f"{key}.proxy", proxy, "the name of a proxy of the test")
    toxic = table["toxic"]
    if not isinstance(toxic, str) or toxic not in TOXIC_TYPES:
        raise reader.fail(f"{key}.toxic", toxic, f"one of {', '.join(TOXIC_TYPES)}")
    attributes = table.get("attributes", {})
    reader.check("", check_attributes, toxic, attributes, _FileWording(key))
    arguments: dict[str, Any] = {"attributes": attributes}
    for name in ("start_after", "duration"):
        if name in table:
            arguments[name] = reader.ms(f"{key}.{name}", table[name])
    for name in ("stream", "toxicity", "connections", "name"):
        if name in table:
            value = table[name]
            if name == "toxicity" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            arguments[name] = value
    reader.check(key, make_toxic, toxic, **arguments)  # the remaining fields' own checks
    return proxy, {"toxic_type": toxic, **arguments}


def _expectations(reader: _Reader, table: Mapping[str, Any]) -> Expectations:
    values: dict[str, Any] = {}
    if "settle" in table:
        values["settle"] = reader.seconds("expect.settle", table["settle"])
    if "outcome" in table:
        outcome = table["outcome"]
        if outcome not in OUTCOMES:
            raise reader.fail("expect.outcome", outcome, "'completed', 'failed' or 'any'")
        values["outcome"] = outcome
    if "exception" in table:
        name = table["exception"]
        if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
            raise reader.fail(
                "expect.exception",
                name,
                "an exception type's name, e.g. 'TimeoutError' or 'asyncpg.PostgresError'",
            )
        if values.get("outcome", "any") != "failed":
            raise ScenarioError(
                f"{reader.source}: expect.exception={name!r} needs expect.outcome = 'failed' "
                f"(it names the type the background work must fail with)"
            )
        values["exception"] = name
    for name in ("logged", "cleaned_up", "no_leaks"):
        if name in table:
            values[name] = reader.flag(f"expect.{name}", table[name])
    if "max_stall_ms" in table:
        stall = table["max_stall_ms"]
        if isinstance(stall, bool) or not isinstance(stall, int) or stall <= 0:
            raise reader.fail("expect.max_stall_ms", stall, "a whole number of milliseconds > 0")
        values["max_stall_ms"] = stall
    return Expectations(**values)


def _unique_names(
    reader: _Reader, planned: list[tuple[str, str, dict[str, Any]]]
) -> list[PlannedToxic]:
    """Build the specs; a default name already taken on its proxy gets ``_2``, ``_3``..."""
    taken: set[tuple[str, str]] = set()
    out = []
    for key, proxy, arguments in planned:
        given = arguments.get("name")
        spec = make_toxic(**arguments)
        if given is None:
            base, count = spec.name, 1
            while (proxy, spec.name) in taken:
                count += 1
                spec = replace(spec, name=f"{base}_{count}")
        elif (proxy, given) in taken:
            raise reader.fail(f"{key}.name", given, f"a toxic name not used twice on {proxy!r}")
        taken.add((proxy, spec.name))
        out.append(PlannedToxic(proxy, spec, key))
    return out


def parse_scenario(data: Mapping[str, Any], *, name: str, source: str) -> Scenario:
    """A scenario from its parsed TOML (``source`` names it in errors)."""
    reader = _Reader(source)
    reader.table("", data, _SCENARIO_KEYS)
    if not _NAME.fullmatch(name):
        raise ScenarioError(
            f"{source}: the scenario name {name!r} is not valid: expected letters, digits, "
            f"'_', '-' and '.' (it is the test id in the matrix)"
        )
    description = reader.string("description", data.get("description", ""))
    planned: list[tuple[str, str, dict[str, Any]]] = []
    for index, table in enumerate(reader.tables("faults", data.get("faults", []), _FAULT_KEYS)):
        key = f"faults[{index}]"
        planned.append((key, *_fault(reader, key, table)))
    steps = reader.tables("steps", data.get("steps", []), _STEP_KEYS)
    starts: list[int] = []
    for index, step in enumerate(steps):
        if "at" not in step:
            raise ScenarioError(
                f"{source}: steps[{index}].at is missing: every step says when it starts (ms)"
            )
        at = reader.ms(f"steps[{index}].at", step["at"])
        if starts and at <= starts[-1]:
            raise reader.fail(
                f"steps[{index}].at", at, f"a time after the step before ({starts[-1]} ms)"
            )
        starts.append(at)
    for index, step in enumerate(steps):
        ends = starts[index + 1] if index + 1 < len(steps) else None
        faults = reader.tables(f"steps[{index}].faults", step.get("faults", []), _FAULT_KEYS)
        for number, table in enumerate(faults):
            key = f"steps[{index}].faults[{number}]"
            proxy, arguments = _fault(reader, key, table)
            start = starts[index] + arguments.get("start_after", 0)
            duration = arguments.get("duration")
            if ends is not None:
                if start >= ends:
                    raise reader.fail(
                        f"{key}.start_after",
                        arguments.get("start_after", 0),
                        f"a delay that starts it before the next step ({ends} ms)",
                    )
                duration = ends - start if duration is None else min(duration, ends - start)
            arguments = {**arguments, "start_after": start}
            if duration is not None:
                arguments["duration"] = duration
            planned.append((key, proxy, arguments))
    expect = _expectations(reader, reader.table("expect", data.get("expect", {}), _EXPECT_KEYS))
    return Scenario(name, tuple(_unique_names(reader, planned)), expect, description)


def load_scenario(path: Path) -> Scenario:
    """One scenario file; its name is the file's stem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: is not valid TOML: {exc}") from None
    return replace(parse_scenario(data, name=path.stem, source=str(path)), path=path)


def load_scenarios(paths: Iterable[Path]) -> list[Scenario]:
    """Every ``*.toml`` of the given directories and files, in name order, names unique."""
    scenarios: list[Scenario] = []
    for path in paths:
        if path.is_dir():
            files = sorted(path.glob("*.toml"))
            if not files:
                raise ScenarioError(f"{path}: no scenario files (*.toml) in this directory")
        elif path.is_file():
            files = [path]
        else:
            raise ScenarioError(f"{path}: no such scenario file or directory")
        scenarios += [load_scenario(file) for file in files]
    seen: dict[str, Scenario] = {}
    for scenario in scenarios:
        if scenario.name in seen:
            raise ScenarioError(
                f"{scenario.source}: the scenario name {scenario.name!r} is also the name of "
                f"{seen[scenario.name].source}: scenario names must be unique"
            )
        seen[scenario.name] = scenario
    return sorted(scenarios, key=lambda scenario: scenario.name)


# -- faults given on a command line ---------------------------------------------------


def _scalar(text: str) -> object:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*|-?\.\d+", text):
        return float(text)
    return text


def parse_inline_toxic(text: str, *, field: str = "--toxic") -> PlannedToxic:
    """``proxy:toxic[:key=value,...]``, e.g. ``postgres:latency:latency=200,stream=upstream``.

    Keys are the toxic's attributes and the fault options of a scenario
    (``stream``, ``toxicity``, ``connections``, ``start_after``, ``duration``, ``name``).
    """
    proxy, sep, rest = text.partition(":")
    toxic, _, options = rest.partition(":")
    if not sep or not proxy or not toxic:
        raise ScenarioError(
            f"{field}={text!r} is not valid: expected proxy:toxic[:key=value,...], "
            f"e.g. postgres:timeout:timeout=0 or smtp:reset_peer"
        )
    table: dict[str, Any] = {"proxy": proxy, "toxic": toxic, "attributes": {}}
    allowed = TOXIC_TYPES[toxic].attribute_names if toxic in TOXIC_TYPES else ()
    for item in filter(None, options.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ScenarioError(f"{field}={text!r}: {item!r} is not valid: expected key=value")
        if key in _FAULT_KEYS and key not in ("proxy", "toxic", "attributes"):
            table[key] = _scalar(value.strip())
        elif key in allowed or toxic not in TOXIC_TYPES:
            table["attributes"][key] = _scalar(value.strip())
        else:
            options_allowed = [k for k in _FAULT_KEYS if k not in ("proxy", "toxic", "attributes")]
            raise ScenarioError(
                f"{field}={text!r}: {key!r} is not valid: expected {toxic}'s attributes "
                f"({', '.join(allowed) or 'none'}) or {', '.join(options_allowed)}"
            )
    scenario = parse_scenario({"faults": [table]}, name="inline", source=f"{field}={text!r}")
    return replace(scenario.toxics[0], key=field)


def scenario_from_options(
    file: str | None, toxics: Sequence[str], proxies: Iterable[str]
) -> Scenario | None:
    """What ``--scenario FILE`` or ``--toxic ...`` of a command say, on the ``--proxy`` names."""
    if file is not None and toxics:
        raise InvalidError("--scenario and --toxic were both given: choose one")
    scenario = load_scenario(Path(file)) if file is not None else None
    if scenario is None and toxics:
        scenario = inline_scenario(toxics)
    if scenario is None:
        return None
    known = list(proxies)
    for toxic in scenario.toxics:
        if toxic.proxy not in known:
            where = f"{scenario.source}: {toxic.key}.proxy" if file is not None else "--toxic proxy"
            raise ScenarioError(
                f"{where}={toxic.proxy!r} is not a proxy given with --proxy: expected one of "
                f"{', '.join(known)}"
            )
    return scenario


def inline_scenario(texts: Sequence[str], *, field: str = "--toxic") -> Scenario:
    """A scenario made of faults given on a command line; no expectations of its own."""
    toxics = [parse_inline_toxic(text, field=field) for text in texts]
    taken: set[tuple[str, str]] = set()
    for toxic in toxics:
        if (toxic.proxy, toxic.spec.name) in taken:
            raise ScenarioError(
                f"{field}: two faults named {toxic.spec.name!r} on {toxic.proxy!r}: "
                f"give one of them name=..."
            )
        taken.add((toxic.proxy, toxic.spec.name))
    return Scenario("inline", tuple(toxics), description=", ".join(texts))


# -- judging what happened ------------------------------------------------------------


def exception_matches(exception: BaseException, type_name: str) -> bool:
    """Is ``exception`` of the type named (or a subclass)? By name: nothing is imported.

    ``"TimeoutError"`` matches by class name; a dotted name matches the
    class's full name, or its package and class name (``asyncpg.PostgresError``
    for ``asyncpg.exceptions.PostgresError``, as the package exports it).
    """
    package, _, short = type_name.rpartition(".")
    for cls in type(exception).__mro__:
        if not package:
            if cls.__name__ == type_name:
                return True
        elif cls.__name__ == short and (
            f"{cls.__module__}.{cls.__qualname__}" == type_name
            or cls.__module__.split(".")[0] == package.split(".")[0]
        ):
            return True
    return False


def failure_matches(exception: BaseException, type_name: str) -> bool:
    """``exception_matches`` for the exception or one it was raised from or while handling.

    A failure is "a timeout" when a timeout started it, whatever the clean-up
    raised on top (asyncpg's rollback on a connection the timeout closed raises
    ``InterfaceError`` while handling the ``TimeoutError``).
    """
    return any(exception_matches(cause, type_name) for cause in exception_chain(exception))


@final
@dataclass(frozen=True)
class Unmet:
    """One expectation that did not hold: a few words for a table, the whole story for a report."""

    short: str
    detail: str


def _state(entry_state: str, exception: BaseException | None) -> str:
    if exception is not None:
        return f"failed with {type(exception).__name__}"
    return entry_state


def judge_outcome(expect: Expectations, outcome: Outcome) -> list[Unmet]:
    """The expectations on a settled outcome that did not hold (pending work is a hang)."""
    unmet = []
    entries = outcome.entries
    if expect.outcome == "completed":
        bad = [entry for entry in entries if entry.state != "completed"]
        if bad:
            unmet.append(
                Unmet(
                    f"expected completed, {bad[0].name!r} {_state(bad[0].state, bad[0].exception)}",
                    "expected every background task to complete, but:\n"
                    + "\n".join(f"  - {entry}" for entry in bad),
                )
            )
    elif expect.outcome == "failed":
        wanted = expect.exception or "Exception"
        matching = [
            entry
            for entry in outcome.failures
            if entry.exception is not None and failure_matches(entry.exception, wanted)
        ]
        if not matching:
            seen = ", ".join(
                f"{entry.name!r} {_state(entry.state, entry.exception)}" for entry in entries
            )
            unmet.append(
                Unmet(
                    f"expected {'a failure' if expect.exception is None else 'a ' + wanted}, "
                    f"got: {seen or 'no background task'}",
                    f"expected the background work to fail with {wanted} within "
                    f"{outcome.within:g} s, but it was:\n"
                    + ("\n".join(f"  - {entry}" for entry in entries) or "  (no background task)"),
                )
            )
    if expect.logged:
        silent = [entry for entry in outcome.failures if not entry.logged]
        if silent:
            first = silent[0]
            assert first.exception is not None
            unmet.append(
                Unmet(
                    f"{type(first.exception).__name__} of {first.name!r} not logged",
                    "expected each failure to be logged at ERROR with its traceback, but these "
                    "were not:\n" + "\n".join(f"  - {entry}" for entry in silent),
                )
            )
    if expect.cleaned_up:
        changed = outcome.connections_changed()
        if changed:
            words = ", ".join(
                f"{name} {after} open (was {before})" for name, (before, after) in changed.items()
            )
            unmet.append(
                Unmet(
                    f"connections left: {words}",
                    f"expected proxy connections back to where they were before the first "
                    f"request: {words}",
                )
            )
    return unmet


def judge_stalls(expect: Expectations, stalls: Iterable[tuple[float, str]]) -> list[Unmet]:
    """``(duration s, where)`` of each loop stall, against ``max_stall_ms``."""
    if expect.max_stall_ms is None:
        return []
    limit = expect.max_stall_ms / 1000
    over = [(duration, where) for duration, where in stalls if duration > limit]
    if not over:
        return []
    worst = max(over)
    return [
        Unmet(
            f"loop stalled {worst[0]:.2f} s (max {expect.max_stall_ms} ms)",
            f"expected no event-loop stall over {expect.max_stall_ms} ms, but:\n"
            + "\n".join(f"  - {duration:.2f} s at {where}" for duration, where in over),
        )
    ]
