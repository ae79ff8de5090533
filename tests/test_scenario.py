"""Scenario files on their own (no pytest run, no engine): what a valid file
compiles to, and that each kind of mistake is one error naming the file, the
key and what is allowed, because a CI matrix that dies of a typo must say
which typo. Then the judges, on outcomes built by hand."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from pytest_asyncfaults import (
    ConnectionSelector,
    Expectations,
    InvalidError,
    Outcome,
    PlannedToxic,
    Scenario,
    ScenarioError,
    TaskOutcome,
    make_toxic,
)
from pytest_asyncfaults._scenario._inline import inline_scenario, parse_inline_toxic
from pytest_asyncfaults._scenario._judge import (
    Unmet,
    exception_matches,
    failure_matches,
    judge_outcome,
    judge_stalls,
)
from pytest_asyncfaults._scenario._toml import load_scenario, load_scenarios
from pytest_asyncfaults._tasks._outcome import State

ALL_TYPES = (
    "latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, noop, "
    "pg_login, pg_error, pg_delay, pg_hang, pg_cut, smtp_reply, smtp_delay, smtp_cut"
)
FAULT_KEYS = "proxy, toxic, attributes, stream, toxicity, connections, start_after, duration, name"
EXPECT_KEYS = "settle, outcome, exception, logged, cleaned_up, no_leaks, max_stall_ms"
MS = "a whole number of milliseconds >= 0"


BASELINE = 'description = "no faults"'


def write(directory: Path, text: str, name: str = "scenario") -> Path:
    path = directory / f"{name}.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def planned(scenario: Scenario) -> list[tuple[str, str, str, int, int | None]]:
    """Each toxic as (key, proxy, name, start_after, duration): the plan's timing at a glance."""
    return [
        (toxic.key, toxic.proxy, toxic.spec.name, toxic.spec.start_after, toxic.spec.duration)
        for toxic in scenario.toxics
    ]


# -- a valid file ---------------------------------------------------------------------


FULL = """
    description = "the database is slow, then gone, then back"

    [[faults]]
    proxy = "postgres"
    toxic = "latency"
    attributes = { latency = 100, jitter = 10 }

    [[faults]]
    proxy = "smtp"
    toxic = "reset_peer"
    stream = "upstream"
    toxicity = 0.25
    connections = "2-4"
    start_after = 50
    duration = 700
    name = "smtp_flaky"

    [[steps]]
    at = 0
    faults = []

    [[steps]]
    at = 200
    faults = [
        { proxy = "postgres", toxic = "timeout", attributes = { timeout = 0 } },
        { proxy = "postgres", toxic = "latency", start_after = 50, duration = 1000 },
        { proxy = "smtp", toxic = "latency", duration = 100 },
    ]

    [[steps]]
    at = 600
    faults = [{ proxy = "postgres", toxic = "timeout", attributes = { timeout = 0 } }]

    [expect]
    settle = 2.5
    outcome = "failed"
    exception = "asyncpg.PostgresError"
    logged = true
    cleaned_up = true
    no_leaks = false
    max_stall_ms = 300
"""


def test_a_full_file_compiles_to_its_toxics(tmp_path: Path) -> None:
    path = write(tmp_path, FULL, name="db_flap")
    scenario = load_scenario(path)
    assert scenario.name == "db_flap"
    assert scenario.path == path
    assert scenario.source == str(path)
    assert scenario.description == "the database is slow, then gone, then back"
    assert scenario.proxies == ("postgres", "smtp")
    first, second, *_ = scenario.toxics
    # Defaults: downstream, every connection, from the start, for ever.
    assert first == PlannedToxic(
        "postgres",
        make_toxic("latency", attributes={"latency": 100, "jitter": 10}),
        "faults[0]",
    )
    assert first.spec.toxicity == 1.0
    assert first.spec.connections is None
    # Every option given.
    assert second.proxy == "smtp"
    assert second.spec.name == "smtp_flaky"
    assert second.spec.type == "reset_peer"
    assert second.spec.stream == "upstream"
    assert second.spec.toxicity == 0.25
    assert second.spec.connections == ConnectionSelector(((2, 4),))
    assert (second.spec.start_after, second.spec.duration) == (50, 700)
    assert dict(second.spec.attributes) == {"timeout": 0}
    assert scenario.expect == Expectations(
        settle=2.5,
        outcome="failed",
        exception="asyncpg.PostgresError",
        logged=True,
        cleaned_up=True,
        no_leaks=False,
        max_stall_ms=300,
    )


