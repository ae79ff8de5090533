"""Validation of toxics, connection selectors and addresses: every rejection
names the field, the bad value and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_asyncfaults import (
    ConnectionSelector,
    InvalidError,
    ScenarioError,
    ToxicSpec,
    make_toxic,
)
from pytest_asyncfaults._address import parse_address
from pytest_asyncfaults._scenario._toml import load_scenario
from pytest_asyncfaults._toxics import TOXIPROXY_TYPES, Slicer
from pytest_asyncfaults._toxics._spec import update_toxic

ALL_TYPES = (
    "latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, noop, "
    "pg_login, pg_error, pg_delay, pg_hang, pg_cut, smtp_reply, smtp_delay, smtp_cut"
)


def test_invalid_error_is_a_value_error() -> None:
    assert issubclass(InvalidError, ValueError)


# -- make_toxic -------------------------------------------------------------------


def test_make_toxic_defaults() -> None:
    spec = make_toxic("latency")
    assert spec == ToxicSpec(
        name="latency_downstream",
        type="latency",
        stream="downstream",
        toxicity=1.0,
        attributes={"latency": 0, "jitter": 0},
    )
    assert spec.connections is None
    assert spec.start_after == 0
    assert spec.duration is None


@pytest.mark.parametrize(
    ("toxic_type", "attributes"),
    [
        ("latency", {"latency": 0, "jitter": 0}),
        ("bandwidth", {"rate": 0}),
        ("slow_close", {"delay": 0}),
        ("timeout", {"timeout": 0}),
        ("reset_peer", {"timeout": 0}),
        ("limit_data", {"bytes": 0}),
        ("noop", {}),
    ],
)
def test_omitted_attributes_default_to_zero(toxic_type: str, attributes: dict[str, int]) -> None:
    assert dict(make_toxic(toxic_type).attributes) == attributes


def test_given_attributes_are_kept_and_the_others_default() -> None:
    spec = make_toxic("slicer", attributes={"average_size": 10})
    assert dict(spec.attributes) == {"average_size": 10, "size_variation": 0, "delay": 0}


def test_the_name_follows_the_stream() -> None:
    assert make_toxic("bandwidth", stream="upstream").name == "bandwidth_upstream"
    assert make_toxic("bandwidth", stream="upstream", name="slow").name == "slow"


@pytest.mark.parametrize(
    ("given", "expected"), [("UpStream", "upstream"), ("DOWNSTREAM", "downstream")]
)
def test_the_stream_ignores_case(given: str, expected: str) -> None:
    assert make_toxic("noop", stream=given).stream == expected


@pytest.mark.parametrize(("given", "expected"), [(0, 0.0), (1, 1.0), (0.25, 0.25)])
def test_toxicity_bounds_are_included(given: float, expected: float) -> None:
    toxicity = make_toxic("noop", toxicity=given).toxicity
    assert toxicity == expected
    assert type(toxicity) is float


def test_the_attributes_cannot_be_changed_afterwards() -> None:
    spec = make_toxic("latency", attributes={"latency": 5})
    with pytest.raises(TypeError):
        spec.attributes["latency"] = 6  # type: ignore[index]


def test_extras_are_validated() -> None:
    spec = make_toxic("noop", connections="2-4", start_after=100, duration=500)
    assert spec.connections == ConnectionSelector(((2, 4),))
    assert spec.start_after == 100
    assert spec.duration == 500


def test_to_json_has_toxiproxy_shape_and_our_extras_only_when_set() -> None:
    plain = {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 100, "jitter": 0},
    }
    assert make_toxic("latency", attributes={"latency": 100}).to_json() == plain
    extended = make_toxic(
        "latency", attributes={"latency": 100}, connections="1,5+", start_after=10, duration=20
    )
    assert extended.to_json() == {
        **plain,
        "connections": "1,5+",
        "start_after": 10,
        "duration": 20,
    }


@pytest.mark.parametrize("bad", ["lag", "Latency", "", 3, None])
def test_an_unknown_type_names_every_valid_type(bad: object) -> None:
    message = f"type={bad!r} is not a toxic type: expected one of {ALL_TYPES}"
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        make_toxic(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("toxic_type", "key", "allowed"),
    [
        ("latency", "delay", "latency, jitter"),
        ("bandwidth", "latency", "rate"),
        ("slicer", "size", "average_size, size_variation, delay"),
        ("noop", "anything", "none"),
    ],
)
def test_an_unknown_attribute_names_it_and_the_allowed_ones(
    toxic_type: str, key: str, allowed: str
) -> None:
    message = f"{toxic_type} attribute {key!r} is not valid: {toxic_type} takes {allowed}"
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        make_toxic(toxic_type, attributes={key: 1})


@pytest.mark.parametrize(
    ("toxic_type", "key"),
    [("latency", "latency"), ("latency", "jitter"), ("bandwidth", "rate"), ("limit_data", "bytes")],
)
def test_a_negative_attribute_names_the_field_and_value(toxic_type: str, key: str) -> None:
    message = f"{toxic_type}.{key}=-1 is not valid: must be >= 0"
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        make_toxic(toxic_type, attributes={key: -1})


@pytest.mark.parametrize("bad", [True, False, 1.5, 2.0, "5", None, [1]])
def test_a_non_integer_attribute_names_the_field_and_value(bad: object) -> None:
    message = f"latency.jitter={bad!r} is not valid: expected an integer >= 0"
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        make_toxic("latency", attributes={"jitter": bad})


def test_attributes_must_be_a_mapping() -> None:
    with pytest.raises(
        InvalidError,
        match=re.escape("attributes=[1] is not valid: expected a mapping of latency, jitter"),
    ):
        make_toxic("latency", attributes=[1])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["sideways", "up", "", 1, None])
def test_a_bad_stream_names_the_two_streams(bad: object) -> None:
    with pytest.raises(
        InvalidError,
        match=f"^stream={re.escape(repr(bad))} is not valid: expected 'upstream' .*'downstream'",
    ):
        make_toxic("noop", stream=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-0.1, 1.01, 2, float("nan"), float("inf"), True, "0.5", None])
def test_a_toxicity_out_of_zero_to_one_is_rejected(bad: object) -> None:
    message = f"toxicity={bad!r} is not valid: expected a number from 0.0 to 1.0"
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        make_toxic("noop", toxicity=bad)  # type: ignore[arg-type]


def test_slicer_average_size_must_be_at_least_one() -> None:
    with pytest.raises(
        InvalidError, match=re.escape("slicer.average_size=0 is not valid: must be >= 1")
    ):
        make_toxic("slicer", attributes={"average_size": 0})


@pytest.mark.parametrize(("average", "variation"), [(5, 5), (5, 6), (1, 1)])
def test_slicer_size_variation_must_be_below_average_size(average: int, variation: int) -> None:
    message = (
        f"slicer.size_variation={variation} is not valid: "
        f"must be less than average_size ({average})"
    )
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        make_toxic("slicer", attributes={"average_size": average, "size_variation": variation})


def test_slicer_size_variation_just_below_average_size_is_fine() -> None:
    spec = make_toxic("slicer", attributes={"average_size": 5, "size_variation": 4})
    assert spec.attributes["size_variation"] == 4


def test_a_toxics_own_rule_is_its_stages_check() -> None:
    """The slicer's rule lives on its stage; a toxic without a rule accepts any counts."""
    with pytest.raises(InvalidError, match=re.escape("slicer.size_variation=3 is not valid")):
        Slicer.check({"average_size": 3, "size_variation": 3, "delay": 0})
    Slicer.check({"average_size": 3, "size_variation": 2, "delay": 0})
    for stage in TOXIPROXY_TYPES:
        if stage is not Slicer:
            stage.check(dict.fromkeys(stage.attribute_names, 0))


