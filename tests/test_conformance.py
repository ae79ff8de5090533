"""Conformance with the Toxiproxy 2.12 HTTP API, checked against a live server.

The server is the one ``TOXIPROXY_URL`` names (a real Toxiproxy, say in Docker
with host networking), or else ``asyncfaults serve`` started as a child
process for this module. The same checks run against both: every endpoint
with its success and error statuses and JSON shapes, the defaults, the
populate and reset rules, and each toxic's effect on a real loopback socket.

The facts come from Toxiproxy's own source and README (v2.12.0): ``api.go``,
``proxy_collection.go``, ``toxic_collection.go``, ``toxics/*.go``. Where
``asyncfaults serve`` deliberately differs, the test says so in a comment
marked ``DEVIATION`` and its asserts run only against our server (detected
from ``GET /version``).

Etiquette for a shared server: every proxy this module creates has a unique
name prefix and is deleted afterwards, and ``POST /reset`` (which touches
every proxy on the server) runs only against our own child server.

Timing tolerances are honest for a loaded 2-core machine: a toxic may never
act early, and may be late by a scheduling hiccup (``LATE``), not more.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import IO_TIMEOUT, Peer, connect, expect_closed, recv_exactly

from pytest_asyncfaults._backends._process import ServeProcess, start_serve_process

LATE = 0.250
"""How late a timed effect may be on a loaded machine, in seconds."""

EARLY = 0.002
"""Timer granularity we forgive on the early side (clock reads, not behaviour)."""

HTTP_TIMEOUT = httpx.Timeout(10.0)
"""Every API call gives up after this long."""

PROXY_KEYS = {"name", "listen", "upstream", "enabled", "toxics"}
TOXIC_KEYS = {"name", "type", "stream", "toxicity", "attributes"}

ATTRIBUTES: dict[str, set[str]] = {
    "latency": {"latency", "jitter"},
    "bandwidth": {"rate"},
    "slow_close": {"delay"},
    "timeout": {"timeout"},
    "reset_peer": {"timeout"},
    "slicer": {"average_size", "size_variation", "delay"},
    "limit_data": {"bytes"},
    "noop": set(),
}
"""Each built-in toxic type and the attribute names its JSON carries."""

JSON = dict[str, Any]
Handler = Callable[[socket.socket], None]
PeerFactory = Callable[[Handler], Peer]


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    """The server under test and what we know about it."""

    url: str
    http: httpx.Client
    own: bool
    """Our own child process: nobody else's proxies live there."""
    version: JSON
    prefix: str = field(default_factory=lambda: f"conf-{uuid.uuid4().hex[:8]}-")

    @property
    def is_asyncfaults(self) -> bool:
        """``asyncfaults serve`` names itself in its version document; Toxiproxy doesn't."""
        return "asyncfaults" in json.dumps(self.version).lower()


def only_on_asyncfaults(server: Server, deviation: str) -> None:
    """Skip a check of one of our documented deviations when the target is real Toxiproxy."""
    if not server.is_asyncfaults:
        pytest.skip(f"DEVIATION of asyncfaults serve, not Toxiproxy behaviour: {deviation}")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    external = os.environ.get("TOXIPROXY_URL", "").strip()
    child: ServeProcess | None = None
    if external:
        url = external if "://" in external else f"http://{external}"
    else:
        child = start_serve_process()
        url = child.url
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=HTTP_TIMEOUT) as http:
            response = http.get("/version")
            assert response.status_code == 200, response.text
            target = Server(url=url, http=http, own=child is not None, version=response.json())
            try:
                yield target
            finally:
                # Sweep anything of ours a failed test left behind.
                listing = http.get("/proxies")
                if listing.status_code == 200:
                    for name in listing.json():
                        if name.startswith(target.prefix):
                            http.delete(f"/proxies/{name}")
    finally:
        if child is not None:
            child.stop()