def test_steps_compile_to_start_after_and_duration(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    assert planned(scenario) == [
        ("faults[0]", "postgres", "latency_downstream", 0, None),
        ("faults[1]", "smtp", "smtp_flaky", 50, 700),
        # Step 1 runs from 200 to 600 ms: its faults end when step 2 starts...
        ("steps[1].faults[0]", "postgres", "timeout_downstream", 200, 400),
        # ...a delay of its own counts from the step, and its duration is cut at the next.
        ("steps[1].faults[1]", "postgres", "latency_downstream_2", 250, 350),
        # A shorter duration of its own is kept; names are unique per proxy.
        ("steps[1].faults[2]", "smtp", "latency_downstream", 200, 100),
        # The last step is open-ended.
        ("steps[2].faults[0]", "postgres", "timeout_downstream_2", 600, None),
    ]


def test_default_names_count_on_past_taken_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[faults]]
        proxy = "db"
        toxic = "latency"
        name = "latency_downstream_2"

        [[faults]]
        proxy = "db"
        toxic = "latency"

        [[faults]]
        proxy = "db"
        toxic = "latency"

        [[faults]]
        proxy = "db"
        toxic = "latency"
        stream = "upstream"
        """,
    )
    assert [toxic.spec.name for toxic in load_scenario(path).toxics] == [
        "latency_downstream_2",
        "latency_downstream",
        "latency_downstream_3",
        "latency_upstream",
    ]


def test_the_same_explicit_name_on_two_proxies_is_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[faults]]
        proxy = "db"
        toxic = "latency"
        name = "slow"

        [[faults]]
        proxy = "smtp"
        toxic = "latency"
        name = "slow"
        """,
    )
    assert [(t.proxy, t.spec.name) for t in load_scenario(path).toxics] == [
        ("db", "slow"),
        ("smtp", "slow"),
    ]


def test_a_scenario_without_faults_or_expectations_says_so(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, 'description = "baseline"', name="healthy"))
    assert scenario == Scenario(
        "healthy", (), Expectations(), "baseline", tmp_path / "healthy.toml"
    )
    assert scenario.expect.describe() == "nothing"


def test_an_empty_file_is_refused_naming_what_a_scenario_needs(tmp_path: Path) -> None:
    path = write(tmp_path, "", name="healthy")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value) == (
        f"{path}: the scenario is empty: expected its faults ([[faults]] or [[steps]]), "
        f"its expectations ([expect]), or for a run without faults a description "
        f'(description = "no faults: the baseline")'
    )


