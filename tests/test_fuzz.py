"""Fuzzing every reader of user input: one clear error or a result, never a traceback.

Hypothesis feeds the scenario reader (parsed tables and raw text), the config
reader (raw bytes and JSON), the ``--toxic`` parser, and the HTTP API of
``asyncfaults serve``, whose requests are built from the OpenAPI description
the server publishes at ``/openapi.json`` (so a path added to the API and not
described there is not fuzzed: ``test_every_route_is_described`` holds that).
Each input must give a result or an ``InvalidError`` (a 4xx from the API),
never another exception, a 500, or a hang.

In the suite each reader gets a few dozen examples (a few seconds in all);
``ASYNCFAULTS_SLOW=1`` runs the slow test below with many more
(``bench/fuzz.py`` does, and prints how long it took).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_asyncfaults import InvalidError, make_toxic
from pytest_asyncfaults._engine._core import FaultCore
from pytest_asyncfaults._scenario._inline import parse_inline_toxic
from pytest_asyncfaults._scenario._toml import (
    FAULT_KEYS,
    load_scenario,
    parse_scenario,
)
from pytest_asyncfaults._toxics import TOXIC_TYPES
from pytest_asyncfaults._toxiproxy._api import toxiproxy_api
from pytest_asyncfaults._toxiproxy._config import load_proxy_config

SCALE = 25 if os.environ.get("ASYNCFAULTS_SLOW") == "1" else 1
"""How many times the in-suite number of examples the slow run tries."""
REQUEST_BOUND = 5.0
"""No request may take longer than this (a hang is a failure, not a slow example)."""


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        database=None,  # nothing written to the working tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# -- values an attacker would try ------------------------------------------------------------

NASTY_INTS = st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, 10**400])
NASTY_FLOATS = st.sampled_from([0.5, -0.0, 1e300, float("inf"), float("-inf"), float("nan")])
NASTY_TEXT = st.sampled_from(
    ["", ".", "..", "a/b", "a\\b", "a\x00b", "x" * 5000, "é", "1" * 5000, "[::1", "0.0.0.0:0"]
)
PROTOCOL_TEXT = st.sampled_from(
    [
        "40001",
        "57P01",
        "4000",
        "40p01",
        "^INSERT INTO uploads",
        "(",
        "[a-",
        "(?i)select",
        "rcpt",
        "RCPT",
        "end_of_data",
        "greeting",
        "hold",
        "refuse",
        "a\r\nb",
        "'a,b'",
        '"',
    ]
)
"""What the protocol toxics' text attributes see: SQLSTATEs, regexes, SMTP commands."""
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    NASTY_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    NASTY_FLOATS,
    st.text(max_size=20),
    NASTY_TEXT,
    st.sampled_from([*TOXIC_TYPES, "upstream", "downstream", "1+", "2-4"]),
    PROTOCOL_TEXT,
)
ATTRIBUTE_NAMES = sorted(
    {name for stage in TOXIC_TYPES.values() for name in stage.attribute_names} | {"x"}
)
"""Every toxic's attributes (Toxiproxy's and the protocol toxics'), and one of none."""
JSON_LIKE = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def fault_tables() -> st.SearchStrategy[dict[str, Any]]:
    keyed = st.fixed_dictionaries(
        {},
        optional={
            **dict.fromkeys(FAULT_KEYS, JSON_LIKE),
            "proxy": st.one_of(st.just("db"), JSON_LIKE),
            "toxic": st.one_of(st.sampled_from(list(TOXIC_TYPES)), JSON_LIKE),
            "attributes": st.one_of(
                st.dictionaries(
                    st.sampled_from(ATTRIBUTE_NAMES),
                    st.one_of(NASTY_INTS, SCALARS, st.integers(0, 600), PROTOCOL_TEXT),
                    max_size=4,
                ),
                JSON_LIKE,
            ),
        },
    )
    return st.one_of(keyed, JSON_LIKE)