def test_every_door_is_told_the_same_slicer_rule(tmp_path: Path) -> None:
    """The Python API, an update and a scenario file share the one validator."""
    message = "slicer.size_variation=9 is not valid: must be less than average_size (9)"
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        make_toxic("slicer", attributes={"average_size": 9, "size_variation": 9})
    spec = make_toxic("slicer", attributes={"average_size": 10, "size_variation": 9})
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        update_toxic(spec, attributes={"average_size": 9})
    path = tmp_path / "slicer.toml"
    path.write_text(
        '[[faults]]\nproxy = "db"\ntoxic = "slicer"\n'
        "attributes = { average_size = 9, size_variation = 9 }\n"
    )
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value) == f"{path}: faults[0]: {message}"


@pytest.mark.parametrize("bad", ["", "  ", "a/b"])
def test_a_bad_name_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidError, match=f"^name={re.escape(repr(bad))} is not valid"):
        make_toxic("noop", name=bad)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("start_after=-1", {"start_after": -1}),
        ("duration=1.5", {"duration": 1.5}),
        ("duration=-5", {"duration": -5}),
    ],
)
def test_timing_extras_are_checked(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidError, match=f"^{re.escape(field)} is not valid"):
        make_toxic("noop", **kwargs)  # type: ignore[arg-type]


# -- update_toxic -----------------------------------------------------------------


def test_update_merges_attributes() -> None:
    spec = make_toxic("latency", attributes={"latency": 100, "jitter": 10}, stream="upstream")
    updated = update_toxic(spec, attributes={"jitter": 5})
    assert dict(updated.attributes) == {"latency": 100, "jitter": 5}
    assert (updated.name, updated.type, updated.stream) == (
        "latency_upstream",
        "latency",
        "upstream",
    )
    assert updated.toxicity == spec.toxicity
    assert dict(spec.attributes) == {"latency": 100, "jitter": 10}  # the original stays


def test_update_toxicity_alone_keeps_the_attributes() -> None:
    spec = make_toxic("bandwidth", attributes={"rate": 50}, toxicity=0.5)
    updated = update_toxic(spec, toxicity=0.25)
    assert updated.toxicity == 0.25
    assert dict(updated.attributes) == {"rate": 50}
    assert update_toxic(spec).toxicity == 0.5