def test_whole_numbers_are_accepted_where_seconds_and_fractions_are(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[faults]]
        proxy = "db"
        toxic = "latency"
        toxicity = 1
        connections = 3

        [expect]
        settle = 2
        """,
    )
    scenario = load_scenario(path)
    spec = scenario.toxics[0].spec
    assert (spec.toxicity, type(spec.toxicity)) == (1.0, float)
    assert spec.connections == ConnectionSelector(((3, 3),))
    assert scenario.expect.settle == 2.0


def test_describe_says_the_plan_and_the_expectations(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    assert [toxic.describe() for toxic in scenario.toxics[1:3]] == [
        "smtp: reset_peer upstream timeout=0 (toxicity=0.25, connections=2-4, from 50 ms, "
        "for 700 ms)",
        "postgres: timeout downstream timeout=0 (from 200 ms, for 400 ms)",
    ]
    assert scenario.expect.describe() == (
        "fails with asyncpg.PostgresError, within 2.5 s, logged, cleaned up, "
        "no loop stall over 300 ms"
    )


# -- one clear error per mistake ------------------------------------------------------

BAD_FILES = {
    "unknown toxic": (
        '[[faults]]\nproxy = "db"\ntoxic = "timeoutt"\n',
        f"faults[0].toxic='timeoutt' is not valid: expected one of {ALL_TYPES}",
    ),
    "unknown key at the top": (
        'descriptoin = "typo"\n',
        "descriptoin is not a key of a scenario: expected one of description, faults, steps, "
        "expect",
    ),
    "unknown key in a fault": (
        '[[faults]]\nproxy = "db"\ntoxic = "timeout"\nstreem = "upstream"\n',
        f"faults[0].streem is not a key of faults[0]: expected one of {FAULT_KEYS}",
    ),
    "unknown key in expect": (
        "[expect]\nsetle = 3\n",
        f"expect.setle is not a key of expect: expected one of {EXPECT_KEYS}",
    ),
    "unknown key in a step": (
        "[[steps]]\nat = 0\nfault = []\n",
        "steps[0].fault is not a key of steps[0]: expected one of at, faults",
    ),
    "unknown key in a step's fault": (
        '[[steps]]\nat = 0\nfaults = [{ proxy = "db", toxic = "noop", delay = 1 }]\n',
        f"steps[0].faults[0].delay is not a key of steps[0].faults[0]: expected one of "
        f"{FAULT_KEYS}",
    ),
    "unknown attribute": (
        '[[faults]]\nproxy = "db"\ntoxic = "timeout"\nattributes = { foo = 1 }\n',
        "faults[0].attributes.foo is not an attribute of timeout: expected timeout",
    ),
    "negative start_after": (
        '[[faults]]\nproxy = "db"\ntoxic = "timeout"\nstart_after = -1\n',
        f"faults[0].start_after=-1 is not valid: expected {MS}",
    ),
    "negative duration": (
        '[[faults]]\nproxy = "db"\ntoxic = "timeout"\nduration = -5\n',
        f"faults[0].duration=-5 is not valid: expected {MS}",
    ),
    "negative step time": (
        "[[steps]]\nat = -1\n",
        f"steps[0].at=-1 is not valid: expected {MS}",
    ),
    "negative max_stall_ms": (
        "[expect]\nmax_stall_ms = -1\n",
        "expect.max_stall_ms=-1 is not valid: expected a whole number of milliseconds > 0",
    ),
    "zero max_stall_ms": (
        "[expect]\nmax_stall_ms = 0\n",
        "expect.max_stall_ms=0 is not valid: expected a whole number of milliseconds > 0",
    ),
    "fractional max_stall_ms": (
        "[expect]\nmax_stall_ms = 0.5\n",
        "expect.max_stall_ms=0.5 is not valid: expected a whole number of milliseconds > 0",
    ),
    "negative settle": (
        "[expect]\nsettle = -1\n",
        "expect.settle=-1 is not valid: expected a number of seconds > 0",
    ),
    "a string for an attribute": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nattributes = { latency = "200" }\n',
        "faults[0].attributes.latency='200' is not valid: expected a whole number >= 0 "
        "(latency's latency)",
    ),
    "a string for a time": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nduration = "200"\n',
        f"faults[0].duration='200' is not valid: expected {MS}",
    ),
    "a fraction for milliseconds": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nstart_after = 1.5\n',
        f"faults[0].start_after=1.5 is not valid: expected {MS}",
    ),
    "a bool for an attribute": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nattributes = { latency = true }\n',
        "faults[0].attributes.latency=True is not valid: expected a whole number >= 0 "
        "(latency's latency)",
    ),
    "a bool for a time": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nstart_after = true\n',
        f"faults[0].start_after=True is not valid: expected {MS}",
    ),
    "a bool for seconds": (
        "[expect]\nsettle = true\n",
        "expect.settle=True is not valid: expected a number of seconds > 0",
    ),
    "a string for a flag": (
        '[expect]\nlogged = "yes"\n',
        "expect.logged='yes' is not valid: expected true or false",
    ),
    "attributes not a table": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nattributes = 200\n',
        "faults[0].attributes=200 is not valid: expected a table of latency, jitter",
    ),
    "faults not an array of tables": (
        '[faults]\nproxy = "db"\n',
        "faults={'proxy': 'db'} is not valid: expected an array of tables ([[faults]])",
    ),
    "expect not a table": (
        "expect = 5\n",
        f"expect=5 is not valid: expected a table with the keys {EXPECT_KEYS}",
    ),
    "bad stream": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nstream = "sideways"\n',
        "faults[0]: stream='sideways' is not valid: expected 'upstream' (client to server) "
        "or 'downstream' (server to client)",
    ),
    "toxicity over 1": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\ntoxicity = 1.5\n',
        "faults[0]: toxicity=1.5 is not valid: expected a number from 0.0 to 1.0",
    ),
    "bad connections": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nconnections = "0"\n',
        "faults[0]: connections='0' is not valid: expected a connection number from 1 "
        '("3"), "N+" for N and later, "N-M", or a comma list of those ("1,5+")',
    ),
    "missing proxy": (
        '[[faults]]\ntoxic = "latency"\n',
        "faults[0].proxy is missing: every fault names its proxy and its toxic "
        f"(one of {ALL_TYPES})",
    ),
    "missing toxic": (
        '[[faults]]\nproxy = "db"\n',
        "faults[0].toxic is missing: every fault names its proxy and its toxic "
        f"(one of {ALL_TYPES})",
    ),
    "missing toxic in a step": (
        '[[steps]]\nat = 10\nfaults = [{ proxy = "db" }]\n',
        "steps[0].faults[0].toxic is missing: every fault names its proxy and its toxic "
        f"(one of {ALL_TYPES})",
    ),
    "a proxy name that is not a name": (
        '[[faults]]\nproxy = ""\ntoxic = "latency"\n',
        "faults[0].proxy='' is not valid: expected the name of a proxy of the test",
    ),
    "exception without an outcome": (
        '[expect]\nexception = "TimeoutError"\n',
        "expect.exception='TimeoutError' needs expect.outcome = 'failed' (it names the type "
        "the background work must fail with)",
    ),
    "exception with outcome completed": (
        '[expect]\noutcome = "completed"\nexception = "TimeoutError"\n',
        "expect.exception='TimeoutError' needs expect.outcome = 'failed' (it names the type "
        "the background work must fail with)",
    ),
    "exception that is not a type name": (
        '[expect]\noutcome = "failed"\nexception = "Timeout Error"\n',
        "expect.exception='Timeout Error' is not valid: expected an exception type's name, "
        "e.g. 'TimeoutError' or 'asyncpg.PostgresError'",
    ),
    "unknown outcome": (
        '[expect]\noutcome = "passed"\n',
        "expect.outcome='passed' is not valid: expected 'completed', 'failed' or 'any'",
    ),
    "steps at the same time": (
        "[[steps]]\nat = 100\n\n[[steps]]\nat = 100\n",
        "steps[1].at=100 is not valid: expected a time after the step before (100 ms)",
    ),
    "steps going back in time": (
        "[[steps]]\nat = 300\n\n[[steps]]\nat = 200\n",
        "steps[1].at=200 is not valid: expected a time after the step before (300 ms)",
    ),
    "a step without its time": (
        "[[steps]]\nfaults = []\n",
        "steps[0].at is missing: every step says when it starts (ms)",
    ),
    "a step's fault delayed past the next step": (
        '[[steps]]\nat = 0\nfaults = [{ proxy = "db", toxic = "latency", start_after = 200 }]'
        "\n\n[[steps]]\nat = 100\n",
        "steps[0].faults[0].start_after=200 is not valid: expected a delay that starts it "
        "before the next step (100 ms)",
    ),
    "the same explicit name twice on a proxy": (
        '[[faults]]\nproxy = "db"\ntoxic = "latency"\nname = "slow"\n\n'
        '[[faults]]\nproxy = "db"\ntoxic = "timeout"\nname = "slow"\n',
        "faults[1].name='slow' is not valid: expected a toxic name not used twice on 'db'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_each_mistake_is_one_error_naming_file_and_key(tmp_path: Path, case: str) -> None:
    text, message = BAD_FILES[case]
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value) == f"{path}: {message}"
    assert isinstance(raised.value, InvalidError)


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[[faults]\nproxy = "db"\n')
    with pytest.raises(ScenarioError, match=r"is not valid TOML: .*\(at line 1, column \d+\)$"):
        load_scenario(path)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value).startswith(f"{path}: is not valid TOML: ")


def test_a_file_that_is_not_text_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match="cannot be read") as raised:
        load_scenario(path)
    assert str(raised.value).startswith(f"{path}: cannot be read: ")


def test_a_name_that_cannot_be_a_test_id_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASELINE, name="_hidden")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value) == (
        f"{path}: the scenario name '_hidden' is not valid: expected letters, digits, '_', '-' "
        f"and '.' (it is the test id in the matrix)"
    )


# -- loading a directory --------------------------------------------------------------


def test_directories_and_files_load_in_name_order(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    write(first, BASELINE, name="zeta")
    write(first, BASELINE, name="alpha")
    (first / "notes.txt").write_text("not a scenario", encoding="utf-8")
    single = write(second, 'description = "a file given by itself"', name="mid")
    scenarios = load_scenarios([first, single])
    assert [scenario.name for scenario in scenarios] == ["alpha", "mid", "zeta"]
    assert scenarios[1].description == "a file given by itself"
    assert scenarios[0].path == first / "alpha.toml"


def test_one_bad_file_in_a_directory_stops_the_load(tmp_path: Path) -> None:
    write(tmp_path, "", name="good")
    bad = write(tmp_path, "[expect]\nsettle = 0\n", name="bad")
    with pytest.raises(ScenarioError) as raised:
        load_scenarios([tmp_path])
    assert str(raised.value) == (
        f"{bad}: expect.settle=0 is not valid: expected a number of seconds > 0"
    )


def test_a_scenario_name_twice_across_directories_is_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    write(first, BASELINE, name="db_down")
    write(second, BASELINE, name="db_down")
    with pytest.raises(ScenarioError) as raised:
        load_scenarios([first, second])
    assert str(raised.value) == (
        f"{second / 'db_down.toml'}: the scenario name 'db_down' is also the name of "
        f"{first / 'db_down.toml'}: scenario names must be unique"
    )


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("no scenarios here", encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenarios([tmp_path])
    assert str(raised.value) == f"{tmp_path}: no scenario files (*.toml) in this directory"


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "scenarioz"
    with pytest.raises(ScenarioError) as raised:
        load_scenarios([missing])
    assert str(raised.value) == f"{missing}: no such scenario file or directory"


def test_the_shipped_scenarios_load() -> None:
    shipped = Path(__file__).resolve().parents[1] / "scenarios"
    names = [scenario.name for scenario in load_scenarios([shipped])]
    assert names == sorted(path.stem for path in shipped.glob("*.toml"))
    assert {"db_blackhole", "flaky_30", "db_outage_window"} <= set(names)


# -- faults on a command line ---------------------------------------------------------


def test_an_inline_fault_with_attributes_and_options() -> None:
    toxic = parse_inline_toxic("postgres:latency:latency=200,stream=upstream")
    assert toxic == PlannedToxic(
        "postgres", make_toxic("latency", stream="upstream", attributes={"latency": 200}), "--toxic"
    )
    assert toxic.spec.name == "latency_upstream"


def test_an_inline_fault_takes_every_option() -> None:
    toxic = parse_inline_toxic(
        "db:reset_peer:timeout=5,toxicity=0.5,connections=2+,start_after=10,duration=300,name=rst",
        field="--fault",
    )
    assert toxic.key == "--fault"
    spec = toxic.spec
    assert (spec.name, spec.type, dict(spec.attributes)) == ("rst", "reset_peer", {"timeout": 5})
    assert (spec.toxicity, spec.connections, spec.start_after, spec.duration) == (
        0.5,
        ConnectionSelector(((2, None),)),
        10,
        300,
    )


def test_an_inline_fault_needs_no_options() -> None:
    toxic = parse_inline_toxic("smtp:reset_peer")
    assert (toxic.proxy, toxic.spec) == ("smtp", make_toxic("reset_peer"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "postgres",
            "--toxic='postgres' is not valid: expected proxy:toxic[:key=value,...], "
            "e.g. postgres:timeout:timeout=0 or smtp:reset_peer",
        ),
        (
            ":latency",
            "--toxic=':latency' is not valid: expected proxy:toxic[:key=value,...], "
            "e.g. postgres:timeout:timeout=0 or smtp:reset_peer",
        ),
        (
            "postgres:latencyy",
            f"--toxic='postgres:latencyy': faults[0].toxic='latencyy' is not valid: "
            f"expected one of {ALL_TYPES}",
        ),
        (
            "postgres:latency:rate=5",
            "--toxic='postgres:latency:rate=5': 'rate' is not valid: expected latency's "
            "attributes (latency, jitter) or stream, toxicity, connections, start_after, "
            "duration, name",
        ),
        (
            "postgres:latency:latency",
            "--toxic='postgres:latency:latency': 'latency' is not valid: expected key=value",
        ),
        (
            "postgres:latency:latency=fast",
            "--toxic='postgres:latency:latency=fast': faults[0].attributes.latency='fast' is "
            "not valid: expected a whole number >= 0 (latency's latency)",
        ),
        (
            "postgres:latency:toxicity=2",
            "--toxic='postgres:latency:toxicity=2': faults[0]: toxicity=2.0 is not valid: "
            "expected a number from 0.0 to 1.0",
        ),
    ],
)
def test_a_bad_inline_fault_says_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_inline_toxic(text)
    assert str(raised.value) == message


def test_a_protocol_toxic_in_a_file_keeps_its_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[faults]]
        proxy = "postgres"
        toxic = "pg_error"
        attributes = { sqlstate = "40001", match = "^INSERT INTO uploads", nth = 2 }
        """,
    )
    (toxic,) = load_scenario(path).toxics
    assert dict(toxic.spec.attributes) == {
        "sqlstate": "40001",
        "message": "",
        "match": "^INSERT INTO uploads",
        "nth": 2,
    }
    assert (
        toxic.describe() == "postgres: pg_error sqlstate=40001 match='^INSERT INTO uploads' nth=2"
    )


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            "{ sqlstate = 40001 }",
            "faults[0].attributes.sqlstate=40001 is not valid: expected a SQLSTATE, 5 "
            "characters of 0-9 and A-Z",
        ),
        (
            '{ sqlstate = "40001", match = "(" }',
            "faults[0].attributes.match='(' is not valid: the regex does not compile",
        ),
        (
            '{ sqlstate = "4000" }',
            "faults[0].attributes.sqlstate='4000' is not valid: expected a SQLSTATE",
        ),
    ],
)
def test_a_protocol_toxics_mistake_names_the_key_in_the_file(
    tmp_path: Path, attributes: str, message: str
) -> None:
    path = write(
        tmp_path,
        f"""
        [[faults]]
        proxy = "postgres"
        toxic = "pg_error"
        attributes = {attributes}
        """,
    )
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value).startswith(f"{path}: {message}")