SCENARIO_DATA = st.fixed_dictionaries(
    {},
    optional={
        "description": st.one_of(st.text(max_size=30), JSON_LIKE),
        "faults": st.one_of(st.lists(fault_tables(), max_size=3), JSON_LIKE),
        "steps": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "at": st.one_of(NASTY_INTS, SCALARS),
                        "faults": st.lists(fault_tables(), max_size=2),
                    },
                ),
                max_size=3,
            ),
            JSON_LIKE,
        ),
        "expect": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "settle": st.one_of(NASTY_FLOATS, SCALARS),
                    "outcome": st.one_of(st.sampled_from(["failed", "completed", "any"]), SCALARS),
                    "exception": SCALARS,
                    "max_stall_ms": st.one_of(NASTY_INTS, SCALARS),
                    "logged": SCALARS,
                },
            ),
            JSON_LIKE,
        ),
    },
)


# -- the scenario reader ------------------------------------------------------------------------


def refusal(call: Callable[[], object]) -> str | None:
    """The message of the ``InvalidError`` ``call`` raises, or None; any other error escapes."""
    try:
        call()
    except InvalidError as exc:
        return str(exc)
    return None


def check_scenario_data(data: dict[str, Any]) -> None:
    message = refusal(lambda: parse_scenario(data, name="fuzz", source="fuzz.toml"))
    assert message is None or "\n" not in message, message


def check_scenario_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        message = refusal(lambda: load_scenario(path))
        assert message is None or message.startswith(str(path)), message


TOML_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "[[faults]]\n",
                'proxy = "db"\n',
                'toxic = "latency"\n',
                "attributes = { latency = 99999999999999999999 }\n",
                'toxic = "pg_error"\n',
                'toxic = "smtp_reply"\n',
                'attributes = { sqlstate = "40001", match = "(" }\n',
                'attributes = { command = "rcpt", code = 354, text = "a\\r\\nb" }\n',
                "start_after = -1\n",
                "[[steps]]\n",
                "at = 5\n",
                "[expect]\n",
                "settle = inf\n",
                "settle = nan\n",
                "x = [[[[[[[[\n",
                'connections = "1-"\n',
                "name = '..'\n",
                "\x00\n",
            ]
        ),
        max_size=12,
    ).map("".join),
)


@fuzz(60)
@given(SCENARIO_DATA)
def test_scenario_tables(data: dict[str, Any]) -> None:
    check_scenario_data(data)


@fuzz(40)
@given(TOML_TEXT)
def test_scenario_text(text: str) -> None:
    check_scenario_text(text.encode("utf-8", "replace").decode("utf-8"))


# -- the config reader ----------------------------------------------------------------------------

CONFIG_BYTES = st.one_of(
    st.binary(max_size=200),
    JSON_LIKE.map(lambda value: json.dumps(value, allow_nan=True).encode()),
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.one_of(st.just("a"), SCALARS),
                "listen": st.one_of(st.just("127.0.0.1:0"), SCALARS),
                "upstream": st.one_of(st.just("127.0.0.1:9"), SCALARS),
                "enabled": SCALARS,
            },
        ),
        max_size=3,
    ).map(lambda value: json.dumps(value, allow_nan=True).encode()),
)


