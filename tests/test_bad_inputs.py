"""Bad input, through every door: one clear line each, and nothing left behind.

A table of what an attacker (or a typo) tries: huge integers, NaN and
infinity where a bound is meant, names that cannot be a URL path, addresses
that do not parse, files that never end, over the Python API, scenario files,
``--toxic``, ``serve``'s config file and HTTP API, the per-test settings, and
the command line. Each case asserts the class of the error and its one line
(the field, the value, what is allowed), then that no toxic, proxy,
listening socket or thread is left over from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from listening import listeners_of

from pytest_asyncfaults import (
    AlreadyExistsError,
    Engine,
    InvalidError,
    NotFoundError,
    ScenarioError,
    make_toxic,
)
from pytest_asyncfaults._cli._main import main
from pytest_asyncfaults._engine._core import FaultCore
from pytest_asyncfaults._scenario._inline import parse_inline_toxic
from pytest_asyncfaults._scenario._toml import load_scenario
from pytest_asyncfaults._settings import resolve
from pytest_asyncfaults._toxiproxy._api import toxiproxy_api
from pytest_asyncfaults._toxiproxy._config import load_proxy_config
from pytest_asyncfaults._values import BODY_MAX_BYTES

pytest_plugins = ["pytester"]

BIG = 10**400
INT64 = 2**63
RANGE = r"must be at most 9223372036854775807 \(Toxiproxy's 64-bit range\)"
NAME = r"expected a name of 1 to 128 letters, digits, '_', '-', '\.' and '~', other than"
ADDRESS = r'expected "host:port" with a port from 0 to 65535'
SECONDS_MAX = r"must be at most 604800 seconds \(a bound past that bounds nothing\)"
SQLSTATE = r"expected a SQLSTATE, 5 characters of 0-9 and A-Z \(e\.g\. 40001"
SMTP_CODE = r"expected an SMTP reply code from 200 to 599"
COMMANDS = r"expected one of 'greeting', 'ehlo', 'helo', 'starttls', 'auth', 'mail', 'rcpt'"
SWITCH = r"expected 0 \(close the connection\) or 1 \(reset it, TCP RST\)"


@dataclass(frozen=True)
class Case:
    """One bad input: what it runs, the error class it must raise, its message (a regex)."""

    run: Callable[..., Any]
    error: type[BaseException]
    message: str


def one_line(message: str, pattern: str) -> None:
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message
    assert len(message) < 1000, message[:300]
    assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


# -- what is left over ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with Engine(seed=1) as running:
        running.create_proxy("base", "127.0.0.1:9")
        yield running


@pytest.fixture
def nothing_left(engine: Engine) -> Iterator[None]:
    """After the case: the engine holds what it held, and no thread or listener is new."""
    threads = set(threading.enumerate())
    listeners = listeners_of({os.getpid()})
    proxies = engine.proxies()
    yield
    assert engine.proxies() == proxies, "a proxy or a toxic was left behind"
    assert set(threading.enumerate()) <= threads, "a thread was left behind"
    assert listeners_of({os.getpid()}) <= listeners, "a listening socket was left behind"


# -- the Python API ----------------------------------------------------------------------------


def toxic(toxic_type: str, **kwargs: Any) -> Callable[[Engine], object]:
    return lambda engine: engine.add_toxic("base", make_toxic(toxic_type, **kwargs))


def proxy(name: str = "x", upstream: Any = "127.0.0.1:9", **kwargs: Any) -> Callable[..., object]:
    return lambda engine: engine.create_proxy(name, upstream, **kwargs)


PYTHON: dict[str, Case] = {
    "latency 10**400": Case(toxic("latency", attributes={"latency": BIG}), InvalidError, RANGE),
    "latency 2**63": Case(toxic("latency", attributes={"latency": INT64}), InvalidError, RANGE),
    "latency 10**30": Case(
        toxic("latency", attributes={"latency": 10**30}), InvalidError, r"^latency\.latency="
    ),
    "latency -1": Case(toxic("latency", attributes={"latency": -1}), InvalidError, "must be >= 0"),
    "latency 1.5": Case(
        toxic("latency", attributes={"latency": 1.5}), InvalidError, "expected an integer >= 0"
    ),
    "latency '5'": Case(
        toxic("latency", attributes={"latency": "5"}), InvalidError, "expected an integer"
    ),
    "latency True": Case(
        toxic("latency", attributes={"latency": True}), InvalidError, "expected an integer"
    ),
    "latency nan": Case(
        toxic("latency", attributes={"latency": float("nan")}), InvalidError, "expected an integer"
    ),
    "jitter 10**30": Case(toxic("latency", attributes={"jitter": 10**30}), InvalidError, RANGE),
    "duration 10**400": Case(
        toxic("latency", duration=BIG), InvalidError, rf"^duration=<an integer of .*{RANGE}"
    ),
    "start_after 10**400": Case(toxic("latency", start_after=BIG), InvalidError, RANGE),
    "start_after -1": Case(toxic("latency", start_after=-1), InvalidError, "must be >= 0"),
    "duration 1.0": Case(toxic("latency", duration=1.0), InvalidError, "expected an integer"),
    "slicer delay 10**400": Case(
        toxic("slicer", attributes={"average_size": 10, "delay": BIG}), InvalidError, RANGE
    ),
    "reset_peer 2**63": Case(
        toxic("reset_peer", attributes={"timeout": INT64}), InvalidError, RANGE
    ),
    "slow_close 10**400": Case(toxic("slow_close", attributes={"delay": BIG}), InvalidError, RANGE),
    "bandwidth 2**64": Case(toxic("bandwidth", attributes={"rate": 2**64}), InvalidError, RANGE),
    "limit_data -5": Case(
        toxic("limit_data", attributes={"bytes": -5}), InvalidError, "must be >= 0"
    ),
    "timeout '0'": Case(
        toxic("timeout", attributes={"timeout": "0"}), InvalidError, "expected an integer"
    ),
    "slicer average 0": Case(
        toxic("slicer", attributes={"average_size": 0}), InvalidError, "must be >= 1"
    ),
    "attributes a list": Case(
        toxic("latency", attributes=[1]), InvalidError, "expected a mapping of latency, jitter"
    ),
    "attribute unknown, long": Case(
        toxic("latency", attributes={"x" * 10_000: 1}),
        InvalidError,
        r"\(10000 characters\) is not valid: latency takes latency, jitter",
    ),
    "pg_error no sqlstate": Case(
        toxic("pg_error"), InvalidError, rf"^pg_error\.sqlstate='' is not valid: {SQLSTATE}"
    ),
    "pg_error sqlstate lower case": Case(
        toxic("pg_error", attributes={"sqlstate": "40p01"}), InvalidError, SQLSTATE
    ),
    "pg_error sqlstate 10**400": Case(
        toxic("pg_error", attributes={"sqlstate": BIG}),
        InvalidError,
        rf"^pg_error\.sqlstate=<an integer of about 401 digits> is not valid: {SQLSTATE}",
    ),
    "pg_error match (": Case(
        toxic("pg_error", attributes={"sqlstate": "40001", "match": "("}),
        InvalidError,
        r"^pg_error\.match='\(' is not valid: the regex does not compile \(missing \)",
    ),
    "pg_error match 10 MB": Case(
        toxic("pg_error", attributes={"sqlstate": "40001", "match": "a" * 10_000_000}),
        InvalidError,
        r"\(10000000 characters\) is not valid: .* at most 4096 characters$",
    ),
    "pg_error message NUL": Case(
        toxic("pg_error", attributes={"sqlstate": "40001", "message": "a\x00b"}),
        InvalidError,
        "expected an error message without NUL",
    ),
    "pg_login action drop": Case(
        toxic("pg_login", attributes={"action": "drop"}),
        InvalidError,
        r"^pg_login\.action='drop' is not valid: expected one of 'hold', 'delay', 'refuse'$",
    ),
    "pg_login delay without its ms": Case(
        toxic("pg_login", attributes={"action": "delay"}),
        InvalidError,
        r"^pg_login\.delay=0 is not valid: with action='delay', give the delay in ms",
    ),
    "pg_login sqlstate 5300": Case(
        toxic("pg_login", attributes={"action": "refuse", "sqlstate": "5300"}),
        InvalidError,
        SQLSTATE + r".*, or '' for 53300 too_many_connections$",
    ),
    "pg_cut reset 2": Case(toxic("pg_cut", attributes={"reset": 2}), InvalidError, SWITCH),
    "pg_cut reset True": Case(toxic("pg_cut", attributes={"reset": True}), InvalidError, SWITCH),
    "pg_cut after_rows 2**63": Case(
        toxic("pg_cut", attributes={"after_rows": INT64}), InvalidError, RANGE
    ),
    "pg_delay delay -1": Case(
        toxic("pg_delay", attributes={"delay": -1}), InvalidError, "must be >= 0"
    ),
    "smtp_reply no command": Case(
        toxic("smtp_reply", attributes={"code": 451}),
        InvalidError,
        rf"^smtp_reply\.command='' is not valid: {COMMANDS}",
    ),
    "smtp_reply no code": Case(
        toxic("smtp_reply", attributes={"command": "rcpt"}),
        InvalidError,
        rf"^smtp_reply\.code=0 is not valid: {SMTP_CODE}",
    ),
    "smtp_reply code 600": Case(
        toxic("smtp_reply", attributes={"command": "rcpt", "code": 600}), InvalidError, SMTP_CODE
    ),
    "smtp_reply code 354": Case(
        toxic("smtp_reply", attributes={"command": "data", "code": 354}),
        InvalidError,
        r"^smtp_reply\.code=354 is not valid: a 3xx reply asks the client for more",
    ),
    "smtp_reply starttls 220": Case(
        toxic("smtp_reply", attributes={"command": "starttls", "code": 220}),
        InvalidError,
        r"with command='starttls', the client would start TLS",
    ),
    "smtp_reply text CRLF": Case(
        toxic("smtp_reply", attributes={"command": "rcpt", "code": 550, "text": "a\r\nb"}),
        InvalidError,
        r"^smtp_reply\.text='a\\r\\nb' is not valid: expected one line of text",
    ),
    "smtp_reply command RCPT": Case(
        toxic("smtp_reply", attributes={"command": "RCPT", "code": 550}), InvalidError, COMMANDS
    ),
    "smtp_delay command None": Case(
        toxic("smtp_delay", attributes={"command": None}), InvalidError, COMMANDS
    ),
    "smtp_cut after body": Case(
        toxic("smtp_cut", attributes={"after": "body"}),
        InvalidError,
        rf"^smtp_cut\.after='body' is not valid: {COMMANDS}",
    ),
    "toxicity nan": Case(toxic("noop", toxicity=float("nan")), InvalidError, "0.0 to 1.0"),
    "toxicity inf": Case(toxic("noop", toxicity=float("inf")), InvalidError, "0.0 to 1.0"),
    "toxicity 1.5": Case(toxic("noop", toxicity=1.5), InvalidError, "0.0 to 1.0"),
    "toxicity 10**400": Case(toxic("noop", toxicity=BIG), InvalidError, "0.0 to 1.0"),
    "stream sideways": Case(toxic("noop", stream="sideways"), InvalidError, "'upstream'"),
    "stream None": Case(toxic("noop", stream=None), InvalidError, "'downstream'"),
    "type nope": Case(toxic("nope"), InvalidError, "is not a toxic type: expected one of"),
    "type empty": Case(toxic(""), InvalidError, "is not a toxic type"),
    "toxic name ..": Case(toxic("noop", name=".."), InvalidError, NAME),
    "toxic name .": Case(toxic("noop", name="."), InvalidError, NAME),
    "toxic name slash": Case(toxic("noop", name="a/b"), InvalidError, NAME),
    "toxic name backslash": Case(toxic("noop", name="a\\b"), InvalidError, NAME),
    "toxic name NUL": Case(toxic("noop", name="a\x00b"), InvalidError, NAME),
    "toxic name space": Case(toxic("noop", name="a b"), InvalidError, NAME),
    "toxic name 129": Case(toxic("noop", name="a" * 129), InvalidError, NAME),
    "toxic name 10 MB": Case(
        toxic("noop", name="n" * 10_000_000), InvalidError, r"\(10000000 characters\)"
    ),
    "toxic name unicode": Case(toxic("noop", name="é"), InvalidError, NAME),
    "connections 0": Case(toxic("noop", connections="0"), InvalidError, "connection number"),
    "connections 5000 digits": Case(
        toxic("noop", connections="1" * 5000), InvalidError, r"\(5000 characters\)"
    ),
    "connections 10**400": Case(
        toxic("noop", connections=BIG), InvalidError, r"^connections=<an integer"
    ),
    "connections 2**63": Case(toxic("noop", connections=str(INT64)), InvalidError, "connection"),
    "connections 3-1": Case(toxic("noop", connections="3-1"), InvalidError, "connection"),
    "connections 1.5": Case(toxic("noop", connections=1.5), InvalidError, "connection"),
    "proxy name ..": Case(proxy(".."), InvalidError, NAME),
    "proxy name NUL": Case(proxy("a\x00b"), InvalidError, NAME),
    "proxy name backslash": Case(proxy("a\\b"), InvalidError, NAME),
    "proxy name 10 MB": Case(proxy("p" * 10_000_000), InvalidError, r"\(10000000 characters\)"),
    "proxy exists": Case(proxy("base"), AlreadyExistsError, "^proxy 'base' already exists$"),
    "upstream no port": Case(proxy(upstream="nohost"), InvalidError, ADDRESS),
    "upstream port 99999": Case(proxy(upstream="127.0.0.1:99999"), InvalidError, ADDRESS),
    "upstream port 5000 digits": Case(
        proxy(upstream="127.0.0.1:" + "9" * 5000), InvalidError, ADDRESS
    ),
    "upstream [::1": Case(proxy(upstream="[::1"), InvalidError, ADDRESS),
    "upstream ::1:80": Case(proxy(upstream="::1:80"), InvalidError, ADDRESS),
    "upstream port -1": Case(proxy(upstream="host:-1"), InvalidError, ADDRESS),
    "upstream space": Case(proxy(upstream="a b:80"), InvalidError, ADDRESS),
    "upstream not text": Case(proxy(upstream=5), InvalidError, ADDRESS),
    "upstream unicode digits": Case(proxy(upstream="127.0.0.1:٨٠"), InvalidError, ADDRESS),
    "listen 10.1.2.3": Case(
        proxy(listen="10.1.2.3:0"), InvalidError, "is not a loopback address.*--allow-remote"
    ),
    "listen a host name": Case(
        proxy(listen="example.com:0"), InvalidError, "is not a loopback address"
    ),
    "listen [::1": Case(proxy(listen="[::1"), InvalidError, ADDRESS),
    "toxic on no proxy": Case(
        lambda engine: engine.add_toxic("nope", make_toxic("noop")),
        NotFoundError,
        "^proxy 'nope' not found$",
    ),
    "Engine seed text": Case(
        lambda engine: Engine(seed="x"),  # type: ignore[arg-type]
        InvalidError,
        "expected an integer",
    ),
}


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize("case", list(PYTHON))
def test_python_api(engine: Engine, case: str) -> None:
    expected = PYTHON[case]
    with pytest.raises(expected.error) as raised:
        expected.run(engine)
    assert type(raised.value) is expected.error
    one_line(str(raised.value), expected.message)


def test_a_toxic_the_engine_cannot_run_is_not_half_added(engine: Engine) -> None:
    """Built by hand, past make_toxic, a toxic is still checked by the engine, all or nothing."""
    from dataclasses import replace

    spec = replace(make_toxic("latency"), attributes={"latency": BIG})
    with pytest.raises(InvalidError, match=RANGE):
        engine.add_toxic("base", spec)
    assert engine.toxics("base") == ()


# -- scenario files ------------------------------------------------------------------------------

FAULT = '[[faults]]\nproxy = "db"\ntoxic = "latency"\n'

SCENARIOS: dict[str, tuple[str | bytes, str]] = {
    "steps.at 10**30": ("[[steps]]\nat = 1" + "0" * 30 + "\n", r"steps\[0\]\.at=.*" + RANGE),
    "attribute 10**22": (
        FAULT + "attributes = { latency = 10000000000000000000000 }\n",
        r"faults\[0\]\.attributes\.latency=.*" + RANGE,
    ),
    "duration 10**20": (FAULT + "duration = 100000000000000000000\n", RANGE),
    "start_after 2**63": (FAULT + f"start_after = {INT64}\n", RANGE),
    "step plus start_after past int64": (
        f"[[steps]]\nat = {INT64 - 10}\n"
        f'faults = [{{ proxy = "db", toxic = "noop", start_after = 100 }}]\n',
        r"steps\[0\]\.faults\[0\]: start_after=.*" + RANGE,
    ),
    "settle 1e300": ("[expect]\nsettle = 1e300\n", r"expect\.settle=1e\+300 .*" + SECONDS_MAX),
    "settle inf": ("[expect]\nsettle = inf\n", SECONDS_MAX),
    "settle nan": ("[expect]\nsettle = nan\n", "expected a number of seconds > 0"),
    "settle 0": ("[expect]\nsettle = 0\n", "expected a number of seconds > 0"),
    "settle text": ('[expect]\nsettle = "5"\n', "expected a number of seconds > 0"),
    "max_stall_ms 10**30": ("[expect]\nmax_stall_ms = 1" + "0" * 30 + "\n", RANGE),
    "connections 5000 digits": (
        FAULT + f'connections = "{"1" * 5000}"\n',
        r"connections='1111.*\(5000 characters\)",
    ),
    "connections 0": (FAULT + "connections = 0\n", "connections=0 is not valid: must be >= 1"),
    "toxic name ..": (FAULT + 'name = ".."\n', NAME),
    "toxic name slash": (FAULT + 'name = "a/b"\n', NAME),
    "proxy name long": ('[[faults]]\nproxy = "' + "p" * 500 + '"\ntoxic = "noop"\n', "a proxy"),
    "toxicity nan": (FAULT + "toxicity = nan\n", "0.0 to 1.0"),
    "toxicity inf": (FAULT + "toxicity = inf\n", "0.0 to 1.0"),
    "5000 nested arrays": ("x = " + "[" * 5000, "is not valid TOML"),
    "2 MB file": ("description = '" + "d" * 2_000_000 + "'\n", "too large: the limit is 1048576"),
    "empty file": ("", "the scenario is empty"),
    "not UTF-8": (b"description = '\xff\xfe'\n", "cannot be read"),
    "NUL in description": ('description = "a\\u0000b"\n', r"description=.* is not valid"),
    "unknown key": ("faults_ = []\n", "is not a key of a scenario"),
    "a key with a newline": ('[[faults]]\n"\\n" = 1\n', r"faults\[0\]\.'\\n' is not a key"),
    "unknown key, long": ("x" * 5000 + " = 1\n", r"\(5000 characters\) is not a key"),
    "toxic nope": ('[[faults]]\nproxy = "db"\ntoxic = "nope"\n', "expected one of latency"),
    "stream sideways": (FAULT + 'stream = "sideways"\n', "'upstream'"),
    "exception name long": (
        '[expect]\noutcome = "failed"\nexception = "' + "E" * 300 + '"\n',
        "an exception type's name",
    ),
    "steps out of order": ("[[steps]]\nat = 5\n[[steps]]\nat = 5\n", "after the step before"),
    "attribute text": (FAULT + 'attributes = { latency = "5" }\n', "expected a whole number"),
    "pg_error sqlstate a number": (
        '[[faults]]\nproxy = "db"\ntoxic = "pg_error"\nattributes = { sqlstate = 40001 }\n',
        rf"faults\[0\]\.attributes\.sqlstate=40001 is not valid: {SQLSTATE}.*"
        r"\(pg_error's sqlstate\)$",
    ),
    "pg_error match (": (
        '[[faults]]\nproxy = "db"\ntoxic = "pg_error"\n'
        'attributes = { sqlstate = "40001", match = "(" }\n',
        r"faults\[0\]\.attributes\.match='\(' is not valid: the regex does not compile",
    ),
    "smtp_reply code 354": (
        '[[faults]]\nproxy = "mail"\ntoxic = "smtp_reply"\n'
        'attributes = { command = "data", code = 354 }\n',
        r"faults\[0\]: smtp_reply\.code=354 is not valid: a 3xx reply",
    ),
    "smtp_cut reset a word": (
        '[[faults]]\nproxy = "mail"\ntoxic = "smtp_cut"\nattributes = { reset = "yes" }\n',
        r"faults\[0\]\.attributes\.reset='yes' is not valid: expected 0 \(close the connection\)",
    ),
}


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize("case", list(SCENARIOS))
def test_scenario_files(tmp_path: Path, case: str) -> None:
    text, message = SCENARIOS[case]
    path = tmp_path / "bad.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    one_line(str(raised.value), f"^{re.escape(str(path))}: .*{message}")


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "it is a FIFO, expected a regular file"),
        ("dev-zero", "it is a device, expected a regular file"),
        ("directory", "it is a directory, expected a regular file"),
        ("missing", "cannot read it: No such file or directory"),
    ],
)
def test_special_files_are_refused_not_read(tmp_path: Path, kind: str, message: str) -> None:
    """A FIFO would block the reader forever, /dev/zero never ends: neither is opened to read."""
    path = special_file(tmp_path, kind)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    one_line(str(raised.value), re.escape(message))
    with pytest.raises(InvalidError) as config_raised:
        load_proxy_config(path)
    one_line(str(config_raised.value), re.escape(message))


def special_file(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        path = tmp_path / "fifo.toml"
        os.mkfifo(path)
        return path
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "directory":
        (tmp_path / "dir.toml").mkdir()
        return tmp_path / "dir.toml"
    return tmp_path / "missing.toml"


# -- --toxic ---------------------------------------------------------------------------------------

INLINE: dict[str, str] = {
    "p:latency:latency=" + "9" * 5000: r"latency=.*is not valid: expected a whole number",
    "p:latency:latency=99999999999999999999": RANGE,
    "p:latency:latency=1e400": "expected a whole number",
    "p:latency:duration=1" + "0" * 30: RANGE,
    "p:latency:toxicity=nan": "0.0 to 1.0",
    "p:latency:name=..": NAME,
    "p:latency:connections=0": "connections=0 is not valid: must be >= 1",
    "p:nope": "expected one of latency",
    "p": r"expected proxy:toxic\[:key=value,...\]",
    ":latency": r"expected proxy:toxic",
    "p:latency:foo=1": "expected latency's attributes",
    "p:latency:latency": "expected key=value",
    "p:latency:stream=sideways": "'upstream'",
    "p:latency:latency=٣": "expected a whole number",
    "p:pg_error:sqlstate=4000": rf"^--toxic=.*: .*\.sqlstate='4000' is not valid: {SQLSTATE}",
    "p:pg_error:sqlstate=40001,match='(a,b'": "the regex does not compile",
    "p:pg_error:sqlstate=40001,message='a": r"is not valid: a quote \('\) is not closed$",
    "p:smtp_reply:command=rcpt,code=3xx": SMTP_CODE,
    "p:smtp_cut:after=data,reset=2": SWITCH,
}


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize("text", list(INLINE))
def test_inline_toxics(text: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_inline_toxic(text)
    one_line(str(raised.value), INLINE[text])


# -- serve --config -------------------------------------------------------------------------------

ENTRY = {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}

CONFIGS: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{not json", "not valid JSON"),
    "an object": (b"{}", "expected a JSON array"),
    "missing name": (json.dumps([{"listen": "127.0.0.1:0", "upstream": "h:1"}]).encode(), "name"),
    "unknown key": (json.dumps([{**ENTRY, "enabeld": True}]).encode(), "unknown key 'enabeld'"),
    "name ..": (json.dumps([{**ENTRY, "name": ".."}]).encode(), NAME),
    "name 10 MB": (
        json.dumps([{**ENTRY, "name": "n" * 10_000}]).encode(),
        r"\(10000 characters\)",
    ),
    "listen [::1": (json.dumps([{**ENTRY, "listen": "[::1"}]).encode(), ADDRESS),
    "upstream 99999": (json.dumps([{**ENTRY, "upstream": "h:99999"}]).encode(), ADDRESS),
    "enabled yes": (json.dumps([{**ENTRY, "enabled": "yes"}]).encode(), "true or false"),
    "names twice": (json.dumps([ENTRY, ENTRY]).encode(), "entry 1 has the same name"),
    "NaN": (b'[{"name": "a", "listen": NaN}]', "not valid JSON"),
    "2**64": (b'[{"name": "a", "x": 18446744073709551616}]', "out of range for a 64-bit"),
    "5000 digits": (b'[{"name": "a", "x": 1' + b"0" * 5000 + b"}]", "not valid JSON"),
    "100000 nested": (b"[" * 100_000, "not valid JSON"),
    "2 MB": (b"[" + b" " * 2_000_000 + b"]", "too large: the limit is 1048576 bytes"),
}


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize("case", list(CONFIGS))
def test_config_files(tmp_path: Path, case: str) -> None:
    raw, message = CONFIGS[case]
    path = tmp_path / "toxiproxy.json"
    path.write_bytes(raw)
    with pytest.raises(InvalidError) as raised:
        load_proxy_config(path)
    one_line(str(raised.value), f"^{re.escape(str(path))}: .*{message}")


# -- the per-test settings -----------------------------------------------------------------------

SETTINGS: dict[str, tuple[dict[str, object], dict[str, object], dict[str, object], str]] = {
    # case: (marker keywords, flags, ini keys, message)
    "startup_timeout 10**400": (
        {"startup_timeout": BIG},
        {},
        {},
        r"^@pytest\.mark\.asyncfaults\(startup_timeout=<an integer .*" + SECONDS_MAX,
    ),
    "settle 1e300": ({"settle": 1e300}, {}, {}, SECONDS_MAX),
    "settle inf": ({"settle": float("inf")}, {}, {}, SECONDS_MAX),
    "settle nan": ({"settle": float("nan")}, {}, {}, "expected a number of seconds >= 0"),
    "settle -1": ({"settle": -1}, {}, {}, r"settle=-1\) is not valid: expected a number"),
    "settle text": ({"settle": "abc"}, {}, {}, "expected a number of seconds >= 0"),
    "settle True": ({"settle": True}, {}, {}, "expected a number of seconds >= 0"),
    "timeout 0": ({"timeout": 0}, {}, {}, "expected a number of seconds > 0"),
    "threshold 0": ({"blocked_loop_threshold": 0}, {}, {}, "seconds > 0"),
    "leaks maybe": ({"leaks": "maybe"}, {}, {}, "expected 'fail', 'warn' or 'off'"),
    "library_tasks": ({"library_tasks": "x"}, {}, {}, "expected 'ignore' or 'watch'"),
    "allow numbers": ({"allow": [1]}, {}, {}, "expected task-name patterns"),
    "allow NUL": ({"allow": ["a\x00"]}, {}, {}, "expected task-name patterns"),
    "unknown keyword": ({"setle": 1}, {}, {}, r"asyncfaults\(setle=\.\.\.\) is not a setting"),
    "flag empty": ({}, {"settle": ""}, {}, r"^--asyncfaults-settle='' is not valid"),
    "flag threshold x": (
        {},
        {"blocked_loop_threshold": "x"},
        {},
        r"^--asyncfaults-blocked-loop-threshold='x' is not valid: expected a number of "
        r"seconds > 0$",
    ),
    "flag timeout inf": ({}, {"timeout": "inf"}, {}, SECONDS_MAX),
    "flag leak_grace 1e400": ({}, {"leak_grace": "1e400"}, {}, SECONDS_MAX),
    "flag settle 64 chars": ({}, {"settle": "1" * 65}, {}, r"expected a number of seconds"),
    "flag leaks": ({}, {"leaks": "FAIL"}, {}, r"^--asyncfaults-leaks='FAIL'"),
    "ini settle abc": ({}, {}, {"settle": "abc"}, r"^asyncfaults_settle='abc' is not valid"),
    "ini timeout -1": ({}, {}, {"timeout": "-1"}, r"^asyncfaults_timeout='-1'"),
    "ini shutdown 1e999": ({}, {}, {"shutdown_timeout": "1e999"}, SECONDS_MAX),
}


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize("case", list(SETTINGS))
def test_settings(case: str) -> None:
    marker, flags, ini, message = SETTINGS[case]
    with pytest.raises(InvalidError) as raised:
        resolve(marker, lambda name: flags.get(name), lambda name: ini.get(name))
    one_line(str(raised.value), message)


def test_positional_marker_arguments_are_refused() -> None:
    def nothing(name: str) -> object:
        return None

    with pytest.raises(InvalidError) as raised:
        resolve({}, nothing, nothing, marker_args=(5,))
    one_line(str(raised.value), r"^@pytest\.mark\.asyncfaults\(5\) is not valid: expected settings")


# -- the HTTP API of serve ---------------------------------------------------------------------

LATENCY = {"type": "latency", "name": "held", "attributes": {"latency": 1}}

HTTP: dict[str, tuple[str, str, object, int, str]] = {
    # case: (method, path, body (bytes: raw), status, message: Toxiproxy's words or ours)
    "create: not JSON": ("POST", "/proxies", b"{x", 400, "^bad request body: not valid JSON"),
    "create: empty": ("POST", "/proxies", b"", 400, "^bad request body: it is empty"),
    "create: an array": ("POST", "/proxies", [], 400, "expected a JSON object"),
    "create: no name": (
        "POST",
        "/proxies",
        {"upstream": "h:1"},
        400,
        "^missing required field: name$",
    ),
    "create: no upstream": (
        "POST",
        "/proxies",
        {"name": "n"},
        400,
        "^missing required field: upstream$",
    ),
    "create: name ..": ("POST", "/proxies", {"name": "..", "upstream": "h:1"}, 400, NAME),
    "create: name backslash": ("POST", "/proxies", {"name": "a\\b", "upstream": "h:1"}, 400, NAME),
    "create: name NUL": ("POST", "/proxies", {"name": "a\x00", "upstream": "h:1"}, 400, NAME),
    "create: name 10 kB": (
        "POST",
        "/proxies",
        {"name": "n" * 10_000, "upstream": "h:1"},
        400,
        "10000 characters",
    ),
    "create: upstream x": ("POST", "/proxies", {"name": "n", "upstream": "x"}, 400, ADDRESS),
    "create: upstream 99999": (
        "POST",
        "/proxies",
        {"name": "n", "upstream": "h:99999"},
        400,
        ADDRESS,
    ),
    "create: listen 10.0.0.1": (
        "POST",
        "/proxies",
        {"name": "n", "upstream": "h:1", "listen": "10.0.0.1:0"},
        400,
        "not a loopback address.*--allow-remote",
    ),
    "create: listen [::1": (
        "POST",
        "/proxies",
        {"name": "n", "upstream": "h:1", "listen": "[::1"},
        400,
        ADDRESS,
    ),
    "create: enabled yes": (
        "POST",
        "/proxies",
        {"name": "n", "upstream": "h:1", "enabled": "yes"},
        400,
        "true or false",
    ),
    "create: exists": (
        "POST",
        "/proxies",
        {"name": "p", "upstream": "h:1"},
        409,
        "^proxy already exists$",
    ),
    "create: NaN": ("POST", "/proxies", b'{"name": "n", "upstream": NaN}', 400, "not valid JSON"),
    "create: 2**64": ("POST", "/proxies", b'{"name": 18446744073709551616}', 400, "64-bit"),
    "create: a key with a newline": (
        "POST",
        "/proxies",
        b'{"name": "p", "upstream": {"\\n": 9223372036854775808}}',
        400,
        r"upstream\.'\\n'=9223372036854775808 is not valid: out of range",
    ),
    "create: 5000 digits": ("POST", "/proxies", b'{"name": 1' + b"0" * 5000 + b"}", 400, "JSON"),
    "create: nested": ("POST", "/proxies", b"[" * 100_000, 400, "not valid JSON"),
    "create: 2 MB": ("POST", "/proxies", b" " * (BODY_MAX_BYTES + 1), 413, "larger than 1048576"),
    "toxic: type nope": (
        "POST",
        "/proxies/p/toxics",
        {"type": "nope"},
        400,
        "^invalid toxic type$",
    ),
    "toxic: no type": ("POST", "/proxies/p/toxics", {}, 400, "^invalid toxic type$"),
    "toxic: stream": (
        "POST",
        "/proxies/p/toxics",
        {"type": "noop", "stream": "sideways"},
        400,
        "^stream was invalid, can be either upstream or downstream$",
    ),
    "toxic: exists": ("POST", "/proxies/p/toxics", {**LATENCY}, 409, "^toxic already exists$"),
    "toxic: latency 2**63": (
        "POST",
        "/proxies/p/toxics",
        {"type": "latency", "attributes": {"latency": INT64}},
        400,
        "64-bit",
    ),
    "toxic: latency 2**63-1+0.5": (
        "POST",
        "/proxies/p/toxics",
        {"type": "latency", "attributes": {"latency": 1e300}},
        400,
        "expected an integer",
    ),
    "toxic: latency -1": (
        "POST",
        "/proxies/p/toxics",
        {"type": "latency", "attributes": {"latency": -1}},
        400,
        "must be >= 0",
    ),
    "toxic: toxicity 2": (
        "POST",
        "/proxies/p/toxics",
        {"type": "noop", "toxicity": 2},
        400,
        "0.0 to 1.0",
    ),
    "toxic: toxicity 1e999": (
        "POST",
        "/proxies/p/toxics",
        b'{"type": "noop", "toxicity": 1e999}',
        400,
        "0.0 to 1.0",
    ),
    "toxic: name ..": ("POST", "/proxies/p/toxics", {"type": "noop", "name": ".."}, 400, NAME),
    "toxic: connections 5000": (
        "POST",
        "/proxies/p/toxics",
        {"type": "noop", "connections": "1" * 5000},
        400,
        "5000 characters",
    ),
    "toxic: duration -1": (
        "POST",
        "/proxies/p/toxics",
        {"type": "noop", "duration": -1},
        400,
        ">= 0",
    ),
    "toxic: start_after 2**63-1 ms": (
        "POST",
        "/proxies/p/toxics",
        {"type": "noop", "start_after": "x"},
        400,
        "expected an integer",
    ),
    "toxic: pg_error sqlstate": (
        "POST",
        "/proxies/p/toxics",
        {"type": "pg_error", "attributes": {"sqlstate": "4000"}},
        400,
        r"^pg_error\.sqlstate='4000' is not valid: " + SQLSTATE,
    ),
    "toxic: pg_hang match": (
        "POST",
        "/proxies/p/toxics",
        {"type": "pg_hang", "attributes": {"match": "[a-"}},
        400,
        "the regex does not compile",
    ),
    "toxic: smtp_reply code 600": (
        "POST",
        "/proxies/p/toxics",
        {"type": "smtp_reply", "attributes": {"command": "rcpt", "code": 600}},
        400,
        SMTP_CODE,
    ),
    "toxic: smtp_delay command": (
        "POST",
        "/proxies/p/toxics",
        {"type": "smtp_delay", "attributes": {"command": ["mail"], "delay": 5}},
        400,
        COMMANDS,
    ),
    "toxic: attributes list": (
        "POST",
        "/proxies/p/toxics",
        {"type": "latency", "attributes": [1]},
        400,
        "mapping",
    ),
    "toxic: no such proxy": (
        "POST",
        "/proxies/nope/toxics",
        {"type": "noop"},
        404,
        "^proxy not found$",
    ),
    "show: no such proxy": ("GET", "/proxies/nope", None, 404, "^proxy not found$"),
    "show: no such toxic": ("GET", "/proxies/p/toxics/nope", None, 404, "^toxic not found$"),
    "delete: no such toxic": ("DELETE", "/proxies/p/toxics/nope", None, 404, "^toxic not found$"),
    "update proxy: listen": ("PATCH", "/proxies/p", {"listen": "[::1"}, 400, ADDRESS),
    "update proxy: enabled": ("PATCH", "/proxies/p", {"enabled": "no"}, 400, "true or false"),
    "update proxy: listen remote": (
        "PATCH",
        "/proxies/p",
        {"listen": "192.168.1.1:0"},
        400,
        "not a loopback",
    ),
    "update toxic: 10**30": (
        "PATCH",
        "/proxies/p/toxics/held",
        {"attributes": {"latency": 10**30}},
        400,
        "64-bit",
    ),
    "update toxic: toxicity": (
        "PATCH",
        "/proxies/p/toxics/held",
        {"toxicity": 5},
        400,
        "0.0 to 1.0",
    ),
    "update toxic: duration": (
        "PATCH",
        "/proxies/p/toxics/held",
        {"duration": 5},
        400,
        "cannot be changed",
    ),
    "populate: no upstream": (
        "POST",
        "/populate",
        [{"name": "a"}],
        400,
        "^missing required field: upstream at proxy 1$",
    ),
    "populate: names twice": (
        "POST",
        "/populate",
        [{"name": "a", "upstream": "h:1"}] * 2,
        400,
        "has the same name",
    ),
    "populate: remote listen": (
        "POST",
        "/populate",
        [{"name": "a", "upstream": "h:1"}, {"name": "b", "upstream": "h:1", "listen": "1.2.3.4:0"}],
        400,
        "not a loopback",
    ),
    "populate: an object": ("POST", "/populate", {}, 400, "expected a JSON array"),
}


@pytest_asyncio.fixture
async def api() -> Any:
    core = FaultCore(asyncio.get_running_loop(), seed=1)
    await core.create_proxy("p", "127.0.0.1:9")
    await core.add_toxic("p", make_toxic("latency", name="held", attributes={"latency": 1}))
    transport = httpx.ASGITransport(app=toxiproxy_api(core))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        before = await core.proxies()
        yield client
        assert await core.proxies() == before, "a proxy or a toxic was left behind"
    core.close()
    await asyncio.sleep(0)


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(HTTP))
async def test_http_api(api: httpx.AsyncClient, case: str) -> None:
    method, path, body, status, message = HTTP[case]
    listeners = listeners_of({os.getpid()})
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
    response = await api.request(method, path, content=content)
    assert response.status_code == status, response.text[:300]
    answer = response.json()
    assert answer["status"] == status
    words = answer["error"]
    one_line(words, message if "detail" not in answer else ".")
    if "detail" in answer:  # Toxiproxy's words in "error", ours beside them
        assert re.search(message, words) or re.search(message, answer["detail"]), answer
        one_line(answer["detail"], ".")
    if path == "/populate":
        assert "proxies" in answer, answer
        assert answer["proxies"] is None, answer
    assert listeners_of({os.getpid()}) <= listeners


@pytest.mark.asyncio
async def test_a_huge_declared_body_is_refused_before_it_is_read(api: httpx.AsyncClient) -> None:
    async def endless() -> Any:
        while True:  # the server must answer without waiting for the end
            yield b" " * 65536
            await asyncio.sleep(0)

    response = await api.post("/proxies", content=endless())
    assert response.status_code == 413
    one_line(response.json()["error"], "larger than 1048576 bytes")


# -- the command line ------------------------------------------------------------------------------

CLI: dict[str, tuple[list[str], str]] = {
    "proxy --duration inf": (
        ["proxy", "--proxy", "p=127.0.0.1:9", "--duration", "inf"],
        r"^asyncfaults proxy: --duration=inf is not valid: " + SECONDS_MAX,
    ),
    "proxy --duration 1e300": (
        ["proxy", "--proxy", "p=127.0.0.1:9", "--duration", "1e300"],
        SECONDS_MAX,
    ),
    "proxy --duration nan": (
        ["proxy", "--proxy", "p=127.0.0.1:9", "--duration", "nan"],
        "expected a number of seconds > 0",
    ),
    "proxy --duration 0": (
        ["proxy", "--proxy", "p=127.0.0.1:9", "--duration", "0"],
        "expected a number of seconds > 0",
    ),
    "proxy names twice": (
        ["proxy", "--proxy", "p=127.0.0.1:9", "--proxy", "p=127.0.0.1:8"],
        "p is given twice",
    ),
    "proxy name ..": (["proxy", "--proxy", "..=127.0.0.1:9"], NAME),
    "proxy upstream 99999": (["proxy", "--proxy", "p=127.0.0.1:99999"], ADDRESS),
    "proxy listen 0.0.0.0": (
        ["proxy", "--proxy", "p=127.0.0.1:9@0.0.0.0:0"],
        "not a loopback address.*--allow-remote",
    ),
    "proxy --toxic 10**30": (
        ["proxy", "--proxy", "p=127.0.0.1:9", "--toxic", "p:latency:latency=1" + "0" * 30],
        RANGE,
    ),
    "proxy --scenario fifo": (
        ["proxy", "--proxy", "p=127.0.0.1:9", "--scenario", "FIFO"],
        "it is a FIFO",
    ),
    "repro app ../x": (["repro", "../x:app", "--proxy", "p=127.0.0.1:9"], "dotted Python names"),
    "repro --within inf": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--within", "inf"],
        r"^asyncfaults repro: --within=inf is not valid: " + SECONDS_MAX,
    ),
    "repro --within 1e300": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--within", "1e300"],
        SECONDS_MAX,
    ),
    "repro --within nan": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--within", "nan"],
        "seconds > 0",
    ),
    "repro --startup-timeout 0": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--startup-timeout", "0"],
        "seconds > 0",
    ),
    "repro names twice": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--proxy", "p=127.0.0.1:8"],
        "proxy names must be unique",
    ),
    "repro --env bad name": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--env", "1A=x"],
        "a NAME of letters",
    ),
    "repro --env NUL": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--env", "A=x\x00y"],
        "without NUL",
    ),
    "repro --timeline nowhere": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--timeline", "/nonexistent/dir/t.html"],
        "its directory does not exist",
    ),
    "repro --data @/dev/zero": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--data", "@/dev/zero"],
        "it is a device",
    ),
    "repro --data @fifo": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--data", "@FIFO"],
        "it is a FIFO",
    ),
    "repro --request no path": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--request", "GET nopath"],
        "expected 'METHOD /path'",
    ),
    "repro --request control": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--request", "GET /a\x07b"],
        "expected 'METHOD /path'",
    ),
    "repro --header": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--header", "Bad Header: x"],
        "expected 'Name: value'",
    ),
    "repro --header newline": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--header", "X: a\r\nY: b"],
        "expected 'Name: value'",
    ),
    "repro --within text": (
        ["repro", "m:app", "--proxy", "p=127.0.0.1:9", "--within", "abc"],
        r"^asyncfaults repro: argument --within: invalid float value: 'abc' \(see",
    ),
    "repro no --proxy": (["repro", "m:app"], "--proxy is missing"),
    "serve --config /dev/zero": (
        ["serve", "--config", "/dev/zero"],
        r"^asyncfaults serve: /dev/zero: cannot read it: it is a device",
    ),
    "serve --config fifo": (["serve", "--config", "FIFO"], "it is a FIFO"),
    "serve --config 0.0.0.0 entry, without --allow-remote": (
        ["serve", "--port", "0", "--config", "REMOTE"],
        r"entry 1 \('r'\): listen='10\.9\.8\.7:0' is not valid here",
    ),
    "serve --host 0.0.0.0": (["serve", "--host", "0.0.0.0"], "not a loopback address"),
    "serve --host a b": (["serve", "--host", "a b"], r"--host='a b' is not valid"),
    "serve --port 99999": (["serve", "--port", "99999"], "is not a port: expected 0 to 65535"),
    "unknown command": (["nope"], r"^asyncfaults: argument COMMAND: invalid choice"),
}


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize("case", list(CLI))
def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    argv, message = CLI[case]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    remote = tmp_path / "remote.json"
    remote.write_text(json.dumps([{"name": "r", "listen": "10.9.8.7:0", "upstream": "h:1"}]))
    argv = [
        str(fifo)
        if arg == "FIFO"
        else f"@{fifo}"
        if arg == "@FIFO"
        else str(remote)
        if arg == "REMOTE"
        else arg
        for arg in argv
    ]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code  # type: ignore[assignment]
    assert status == 2, out.getvalue()
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    one_line(err, message)


# -- the plugin: flags, ini keys, the marker (a pytest run each) ---------------------------------

USAGE: dict[str, tuple[list[str], str, str]] = {
    # case: (flags, ini lines, the one message)
    "seed": (
        ["--asyncfaults-seed=x"],
        "",
        "--asyncfaults-seed='x' is not valid: expected an integer",
    ),
    "engine": (["--asyncfaults-engine=nope"], "", "--asyncfaults-engine='nope' is not valid"),
    "app path": (["--asyncfaults-app=../x:app"], "", "--asyncfaults-app='../x:app' is not valid"),
    "url bracket": (["--toxiproxy-url=http://[::1"], "", "--toxiproxy-url='http://[::1' is not"),
    "url port": (
        ["--toxiproxy-url=http://127.0.0.1:99999"],
        "",
        "--toxiproxy-url='http://127.0.0.1:99999' is not valid",
    ),
    "settle empty": (["--asyncfaults-settle="], "", "--asyncfaults-settle='' is not valid"),
    "threshold": (
        ["--asyncfaults-blocked-loop-threshold=x"],
        "",
        "--asyncfaults-blocked-loop-threshold='x' is not valid: expected a number of seconds > 0",
    ),
    "report dir": (
        ["--asyncfaults-report=/nonexistent/dir/r.json"],
        "",
        "--asyncfaults-report='/nonexistent/dir/r.json' is not valid: its directory",
    ),
    "proxies twice": (
        [],
        "asyncfaults_proxies =\n    db=127.0.0.1:1\n    db=127.0.0.1:2",
        "the name 'db' is declared twice",
    ),
    "env name": ([], "asyncfaults_env =\n    1A=x", "a NAME of letters, digits and '_'"),
    "ini seed": ([], "asyncfaults_seed = " + "9" * 5000, "asyncfaults_seed='9999"),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_plugin_usage_errors_are_said_once_under_the_name_typed(
    pytester: pytest.Pytester, case: str
) -> None:
    flags, ini, message = USAGE[case]
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("-p", "no:asyncio", *flags)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count(message) == 1, err
    assert "Traceback" not in err
    assert "INTERNALERROR" not in err


MARKED: dict[str, tuple[str, str]] = {
    "huge timeout": (
        "@pytest.mark.asyncfaults(startup_timeout=10**400)",
        "@pytest.mark.asyncfaults(startup_timeout=<an integer of about 401 digits>) is not valid",
    ),
    "positional": ("@pytest.mark.asyncfaults(5)", "@pytest.mark.asyncfaults(5) is not valid"),
    "settle text": (
        "@pytest.mark.asyncfaults(settle='soon')",
        "@pytest.mark.asyncfaults(settle='soon') is not valid",
    ),
}


@pytest.mark.parametrize("case", list(MARKED))
def test_a_bad_marker_is_one_message_printed_once(pytester: pytest.Pytester, case: str) -> None:
    marker, message = MARKED[case]
    pytester.makepyfile(f"import pytest\n\n{marker}\ndef test_marked(tasks):\n    pass\n")
    # -rN: pytest's short summary repeats an error's first line when the
    # terminal is wide enough; the report itself must hold it once
    result = pytester.runpytest("-p", "no:asyncio", "-rN")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert out.count(message) == 1, out
    assert "During handling of the above exception" not in out
    assert "Traceback" not in out
