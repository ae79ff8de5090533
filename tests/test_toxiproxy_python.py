"""A third-party client, ``toxiproxy-python``, driving ``asyncfaults serve``.

The client was written for the real Toxiproxy and knows nothing of us: if it
works unchanged (proxies, toxics, disable/enable, reset, its error classes)
and real traffic through the proxy does what it asked for, the server is a
drop-in replacement for that client's users.

The client keeps its server address in class attributes and sends its
requests without a timeout; the fixture points it at our child server and
bounds every request, and puts both back afterwards.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import toxiproxy
import toxiproxy.api
from conftest import IO_TIMEOUT, Peer, connect, expect_closed, recv_exactly
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from pytest_asyncfaults._backends._process import ServeProcess, start_serve_process

LATE = 0.250
"""How late a timed effect may be on a loaded machine, in seconds."""


class _BoundedRequests:
    """``requests`` as the client uses it, with a timeout on every call."""

    @staticmethod
    def get(url: str, **kwargs: Any) -> requests.Response:
        return requests.get(url, timeout=IO_TIMEOUT, **kwargs)

    @staticmethod
    def post(url: str, **kwargs: Any) -> requests.Response:
        return requests.post(url, timeout=IO_TIMEOUT, **kwargs)

    @staticmethod
    def delete(url: str, **kwargs: Any) -> requests.Response:
        return requests.delete(url, timeout=IO_TIMEOUT, **kwargs)


@pytest.fixture(scope="module")
def served() -> Iterator[ServeProcess]:
    child = start_serve_process(seed=11)
    yield child
    child.stop()


@pytest.fixture
def server(served: ServeProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The client's ``Toxiproxy`` object, talking to our child; left empty afterwards."""
    address = urlsplit(served.url)
    assert address.hostname is not None
    assert address.port is not None
    monkeypatch.setattr(APIConsumer, "host", APIConsumer.host)
    monkeypatch.setattr(APIConsumer, "port", APIConsumer.port)
    monkeypatch.setattr(toxiproxy.api, "requests", _BoundedRequests)
    client = toxiproxy.Toxiproxy()
    client.update_api_consumer(address.hostname, address.port)
    yield client
    client.destroy_all()


def round_trip(address: str, payload: bytes = b"ping") -> float:
    with connect(address) as sock:
        started = time.perf_counter()
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
        return time.perf_counter() - started


def median_round_trip(address: str, times: int = 5) -> float:
    return statistics.median(round_trip(address) for _ in range(times))


def test_version_and_running(server: Any) -> None:
    assert server.running() is True
    assert b'"version":"2.12.0"' in server.version()


def test_create_list_and_destroy(server: Any, echo_server: Peer) -> None:
    proxy = server.create(upstream=echo_server.address, name="echo")
    assert proxy.enabled is True
    assert proxy.upstream == echo_server.address
    host, _, port = proxy.listen.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) != 0  # port 0 came back resolved
    assert set(server.proxies()) == {"echo"}
    assert server.get_proxy("echo").listen == proxy.listen
    assert round_trip(proxy.listen) < 1.0
    with pytest.raises(ProxyExists):
        server.create(upstream=echo_server.address, name="echo")
    assert server.destroy(proxy) is True
    assert server.get_proxy("echo") is None
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen, timeout=2.0).close()


def test_latency_toxic_delays_replies_until_removed(server: Any, echo_server: Peer) -> None:
    proxy = server.create(upstream=echo_server.address, name="slow")
    before = median_round_trip(proxy.listen)
    proxy.add_toxic(type="latency", attributes={"latency": 100})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream"}
    toxic = toxics["latency_downstream"]
    assert (toxic.type, toxic.stream, toxic.toxicity) == ("latency", "downstream", 1.0)
    assert toxic.attributes == {"latency": 100, "jitter": 0}
    delayed = median_round_trip(proxy.listen, times=3)
    assert 0.100 <= delayed < 0.100 + LATE
    assert proxy.destroy_toxic("latency_downstream") is True
    assert proxy.toxics() == {}
    assert median_round_trip(proxy.listen) < before + LATE


