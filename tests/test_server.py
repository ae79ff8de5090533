"""``asyncfaults serve`` and its API: the error paths, the command's contract.

The API is tested in process (httpx over ASGI, the core on the test's loop)
for every way a request can be wrong, since each must come back as a JSON
error naming the field, never as a 500 with a traceback. The command is
tested as a child process for what a parent relies on: one ready line on
stdout, one error line on stderr with the right exit status, a clean exit on
SIGINT/SIGTERM and on stdin's end. Toxic behaviour over the API is in
test_conformance.py and test_toxiproxy_python.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import IO_TIMEOUT, Peer, connect, expect_closed, recv_exactly

from pytest_asyncfaults import InvalidError
from pytest_asyncfaults._address import is_loopback
from pytest_asyncfaults._backends._process import start_serve_process
from pytest_asyncfaults._engine._core import FaultCore
from pytest_asyncfaults._toxiproxy._api import toxiproxy_api
from pytest_asyncfaults._toxiproxy._config import ProxyConfig, load_proxy_config

PROCESS_TIMEOUT = 20.0
"""Bound on a ``serve`` child starting, answering or exiting."""

SERVE = [sys.executable, "-m", "pytest_asyncfaults", "serve"]

JSON = dict[str, Any]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def error_of(response: httpx.Response, status: int) -> str:
    """Toxiproxy's error body, ``{"error": ..., "status": N}``, and our message.

    Where Toxiproxy has its own words for the error, ``error`` holds them and
    ``detail`` ours (the field, the value, what is allowed); else ``error`` is ours.
    """
    assert response.status_code == status, response.text
    body = response.json()
    assert {"error", "status"} <= set(body) <= {"error", "status", "detail", "proxies"}, body
    assert body["status"] == status
    assert "Traceback" not in body["error"]
    message: str = body.get("detail", body["error"])
    return message


# -------------------------------------------------------------------- the API, in process


@pytest_asyncio.fixture
async def core() -> AsyncIterator[FaultCore]:
    running = FaultCore(asyncio.get_running_loop(), seed=5)
    yield running
    running.close()
    await asyncio.sleep(0)


@pytest_asyncio.fixture
async def client(core: FaultCore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=toxiproxy_api(core))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://asyncfaults", timeout=IO_TIMEOUT
    ) as http:
        yield http


async def make_proxy(client: httpx.AsyncClient, name: str, upstream: str) -> JSON:
    response = await client.post(
        "/proxies", json={"name": name, "upstream": upstream, "listen": "127.0.0.1:0"}
    )
    assert response.status_code == 201, response.text
    proxy: JSON = response.json()
    return proxy


@pytest.mark.asyncio
async def test_version_names_toxiproxy_and_us(client: httpx.AsyncClient) -> None:
    body = (await client.get("/version")).json()
    assert body["version"] == "2.12.0"
    assert "asyncfaults" in body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "bad request body"),
        (b"{", "bad request body: not valid JSON"),
        (b"[1]", "bad request body: expected a JSON object"),
        (b'{"name": NaN}', "NaN"),
        (b'{"upstream": "127.0.0.1:1"}', "missing required field: name"),
        (b'{"name": "", "upstream": "127.0.0.1:1"}', "missing required field: name"),
        (b'{"name": "p"}', "missing required field: upstream"),
        (b'{"name": 5, "upstream": "127.0.0.1:1"}', "name=5"),
        (b'{"name": "p", "upstream": "nowhere"}', "upstream='nowhere'"),
        (b'{"name": "p", "upstream": "127.0.0.1:99999"}', "upstream='127.0.0.1:99999'"),
        (b'{"name": "p", "upstream": "127.0.0.1:1", "listen": 8080}', "listen=8080"),
        (b'{"name": "p", "upstream": "127.0.0.1:1", "enabled": "yes"}', "enabled='yes'"),
        (b"\xff\xfe{", "bad request body"),
    ],
)
async def test_create_proxy_bad_body_is_400_naming_the_field(
    client: httpx.AsyncClient, body: bytes, expected: str
) -> None:
    message = error_of(await client.post("/proxies", content=body), 400)
    assert expected in message
    assert (await client.get("/proxies")).json() == {}


@pytest.mark.asyncio
async def test_create_proxy_twice_is_409(client: httpx.AsyncClient, echo_server: Peer) -> None:
    await make_proxy(client, "twice", echo_server.address)
    response = await client.post("/proxies", json={"name": "twice", "upstream": "127.0.0.1:1"})
    assert error_of(response, 409) == "proxy 'twice' already exists"


@pytest.mark.asyncio
async def test_listen_error_is_500_with_the_reason_and_creates_nothing(
    client: httpx.AsyncClient,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        response = await client.post(
            "/proxies", json={"name": "busy", "upstream": "127.0.0.1:1", "listen": address}
        )
    message = error_of(response, 500)
    assert f"cannot listen on {address}: address already in use" in message
    assert (await client.get("/proxies")).json() == {}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/proxies/nope"),
        ("PATCH", "/proxies/nope"),
        ("POST", "/proxies/nope"),
        ("DELETE", "/proxies/nope"),
        ("GET", "/proxies/nope/stats"),
        ("GET", "/proxies/nope/toxics"),
        ("POST", "/proxies/nope/toxics"),
        ("GET", "/proxies/nope/toxics/t"),
        ("PATCH", "/proxies/nope/toxics/t"),
        ("DELETE", "/proxies/nope/toxics/t"),
    ],
)
async def test_unknown_proxy_is_404_before_the_body_is_read(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    # The body is garbage on purpose: Toxiproxy looks the proxy up first.
    response = await client.request(method, path, content=b"{garbage")
    assert error_of(response, 404) == "proxy 'nope' not found"


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["GET", "PATCH", "POST", "DELETE"])
async def test_unknown_toxic_is_404(
    client: httpx.AsyncClient, echo_server: Peer, method: str
) -> None:
    await make_proxy(client, "p", echo_server.address)
    response = await client.request(method, "/proxies/p/toxics/nope", content=b"{garbage")
    assert error_of(response, 404) == "toxic 'nope' not found on proxy 'p'"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "latency", "stream": "sideways"}, "stream='sideways'"),
        ({"type": "latency", "stream": ""}, "stream=''"),
        ({"type": "nope"}, "type='nope' is not a toxic type"),
        ({"attributes": {"latency": 1}}, "missing required field: type"),
        ({"type": 3}, "type=3"),
        ({"type": "latency", "name": 3}, "name=3"),
        ({"type": "latency", "toxicity": "x"}, "toxicity='x'"),
        ({"type": "latency", "toxicity": 1.5}, "toxicity=1.5"),
        ({"type": "latency", "toxicity": True}, "toxicity=True"),
        ({"type": "latency", "attributes": [1]}, "attributes=[1]"),
        ({"type": "latency", "attributes": {"latency": "5"}}, "latency.latency='5'"),
        ({"type": "latency", "attributes": {"latency": 1.5}}, "latency.latency=1.5"),
        ({"type": "latency", "attributes": {"latency": -1}}, "latency.latency=-1"),
        ({"type": "latency", "attributes": {"latncy": 5}}, "'latncy'"),
        ({"type": "latency", "attributes": {"latency": 2**70}}, "attributes.latency="),
        ({"type": "slicer", "attributes": {"average_size": 0}}, "slicer.average_size=0"),
        ({"type": "latency", "connections": "x"}, "connections='x'"),
        ({"type": "latency", "connections": 0}, "connections=0"),
        ({"type": "latency", "start_after": -1}, "start_after=-1"),
        ({"type": "latency", "start_after": "1"}, "start_after='1'"),
        ({"type": "latency", "duration": 1.5}, "duration=1.5"),
    ],
)
async def test_add_toxic_bad_body_is_400_naming_the_field(
    client: httpx.AsyncClient, echo_server: Peer, body: JSON, expected: str
) -> None:
    await make_proxy(client, "p", echo_server.address)
    message = error_of(await client.post("/proxies/p/toxics", json=body), 400)
    assert expected in message
    assert (await client.get("/proxies/p/toxics")).json() == []


@pytest.mark.asyncio
async def test_toxic_names_are_unique_across_streams_and_checked_before_attributes(
    client: httpx.AsyncClient, echo_server: Peer
) -> None:
    await make_proxy(client, "p", echo_server.address)
    first = {"name": "slow", "type": "latency", "stream": "upstream"}
    assert (await client.post("/proxies/p/toxics", json=first)).status_code == 200
    # Same name, other stream and type, and a bad attribute: the name is taken first.
    again = {"name": "slow", "type": "bandwidth", "attributes": {"rate": "x"}}
    message = error_of(await client.post("/proxies/p/toxics", json=again), 409)
    assert message == "toxic 'slow' already exists on proxy 'p'"
    # The default name <type>_<stream> counts too.
    assert (await client.post("/proxies/p/toxics", json={"type": "noop"})).status_code == 200
    error_of(await client.post("/proxies/p/toxics", json={"type": "noop"}), 409)


@pytest.mark.asyncio
async def test_update_toxic_errors(client: httpx.AsyncClient, echo_server: Peer) -> None:
    await make_proxy(client, "p", echo_server.address)
    body = {"type": "latency", "attributes": {"latency": 10}, "connections": "2+"}
    toxic = (await client.post("/proxies/p/toxics", json=body)).json()
    url = "/proxies/p/toxics/latency_downstream"
    for bad, expected in [
        (b"[]", "expected a JSON object"),
        (b'{"toxicity": 7}', "toxicity=7"),
        (b'{"attributes": {"latency": "slow"}}', "latency.latency='slow'"),
        (b'{"attributes": {"speed": 1}}', "'speed'"),
        (b'{"connections": "1"}', "connections cannot be changed"),
        (b'{"duration": 100}', "duration cannot be changed"),
        (b'{"start_after": 5}', "start_after cannot be changed"),
    ]:
        assert expected in error_of(await client.patch(url, content=bad), 400), bad
    # Nothing changed, and sending a toxic back as it is (extensions included) is fine.
    assert (await client.get(url)).json() == toxic
    toxic["attributes"]["latency"] = 20
    updated = await client.patch(url, json=toxic)
    assert updated.status_code == 200, updated.text
    assert updated.json()["attributes"] == {"latency": 20, "jitter": 0}


@pytest.mark.asyncio
async def test_update_proxy_errors(client: httpx.AsyncClient, echo_server: Peer) -> None:
    proxy = await make_proxy(client, "p", echo_server.address)
    for bad, expected in [
        (b"", "bad request body"),
        (b'"x"', "expected a JSON object"),
        (b'{"enabled": 1}', "enabled=1"),
        (b'{"upstream": "x"}', "upstream='x'"),
        (b'{"listen": ""}', "listen=''"),
    ]:
        assert expected in error_of(await client.patch("/proxies/p", content=bad), 400), bad
    assert (await client.get("/proxies/p")).json() == proxy


@pytest.mark.asyncio
async def test_populate_checks_every_entry_before_changing_anything(
    client: httpx.AsyncClient, echo_server: Peer
) -> None:
    good = {"name": "a", "upstream": echo_server.address}
    for body, expected in [
        ({"name": "a"}, "expected a JSON array"),
        ([good, {"upstream": echo_server.address}], "missing required field: name at proxy 2"),
        ([good, {"name": "b"}], "missing required field: upstream at proxy 2"),
        ([good, {"name": "b", "upstream": "x"}], "proxy 2: upstream='x'"),
        ([good, 5], "at proxy 2"),
        ([good, good], "proxy 2: name='a'"),
    ]:
        message = error_of(await client.post("/populate", json=body), 400)
        assert expected in message, body
    assert (await client.get("/proxies")).json() == {}


@pytest.mark.asyncio
async def test_populate_listen_error_answers_what_was_applied(
    client: httpx.AsyncClient, echo_server: Peer
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        response = await client.post(
            "/populate",
            json=[
                {"name": "a", "upstream": echo_server.address},
                {"name": "b", "upstream": echo_server.address, "listen": address},
            ],
        )
    assert response.status_code == 500
    body = response.json()
    assert body["status"] == 500
    assert "address already in use" in body["error"]
    assert [proxy["name"] for proxy in body["proxies"]] == ["a"]


@pytest.mark.asyncio
async def test_populate_keeps_identical_proxies_and_replaces_different_ones(
    client: httpx.AsyncClient, echo_server: Peer
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    entry = {"name": "kept", "upstream": echo_server.address, "listen": listen}
    assert (await client.post("/populate", json=[entry])).status_code == 201
    await client.post("/proxies/kept/toxics", json={"type": "noop"})
    again = (await client.post("/populate", json=[entry])).json()
    assert [toxic["name"] for toxic in again["proxies"][0]["toxics"]] == ["noop_downstream"]
    moved = {**entry, "upstream": "127.0.0.1:1"}
    replaced = await client.post("/populate", json=[moved])
    assert replaced.status_code == 201
    assert replaced.json()["proxies"][0]["toxics"] == []
    assert replaced.json()["proxies"][0]["upstream"] == "127.0.0.1:1"


@pytest.mark.asyncio
async def test_unknown_routes_and_methods_get_json_errors(client: httpx.AsyncClient) -> None:
    assert "GET /nowhere" in error_of(await client.get("/nowhere"), 404)
    error_of(await client.get("/proxies/"), 404)  # no redirect, as Toxiproxy's router
    response = await client.put("/proxies")
    assert "PUT" in error_of(response, 405)
    assert "POST" in response.headers["allow"]


@pytest.mark.asyncio
async def test_browsers_are_refused_as_by_toxiproxy(client: httpx.AsyncClient) -> None:
    response = await client.get("/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert response.status_code == 403
    assert response.text == "User agent not allowed\n"


@pytest.mark.asyncio
async def test_an_internal_failure_is_a_500_without_traceback(
    client: httpx.AsyncClient, core: FaultCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> None:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(core, "proxies", broken)
    message = error_of(await client.get("/proxies"), 500)
    assert "engine bug" not in message
    assert "log" in message


@pytest.mark.asyncio
async def test_stats_extension(client: httpx.AsyncClient, echo_server: Peer) -> None:
    proxy = await make_proxy(client, "p", echo_server.address)
    await client.post("/proxies/p/toxics", json={"type": "noop"})
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"hello")
        assert await asyncio.to_thread(recv_exactly, sock, 5) == b"hello"
    stats = (await client.get("/proxies/p/stats")).json()
    assert stats["accepted"] == 1
    assert stats["bytes_upstream"] == stats["bytes_downstream"] == 5
    assert stats["toxics_hit"] == {"noop_downstream": 1}
    assert set(stats) == {
        "accepted",
        "open",
        "clients_open",
        "closed",
        "bytes_upstream",
        "bytes_downstream",
        "upstream_errors",
        "toxics_hit",
        "phases",
    }
    assert stats["phases"] == {}  # no protocol toxic reads these connections


@pytest.mark.asyncio
async def test_protocol_toxics_over_the_api_with_their_events(
    client: httpx.AsyncClient, echo_server: Peer
) -> None:
    """The extra types: added, listed and validated like Toxiproxy's own; what they did is
    at ``/proxies/{name}/events``."""
    proxy = await make_proxy(client, "pg", echo_server.address)
    bad = await client.post(
        "/proxies/pg/toxics", json={"type": "pg_login", "attributes": {"sqlstate": "53"}}
    )
    assert error_of(bad, 400).startswith("pg_login.sqlstate='53' is not valid: expected a SQLSTATE")
    added = await client.post(
        "/proxies/pg/toxics",
        json={"type": "pg_login", "attributes": {"action": "refuse", "sqlstate": "57P03"}},
    )
    assert added.status_code == 200, added.text
    assert added.json()["attributes"] == {
        "action": "refuse",
        "delay": 0,
        "sqlstate": "57P03",
        "message": "",
    }
    params = (196608).to_bytes(4, "big") + b"user\0app\0\0"
    startup = (len(params) + 4).to_bytes(4, "big") + params

    def refused() -> bytes:
        with connect(proxy["listen"]) as sock:
            sock.sendall(startup)
            answer = b""
            while data := sock.recv(4096):
                answer += data
            return answer

    answer = await asyncio.to_thread(refused)
    assert b"C57P03\0Mthe database system is starting up\0" in answer
    events = (await client.get("/proxies/pg/events")).json()
    assert [(e["connection"], e["text"], e["injected"]) for e in events] == [
        (1, "startup: user app, database app", False),
        (1, "login refused: FATAL 57P03 (cannot_connect_now)", True),
    ]
    missing = await client.get("/proxies/nope/events")
    assert error_of(missing, 404) == "proxy 'nope' not found"


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "10.0.0.1", "example.com", "127.0.0.1.example.com"):
        assert not is_loopback(host), host


# -------------------------------------------------------------------- the config file


def write(tmp_path: Path, content: object, name: str = "toxiproxy.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_config_reads_toxiproxy_format(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            {"name": "pg", "listen": "127.0.0.1:25432", "upstream": "db:5432", "enabled": False},
            {"name": "smtp", "listen": "[::1]:0", "upstream": "127.0.0.1:25"},
        ],
    )
    assert load_proxy_config(path) == [
        ProxyConfig("pg", "127.0.0.1:25432", "db:5432", enabled=False),
        ProxyConfig("smtp", "[::1]:0", "127.0.0.1:25", enabled=True),
    ]
    assert load_proxy_config(write(tmp_path, "[]")) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[", "toxiproxy.json: not valid JSON: Expecting value (line 1, column 2)"),
        ({"name": "pg"}, "toxiproxy.json: expected a JSON array"),
        (["pg"], "toxiproxy.json: entry 1 is not valid: expected an object"),
        (
            [{"name": "pg", "listen": "127.0.0.1:1", "upstream": "db:1"}, {"name": "smtp"}],
            "toxiproxy.json: entry 2 ('smtp'): listen is missing",
        ),
        (
            [
                {"name": "pg", "listen": "127.0.0.1:1", "upstream": "db:1"},
                {"name": "smtp", "listen": "127.0.0.1:2", "upstream": "x"},
            ],
            "toxiproxy.json: entry 2 ('smtp'): upstream='x' is not valid: expected \"host:port\"",
        ),
        (
            [{"name": "pg", "listen": "127.0.0.1:1", "upstream": "db:1", "toxics": []}],
            "toxiproxy.json: entry 1 ('pg'): unknown key 'toxics'",
        ),
        (
            [{"name": "pg", "listen": "127.0.0.1:1", "upstream": "db:1", "enabled": "no"}],
            "toxiproxy.json: entry 1 ('pg'): enabled='no' is not valid",
        ),
        (
            [{"name": 7, "listen": "127.0.0.1:1", "upstream": "db:1"}],
            "toxiproxy.json: entry 1: name=7 is not valid",
        ),
        (
            [{"listen": "127.0.0.1:1", "upstream": "db:1"}],
            "toxiproxy.json: entry 1: name is missing",
        ),
        (
            [
                {"name": "pg", "listen": "127.0.0.1:1", "upstream": "db:1"},
                {"name": "pg", "listen": "127.0.0.1:2", "upstream": "db:2"},
            ],
            "toxiproxy.json: entry 2 ('pg'): name='pg' is not valid: entry 1 has the same name",
        ),
    ],
)
def test_config_errors_name_file_entry_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: object, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, content)
    with pytest.raises(InvalidError) as caught:
        load_proxy_config("toxiproxy.json")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_config_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InvalidError, match=r"nope\.json: cannot read it: No such file"):
        load_proxy_config(missing)


# -------------------------------------------------------------------- the command


def spawn(*args: str, stdin: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SERVE, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready_line(process: subprocess.Popen[str]) -> str:
    """The first stdout line, read without blocking past the bound."""
    assert process.stdout is not None
    deadline = time.monotonic() + PROCESS_TIMEOUT
    buffered = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffered and (left := deadline - time.monotonic()) > 0:
            if selector.select(left):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffered += chunk
    line, newline, rest = buffered.decode().partition("\n")
    assert newline, f"no ready line within {PROCESS_TIMEOUT} s: {buffered!r}"
    assert rest == "", f"more than one line on stdout: {buffered!r}"
    return line


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait (bounded) for the exit; the rest of stdout and all of stderr."""
    if process.stdin is not None and process.stdin.closed:
        process.stdin = None  # closed by the test: communicate() would flush it
    try:
        stdout, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=PROCESS_TIMEOUT)
        pytest.fail(f"asyncfaults serve did not exit within {PROCESS_TIMEOUT} s")
    return process.returncode, stdout, stderr


