"""The engine as a TCP proxy: exact bytes, half-close, live toxics, targeting,
seeded toxicity, errors, and nothing left behind."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable

import pytest
from conftest import IO_TIMEOUT, Peer, connect, echo, expect_closed, recv_exactly

from pytest_asyncfaults import (
    AlreadyExistsError,
    Engine,
    EngineError,
    InvalidError,
    ListenError,
    NotFoundError,
    make_toxic,
)

MB = 1024 * 1024


def test_passthrough_is_byte_exact_both_ways(
    engine: Engine, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    """100 MB each way, random write sizes on both ends, hashes compared."""
    total = 100 * MB
    seen_by_server = hashlib.sha256()
    sent_by_server = hashlib.sha256()

    def server(conn: socket.socket) -> None:
        # Reads everything, hashing it, while a thread writes its own stream back.
        rng = random.Random(2)

        def write_back() -> None:
            left = total
            while left:
                block = rng.randbytes(min(left, rng.randint(1, 256 * 1024)))
                sent_by_server.update(block)
                conn.sendall(block)
                left -= len(block)
            conn.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write_back)
        writer.start()
        while data := conn.recv(rng.randint(1, 512 * 1024)):
            seen_by_server.update(data)
        writer.join(IO_TIMEOUT * 6)

    peer = peer_factory(server)
    info = engine.create_proxy("bulk", peer.address)
    sent_by_client = hashlib.sha256()
    seen_by_client = hashlib.sha256()
    received = 0
    with connect(info.listen, timeout=IO_TIMEOUT * 6) as sock:

        def write() -> None:
            rng = random.Random(1)
            left = total
            while left:
                block = rng.randbytes(min(left, rng.randint(1, 256 * 1024)))
                sent_by_client.update(block)
                sock.sendall(block)
                left -= len(block)
            sock.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write)
        writer.start()
        rng = random.Random(3)
        while data := sock.recv(rng.randint(1, 512 * 1024)):
            seen_by_client.update(data)
            received += len(data)
        writer.join(IO_TIMEOUT * 6)
    for thread in peer.threads:  # the server may still be reading our stream
        thread.join(IO_TIMEOUT * 6)
    assert received == total
    assert seen_by_server.hexdigest() == sent_by_client.hexdigest()
    assert seen_by_client.hexdigest() == sent_by_server.hexdigest()
    stats = engine.stats("bulk")
    assert stats.bytes_upstream == total
    assert stats.bytes_downstream == total


def test_half_close_from_the_client_is_passed_through(
    engine: Engine, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    def answer_after_eof(conn: socket.socket) -> None:
        request = b""
        while data := conn.recv(1024):
            request += data
        # The client's EOF arrived and the connection is still writable.
        conn.sendall(b"got " + request)
        conn.shutdown(socket.SHUT_WR)

    peer = peer_factory(answer_after_eof)
    info = engine.create_proxy("p", peer.address)
    with connect(info.listen) as sock:
        sock.sendall(b"question")
        sock.shutdown(socket.SHUT_WR)
        assert recv_exactly(sock, 12) == b"got question"
        assert sock.recv(10) == b""


def test_half_close_from_the_server_is_passed_through(
    engine: Engine, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    def close_first_then_read(conn: socket.socket) -> None:
        conn.sendall(b"banner")
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(1024):
            data += chunk
        assert data == b"still talking"

    peer = peer_factory(close_first_then_read)
    info = engine.create_proxy("p", peer.address)
    with connect(info.listen) as sock:
        assert recv_exactly(sock, 6) == b"banner"
        assert sock.recv(10) == b""  # the server's EOF
        sock.sendall(b"still talking")  # our direction is still open
        sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + IO_TIMEOUT
    while engine.stats("p").open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats("p").open == 0
    for thread in peer.threads:
        thread.join(IO_TIMEOUT)
    assert engine.stats("p").bytes_upstream == len(b"still talking")


def test_toxics_take_effect_on_live_connections(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    with connect(info.listen) as sock:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
        engine.add_toxic("p", make_toxic("latency", attributes={"latency": 150}))
        started = time.perf_counter()
        sock.sendall(b"b")
        assert recv_exactly(sock, 1) == b"b"
        assert time.perf_counter() - started >= 0.149
        engine.update_toxic("p", "latency_downstream", attributes={"latency": 300})
        started = time.perf_counter()
        sock.sendall(b"c")
        assert recv_exactly(sock, 1) == b"c"
        assert time.perf_counter() - started >= 0.299
        engine.remove_toxic("p", "latency_downstream")
        started = time.perf_counter()
        sock.sendall(b"d")
        assert recv_exactly(sock, 1) == b"d"
        assert time.perf_counter() - started < 0.1


def test_a_client_that_closed_is_not_counted_as_holding_its_connection(
    engine: Engine, peer_factory: Callable[[Callable[[socket.socket], None]], Peer]
) -> None:
    """What a client sent before closing is still delivered; the client has let go."""
    received: list[bytes] = []

    def sink(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            received.append(data)

    server = peer_factory(sink)
    info = engine.create_proxy("p", server.address)
    engine.add_toxic(
        "p",
        make_toxic("bandwidth", stream="upstream", attributes={"rate": 1}),  # 1 KB/s
    )
    with connect(info.listen) as sock:
        sock.sendall(b"x" * 20_000)  # 20 s of it
        deadline = time.monotonic() + IO_TIMEOUT
        while engine.stats("p").clients_open != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.stats("p").clients_open == 1
    deadline = time.monotonic() + IO_TIMEOUT
    while engine.stats("p").clients_open and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = engine.stats("p")
    assert (stats.open, stats.clients_open) == (1, 0)  # still delivering, the client is gone
    engine.remove_toxic("p", "bandwidth_upstream")  # the rest goes at once, then the EOF
    deadline = time.monotonic() + IO_TIMEOUT
    while engine.stats("p").open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats("p").open == 0
    assert sum(map(len, received)) == 20_000


def test_removing_latency_releases_held_data_at_once(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("latency", attributes={"latency": 5000}))
    with connect(info.listen) as sock:
        sock.sendall(b"held")
        time.sleep(0.1)
        started = time.perf_counter()
        engine.remove_toxic("p", "latency_downstream")
        assert recv_exactly(sock, 4) == b"held"
        assert time.perf_counter() - started < 1


def _first_byte_delays(engine: Engine, address: str, count: int) -> list[bool]:
    """For each of ``count`` new connections: was its echo delayed (over 100 ms)?"""
    delayed = []
    for _ in range(count):
        with connect(address) as sock:
            started = time.perf_counter()
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
            delayed.append(time.perf_counter() - started >= 0.2)
    return delayed


def test_connection_targeting_nth_and_from_nth_on(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic(
        "p", make_toxic("latency", name="second", attributes={"latency": 250}, connections=2)
    )
    assert _first_byte_delays(engine, info.listen, 3) == [False, True, False]
    engine.remove_toxic("p", "second")
    engine.add_toxic(
        "p", make_toxic("latency", name="later", attributes={"latency": 250}, connections="5+")
    )
    assert _first_byte_delays(engine, info.listen, 3) == [False, True, True]  # 4, 5, 6
    assert engine.stats("p").toxics_hit["later"] == 2


def test_connection_targeting_spares_open_connections_not_chosen(
    engine: Engine, echo_server: Peer
) -> None:
    info = engine.create_proxy("p", echo_server.address)
    with connect(info.listen) as first, connect(info.listen) as second:
        engine.add_toxic("p", make_toxic("timeout", connections="1", attributes={"timeout": 0}))
        second.sendall(b"2")
        assert recv_exactly(second, 1) == b"2"
        first.sendall(b"1")
        first.settimeout(0.3)
        with pytest.raises(TimeoutError):
            first.recv(1)


def test_start_after_delays_the_fault(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    added = time.monotonic()
    engine.add_toxic("p", make_toxic("timeout", attributes={"timeout": 0}, start_after=400))
    with connect(info.listen) as sock:
        sock.sendall(b"early")
        assert recv_exactly(sock, 5) == b"early"
        assert time.monotonic() - added < 0.4  # guards the premise on a slow machine
        time.sleep(max(0.0, 0.5 - (time.monotonic() - added)))
        sock.sendall(b"late")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)


def test_duration_ends_the_fault_by_itself(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("latency", attributes={"latency": 5000}, duration=300))
    with connect(info.listen) as sock:
        started = time.perf_counter()
        sock.sendall(b"x")
        # Held by a 5 s latency, released when the toxic's 300 ms are over.
        assert recv_exactly(sock, 1) == b"x"
        assert 0.29 <= time.perf_counter() - started <= 1.5
        started = time.perf_counter()
        sock.sendall(b"y")
        assert recv_exactly(sock, 1) == b"y"
        assert time.perf_counter() - started < 0.2
    # Still listed (so a scope can remove it), no longer in effect.
    assert [toxic.name for toxic in engine.toxics("p")] == ["latency_downstream"]


def _reset_pattern(seed: int, address: str, count: int, *, earlier: int = 0) -> list[bool]:
    with Engine(seed=seed) as engine:
        info = engine.create_proxy("p", address)
        for _ in range(earlier):  # connections made before the toxic (earlier tests of a run)
            with connect(info.listen) as sock:
                sock.sendall(b"x")
                assert recv_exactly(sock, 1) == b"x"
        engine.add_toxic("p", make_toxic("reset_peer", toxicity=0.3))
        pattern = []
        for _ in range(count):
            with connect(info.listen) as sock:
                sock.sendall(b"x")
                try:
                    pattern.append(recv_exactly(sock, 1) != b"x")
                except ConnectionResetError:
                    pattern.append(True)
        if not earlier:  # (an earlier connection the proxy has not seen close yet is hit too)
            assert engine.stats("p").toxics_hit["reset_peer_downstream"] == sum(pattern)
    return pattern


def test_toxicity_is_seeded_and_proportional(echo_server: Peer) -> None:
    first = _reset_pattern(7, echo_server.address, 300)
    second = _reset_pattern(7, echo_server.address, 300)
    other = _reset_pattern(8, echo_server.address, 300)
    assert first == second  # same seed, same connections reset
    assert first != other
    # Binomial(300, 0.3): mean 90, sd 7.9; +/- 3 sd.
    assert 66 <= sum(first) <= 114
    assert 66 <= sum(other) <= 114


def test_toxicity_decisions_do_not_depend_on_earlier_connections(echo_server: Peer) -> None:
    """A test run alone (-k) decides as it did after other tests used the same proxy."""
    alone = _reset_pattern(7, echo_server.address, 40)
    after_others = _reset_pattern(7, echo_server.address, 40, earlier=13)
    assert alone == after_others
    assert any(alone)
    assert not all(alone)


def test_update_redraws_toxicity(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("latency", toxicity=0.0, attributes={"latency": 300}))
    with connect(info.listen) as sock:
        sock.sendall(b"a")
        started = time.perf_counter()
        assert recv_exactly(sock, 1) == b"a"
        assert time.perf_counter() - started < 0.2
        engine.update_toxic("p", "latency_downstream", toxicity=1.0)
        started = time.perf_counter()
        sock.sendall(b"b")
        assert recv_exactly(sock, 1) == b"b"
        assert time.perf_counter() - started >= 0.299
    assert engine.toxics("p")[0].attributes["latency"] == 300


# -- bad input --------------------------------------------------------------------------


def test_unknown_toxic_type_names_the_valid_ones() -> None:
    with pytest.raises(InvalidError) as caught:
        make_toxic("lag")
    message = str(caught.value)
    assert "'lag'" in message
    for name in ("latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer"):
        assert name in message


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"delay": 5}, "latency attribute 'delay' is not valid: latency takes latency, jitter"),
        ({"latency": -1}, r"latency.latency=-1 is not valid: must be >= 0"),
        ({"latency": "100"}, r"latency.latency='100' is not valid: expected an integer >= 0"),
        ({"jitter": 1.5}, r"latency.jitter=1.5 is not valid: expected an integer >= 0"),
        ({"latency": True}, r"latency.latency=True is not valid"),
    ],
)
def test_bad_attributes_name_the_field_and_value(
    engine: Engine, echo_server: Peer, attributes: dict[str, object], expected: str
) -> None:
    with pytest.raises(InvalidError, match=expected.replace("(", r"\(")):
        make_toxic("latency", attributes=attributes)
    # The same check guards updates of a live toxic, and the toxic stays as it was.
    engine.create_proxy("p", echo_server.address)
    engine.add_toxic("p", make_toxic("latency", attributes={"latency": 1}))
    with pytest.raises(InvalidError, match=expected.replace("(", r"\(")):
        engine.update_toxic("p", "latency_downstream", attributes=attributes)
    assert engine.toxics("p")[0].attributes == {"latency": 1, "jitter": 0}


def test_listen_port_in_use_says_so(engine: Engine, echo_server: Peer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(
            ListenError,
            match=f"proxy 'p' cannot listen on 127.0.0.1:{port}: address already in use",
        ):
            engine.create_proxy("p", echo_server.address, listen=f"127.0.0.1:{port}")
    assert "p" not in engine.proxies()


def test_unreachable_upstream_closes_the_client_and_is_counted(engine: Engine) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        dead = placeholder.getsockname()[1]  # closed below: nothing listens there
    info = engine.create_proxy("p", f"127.0.0.1:{dead}")
    with connect(info.listen) as sock:
        expect_closed(sock, 5)
    stats = engine.stats("p")
    assert stats.upstream_errors == 1
    assert stats.accepted == 1


def test_names_are_checked(engine: Engine, echo_server: Peer) -> None:
    engine.create_proxy("p", echo_server.address)
    with pytest.raises(AlreadyExistsError, match="proxy 'p' already exists"):
        engine.create_proxy("p", echo_server.address)
    with pytest.raises(NotFoundError, match="proxy 'q' not found"):
        engine.add_toxic("q", make_toxic("noop"))
    engine.add_toxic("p", make_toxic("noop", name="n"))
    with pytest.raises(AlreadyExistsError, match="toxic 'n' already exists on proxy 'p'"):
        engine.add_toxic("p", make_toxic("latency", name="n", stream="upstream"))
    with pytest.raises(NotFoundError, match="toxic 'x' not found on proxy 'p'"):
        engine.remove_toxic("p", "x")
    with pytest.raises(InvalidError, match="upstream='nowhere' is not valid"):
        engine.create_proxy("r", "nowhere")


def test_calls_on_a_stopped_engine_fail_clearly() -> None:
    engine = Engine(seed=1)
    with pytest.raises(EngineError, match="not running"):
        engine.proxies()
    with engine:
        assert engine.proxies() == {}
    with pytest.raises(EngineError, match="not running"):
        engine.proxies()


# -- nothing left behind ------------------------------------------------------------------


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _socket_fds() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                found.add(fd)
        except OSError:
            pass
    return found


def test_stopping_the_engine_leaves_nothing_behind(
    peer_factory: Callable[[Callable[[socket.socket], None]], Peer],
) -> None:
    peer = peer_factory(echo)
    threads_before = set(threading.enumerate())
    fds_before, sockets_before = _fds(), _socket_fds()

    engine = Engine(seed=3).start()
    info = engine.create_proxy("a", peer.address)
    engine.create_proxy("b", "localhost:1")  # a name to resolve, then a refused dial
    held = [connect(info.listen) for _ in range(5)]
    for sock in held:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
    engine.add_toxic("a", make_toxic("latency", attributes={"latency": 10_000}))
    held[0].sendall(b"in flight")  # held by the latency when the engine stops
    engine.add_toxic("a", make_toxic("timeout", name="t", start_after=60_000))
    with connect(engine.proxy("b").listen) as refused:
        expect_closed(refused, 5)
    engine.stop()

    for sock in held:  # the engine closed its side of every connection
        expect_closed(sock, 5)
        sock.close()
    for thread in peer.threads:  # the echo server's side ends on the engine's close
        thread.join(IO_TIMEOUT)
    assert set(threading.enumerate()) == threads_before
    assert _socket_fds() == sockets_before
    assert _fds() == fds_before
    with pytest.raises(EngineError, match="not running"):
        engine.proxies()


@pytest.mark.parametrize("seed", ["1", 1.5, True])
def test_a_bad_seed_is_bad_input(seed: object) -> None:
    with pytest.raises(InvalidError, match=r"seed=.* is not valid: expected an integer"):
        Engine(seed=seed)  # type: ignore[arg-type]