def check_config(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "toxiproxy.json"
        path.write_bytes(raw)
        message = refusal(lambda: load_proxy_config(path))
        assert message is None or (message.startswith(str(path)) and "\n" not in message)


@fuzz(60)
@given(CONFIG_BYTES)
def test_config_files(raw: bytes) -> None:
    check_config(raw)


# -- --toxic -------------------------------------------------------------------------------------

INLINE = st.one_of(
    st.text(max_size=60),
    st.tuples(
        st.sampled_from(["db", "", "..", "x" * 200]),
        st.sampled_from([*TOXIC_TYPES, "nope", ""]),
        st.lists(
            st.tuples(
                st.sampled_from([*ATTRIBUTE_NAMES, "toxicity", "connections", "duration", "name"]),
                st.one_of(
                    st.sampled_from(["1", "-1", "1e400", "nan", "9" * 30, "9" * 5000, "..", ""]),
                    st.text(max_size=8),
                    PROTOCOL_TEXT,
                    st.sampled_from(["'^INSERT INTO t (a, b)'", "'unclosed", '"("', "451"]),
                ),
            ),
            max_size=3,
        ),
    ).map(lambda t: f"{t[0]}:{t[1]}:" + ",".join(f"{k}={v}" for k, v in t[2])),
)


def check_inline(text: str) -> None:
    message = refusal(lambda: parse_inline_toxic(text))
    assert message is None or "\n" not in message, message


@fuzz(80)
@given(INLINE)
def test_inline_toxics(text: str) -> None:
    check_inline(text)


# -- the HTTP API, from its OpenAPI description ---------------------------------------------------


def operations(document: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Every (method, path template, has a body) the description names."""
    out = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "patch", "delete"):
                out.append((method.upper(), path, "requestBody" in operation))
    return out


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values shaped by a schema most of the time, anything JSON some of the time."""
    kind = schema.get("type")
    if "oneOf" in schema or "anyOf" in schema:
        shaped: st.SearchStrategy[Any] = st.one_of(
            [from_schema(one) for one in schema.get("oneOf") or schema["anyOf"]]
        )
    elif "enum" in schema:
        shaped = st.sampled_from(schema["enum"])
    elif kind == "object":
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        shaped = st.fixed_dictionaries(
            {key: from_schema(properties[key]) for key in required},
            optional={
                key: from_schema(value) for key, value in properties.items() if key not in required
            },
        )
    elif kind == "array":
        shaped = st.lists(from_schema(schema.get("items", {})), max_size=3)
    elif kind == "integer":
        low, high = schema.get("minimum", 0), schema.get("maximum", 10_000)
        shaped = st.one_of(st.integers(low, min(high, low + 10_000)), NASTY_INTS)
    elif kind == "number":
        shaped = st.one_of(st.floats(0, 1), NASTY_FLOATS)
    elif kind == "boolean":
        shaped = st.booleans()
    elif kind == "string" and "pattern" in schema:  # a SQLSTATE, an SMTP reply's line
        shaped = st.from_regex(schema["pattern"], fullmatch=True)
    elif kind == "string" and schema.get("format") == "regex":
        shaped = st.one_of(PROTOCOL_TEXT, st.text(alphabet="^$.*+?()[]{}|\\a-z", max_size=8))
    elif kind == "string":
        shaped = st.one_of(
            st.sampled_from(["p", "held", "127.0.0.1:0", "127.0.0.1:9", "0.0.0.0:0", "[::]:0"]),
            NASTY_TEXT,
            st.text(max_size=10),
        )
    else:
        shaped = JSON_LIKE
    return st.one_of(shaped, shaped, shaped, JSON_LIKE)


def requests(document: dict[str, Any]) -> st.SearchStrategy[tuple[str, str, bytes | None]]:
    def one(operation: tuple[str, str, bool]) -> st.SearchStrategy[tuple[str, str, bytes | None]]:
        method, template, has_body = operation
        names = st.sampled_from(["p", "held", "nope", "..", "a%2Fb", "x" * 200, "%00"])
        item = document["paths"][template]
        schema = (
            item[method.lower()]["requestBody"]["content"]["application/json"]["schema"]
            if has_body
            else {}
        )
        body: st.SearchStrategy[bytes | None] = (
            st.one_of(
                from_schema(schema).map(lambda v: json.dumps(v, allow_nan=True).encode()),
                st.binary(max_size=40),
            )
            if has_body
            else st.none()
        )
        return st.tuples(
            st.just(method),
            st.tuples(names, names).map(
                lambda pair: template.replace("{proxy}", pair[0]).replace("{toxic}", pair[1])
            ),
            body,
        )

    return st.sampled_from(operations(document)).flatmap(one)


def run_api_fuzz(examples: int) -> None:
    with asyncio.Runner() as runner:

        async def start() -> tuple[FaultCore, httpx.AsyncClient, dict[str, Any]]:
            core = FaultCore(asyncio.get_running_loop(), seed=1)
            transport = httpx.ASGITransport(app=toxiproxy_api(core))
            client = httpx.AsyncClient(transport=transport, base_url="http://api")
            document = (await client.get("/openapi.json")).json()
            return core, client, document

        core, client, document = runner.run(start())

        async def send(method: str, path: str, body: bytes | None) -> None:
            # A known state for every example: the proxy p with its toxic "held".
            for name in list(await core.proxies()):
                await core.delete_proxy(name)
            await core.create_proxy("p", "127.0.0.1:9")
            await core.add_toxic("p", make_toxic("latency", name="held", attributes={"latency": 1}))
            async with asyncio.timeout(REQUEST_BOUND):
                response = await client.request(method, path, content=body)
            if response.status_code >= 500:
                # The one 500 Toxiproxy has: a port the proxy cannot bind (in use, say).
                assert "cannot listen" in response.json().get("error", ""), response.text
            if response.status_code >= 400:
                answer = response.json()
                assert answer["status"] == response.status_code, answer
                assert "\n" not in answer["error"].strip(), answer
                assert "Traceback" not in response.text

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(requests(document))
        def check(request: tuple[str, str, bytes | None]) -> None:
            runner.run(send(*request))

        try:
            check()
        finally:

            async def stop() -> None:
                await client.aclose()
                core.close()
                await asyncio.sleep(0)

            runner.run(stop())


def test_http_api() -> None:
    run_api_fuzz(150 * SCALE)


def test_every_route_is_described() -> None:
    """What the fuzzer does not know it cannot try: the description names every route."""
    document, served = asyncio.run(_described_and_served())
    assert served == {(method, path) for method, path, _ in operations(document)}


def test_every_toxic_type_and_its_attributes_are_described() -> None:
    """A new toxic's body is described per type, each attribute as its kind is checked: the
    fuzzer sends SQLSTATEs, SMTP commands and codes, not only whole numbers."""
    document, _ = asyncio.run(_described_and_served())
    assert ("GET", "/proxies/{proxy}/events") in {
        (method, path) for method, path, _ in operations(document)
    }
    body = document["paths"]["/proxies/{proxy}/toxics"]["post"]["requestBody"]
    described = {
        one["properties"]["type"]["enum"][0]: one["properties"]["attributes"]
        for one in body["content"]["application/json"]["schema"]["oneOf"]
    }
    assert list(described) == list(TOXIC_TYPES)
    for name, stage in TOXIC_TYPES.items():
        assert list(described[name]["properties"]) == list(stage.attribute_names), name
    assert described["pg_error"]["properties"]["sqlstate"]["pattern"] == "^(?:[0-9A-Z]{5})$"
    assert described["smtp_reply"]["properties"]["code"]["minimum"] == 200
    assert "rcpt" in described["smtp_cut"]["properties"]["after"]["enum"]
    assert described["latency"]["properties"]["latency"]["maximum"] == 2**63 - 1


async def _described_and_served() -> tuple[dict[str, Any], set[tuple[str, str]]]:
    core = FaultCore(asyncio.get_running_loop(), seed=1)
    api = toxiproxy_api(core)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    assert document["openapi"].startswith("3.")
    served = {
        (method, route.path)  # type: ignore[attr-defined]
        for route in api.routes
        for method in route.methods or ()  # type: ignore[attr-defined]
        if method != "HEAD"
    }
    return document, served


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ASYNCFAULTS_SLOW") != "1", reason="ASYNCFAULTS_SLOW=1 runs it")
def test_a_long_run_of_every_reader() -> None:
    """The same readers with 25 times the examples (bench/fuzz.py runs it and times it)."""
    started = time.monotonic()
    test_scenario_tables()
    test_scenario_text()
    test_config_files()
    test_inline_toxics()
    run_api_fuzz(150 * SCALE)
    print(f"fuzz: every reader, {SCALE}x the suite's examples, {time.monotonic() - started:.1f} s")