def run(*args: str) -> tuple[int, str, str]:
    return finish(spawn(*args, stdin=subprocess.DEVNULL))


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    """A serve child that exits only when told (no stdin guard), stopped at teardown."""
    process = spawn("--port", "0", "--seed", "42")
    yield process
    if process.poll() is None:
        process.kill()
    finish(process)


def test_ready_line_is_the_only_output(child: subprocess.Popen[str]) -> None:
    line = ready_line(child)
    host_port = line.removeprefix("asyncfaults serve: listening on http://").split(" ")[0]
    assert line == f"asyncfaults serve: listening on http://{host_port} (seed 42)"
    port = int(host_port.rpartition(":")[2])
    assert host_port == f"127.0.0.1:{port}"
    assert port != 0
    response = httpx.get(f"http://{host_port}/version", timeout=IO_TIMEOUT)
    assert response.json()["version"] == "2.12.0"
    child.send_signal(signal.SIGTERM)
    assert finish(child) == (0, "", "")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_it_cleanly_with_proxies_closed(
    child: subprocess.Popen[str], echo_server: Peer, sig: signal.Signals
) -> None:
    url = ready_line(child).split(" ")[4]
    proxy = httpx.post(
        f"{url}/proxies", json={"name": "p", "upstream": echo_server.address}, timeout=IO_TIMEOUT
    ).json()
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"hi")
        assert recv_exactly(sock, 2) == b"hi"
        child.send_signal(sig)
        assert finish(child) == (0, "", "")
        expect_closed(sock)
    with pytest.raises(ConnectionRefusedError):
        connect(proxy["listen"], timeout=2.0).close()


