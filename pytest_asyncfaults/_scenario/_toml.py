"""Reading a scenario file: TOML against a fixed schema, every error naming file and key.

The file is data: read with ``tomllib``, checked key by key, and turned into
the model (``_model``); nothing in it is imported or executed. A CI matrix
that dies of a typo must say which typo, so each message names the file, the
key, the bad value and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from .._exceptions import InvalidError, ScenarioError
from .._toxics import TOXIC_TYPES
from .._toxics._spec import AttributeWording, check_attributes, make_toxic
from .._values import (
    NAME_MAX,
    SCENARIO_MAX_BYTES,
    TEXT_MAX,
    integer,
    invalid,
    is_integer,
    key_text,
    read_bounded,
    seconds,
    shown,
    spelled,
)
from ._model import OUTCOMES, Expectations, PlannedToxic, Scenario

_SCENARIO_KEYS: Final = ("description", "faults", "steps", "expect")


FAULT_KEYS: Final = (
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


class _Reader:
    """Checks one file's values, every error prefixed with the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: object, allowed: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {invalid(key, value, allowed)}")

    def table(self, key: str, value: object, allowed_keys: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, f"a table with the keys {', '.join(allowed_keys)}")
        for name in value:
            if name not in allowed_keys:
                where = f"{key}.{key_text(name)}" if key else key_text(name)
                raise ScenarioError(
                    f"{self.source}: {where} is not "
                    f"a key of {key or 'a scenario'}: expected one of {', '.join(allowed_keys)}"
                )
        return value

    def tables(
        self, key: str, value: object, allowed_keys: Sequence[str]
    ) -> list[Mapping[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(key, value, "an array of tables ([[" + key.split(".")[-1] + "]])")
        return [self.table(f"{key}[{i}]", item, allowed_keys) for i, item in enumerate(value)]

    def string(self, key: str, value: object, allowed: str = "a string") -> str:
        if not isinstance(value, str) or "\x00" in value or len(value) > TEXT_MAX:
            raise self.fail(key, value, allowed)
        return value

    def ms(self, key: str, value: object, *, minimum: int = 0) -> int:
        allowed = f"a whole number of milliseconds {'>= 0' if minimum == 0 else '> 0'}"
        if not is_integer(value) or value < minimum:  # type: ignore[operator]
            raise self.fail(key, value, allowed)
        return self.check("", integer, key, value, minimum=minimum)  # type: ignore[no-any-return]

    def seconds(self, key: str, value: object) -> float:
        return self.check("", seconds, key, value, positive=True)  # type: ignore[no-any-return]

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
        return f"{self.key}.attributes={shown(value)} is not valid: expected a table of {names}"

    def unknown(self, toxic_type: str, key: object) -> str:
        allowed = self.names(toxic_type, "none")
        return (
            f"{self.key}.attributes.{key_text(key)} is not an attribute of {toxic_type}: "
            f"expected {allowed}"
        )

    def bad_value(self, toxic_type: str, key: str, value: object, problem: str) -> str:
        # The kind's words after its own "field=value is not valid: " (cut by its length:
        # a text value may itself hold " is not valid: ").
        said = f"{spelled(f'{toxic_type}.{key}', value)} is not valid: "
        why = problem[len(said) :] if problem.startswith(said) else problem
        if why.startswith("expected"):  # not of the kind at all: say the kind, in TOML's terms
            kind = TOXIC_TYPES[toxic_type].attribute_kinds[key]
            why = f"expected {kind.describe()} ({toxic_type}'s {key})"
        return f"{self.key}.attributes.{key}={shown(value)} is not valid: {why}"

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
    if not _NAME.fullmatch(proxy) or len(proxy) > NAME_MAX:
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
        if not isinstance(name, str) or len(name) > 200 or not _TYPE_NAME.fullmatch(name):
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
        values["max_stall_ms"] = reader.ms("expect.max_stall_ms", table["max_stall_ms"], minimum=1)
    return Expectations(**values)


def _unique_names(
    reader: _Reader, planned: list[tuple[str, str, dict[str, Any]]]
) -> list[PlannedToxic]:
    """Build the specs; a default name already taken on its proxy gets ``_2``, ``_3``..."""
    taken: set[tuple[str, str]] = set()
    out = []
    for key, proxy, arguments in planned:
        given = arguments.get("name")
        spec = reader.check(key, make_toxic, **arguments)
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
    if not data:
        # An empty file is more often a mistake (a truncated copy, the wrong file) than a
        # plan; a run without faults says so in a line (the matrix's baseline).
        raise ScenarioError(
            f"{source}: the scenario is empty: expected its faults ([[faults]] or [[steps]]), "
            f"its expectations ([expect]), or for a run without faults a description "
            f'(description = "no faults: the baseline")'
        )
    if not _NAME.fullmatch(name):
        raise ScenarioError(
            f"{source}: the scenario name {name!r} is not valid: expected letters, digits, "
            f"'_', '-' and '.' (it is the test id in the matrix)"
        )
    description = reader.string("description", data.get("description", ""))
    planned: list[tuple[str, str, dict[str, Any]]] = []
    for index, table in enumerate(reader.tables("faults", data.get("faults", []), FAULT_KEYS)):
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
        faults = reader.tables(f"steps[{index}].faults", step.get("faults", []), FAULT_KEYS)
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
    """One scenario file, a regular file of at most ``SCENARIO_MAX_BYTES``; its name is
    the file's stem."""
    try:
        text = read_bounded(str(path), path, SCENARIO_MAX_BYTES).decode("utf-8")
    except InvalidError as exc:
        raise ScenarioError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: is not valid TOML: {exc}") from None
    except RecursionError:  # thousands of nested arrays: tomllib recurses per level
        raise ScenarioError(f"{path}: is not valid TOML: nested too deeply") from None
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