def test_an_inline_protocol_toxic_keeps_strings_and_quoted_commas() -> None:
    toxic = parse_inline_toxic(
        "postgres:pg_error:sqlstate=40001,match='^INSERT INTO t (a, b)',nth=3"
    )
    assert dict(toxic.spec.attributes) == {
        "sqlstate": "40001",  # a string, though it looks like a number
        "message": "",
        "match": "^INSERT INTO t (a, b)",
        "nth": 3,
    }
    greylist = parse_inline_toxic('smtp:smtp_reply:command=rcpt,code=451,text="4.7.1 Try later"')
    assert dict(greylist.spec.attributes)["text"] == "4.7.1 Try later"
    with pytest.raises(ScenarioError, match="is not closed"):
        parse_inline_toxic("postgres:pg_error:sqlstate=40001,match='^INSERT")


def test_an_inline_scenario_refuses_two_faults_of_one_name() -> None:
    scenario = inline_scenario(["db:latency:latency=5", "db:latency:latency=9,name=more"])
    assert scenario.name == "inline"
    assert [toxic.spec.name for toxic in scenario.toxics] == ["latency_downstream", "more"]
    assert scenario.description == "db:latency:latency=5, db:latency:latency=9,name=more"
    assert scenario.expect == Expectations()
    with pytest.raises(ScenarioError) as raised:
        inline_scenario(["db:latency", "db:latency:latency=9"])
    assert str(raised.value) == (
        "--toxic: two faults named 'latency_downstream' on 'db': give one of them name=..."
    )