def test_exit_on_stdin_eof() -> None:
    served = start_serve_process()
    process = served.process
    try:
        assert httpx.get(f"{served.url}/version", timeout=IO_TIMEOUT).status_code == 200
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait(PROCESS_TIMEOUT) == 0
    finally:
        served.stop()


def test_without_the_flag_stdin_eof_does_not_stop_it(child: subprocess.Popen[str]) -> None:
    url = ready_line(child).split(" ")[4]
    assert child.stdin is not None
    child.stdin.close()
    time.sleep(0.3)
    assert child.poll() is None
    assert httpx.get(f"{url}/version", timeout=IO_TIMEOUT).status_code == 200


def test_port_in_use_is_one_line_and_status_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        status, stdout, stderr = run("--port", str(port))
    assert (status, stdout) == (1, "")
    assert (
        stderr == f"asyncfaults serve: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_non_loopback_host_is_refused_without_allow_remote(host: str) -> None:
    status, stdout, stderr = run("--host", host, "--port", "0")
    assert (status, stdout) == (2, "")
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"asyncfaults serve: refusing to serve on {host!r}")
    assert "--allow-remote" in stderr


def test_allow_remote_lets_it_try() -> None:
    # 192.0.2.1 (TEST-NET-1) is never ours: past the guard, the bind itself fails.
    status, stdout, stderr = run("--host", "192.0.2.1", "--port", "0", "--allow-remote")
    assert (status, stdout) == (1, "")
    assert stderr.startswith("asyncfaults serve: cannot listen on 192.0.2.1:0: ")