class Api:
    """One test's view of the server: unique proxy names, deleted at teardown."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = server.http
        self.names: list[str] = []

    def name(self, label: str) -> str:
        name = f"{self.server.prefix}{label}-{uuid.uuid4().hex[:6]}"
        self.names.append(name)
        return name

    def create_proxy(
        self,
        label: str,
        upstream: str,
        *,
        listen: str = "127.0.0.1:0",
        enabled: bool | None = None,
    ) -> JSON:
        body: JSON = {"name": self.name(label), "listen": listen, "upstream": upstream}
        if enabled is not None:
            body["enabled"] = enabled
        response = self.http.post("/proxies", json=body)
        assert response.status_code == 201, response.text
        proxy: JSON = response.json()
        return proxy

    def add_toxic(self, proxy: str, **body: Any) -> JSON:
        response = self.http.post(f"/proxies/{proxy}/toxics", json=body)
        assert response.status_code == 200, response.text
        toxic: JSON = response.json()
        return toxic

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        response = self.http.delete(f"/proxies/{proxy}/toxics/{toxic}")
        assert response.status_code == 204, response.text

    def patch_proxy(self, proxy: str, **body: Any) -> JSON:
        response = self.http.patch(f"/proxies/{proxy}", json=body)
        assert response.status_code == 200, response.text
        result: JSON = response.json()
        return result

    def get_proxy(self, proxy: str) -> JSON:
        response = self.http.get(f"/proxies/{proxy}")
        assert response.status_code == 200, response.text
        result: JSON = response.json()
        return result

    def cleanup(self) -> None:
        for name in self.names:
            self.http.delete(f"/proxies/{name}")


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    view = Api(server)
    yield view
    view.cleanup()


# --------------------------------------------------------------------------- helpers


def assert_error(response: httpx.Response, status: int) -> str:
    """An API error: that status, and the body ``{"error": "...", "status": N}``.

    Toxiproxy writes errors with Go's ``http.Error``, which labels them
    ``text/plain``: the body is JSON all the same, so we parse the text.
    """
    assert response.status_code == status, f"expected {status}, got: {response.text!r}"
    body = json.loads(response.text)
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str), body
    assert body["error"], body
    assert body["status"] == status, body
    message: str = body["error"]
    return message


def assert_json(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, f"expected {status}, got: {response.text!r}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


def assert_empty(response: httpx.Response, status: int = 204) -> None:
    assert response.status_code == status, f"expected {status}, got: {response.text!r}"
    assert response.content == b""


def assert_proxy(proxy: Any, *, name: str, upstream: str, enabled: bool = True) -> None:
    assert isinstance(proxy, dict), proxy
    assert set(proxy) == PROXY_KEYS, proxy
    assert proxy["name"] == name
    assert proxy["upstream"] == upstream
    assert proxy["enabled"] is enabled
    assert isinstance(proxy["listen"], str)
    assert isinstance(proxy["toxics"], list)


def assert_toxic(toxic: Any) -> None:
    assert isinstance(toxic, dict), toxic
    assert set(toxic) == TOXIC_KEYS, toxic
    assert isinstance(toxic["attributes"], dict), toxic
    assert set(toxic["attributes"]) == ATTRIBUTES[toxic["type"]], toxic


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def assert_refused(address: str) -> None:
    try:
        sock = connect(address, timeout=2.0)
    except ConnectionRefusedError:
        return
    sock.close()
    pytest.fail(f"{address} accepted a connection; expected it refused")


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    started = time.perf_counter()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.perf_counter() - started


def read_until_eof(sock: socket.socket, within: float = IO_TIMEOUT) -> bytes:
    """Everything the peer sends before it closes (a reset counts as the close)."""
    sock.settimeout(within)
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            received += data
    return bytes(received)


def assert_silent(sock: socket.socket, for_seconds: float) -> None:
    """Nothing arrives, and the connection stays open, for that long."""
    sock.settimeout(for_seconds)
    try:
        data = sock.recv(100)
    except TimeoutError:
        return
    pytest.fail(f"expected {for_seconds} s of silence on an open connection, got {data!r}")


def greeter(tag: bytes) -> Handler:
    """An upstream that says who it is, then echoes."""

    def handle(conn: socket.socket) -> None:
        conn.sendall(tag)
        while data := conn.recv(65536):
            conn.sendall(data)

    return handle


# --------------------------------------------------------------------------- GET /version


def test_version(server: Server) -> None:
    body = assert_json(server.http.get("/version"), 200)
    assert isinstance(body, dict)
    assert isinstance(body["version"], str)
    assert body["version"]


# --------------------------------------------------------------------------- POST /proxies


def test_create_proxy_answers_201_with_the_proxy_and_resolves_port_0(
    api: Api, echo_server: Peer
) -> None:
    name = api.name("create")
    response = api.http.post(
        "/proxies", json={"name": name, "listen": "127.0.0.1:0", "upstream": echo_server.address}
    )
    proxy = assert_json(response, 201)
    # Defaults: enabled, no toxics.
    assert_proxy(proxy, name=name, upstream=echo_server.address, enabled=True)
    assert proxy["toxics"] == []
    host, _, port = proxy["listen"].rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) != 0, "listen on port 0 must show the port actually bound"
    # It serves there at once.
    with connect(proxy["listen"]) as sock:
        round_trip(sock)
    # And GET shows the same resolved address.
    assert api.get_proxy(name)["listen"] == proxy["listen"]


def test_create_disabled_proxy_does_not_listen_until_enabled(api: Api, echo_server: Peer) -> None:
    listen = f"127.0.0.1:{free_port()}"
    proxy = api.create_proxy("disabled", echo_server.address, listen=listen, enabled=False)
    assert_proxy(proxy, name=proxy["name"], upstream=echo_server.address, enabled=False)
    assert proxy["listen"] == listen
    assert_refused(listen)
    enabled = api.patch_proxy(proxy["name"], enabled=True)
    assert enabled["enabled"] is True
    assert enabled["listen"] == listen
    with connect(listen) as sock:
        round_trip(sock)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"{not json", 400, id="bad-json"),
        pytest.param(b"[]", 400, id="not-an-object"),
        pytest.param(b'{"name": 5, "upstream": "127.0.0.1:1"}', 400, id="name-not-a-string"),
        pytest.param(b'{"upstream": "127.0.0.1:1"}', 400, id="missing-name"),
        pytest.param(b'{"name": "", "upstream": "127.0.0.1:1"}', 400, id="empty-name"),
        pytest.param(b'{"name": "NAME"}', 400, id="missing-upstream"),
        pytest.param(b'{"name": "NAME", "upstream": ""}', 400, id="empty-upstream"),
    ],
)
def test_create_proxy_rejects_a_bad_body(api: Api, body: bytes, status: int) -> None:
    name = api.name("bad")
    response = api.http.post(
        "/proxies",
        content=body.replace(b"NAME", name.encode()),
        headers={"content-type": "application/json"},
    )
    assert_error(response, status)
    assert_error(api.http.get(f"/proxies/{name}"), 404)


def test_create_proxy_twice_is_409(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("twice", echo_server.address)
    again = api.http.post(
        "/proxies",
        json={"name": proxy["name"], "listen": "127.0.0.1:0", "upstream": echo_server.address},
    )
    assert_error(again, 409)
    # The first one is untouched.
    assert api.get_proxy(proxy["name"])["listen"] == proxy["listen"]


def test_create_proxy_on_a_busy_port_is_500_and_creates_nothing(
    api: Api, echo_server: Peer
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        name = api.name("busy")
        response = api.http.post(
            "/proxies", json={"name": name, "listen": address, "upstream": echo_server.address}
        )
        assert_error(response, 500)
    assert_error(api.http.get(f"/proxies/{name}"), 404)


# --------------------------------------------------------------------------- GET /proxies


def test_list_proxies_maps_names_to_proxies_with_their_toxics(api: Api, echo_server: Peer) -> None:
    first = api.create_proxy("list-a", echo_server.address)
    second = api.create_proxy("list-b", echo_server.address)
    toxic = api.add_toxic(second["name"], type="latency", attributes={"latency": 5})
    listing = assert_json(api.http.get("/proxies"), 200)
    assert isinstance(listing, dict)
    for proxy in (first, second):
        shown = listing[proxy["name"]]
        assert_proxy(shown, name=proxy["name"], upstream=echo_server.address)
        assert shown["listen"] == proxy["listen"]
    assert listing[first["name"]]["toxics"] == []
    assert listing[second["name"]]["toxics"] == [toxic]


# --------------------------------------------------------------------------- GET /proxies/{p}


def test_get_proxy(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("get", echo_server.address)
    shown = assert_json(api.http.get(f"/proxies/{proxy['name']}"), 200)
    assert shown == proxy


def test_get_unknown_proxy_is_404(api: Api) -> None:
    assert_error(api.http.get(f"/proxies/{api.name('nope')}"), 404)


# ----------------------------------------------------------------------- POST|PATCH /proxies/{p}


@pytest.mark.parametrize("method", ["PATCH", "POST"])
def test_update_proxy_keeps_omitted_fields(api: Api, echo_server: Peer, method: str) -> None:
    proxy = api.create_proxy("keep", echo_server.address)
    toxic = api.add_toxic(proxy["name"], type="latency", attributes={"latency": 1})
    response = api.http.request(method, f"/proxies/{proxy['name']}", json={})
    updated = assert_json(response, 200)
    assert updated == {**proxy, "toxics": [toxic]}


def test_update_proxy_upstream_restarts_it_on_the_same_listen_address(
    api: Api, peer_factory: PeerFactory
) -> None:
    one = peer_factory(greeter(b"one"))
    two = peer_factory(greeter(b"two"))
    proxy = api.create_proxy("move", one.address)
    with connect(proxy["listen"]) as old:
        assert recv_exactly(old, 3) == b"one"
        updated = api.patch_proxy(proxy["name"], upstream=two.address)
        assert updated["upstream"] == two.address
        assert updated["listen"] == proxy["listen"]
        assert updated["enabled"] is True
        # Changing the upstream restarts the proxy, which drops its connections.
        expect_closed(old, within=2.0)
    with connect(proxy["listen"]) as new:
        assert recv_exactly(new, 3) == b"two"


def test_update_proxy_errors(api: Api, echo_server: Peer) -> None:
    assert_error(api.http.patch(f"/proxies/{api.name('nope')}", json={"enabled": False}), 404)
    proxy = api.create_proxy("upd-bad", echo_server.address)
    response = api.http.patch(
        f"/proxies/{proxy['name']}",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400)
    assert api.get_proxy(proxy["name"]) == proxy


def test_disable_closes_connections_and_refuses_new_ones_enable_restores(
    api: Api, echo_server: Peer
) -> None:
    proxy = api.create_proxy("down", echo_server.address)
    with connect(proxy["listen"]) as sock:
        round_trip(sock)
        disabled = api.patch_proxy(proxy["name"], enabled=False)
        assert disabled["enabled"] is False
        assert disabled["listen"] == proxy["listen"]
        expect_closed(sock, within=2.0)
    assert_refused(proxy["listen"])
    assert api.get_proxy(proxy["name"])["enabled"] is False
    enabled = api.patch_proxy(proxy["name"], enabled=True)
    assert enabled["enabled"] is True
    assert enabled["listen"] == proxy["listen"]
    with connect(proxy["listen"]) as sock:
        round_trip(sock)


# --------------------------------------------------------------------------- DELETE /proxies/{p}


def test_delete_proxy_stops_it(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("delete", echo_server.address)
    with connect(proxy["listen"]) as sock:
        round_trip(sock)
        assert_empty(api.http.delete(f"/proxies/{proxy['name']}"))
        expect_closed(sock, within=2.0)
    assert_refused(proxy["listen"])
    assert_error(api.http.get(f"/proxies/{proxy['name']}"), 404)
    assert proxy["name"] not in assert_json(api.http.get("/proxies"), 200)
    assert_error(api.http.delete(f"/proxies/{proxy['name']}"), 404)


# --------------------------------------------------------------------------- POST /populate


def test_populate_creates_proxies_and_answers_201(api: Api, echo_server: Peer) -> None:
    names = [api.name("pop-a"), api.name("pop-b")]
    response = api.http.post(
        "/populate",
        json=[
            {"name": names[0], "listen": "127.0.0.1:0", "upstream": echo_server.address},
            {
                "name": names[1],
                "listen": "127.0.0.1:0",
                "upstream": echo_server.address,
                "enabled": False,
            },
        ],
    )
    body = assert_json(response, 201)
    assert isinstance(body, dict)
    assert set(body) == {"proxies"}, body
    created = body["proxies"]
    assert [proxy["name"] for proxy in created] == names
    assert_proxy(created[0], name=names[0], upstream=echo_server.address, enabled=True)
    assert_proxy(created[1], name=names[1], upstream=echo_server.address, enabled=False)
    assert port_of(created[0]["listen"]) != 0
    with connect(created[0]["listen"]) as sock:
        round_trip(sock)
    assert api.get_proxy(names[0]) == created[0]
    assert api.get_proxy(names[1])["enabled"] is False


def test_populate_keeps_an_identical_proxy_with_its_connections_and_toxics(
    api: Api, echo_server: Peer
) -> None:
    proxy = api.create_proxy("same", echo_server.address)
    toxic = api.add_toxic(proxy["name"], type="latency", attributes={"latency": 1})
    with connect(proxy["listen"]) as sock:
        round_trip(sock)
        response = api.http.post(
            "/populate",
            json=[
                {
                    "name": proxy["name"],
                    "listen": proxy["listen"],
                    "upstream": echo_server.address,
                }
            ],
        )
        body = assert_json(response, 201)
        (kept,) = body["proxies"]
        assert kept["listen"] == proxy["listen"]
        assert kept["toxics"] == [toxic]
        # The very same proxy: the open connection survives.
        round_trip(sock)
    assert api.get_proxy(proxy["name"])["toxics"] == [toxic]


def test_populate_replaces_a_different_proxy(api: Api, peer_factory: PeerFactory) -> None:
    one = peer_factory(greeter(b"one"))
    two = peer_factory(greeter(b"two"))
    proxy = api.create_proxy("diff", one.address)
    api.add_toxic(proxy["name"], type="latency", attributes={"latency": 1})
    with connect(proxy["listen"]) as old:
        assert recv_exactly(old, 3) == b"one"
        response = api.http.post(
            "/populate",
            json=[{"name": proxy["name"], "listen": proxy["listen"], "upstream": two.address}],
        )
        body = assert_json(response, 201)
        (replaced,) = body["proxies"]
        assert_proxy(replaced, name=proxy["name"], upstream=two.address)
        assert replaced["listen"] == proxy["listen"]
        # A new proxy: no toxics, and the old one's connections are gone.
        assert replaced["toxics"] == []
        expect_closed(old, within=2.0)
    assert api.get_proxy(proxy["name"]) == replaced
    with connect(proxy["listen"]) as new:
        assert recv_exactly(new, 3) == b"two"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b'{"name": "NAME", "upstream": "127.0.0.1:1"}', id="not-an-array"),
        pytest.param(
            b'[{"name": "NAME", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},'
            b' {"listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}]',
            id="missing-name",
        ),
        pytest.param(
            b'[{"name": "NAME", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},'
            b' {"name": "NAME-2", "listen": "127.0.0.1:0"}]',
            id="missing-upstream",
        ),
    ],
)
def test_populate_rejects_a_bad_body_and_changes_nothing(api: Api, body: bytes) -> None:
    name = api.name("pop-bad")
    api.names.append(f"{name}-2")
    response = api.http.post(
        "/populate",
        content=body.replace(b"NAME", name.encode()),
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400)
    # Validation comes before any change: the valid first entry was not created.
    assert_error(api.http.get(f"/proxies/{name}"), 404)


# --------------------------------------------------------------------------- POST /reset


def test_reset_enables_all_proxies_and_removes_all_toxics(
    server: Server, api: Api, echo_server: Peer
) -> None:
    if not server.own:
        pytest.skip("POST /reset touches every proxy on the server: not on a shared TOXIPROXY_URL")
    up = api.create_proxy("reset-up", echo_server.address)
    down = api.create_proxy("reset-down", echo_server.address)
    api.add_toxic(up["name"], type="latency", attributes={"latency": 1000})
    api.add_toxic(up["name"], type="timeout", stream="upstream")
    api.patch_proxy(down["name"], enabled=False)
    api.add_toxic(down["name"], type="bandwidth", attributes={"rate": 1})
    assert_refused(down["listen"])

    assert_empty(server.http.post("/reset"))

    for proxy in (up, down):
        shown = api.get_proxy(proxy["name"])
        assert shown == {**proxy, "enabled": True, "toxics": []}
        assert assert_json(api.http.get(f"/proxies/{proxy['name']}/toxics"), 200) == []
        with connect(proxy["listen"]) as sock:
            assert round_trip(sock) < 0.5


# --------------------------------------------------------------------------- toxics: index


def test_toxic_index_lists_upstream_first_then_downstream(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("order", echo_server.address)["name"]
    assert assert_json(api.http.get(f"/proxies/{proxy}/toxics"), 200) == []
    added = [
        api.add_toxic(proxy, name="d1", type="latency"),
        api.add_toxic(proxy, name="u1", type="latency", stream="upstream"),
        api.add_toxic(proxy, name="d2", type="noop"),
        api.add_toxic(proxy, name="u2", type="noop", stream="upstream"),
    ]
    by_name = {toxic["name"]: toxic for toxic in added}
    expected = [by_name[name] for name in ("u1", "u2", "d1", "d2")]
    assert assert_json(api.http.get(f"/proxies/{proxy}/toxics"), 200) == expected
    assert api.get_proxy(proxy)["toxics"] == expected


def test_toxic_index_of_unknown_proxy_is_404(api: Api) -> None:
    assert_error(api.http.get(f"/proxies/{api.name('nope')}/toxics"), 404)


# --------------------------------------------------------------------------- toxics: create


def test_create_toxic_answers_200_with_defaults(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("defaults", echo_server.address)["name"]
    response = api.http.post(f"/proxies/{proxy}/toxics", json={"type": "latency"})
    toxic = assert_json(response, 200)  # 200, not 201: Toxiproxy's choice
    assert toxic == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 0, "jitter": 0},
    }
    upstream = api.add_toxic(proxy, type="latency", stream="upstream")
    assert upstream["name"] == "latency_upstream"
    assert upstream["stream"] == "upstream"


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        ("latency", {"latency": 5}),
        ("bandwidth", {}),
        ("slow_close", {}),
        ("timeout", {}),
        ("reset_peer", {}),
        ("slicer", {"average_size": 8}),
        ("limit_data", {}),
        ("noop", {}),
    ],
)
def test_omitted_attributes_are_zero(
    api: Api, echo_server: Peer, kind: str, given: dict[str, int]
) -> None:
    proxy = api.create_proxy("zero", echo_server.address)["name"]
    toxic = api.add_toxic(proxy, type=kind, attributes=given)
    assert_toxic(toxic)
    assert toxic["name"] == f"{kind}_downstream"
    assert toxic["attributes"] == {key: given.get(key, 0) for key in ATTRIBUTES[kind]}
    # Without any "attributes" key at all, the same.
    if kind != "slicer":  # our slicer refuses average_size 0 (a deviation, tested below)
        bare = api.add_toxic(proxy, name="bare", type=kind)
        assert bare["attributes"] == {key: 0 for key in ATTRIBUTES[kind]}


def test_create_toxic_keeps_every_given_field(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("fields", echo_server.address)["name"]
    body: JSON = {
        "name": "slow-ones",
        "type": "latency",
        "stream": "upstream",
        "toxicity": 0.5,
        "attributes": {"latency": 120, "jitter": 7},
    }
    assert api.add_toxic(proxy, **body) == body
    assert assert_json(api.http.get(f"/proxies/{proxy}/toxics/slow-ones"), 200) == body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b'{"type": "latency", "stream": "sideways"}', id="bad-stream"),
        pytest.param(b'{"type": "no_such_toxic"}', id="unknown-type"),
        pytest.param(b'{"name": "typeless"}', id="missing-type"),
        pytest.param(
            b'{"type": "latency", "attributes": {"latency": "slow"}}', id="attribute-not-a-number"
        ),
        pytest.param(b'{"type": "latency", "toxicity": "high"}', id="toxicity-not-a-number"),
    ],
)
def test_create_toxic_rejects_a_bad_body(api: Api, echo_server: Peer, body: bytes) -> None:
    proxy = api.create_proxy("toxic-bad", echo_server.address)["name"]
    response = api.http.post(
        f"/proxies/{proxy}/toxics", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400)
    assert assert_json(api.http.get(f"/proxies/{proxy}/toxics"), 200) == []


def test_create_toxic_on_unknown_proxy_is_404(api: Api) -> None:
    response = api.http.post(f"/proxies/{api.name('nope')}/toxics", json={"type": "latency"})
    assert_error(response, 404)


def test_toxic_names_are_unique_across_both_streams(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("unique", echo_server.address)["name"]
    first = api.add_toxic(proxy, name="only", type="latency", attributes={"latency": 3})
    same_stream = {"name": "only", "type": "noop"}
    other_stream = {"name": "only", "type": "noop", "stream": "upstream"}
    assert_error(api.http.post(f"/proxies/{proxy}/toxics", json=same_stream), 409)
    assert_error(api.http.post(f"/proxies/{proxy}/toxics", json=other_stream), 409)
    # The default name collides too.
    api.add_toxic(proxy, type="latency")
    assert_error(api.http.post(f"/proxies/{proxy}/toxics", json={"type": "latency"}), 409)
    names = [toxic["name"] for toxic in api.get_proxy(proxy)["toxics"]]
    assert names == ["only", "latency_downstream"]
    assert assert_json(api.http.get(f"/proxies/{proxy}/toxics/only"), 200) == first


# --------------------------------------------------------------------------- toxics: show


def test_get_toxic(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("show", echo_server.address)["name"]
    toxic = api.add_toxic(proxy, type="bandwidth", attributes={"rate": 10})
    shown = assert_json(api.http.get(f"/proxies/{proxy}/toxics/bandwidth_downstream"), 200)
    assert shown == toxic
    assert_toxic(shown)
    assert_error(api.http.get(f"/proxies/{proxy}/toxics/nope"), 404)
    assert_error(api.http.get(f"/proxies/{api.name('nope')}/toxics/bandwidth_downstream"), 404)


# --------------------------------------------------------------------------- toxics: update


@pytest.mark.parametrize("method", ["PATCH", "POST"])
def test_update_toxic_merges_attributes(api: Api, echo_server: Peer, method: str) -> None:
    proxy = api.create_proxy("merge", echo_server.address)["name"]
    api.add_toxic(proxy, type="latency", toxicity=0.5, attributes={"latency": 100, "jitter": 10})
    path = f"/proxies/{proxy}/toxics/latency_downstream"

    # Given attributes replaced, the others kept; toxicity kept when omitted.
    updated = assert_json(
        api.http.request(method, path, json={"attributes": {"latency": 1000}}), 200
    )
    assert updated == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 0.5,
        "attributes": {"latency": 1000, "jitter": 10},
    }
    # Toxicity alone: attributes kept.
    updated = assert_json(api.http.request(method, path, json={"toxicity": 0.25}), 200)
    assert updated["toxicity"] == 0.25
    assert updated["attributes"] == {"latency": 1000, "jitter": 10}
    assert assert_json(api.http.get(path), 200) == updated


def test_update_toxic_cannot_change_name_type_or_stream(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("fixed", echo_server.address)["name"]
    api.add_toxic(proxy, name="fixed", type="latency", attributes={"latency": 5})
    response = api.http.patch(
        f"/proxies/{proxy}/toxics/fixed",
        json={
            "name": "renamed",
            "type": "bandwidth",
            "stream": "upstream",
            "attributes": {"latency": 7},
        },
    )
    updated = assert_json(response, 200)
    assert updated == {
        "name": "fixed",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 7, "jitter": 0},
    }
    assert_error(api.http.get(f"/proxies/{proxy}/toxics/renamed"), 404)
    assert api.get_proxy(proxy)["toxics"] == [updated]


def test_update_toxic_errors(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("upd-toxic", echo_server.address)["name"]
    toxic = api.add_toxic(proxy, type="latency", attributes={"latency": 5})
    path = f"/proxies/{proxy}/toxics/latency_downstream"
    assert_error(api.http.patch(f"/proxies/{proxy}/toxics/nope", json={"toxicity": 1}), 404)
    assert_error(api.http.patch(f"/proxies/{api.name('nope')}/toxics/x", json={"toxicity": 1}), 404)
    response = api.http.patch(
        path, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 400)
    response = api.http.patch(path, json={"attributes": {"latency": "slow"}})
    assert_error(response, 400)
    assert assert_json(api.http.get(path), 200) == toxic


# --------------------------------------------------------------------------- toxics: delete


def test_delete_toxic(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("del-toxic", echo_server.address)["name"]
    api.add_toxic(proxy, type="latency", attributes={"latency": 5})
    path = f"/proxies/{proxy}/toxics/latency_downstream"
    assert_empty(api.http.delete(path))
    assert_error(api.http.get(path), 404)
    assert_error(api.http.delete(path), 404)
    assert assert_json(api.http.get(f"/proxies/{proxy}/toxics"), 200) == []
    assert_error(api.http.delete(f"/proxies/{api.name('nope')}/toxics/latency_downstream"), 404)


# --------------------------------------------------------------------------- deviations


@pytest.mark.parametrize(
    ("kind", "attributes"),
    [
        ("latency", {"latency": -1}),
        ("latency", {"latency": 10, "jitter": -5}),
        ("bandwidth", {"rate": -1}),
        ("slow_close", {"delay": -1}),
        ("timeout", {"timeout": -1}),
        ("reset_peer", {"timeout": -1}),
        ("limit_data", {"bytes": -1}),
        ("slicer", {"average_size": 10, "delay": -1}),
        ("slicer", {"average_size": 0}),
        ("slicer", {"average_size": 10, "size_variation": 10}),
        ("slicer", {"average_size": 10, "size_variation": 12}),
    ],
)
def test_invalid_attributes_are_400(
    server: Server, api: Api, echo_server: Peer, kind: str, attributes: dict[str, int]
) -> None:
    # DEVIATION: Toxiproxy accepts negative attributes, and a slicer that cannot
    # slice (average_size 0, size_variation >= average_size); asyncfaults refuses
    # them up front with 400, on create and on update.
    only_on_asyncfaults(server, "invalid toxic attributes are refused with 400")
    proxy = api.create_proxy("invalid", echo_server.address)["name"]
    response = api.http.post(
        f"/proxies/{proxy}/toxics", json={"type": kind, "attributes": attributes}
    )
    assert_error(response, 400)
    valid = {"average_size": 10} if kind == "slicer" else {}
    api.add_toxic(proxy, name="valid", type=kind, attributes=valid)
    response = api.http.patch(f"/proxies/{proxy}/toxics/valid", json={"attributes": attributes})
    assert_error(response, 400)
    assert assert_json(api.http.get(f"/proxies/{proxy}/toxics/valid"), 200)["attributes"] == {
        key: valid.get(key, 0) for key in ATTRIBUTES[kind]
    }


def test_half_close_is_passed_through(server: Server, api: Api, peer_factory: PeerFactory) -> None:
    # DEVIATION: Toxiproxy closes the whole connection when either side sends
    # EOF; asyncfaults passes the half-close through, as a TCP proxy should, so
    # a reply sent after the client's EOF still reaches it.
    only_on_asyncfaults(server, "a half-close is passed through")

    def answer_after_eof(conn: socket.socket) -> None:
        request = bytearray()
        while data := conn.recv(65536):
            request += data
        time.sleep(0.1)
        conn.sendall(b"reply to " + bytes(request))

    upstream = peer_factory(answer_after_eof)
    proxy = api.create_proxy("half", upstream.address)
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"request")
        sock.shutdown(socket.SHUT_WR)
        assert read_until_eof(sock, within=5.0) == b"reply to request"


def test_stats_extension(server: Server, api: Api, echo_server: Peer) -> None:
    # DEVIATION (extension): GET /proxies/{p}/stats exists only in asyncfaults.
    only_on_asyncfaults(server, "the GET /proxies/{p}/stats extension")
    proxy = api.create_proxy("stats", echo_server.address)
    with connect(proxy["listen"]) as sock:
        round_trip(sock, b"x" * 100)
    stats = assert_json(api.http.get(f"/proxies/{proxy['name']}/stats"), 200)
    assert isinstance(stats, dict)
    assert stats["accepted"] == 1
    assert stats["bytes_upstream"] == 100
    assert stats["bytes_downstream"] == 100
    assert_error(api.http.get(f"/proxies/{api.name('nope')}/stats"), 404)


# --------------------------------------------------------------------------- behaviour on a socket


def test_noop_passes_data_unchanged(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("noop", echo_server.address)
    api.add_toxic(proxy["name"], type="noop")
    api.add_toxic(proxy["name"], type="noop", stream="upstream")
    payload = bytes(range(256)) * 64
    with connect(proxy["listen"]) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload


def test_unreachable_upstream_closes_the_client_connection(api: Api) -> None:
    proxy = api.create_proxy("unreachable", f"127.0.0.1:{free_port()}")
    with connect(proxy["listen"]) as sock:
        expect_closed(sock, within=5.0)


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_latency_delays_each_chunk(api: Api, echo_server: Peer, stream: str) -> None:
    proxy = api.create_proxy("latency", echo_server.address)
    api.add_toxic(proxy["name"], type="latency", stream=stream, attributes={"latency": 100})
    with connect(proxy["listen"]) as sock:
        samples = sorted(round_trip(sock) for _ in range(5))
    assert samples[0] >= 0.100 - EARLY
    assert samples[len(samples) // 2] <= 0.100 + LATE


def test_latency_jitter_stays_within_bounds(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("jitter", echo_server.address)
    api.add_toxic(proxy["name"], type="latency", attributes={"latency": 80, "jitter": 40})
    with connect(proxy["listen"]) as sock:
        samples = [round_trip(sock) for _ in range(10)]
    assert min(samples) >= 0.040 - EARLY
    assert sorted(samples)[len(samples) // 2] <= 0.120 + LATE


def test_stacked_latencies_add(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("stacked", echo_server.address)["name"]
    api.add_toxic(proxy, name="a", type="latency", attributes={"latency": 60})
    api.add_toxic(proxy, name="b", type="latency", attributes={"latency": 40})
    api.add_toxic(proxy, name="c", type="latency", stream="upstream", attributes={"latency": 50})
    with connect(api.get_proxy(proxy)["listen"]) as sock:
        samples = sorted(round_trip(sock) for _ in range(4))
    assert samples[0] >= 0.150 - EARLY
    assert samples[len(samples) // 2] <= 0.150 + LATE


def test_latency_counts_from_when_each_chunk_was_read(api: Api, echo_server: Peer) -> None:
    """Chunks sent 100 ms apart under 150 ms latency each arrive 150 ms after sending.

    Delaying each chunk after the previous one was delivered would pile up:
    the fourth would come 300 ms later than this.
    """
    proxy = api.create_proxy("pipeline", echo_server.address)
    api.add_toxic(proxy["name"], type="latency", attributes={"latency": 150})
    messages = b"abcd"
    gap = 0.100
    sent: list[float] = []
    arrived: list[float] = []
    with connect(proxy["listen"]) as sock:
        start = time.perf_counter()
        deadline = start + IO_TIMEOUT
        while len(arrived) < len(messages):
            now = time.perf_counter()
            assert now < deadline, "the echoes did not come back in time"
            if len(sent) < len(messages) and now >= start + len(sent) * gap:
                sock.sendall(messages[len(sent) : len(sent) + 1])
                sent.append(time.perf_counter())
                continue
            wake = start + len(sent) * gap if len(sent) < len(messages) else deadline
            sock.settimeout(max(0.001, wake - now))
            try:
                data = sock.recv(16)
            except TimeoutError:
                continue
            assert data, "the proxy closed the connection"
            assert data == messages[len(arrived) : len(arrived) + len(data)]
            arrived.extend([time.perf_counter()] * len(data))
    delays = [got - put for put, got in zip(sent, arrived, strict=True)]
    assert min(delays) >= 0.150 - EARLY, delays
    assert max(delays) <= 0.150 + LATE, delays


def test_toxic_applies_to_open_connections_and_removal_restores(
    api: Api, echo_server: Peer
) -> None:
    proxy = api.create_proxy("live", echo_server.address)["name"]
    with connect(api.get_proxy(proxy)["listen"]) as sock:
        assert round_trip(sock) < 0.150
        api.add_toxic(proxy, type="latency", attributes={"latency": 150})
        assert round_trip(sock) >= 0.150 - EARLY
        api.add_toxic(proxy, name="more", type="latency", attributes={"latency": 0})
        response = api.http.patch(
            f"/proxies/{proxy}/toxics/more", json={"attributes": {"latency": 100}}
        )
        assert response.status_code == 200, response.text
        assert round_trip(sock) >= 0.250 - EARLY
        api.remove_toxic(proxy, "latency_downstream")
        api.remove_toxic(proxy, "more")
        assert round_trip(sock) < 0.150


def test_toxicity_zero_never_applies(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("toxicity", echo_server.address)
    api.add_toxic(proxy["name"], type="latency", toxicity=0.0, attributes={"latency": 300})
    for _ in range(3):
        with connect(proxy["listen"]) as sock:
            assert round_trip(sock) < 0.300 - LATE


def test_bandwidth_limits_the_rate(api: Api, echo_server: Peer) -> None:
    rate = 100  # KB/s, 1 KB = 1000 bytes
    size = 50_000
    proxy = api.create_proxy("bandwidth", echo_server.address)
    api.add_toxic(proxy["name"], type="bandwidth", attributes={"rate": rate})
    payload = bytes(range(250)) * (size // 250)
    with connect(proxy["listen"]) as sock:
        elapsed = round_trip(sock, payload)
    expected = size / (rate * 1000)
    assert elapsed >= expected - EARLY
    assert elapsed <= expected + LATE


def test_slow_close_holds_the_eof(api: Api, peer_factory: PeerFactory) -> None:
    def answer_and_close(conn: socket.socket) -> None:
        conn.recv(10)
        conn.sendall(b"bye")

    upstream = peer_factory(answer_and_close)
    proxy = api.create_proxy("slow-close", upstream.address)
    api.add_toxic(proxy["name"], type="slow_close", attributes={"delay": 200})
    with connect(proxy["listen"]) as sock:
        started = time.perf_counter()
        sock.sendall(b"go")
        assert recv_exactly(sock, 3) == b"bye"
        assert time.perf_counter() - started < LATE  # the data itself is not held
        sock.settimeout(5.0)
        assert sock.recv(10) == b""
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.200 - EARLY
    assert elapsed <= 0.200 + LATE


def test_timeout_zero_drops_data_and_holds_the_connection(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("blackhole", echo_server.address)
    api.add_toxic(proxy["name"], type="timeout", attributes={"timeout": 0})
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"into the void")
        assert_silent(sock, 0.5)
        # Removing the toxic closes the connections it held.
        api.remove_toxic(proxy["name"], "timeout_downstream")
        expect_closed(sock, within=2.0)


def test_timeout_closes_after_the_delay_without_data(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("timeout", echo_server.address)
    api.add_toxic(proxy["name"], type="timeout", attributes={"timeout": 200})
    started = time.perf_counter()
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"dropped")
        assert read_until_eof(sock, within=5.0) == b""
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.200 - EARLY
    assert elapsed <= 0.200 + LATE


def test_reset_peer_resets_on_first_data(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("reset", echo_server.address)
    api.add_toxic(proxy["name"], type="reset_peer", stream="upstream")
    with connect(proxy["listen"]) as sock:
        # Connecting alone does nothing.
        assert_silent(sock, 0.2)
        sock.sendall(b"x")
        sock.settimeout(5.0)
        with pytest.raises(ConnectionResetError) as caught:
            sock.recv(10)
        assert caught.value.errno == errno.ECONNRESET


def test_reset_peer_waits_its_timeout(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("reset-later", echo_server.address)
    api.add_toxic(proxy["name"], type="reset_peer", attributes={"timeout": 200})
    with connect(proxy["listen"]) as sock:
        started = time.perf_counter()
        sock.sendall(b"x")
        sock.settimeout(5.0)
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.200 - EARLY
    assert elapsed <= 0.200 + LATE


def test_slicer_cuts_data_into_delayed_pieces(api: Api, echo_server: Peer) -> None:
    average, variation, delay_us = 10, 5, 50_000
    proxy = api.create_proxy("slicer", echo_server.address)
    api.add_toxic(
        proxy["name"],
        type="slicer",
        attributes={"average_size": average, "size_variation": variation, "delay": delay_us},
    )
    payload = bytes(range(60))
    pieces: list[bytes] = []
    with connect(proxy["listen"]) as sock:
        sock.sendall(payload)
        first_at = last_at = 0.0
        while sum(map(len, pieces)) < len(payload):
            data = sock.recv(1024)
            assert data, "the proxy closed the connection"
            last_at = time.perf_counter()
            first_at = first_at or last_at
            pieces.append(data)
    assert b"".join(pieces) == payload
    # No piece is bigger than average + variation (the first one is read before
    # the next is due), and they come `delay` apart: at least 60 / 15 pieces.
    assert len(pieces[0]) <= average + variation
    minimum_pieces = -(-len(payload) // (average + variation))
    assert last_at - first_at >= (minimum_pieces - 1) * delay_us / 1e6 - EARLY


def test_limit_data_passes_that_many_bytes_then_closes(api: Api, echo_server: Peer) -> None:
    proxy = api.create_proxy("limit", echo_server.address)
    api.add_toxic(proxy["name"], type="limit_data", attributes={"bytes": 10})
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"0123456789abcdefghijklmnopqrst")
        assert read_until_eof(sock, within=5.0) == b"0123456789"