# -- exception types by name ----------------------------------------------------------


class PostgresError(Exception):
    """Stands for asyncpg's, which lives in asyncpg.exceptions and is exported by asyncpg."""


class UniqueViolationError(PostgresError):
    pass


PostgresError.__module__ = UniqueViolationError.__module__ = "asyncpg.exceptions"


class UpstreamTimeout(TimeoutError):
    pass


@pytest.mark.parametrize(
    ("exception", "name", "matches"),
    [
        (TimeoutError(), "TimeoutError", True),
        (UpstreamTimeout(), "TimeoutError", True),  # a subclass, by its base's name
        (UpstreamTimeout(), "OSError", True),
        (UpstreamTimeout(), "Exception", True),
        (UpstreamTimeout(), "UpstreamTimeout", True),
        (TimeoutError(), "UpstreamTimeout", False),  # not the other way round
        (ConnectionResetError(), "ConnectionError", True),
        (ConnectionResetError(), "TimeoutError", False),
        (TimeoutError(), "builtins.TimeoutError", True),  # the full name
        (UniqueViolationError(), "asyncpg.exceptions.PostgresError", True),
        (UniqueViolationError(), "asyncpg.PostgresError", True),  # package and class
        (UniqueViolationError(), "asyncpg.UniqueViolationError", True),
        (UniqueViolationError(), "psycopg.PostgresError", False),  # another package
        (UniqueViolationError(), "asyncpg.DataError", False),
        (PostgresError(), "asyncpg.UniqueViolationError", False),
        (TimeoutError(), "mylib.TimeoutError", False),
    ],
)
def test_exception_matches_by_name_along_the_classes(
    exception: BaseException, name: str, matches: bool
) -> None:
    assert exception_matches(exception, name) is matches