def test_bad_config_is_one_line_naming_entry_and_field_and_status_2(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            {"name": "pg", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:5432"},
            {"name": "smtp", "listen": "127.0.0.1:0", "upstream": "x"},
        ],
    )
    status, stdout, stderr = run("--port", "0", "--config", str(path))
    assert (status, stdout) == (2, "")
    assert stderr.startswith(f"asyncfaults serve: {path}: entry 2 ('smtp'): upstream='x' ")
    assert stderr.count("\n") == 1, stderr


def test_config_proxy_that_cannot_listen_is_one_line_and_status_1(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        path = write(tmp_path, [{"name": "pg", "listen": listen, "upstream": "127.0.0.1:1"}])
        status, stdout, stderr = run("--port", "0", "--config", str(path))
    assert (status, stdout) == (1, "")
    assert stderr.startswith(f"asyncfaults serve: {path}: entry 1 ('pg'): ")
    assert stderr.endswith("address already in use\n")
    assert stderr.count("\n") == 1, stderr


def test_config_proxies_serve_from_the_start(tmp_path: Path, echo_server: Peer) -> None:
    listen = f"127.0.0.1:{free_port()}"
    path = write(
        tmp_path,
        [
            {"name": "echo", "listen": listen, "upstream": echo_server.address},
            {"name": "off", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1", "enabled": False},
        ],
    )
    process = spawn("--port", "0", "--config", str(path))
    try:
        url = ready_line(process).split(" ")[4]
        proxies = httpx.get(f"{url}/proxies", timeout=IO_TIMEOUT).json()
        assert proxies["echo"]["listen"] == listen
        assert proxies["off"]["enabled"] is False
        with connect(listen) as sock:
            sock.sendall(b"ok")
            assert recv_exactly(sock, 2) == b"ok"
        process.send_signal(signal.SIGTERM)
        assert finish(process) == (0, "", "")
    finally:
        if process.poll() is None:
            process.kill()
            finish(process)


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_bad_port_is_a_usage_error(port: str) -> None:
    status, stdout, stderr = run("--port", port)
    assert (status, stdout) == (2, "")
    assert "is not a port" in stderr or "invalid" in stderr
