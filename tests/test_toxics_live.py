"""Each toxic measured on real loopback sockets through the running engine.

Tolerances are honest for a loaded 2-core machine: a toxic may never act
early, and may be late by a scheduling hiccup (tens of ms), not more.
"""

from __future__ import annotations

import errno
import socket
import statistics
import time
from collections.abc import Callable

import pytest
from conftest import Peer, connect, expect_closed, recv_exactly

from pytest_asyncfaults import Engine, make_toxic

LATE = 0.250
"""How late a timed effect may be on a loaded 2-core machine (another test run beside
this one), in seconds. Never early is checked strictly; precision is bench/proxy.py's job."""


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    started = time.perf_counter()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.perf_counter() - started


def expect_eof(sock: socket.socket, within: float) -> float:
    """Wait for the peer's EOF; returns when it came. Data before it is an error."""
    started = time.perf_counter()
    sock.settimeout(within)
    assert sock.recv(100) == b""
    return time.perf_counter() - started


def test_latency_delays_each_reply(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    with connect(info.listen) as sock:
        base = statistics.median(round_trip(sock) for _ in range(20))
        engine.add_toxic("p", make_toxic("latency", attributes={"latency": 100}))
        samples = [round_trip(sock) - base for _ in range(10)]
    assert min(samples) >= 0.099
    assert statistics.median(samples) <= 0.100 + LATE


def test_latency_jitter_stays_within_bounds(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("latency", attributes={"latency": 60, "jitter": 30}))
    with connect(info.listen) as sock:
        samples = [round_trip(sock) for _ in range(40)]
    assert min(samples) >= 0.030
    assert max(samples) <= 0.090 + LATE
    # Jitter is real: the spread covers a good part of the +/-30 ms window.
    assert max(samples) - min(samples) >= 0.020


def test_stacked_latencies_add(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("latency", name="a", attributes={"latency": 60}))
    engine.add_toxic("p", make_toxic("latency", name="b", attributes={"latency": 40}))
    engine.add_toxic(
        "p", make_toxic("latency", name="c", stream="upstream", attributes={"latency": 50})
    )
    with connect(info.listen) as sock:
        samples = [round_trip(sock) for _ in range(5)]
    assert min(samples) >= 0.150
    assert statistics.median(samples) <= 0.150 + LATE


def test_bandwidth_limits_the_rate(
    engine: Engine, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    size = 200_000

    def send_block(conn: socket.socket) -> None:
        conn.recv(1)
        conn.sendall(b"b" * size)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    server = peer_factory(send_block)
    info = engine.create_proxy("p", server.address)
    engine.add_toxic("p", make_toxic("bandwidth", attributes={"rate": 400}))  # 400 KB/s
    with connect(info.listen) as sock:
        sock.sendall(b"go")
        started = time.perf_counter()
        received = recv_exactly(sock, size)
        elapsed = time.perf_counter() - started
    assert len(received) == size
    expected = size / 400_000  # 0.5 s
    assert expected - 0.02 <= elapsed <= expected + 0.25


def test_slow_close_holds_the_eof(
    engine: Engine, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    def reply_and_close(conn: socket.socket) -> None:
        conn.recv(10)
        conn.sendall(b"bye")
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    server = peer_factory(reply_and_close)
    info = engine.create_proxy("p", server.address)
    engine.add_toxic("p", make_toxic("slow_close", attributes={"delay": 300}))
    with connect(info.listen) as sock:
        sock.sendall(b"hi")
        started = time.perf_counter()
        assert recv_exactly(sock, 3) == b"bye"
        assert time.perf_counter() - started < 0.1  # data is not delayed
        eof_after = expect_eof(sock, 5)
    assert 0.25 <= eof_after <= 0.3 + LATE


def test_timeout_zero_holds_the_connection_and_drops_data(
    engine: Engine, echo_server: Peer
) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("timeout", attributes={"timeout": 0}))
    with connect(info.listen) as sock:
        sock.sendall(b"anyone there?")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # neither data nor EOF: the connection is held
        assert engine.stats("p").open == 1


def test_timeout_closes_after_the_delay(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("timeout", attributes={"timeout": 300}))
    started = time.perf_counter()
    with connect(info.listen) as sock:
        sock.sendall(b"hello")
        sock.settimeout(5)
        assert sock.recv(100) == b""
    assert 0.29 <= time.perf_counter() - started <= 0.3 + LATE


def test_removing_a_timeout_closes_the_held_connections(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("timeout", attributes={"timeout": 0}))
    with connect(info.listen) as first, connect(info.listen) as second:
        first.sendall(b"x")
        second.sendall(b"y")
        time.sleep(0.1)
        engine.remove_toxic("p", "timeout_downstream")
        assert expect_eof(first, 2) < 1
        assert expect_eof(second, 2) < 1
    # New connections are served again.
    with connect(info.listen) as sock:
        sock.sendall(b"ok")
        assert recv_exactly(sock, 2) == b"ok"


def test_reset_peer_gives_the_client_econnreset(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("reset_peer", attributes={"timeout": 100}))
    with connect(info.listen) as sock:
        started = time.perf_counter()
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError) as caught:
            sock.recv(100)
        assert caught.value.errno == errno.ECONNRESET
    assert 0.095 <= time.perf_counter() - started <= 0.1 + LATE


def test_reset_peer_upstream_resets_on_first_write(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("reset_peer", stream="upstream"))
    with connect(info.listen) as sock:
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            sock.recv(100)


def test_slicer_cuts_data_in_small_pieces(
    engine: Engine, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    received: list[int] = []
    payload = bytes(range(256)) * 4

    def record_pieces(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b""
        while len(data) < len(payload):
            piece = conn.recv(65536)
            if not piece:
                break
            received.append(len(piece))
            data += piece
        conn.sendall(b"ok" if data == payload else b"no")

    server = peer_factory(record_pieces)
    info = engine.create_proxy("p", server.address)
    engine.add_toxic(
        "p",
        make_toxic(
            "slicer",
            stream="upstream",
            attributes={"average_size": 16, "size_variation": 4, "delay": 5000},
        ),
    )
    with connect(info.listen) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, 2) == b"ok"  # intact and in order
    # Pieces leave 5 ms apart; the receiver may merge a few when it is slow to
    # wake, but most reads are single pieces of at most 16 + 4 bytes.
    assert len(received) >= len(payload) / 20 / 2
    assert statistics.median(received) <= 20


def test_limit_data_truncates_then_closes(
    engine: Engine, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    def talk(conn: socket.socket) -> None:
        conn.recv(10)
        conn.sendall(b"0123456789" * 10)
        conn.recv(1)

    server = peer_factory(talk)
    info = engine.create_proxy("p", server.address)
    engine.add_toxic("p", make_toxic("limit_data", attributes={"bytes": 25}))
    with connect(info.listen) as sock:
        sock.sendall(b"go")
        assert recv_exactly(sock, 100) == b"0123456789" * 2 + b"01234"
        assert expect_eof(sock, 2) < 1


def test_disable_refuses_and_enable_restores(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    with connect(info.listen) as held:
        held.sendall(b"a")
        assert recv_exactly(held, 1) == b"a"
        engine.update_proxy("p", enabled=False)
        # The open connection is closed, and no new one is accepted.
        expect_closed(held, 2)
    with pytest.raises(ConnectionRefusedError):
        connect(info.listen, timeout=2)
    assert engine.proxy("p").enabled is False
    restored = engine.update_proxy("p", enabled=True)
    assert restored.listen == info.listen  # same address as before
    with connect(info.listen) as sock:
        sock.sendall(b"back")
        assert recv_exactly(sock, 4) == b"back"