def test_a_failure_matches_what_it_was_raised_from_or_while_handling() -> None:
    """A timeout whose clean-up raised something else is still a timeout's failure."""
    try:
        try:
            raise TimeoutError
        except TimeoutError:
            raise ConnectionResetError("the rollback found the connection closed")  # noqa: B904
    except ConnectionResetError as exc:
        during = exc  # raised while handling: its __context__
    try:
        raise KeyError("x") from ValueError("y")
    except KeyError as exc:
        caused = exc  # raised from: its __cause__
    assert failure_matches(during, "TimeoutError")
    assert not exception_matches(during, "TimeoutError")  # the class alone does not
    assert failure_matches(caused, "ValueError")
    assert not failure_matches(caused, "TimeoutError")
    outcome = Outcome(entries=(task("job", "failed", during),), within=5.0, elapsed=1.0)
    assert judge_outcome(Expectations(outcome="failed", exception="TimeoutError"), outcome) == []


# -- judging an outcome ---------------------------------------------------------------


def task(
    name: str,
    state: State = "completed",
    exception: BaseException | None = None,
    *,
    logged: bool = False,
) -> TaskOutcome:
    return TaskOutcome(
        name=name,
        description=f"Task {name!r} (created at app.py:10 in upload)",
        state=state,
        exception=exception,
        duration=None if state == "pending" else 0.5,
        logged=logged,
        retrieved=True,
    )


