"""The Toxiproxy HTTP client and host: error mapping, fail-fast, and the same
``faults`` API running on ``asyncfaults serve`` in a child process."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import pytest_asyncio
from conftest import Peer, connect, recv_exactly

from pytest_asyncfaults import (
    AlreadyExistsError,
    AsyncFaultsError,
    EngineError,
    Faults,
    InvalidError,
    ListenError,
    NotFoundError,
    make_toxic,
)
from pytest_asyncfaults._backends._process import ServeProcess, start_serve_process
from pytest_asyncfaults._backends._toxiproxy import ToxiproxyHost


@pytest.fixture(scope="module")
def serve() -> Iterator[ServeProcess]:
    child = start_serve_process(seed=5)
    yield child
    child.stop()


@pytest.fixture
def host(serve: ServeProcess) -> Iterator[ToxiproxyHost]:
    with ToxiproxyHost(serve.url) as running:
        yield running
        for name in running.proxies():
            running.delete_proxy(name)


def test_unreachable_url_fails_fast_and_says_how_to_start_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EngineError) as caught:
        ToxiproxyHost(f"http://127.0.0.1:{port}").start()
    assert time.monotonic() - started < 2.5
    message = str(caught.value)
    assert f"no Toxiproxy server answers at http://127.0.0.1:{port}" in message
    assert "asyncfaults serve" in message


def test_a_silent_server_fails_within_two_seconds() -> None:
    # Accepts the TCP connection (the backlog does) but never answers HTTP.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(EngineError, match="no Toxiproxy server answers"):
            ToxiproxyHost(f"http://127.0.0.1:{port}").start()
        assert time.monotonic() - started < 2.5


def test_server_errors_map_onto_the_exception_tree(host: ToxiproxyHost, echo_server: Peer) -> None:
    host.create_proxy("p", echo_server.address)
    with pytest.raises(AlreadyExistsError, match=r"Toxiproxy at http://.*: proxy 'p' already"):
        host.create_proxy("p", echo_server.address)
    with pytest.raises(NotFoundError, match="proxy 'missing' not found"):
        host.proxy("missing")
    host.add_toxic("p", make_toxic("latency"))
    with pytest.raises(InvalidError, match=r"latency\.latency=-1 is not valid"):
        host.update_toxic("p", "latency_downstream", attributes={"latency": -1})
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match="address already in use"):
            host.create_proxy("q", echo_server.address, listen=f"127.0.0.1:{port}")


def test_host_drives_traffic_like_the_engine(host: ToxiproxyHost, echo_server: Peer) -> None:
    assert host.client.extensions  # asyncfaults serve: counters and our extras work
    info = host.create_proxy("p", echo_server.address)
    host.add_toxic("p", make_toxic("latency", attributes={"latency": 150}, connections="2+"))
    with connect(info.listen) as first, connect(info.listen) as second:
        for sock, slow in ((first, False), (second, True)):
            started = time.perf_counter()
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
            assert (time.perf_counter() - started >= 0.149) is slow
    stats = host.stats("p")
    assert (stats.accepted, stats.toxics_hit["latency_downstream"]) == (2, 1)


def test_a_toxic_added_and_removed_counted_brings_the_counters_in_the_same_request(
    host: ToxiproxyHost, echo_server: Peer
) -> None:
    """A fault window's two ends: one request each, the counters riding along."""
    info = host.create_proxy("p", echo_server.address)
    client = host.client
    with connect(info.listen) as sock:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
        spec, opened = host.call(client.open_toxic, "p", make_toxic("latency"), counted=True)
        assert spec.name == "latency_downstream"
        assert opened is not None
        assert (opened.accepted, opened.open, opened.bytes_upstream) == (1, 1, 1)
        with connect(info.listen) as other:
            other.sendall(b"yz")
            assert recv_exactly(other, 2) == b"yz"
            closing = host.call(client.close_toxic, "p", spec.name, counted=True)
    assert closing is not None
    assert (closing.accepted, closing.open, closing.toxics_hit[spec.name]) == (2, 2, 2)
    assert host.toxics("p") == ()  # removed
    # gone already (by hand, or with its proxy): nothing to remove, nothing counted
    assert host.call(client.close_toxic, "p", spec.name, counted=True) is None
    assert host.call(client.close_toxic, "nowhere", spec.name, counted=True) is None
    # uncounted, or on a real Toxiproxy (no extension): Toxiproxy's requests alone
    assert host.call(client.open_toxic, "p", make_toxic("latency"), counted=False)[1] is None
    client.extensions = False
    assert host.call(client.close_toxic, "p", spec.name, counted=True) is None
    assert host.call(client.open_toxic, "p", make_toxic("latency"), counted=True)[1] is None


def test_extras_on_a_plain_toxiproxy_are_refused(host: ToxiproxyHost, echo_server: Peer) -> None:
    host.create_proxy("p", echo_server.address)
    host.client.extensions = False  # as a real Toxiproxy would be seen
    with pytest.raises(InvalidError, match="duration is not supported by the Toxiproxy at"):
        host.add_toxic("p", make_toxic("latency", duration=100))
    with pytest.raises(AsyncFaultsError, match="keeps no counters"):
        host.stats("p")
    host.add_toxic("p", make_toxic("latency"))  # plain toxics still work


def test_protocol_toxics_on_a_plain_toxiproxy_are_refused_naming_the_engine(
    host: ToxiproxyHost, echo_server: Peer
) -> None:
    host.create_proxy("p", echo_server.address)
    host.add_toxic("p", make_toxic("pg_error", attributes={"sqlstate": "40001"}))  # serve: fine
    assert host.protocol_events("p") == ()
    host.client.extensions = False  # as a real Toxiproxy would be seen
    with pytest.raises(InvalidError) as refused:
        host.add_toxic("p", make_toxic("smtp_reply", attributes={"command": "rcpt", "code": 550}))
    assert str(refused.value) == (
        f"type='smtp_reply' is not supported by the Toxiproxy at {host.url}: smtp_reply is a "
        f"protocol toxic of pytest-asyncfaults' embedded engine (Toxiproxy only knows bytes): "
        f"use the embedded engine (no --toxiproxy-url) or `asyncfaults serve`"
    )
    with pytest.raises(AsyncFaultsError, match="has no protocol toxics"):
        host.protocol_events("p")


@pytest_asyncio.fixture
async def remote_faults(host: ToxiproxyHost) -> Faults:
    return Faults(host, prefix="t-")


@pytest.mark.asyncio
async def test_faults_api_runs_unchanged_on_serve(
    remote_faults: Faults, host: ToxiproxyHost, echo_server: Peer
) -> None:
    proxy = await remote_faults.create("db", echo_server.address)
    assert proxy.name == "db"
    assert proxy.server_name == "t-db"
    async with proxy.latency(120) as toxic:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        started = time.perf_counter()
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        assert time.perf_counter() - started >= 0.119
        writer.close()
        assert toxic.hits == 1
    assert await proxy.toxics() == ()
    async with proxy.down():
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(proxy.host, proxy.port)
    await remote_faults.aclose()
    assert "t-db" not in host.proxies()