def test_update_keeps_the_extras() -> None:
    spec = make_toxic("noop", connections="3+", start_after=5, duration=7)
    updated = update_toxic(spec, toxicity=0.0)
    assert (updated.connections, updated.start_after, updated.duration) == (
        spec.connections,
        5,
        7,
    )


def test_update_rejects_an_unknown_attribute() -> None:
    spec = make_toxic("latency")
    with pytest.raises(
        InvalidError,
        match=re.escape("latency attribute 'rate' is not valid: latency takes latency, jitter"),
    ):
        update_toxic(spec, attributes={"rate": 1})


def test_update_rejects_a_bad_value() -> None:
    spec = make_toxic("latency")
    with pytest.raises(InvalidError, match=re.escape("latency.latency=-3 is not valid")):
        update_toxic(spec, attributes={"latency": -3})


def test_update_rejects_a_bad_toxicity() -> None:
    with pytest.raises(InvalidError, match=re.escape("toxicity=1.5 is not valid")):
        update_toxic(make_toxic("noop"), toxicity=1.5)


def test_update_checks_slicer_rules_on_the_merged_attributes() -> None:
    spec = make_toxic("slicer", attributes={"average_size": 10, "size_variation": 5})
    with pytest.raises(
        InvalidError,
        match=re.escape("slicer.size_variation=5 is not valid: must be less than average_size (5)"),
    ):
        update_toxic(spec, attributes={"average_size": 5})


def test_update_rejects_attributes_that_are_not_a_mapping() -> None:
    with pytest.raises(InvalidError, match=re.escape("attributes=3 is not valid")):
        update_toxic(make_toxic("latency"), attributes=3)  # type: ignore[arg-type]


# -- ConnectionSelector ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ranges", "inside", "outside"),
    [
        ("3", ((3, 3),), [3], [1, 2, 4]),
        ("3+", ((3, None),), [3, 4, 10_000], [1, 2]),
        ("2-4", ((2, 4),), [2, 3, 4], [1, 5]),
        ("1,5+", ((1, 1), (5, None)), [1, 5, 6], [2, 3, 4]),
        ("1, 3-4", ((1, 1), (3, 4)), [1, 3, 4], [2, 5]),
        ("7-7", ((7, 7),), [7], [6, 8]),
    ],
)
def test_selector_parse(
    text: str, ranges: tuple[tuple[int, int | None], ...], inside: list[int], outside: list[int]
) -> None:
    selector = ConnectionSelector.parse(text)
    assert selector.ranges == ranges
    assert all(number in selector for number in inside)
    assert not any(number in selector for number in outside)


@pytest.mark.parametrize(
    ("text", "written"), [("3", "3"), ("3+", "3+"), ("2-4", "2-4"), ("1,5+", "1,5+"), ("7-7", "7")]
)
def test_selector_str_reads_back(text: str, written: str) -> None:
    selector = ConnectionSelector.parse(text)
    assert str(selector) == written
    assert ConnectionSelector.parse(str(selector)) == selector


def test_selector_takes_an_int_and_itself() -> None:
    assert ConnectionSelector.parse(3) == ConnectionSelector(((3, 3),))
    selector = ConnectionSelector.parse("2+")
    assert ConnectionSelector.parse(selector) is selector


def test_selector_contains_only_ints() -> None:
    selector = ConnectionSelector.parse("1+")
    assert "1" not in selector
    assert 1.0 not in selector


@pytest.mark.parametrize(
    "bad", ["0", "4-2", "x", "", "1,", "-3", "3-", "0+", "1.5", True, 1.5, None]
)
def test_selector_rejects(bad: object) -> None:
    message = f"connections={bad!r} is not valid: expected a connection number from 1"
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}"):
        ConnectionSelector.parse(bad)


def test_selector_message_names_the_field_and_the_forms() -> None:
    with pytest.raises(InvalidError, match=r"^only='x' is not valid: .*\"N\+\".*\"N-M\".*comma"):
        ConnectionSelector.parse("x", field_name="only")


def test_make_toxic_rejects_a_bad_selector() -> None:
    with pytest.raises(InvalidError, match=re.escape("connections='4-2' is not valid")):
        make_toxic("noop", connections="4-2")


# -- parse_address ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:5432", ("::1", 5432)),
        ("localhost:65535", ("localhost", 65535)),
        ("db.example:80", ("db.example", 80)),
    ],
)
def test_parse_address_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_address("upstream", text) == expected


@pytest.mark.parametrize("bad", ["nohost", "h:70000", "h:-1", "h:", ":80", "h:8o", "", 5432, None])
def test_parse_address_rejects(bad: object) -> None:
    message = f'upstream={bad!r} is not valid: expected "host:port" with a port from 0 to 65535'
    with pytest.raises(InvalidError, match=f"^{re.escape(message)}$"):
        parse_address("upstream", bad)


@pytest.mark.parametrize(
    ("text", "expected"), [("8080", ("0.0.0.0", 8080)), (":81", ("0.0.0.0", 81))]
)
def test_parse_address_default_host(text: str, expected: tuple[str, int]) -> None:
    assert parse_address("listen", text, default_host="0.0.0.0") == expected