def outcome(
    *entries: TaskOutcome,
    before: dict[str, int] | None = None,
    after: dict[str, int] | None = None,
) -> Outcome:
    return Outcome(
        entries=entries,
        within=2.0,
        elapsed=0.6,
        error_logs=(logging.LogRecord("app", logging.ERROR, "app.py", 1, "boom", None, None),),
        connections_before=before or {},
        connections_after=after or {},
    )


TIMED_OUT = task("job", "failed", TimeoutError("db did not answer"), logged=True)


def test_nothing_unmet_when_the_outcome_is_as_expected() -> None:
    assert judge_outcome(Expectations(outcome="completed"), outcome(task("job"))) == []
    assert (
        judge_outcome(
            Expectations(outcome="failed", exception="TimeoutError", logged=True),
            outcome(task("mail"), TIMED_OUT),
        )
        == []
    )
    assert judge_outcome(Expectations(outcome="failed"), outcome(TIMED_OUT)) == []


def test_any_outcome_is_not_judged() -> None:
    anything = outcome(task("a", "cancelled"), TIMED_OUT, task("c", "lost"))
    assert judge_outcome(Expectations(outcome="any"), anything) == []


def test_expected_completed_but_one_failed() -> None:
    (unmet,) = judge_outcome(Expectations(outcome="completed"), outcome(task("ok"), TIMED_OUT))
    assert unmet.short == "expected completed, 'job' failed with TimeoutError"
    assert unmet.detail == (
        "expected every background task to complete, but:\n"
        "  - Task 'job' (created at app.py:10 in upload): failed with TimeoutError: "
        "db did not answer after 0.50 s"
    )