def test_upstream_latency_stacks_with_downstream(server: Any, echo_server: Peer) -> None:
    proxy = server.create(upstream=echo_server.address, name="stacked")
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 60})
    proxy.add_toxic(type="latency", attributes={"latency": 60})
    # Upstream toxics are listed first, as by Toxiproxy.
    assert [t.stream for t in proxy.toxics().values()] == ["upstream", "downstream"]
    assert 0.120 <= median_round_trip(proxy.listen, times=3) < 0.120 + LATE


def test_blackhole_holds_the_connection_until_removed(server: Any, echo_server: Peer) -> None:
    proxy = server.create(upstream=echo_server.address, name="hole")
    proxy.add_toxic(name="blackhole", type="timeout", attributes={"timeout": 0})
    with connect(proxy.listen) as sock:
        sock.sendall(b"anyone?")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # no data, and no close either: held open
        proxy.destroy_toxic("blackhole")
        # Toxiproxy closes what a timeout toxic held when it is removed.
        expect_closed(sock)
    assert round_trip(proxy.listen) < 1.0


def test_disabled_proxy_refuses_and_closes_then_enable_restores(
    server: Any, echo_server: Peer
) -> None:
    proxy = server.create(upstream=echo_server.address, name="flaky")
    with connect(proxy.listen) as sock:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
        with proxy.down():
            assert server.get_proxy("flaky").enabled is False
            expect_closed(sock)
            with pytest.raises(ConnectionRefusedError):
                connect(proxy.listen, timeout=2.0).close()
    assert server.get_proxy("flaky").enabled is True
    assert round_trip(proxy.listen) < 1.0


def test_reset_enables_everything_and_removes_toxics(server: Any, echo_server: Peer) -> None:
    proxy = server.create(upstream=echo_server.address, name="messy")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    proxy.disable()
    assert server.reset() is True
    again = server.get_proxy("messy")
    assert again.enabled is True
    assert again.toxics() == {}
    assert round_trip(proxy.listen) < 1.0


def test_populate_creates_what_is_missing(server: Any, echo_server: Peer) -> None:
    created = server.populate(
        [
            {"name": "one", "upstream": echo_server.address, "listen": "127.0.0.1:0"},
            {"name": "two", "upstream": echo_server.address, "listen": "127.0.0.1:0"},
        ]
    )
    assert sorted(proxy.name for proxy in created) == ["one", "two"]
    for proxy in created:
        assert round_trip(proxy.listen) < 1.0


def test_client_errors_map_to_its_exceptions(server: Any, echo_server: Peer) -> None:
    proxy = server.create(upstream=echo_server.address, name="errors")
    with pytest.raises(InvalidToxic) as invalid:
        proxy.add_toxic(type="no_such_toxic")
    assert b"type='no_such_toxic'" in invalid.value.args[0]
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", attributes={"latency": "slow"})
    with pytest.raises(NotFound):
        proxy.destroy_toxic("missing")
    proxy.add_toxic(type="noop")
    with pytest.raises(ProxyExists):  # 409: toxic names are unique
        proxy.add_toxic(type="noop")
    proxy.destroy()
    with pytest.raises(NotFound):
        proxy.destroy()


def test_proxy_is_plain_tcp(
    server: Any, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    """A half-close passes through, as it would without the proxy."""

    def upper(conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        conn.sendall(data.upper())
        conn.shutdown(socket.SHUT_WR)

    peer = peer_factory(upper)
    proxy = server.create(upstream=peer.address, name="tcp")
    with connect(proxy.listen) as sock:
        sock.sendall(b"hello")
        sock.shutdown(socket.SHUT_WR)
        assert recv_exactly(sock, 5) == b"HELLO"
        assert sock.recv(10) == b""