def test_expected_completed_but_one_was_cancelled() -> None:
    (unmet,) = judge_outcome(Expectations(outcome="completed"), outcome(task("job", "cancelled")))
    assert unmet.short == "expected completed, 'job' cancelled"


def test_expected_a_failure_of_one_type_but_another() -> None:
    reset = task("job", "failed", ConnectionResetError("reset by peer"), logged=True)
    (unmet,) = judge_outcome(
        Expectations(outcome="failed", exception="TimeoutError"), outcome(task("mail"), reset)
    )
    assert unmet.short == (
        "expected a TimeoutError, got: 'mail' completed, 'job' failed with ConnectionResetError"
    )
    assert unmet.detail.startswith(
        "expected the background work to fail with TimeoutError within 2 s, but it was:\n"
        "  - Task 'mail' (created at app.py:10 in upload): completed after 0.50 s\n"
    )


def test_expected_a_failure_but_everything_completed() -> None:
    (unmet,) = judge_outcome(Expectations(outcome="failed"), outcome(task("job")))
    assert unmet.short == "expected a failure, got: 'job' completed"
    (unmet,) = judge_outcome(Expectations(outcome="failed", exception="TimeoutError"), outcome())
    assert unmet.short == "expected a TimeoutError, got: no background task"
    assert unmet.detail.endswith("but it was:\n  (no background task)")


def test_a_failure_that_was_not_logged() -> None:
    silent = task("job", "failed", TimeoutError("db"), logged=False)
    (unmet,) = judge_outcome(Expectations(logged=True), outcome(TIMED_OUT, silent))
    assert unmet.short == "TimeoutError of 'job' not logged"
    assert unmet.detail.startswith(
        "expected each failure to be logged at ERROR with its traceback, but these were not:\n"
    )
    assert unmet.detail.count("  - ") == 1
    # Only failures need a log: a task that completed has nothing to say.
    assert judge_outcome(Expectations(logged=True), outcome(task("job"))) == []


def test_connections_not_back_to_where_they_were() -> None:
    left = outcome(task("job"), before={"db": 1, "smtp": 0}, after={"db": 2, "smtp": 0})
    (unmet,) = judge_outcome(Expectations(cleaned_up=True), left)
    assert unmet == Unmet(
        "connections left: db 2 open (was 1)",
        "expected proxy connections back to where they were before the first request: "
        "db 2 open (was 1)",
    )
    back = outcome(task("job"), before={"db": 1}, after={"db": 1, "smtp": 0})
    assert judge_outcome(Expectations(cleaned_up=True), back) == []
    assert judge_outcome(Expectations(cleaned_up=False), left) == []


def test_every_unmet_expectation_is_listed_in_order() -> None:
    silent = task("job", "failed", TimeoutError("db"), logged=False)
    unmet = judge_outcome(
        Expectations(outcome="completed", logged=True, cleaned_up=True),
        outcome(silent, before={"db": 0}, after={"db": 1}),
    )
    assert [item.short for item in unmet] == [
        "expected completed, 'job' failed with TimeoutError",
        "TimeoutError of 'job' not logged",
        "connections left: db 1 open (was 0)",
    ]


def test_stalls_over_the_limit() -> None:
    stalls = [(0.05, "app.py:3"), (0.35, "app.py:12: `time.sleep(0.3)`"), (0.25, "app.py:20")]
    (unmet,) = judge_stalls(Expectations(max_stall_ms=200), stalls)
    assert unmet.short == "loop stalled 0.35 s (max 200 ms)"
    assert unmet.detail == (
        "expected no event-loop stall over 200 ms, but:\n"
        "  - 0.35 s at app.py:12: `time.sleep(0.3)`\n"
        "  - 0.25 s at app.py:20"
    )


def test_stalls_within_the_limit_or_not_limited() -> None:
    stalls = [(0.05, "app.py:3"), (0.2, "app.py:12")]
    assert judge_stalls(Expectations(max_stall_ms=200), stalls) == []
    assert judge_stalls(Expectations(), [(5.0, "app.py:3")]) == []
