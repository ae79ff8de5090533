"""The protocol toxics in the engine, on real loopback sockets with scripted servers.

The engine's one hook for them: a stage of one direction may answer the peer
of the other direction (a refusal, an SMTP reply), and the engine then runs
the other direction's chain. And with protocol toxics present but matching
nothing, every byte still passes as it came: a PostgreSQL-shaped stream of
100 MB each way, and random bytes (which they give up reading at once).
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections.abc import Callable

from conftest import IO_TIMEOUT, Peer, connect, recv_exactly

from pytest_asyncfaults import Engine, make_toxic
from pytest_asyncfaults._toxics import CLOSE, Data
from pytest_asyncfaults._toxics._chain import ToxicChain
from pytest_asyncfaults._toxics._pgwire import error_fields, message
from pytest_asyncfaults._toxics._stage import Bulletin
from pytest_asyncfaults._toxics.postgres import PgLogin

MB = 1024 * 1024
PeerFactory = Callable[[Callable[[socket.socket], None]], Peer]

_PARAMS = (196608).to_bytes(4, "big") + b"user\0app\0database\0app\0\0"
STARTUP = (len(_PARAMS) + 4).to_bytes(4, "big") + _PARAMS
SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
LOGGED_IN = message(b"R", (0).to_bytes(4, "big")) + message(b"Z", b"I")


def read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


def test_both_faces_of_a_protocol_toxic_tell_the_bulletin_the_driver_hands_them() -> None:
    """The driver looks at one bulletin per connection after each chunk: the client's face
    refusing a login made the server's face's output due (nudged), and the notes of both
    faces are there, in the order they were made."""
    bulletin = Bulletin()
    toxic = PgLogin(
        {"action": "refuse", "delay": 0, "sqlstate": "", "message": ""}, random.Random()
    )
    assert toxic.partner is not None
    toxic.bulletin = toxic.partner.bulletin = bulletin
    upstream, downstream = ToxicChain(), ToxicChain()
    upstream.append("login", toxic, 0.0)
    downstream.append("login", toxic.partner, 0.0)
    assert not bulletin.nudged
    assert not bulletin.notes
    assert upstream.feed(Data(STARTUP, 0.0), 0.0) == []  # the login never reaches the server
    assert bulletin.nudged
    assert [note.text for note in bulletin.notes] == [
        "startup: user app, database app",
        "login refused: FATAL 53300 (too_many_connections)",
    ]
    (answer, end) = downstream.pump(0.0)
    assert isinstance(answer, Data)
    assert end is CLOSE
    assert error_fields(answer.data[5:])["C"] == "53300"


def test_an_smtp_reply_is_given_by_the_proxy_and_the_server_never_hears_the_command(
    engine: Engine, peer_factory: PeerFactory
) -> None:
    heard: list[bytes] = []

    def smtp(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.example.com ESMTP\r\n")
        while line := read_line(conn):
            heard.append(line)
            conn.sendall(b"221 bye\r\n" if line.startswith(b"QUIT") else b"250 OK\r\n")

    peer = peer_factory(smtp)
    info = engine.create_proxy("smtp", peer.address)
    engine.add_toxic("smtp", make_toxic("smtp_reply", attributes={"command": "rcpt", "code": 550}))
    with connect(info.listen) as sock:
        assert read_line(sock) == b"220 mail.example.com ESMTP\r\n"
        sock.sendall(b"EHLO app\r\n")
        assert read_line(sock) == b"250 OK\r\n"
        sock.sendall(b"MAIL FROM:<a@example.com>\r\n")
        assert read_line(sock) == b"250 OK\r\n"
        sock.sendall(b"RCPT TO:<b@example.com>\r\n")
        assert read_line(sock) == b"550 5.1.1 Mailbox unavailable\r\n"
        sock.sendall(b"QUIT\r\n")
        assert read_line(sock) == b"221 bye\r\n"
    for thread in peer.threads:
        thread.join(IO_TIMEOUT)
    assert heard == [b"EHLO app\r\n", b"MAIL FROM:<a@example.com>\r\n", b"QUIT\r\n"]
    events = engine.protocol_events("smtp")
    assert [e.text for e in events if e.injected] == [
        "injected reply to RCPT: 550 5.1.1 Mailbox unavailable"
    ]
    assert engine.stats("smtp").toxics_hit == {"smtp_reply_downstream": 1}


def test_a_refused_login_never_reaches_the_server(
    engine: Engine, peer_factory: PeerFactory
) -> None:
    received = bytearray()

    def postgres(conn: socket.socket) -> None:
        while data := conn.recv(1 << 16):
            received.extend(data)
            if bytes(received) == SSL_REQUEST:
                conn.sendall(b"N")

    peer = peer_factory(postgres)
    info = engine.create_proxy("pg", peer.address)
    engine.add_toxic("pg", make_toxic("pg_login", attributes={"action": "refuse"}))
    with connect(info.listen) as sock:
        sock.sendall(SSL_REQUEST)
        assert recv_exactly(sock, 1) == b"N"
        sock.sendall(STARTUP)
        answer = b""
        while data := sock.recv(1 << 16):
            answer += data
    for thread in peer.threads:
        thread.join(IO_TIMEOUT)
    assert answer[:1] == b"E"
    assert error_fields(answer[5:])["C"] == "53300"
    assert bytes(received) == SSL_REQUEST  # the server saw the TLS offer, never the login
    assert engine.stats("pg").open == 0


def test_a_held_login_names_its_phase_and_goes_on_when_the_toxic_goes(
    engine: Engine, peer_factory: PeerFactory
) -> None:
    def postgres(conn: socket.socket) -> None:
        recv_exactly(conn, len(STARTUP))
        conn.sendall(LOGGED_IN)
        while conn.recv(1 << 16):
            pass

    peer = peer_factory(postgres)
    info = engine.create_proxy("pg", peer.address)
    engine.add_toxic("pg", make_toxic("pg_login", duration=600))
    with connect(info.listen) as sock:
        started = time.monotonic()
        sock.sendall(STARTUP)
        deadline = time.monotonic() + IO_TIMEOUT
        while engine.stats("pg").phases != {1: "held in authentication"}:
            assert time.monotonic() < deadline, engine.stats("pg").phases
            time.sleep(0.01)
        assert recv_exactly(sock, len(LOGGED_IN)) == LOGGED_IN  # when its window closes
        assert time.monotonic() - started >= 0.59
        assert engine.stats("pg").phases == {}  # no protocol toxic reads it any more


def refusals(seed: int, peer: Peer, count: int) -> list[bool]:
    """Which of ``count`` logins a pg_login refuse with toxicity 0.5 refused, on an engine
    of this seed."""
    with Engine(seed=seed) as engine:
        info = engine.create_proxy("pg", peer.address)
        engine.add_toxic(
            "pg", make_toxic("pg_login", attributes={"action": "refuse"}, toxicity=0.5)
        )
        refused = []
        for _ in range(count):
            with connect(info.listen) as sock:
                sock.sendall(STARTUP)
                refused.append(recv_exactly(sock, 1) == b"E")
        return refused


def test_a_protocol_toxics_toxicity_is_drawn_per_connection_from_the_seed(
    peer_factory: PeerFactory,
) -> None:
    def postgres(conn: socket.socket) -> None:
        recv_exactly(conn, len(STARTUP))
        conn.sendall(LOGGED_IN)
        while conn.recv(1 << 16):
            pass

    peer = peer_factory(postgres)
    first = refusals(7, peer, 16)
    assert first == refusals(7, peer, 16)  # the same seed, the same connections refused
    assert 3 <= sum(first) <= 13  # about half
    assert first != refusals(8, peer, 16)


def pg_stream(rng: random.Random, total: int, kinds: bytes) -> list[bytes]:
    """Messages of random kinds and sizes (up to 256 KB) adding up to ``total`` bytes."""
    out: list[bytes] = []
    size = 0
    while size < total:
        kind = kinds[rng.randrange(len(kinds)) : rng.randrange(len(kinds)) + 1] or kinds[:1]
        body_size = min(rng.randint(0, 256 * 1024), max(total - size - 5, 0))
        if kind == b"Q":
            body = b"SELECT " + str(rng.random()).encode() + b"\0"
        else:
            body = rng.randbytes(body_size)
        out.append(message(kind, body))
        size += len(out[-1])
    return out


def send_in_random_pieces(sock: socket.socket, data: bytes, rng: random.Random) -> None:
    view = memoryview(data)
    while view:
        size = rng.randint(1, 256 * 1024)
        sock.sendall(view[:size])
        view = view[size:]


def test_pg_shaped_100_mb_each_way_through_toxics_that_match_nothing_is_byte_exact(
    engine: Engine, peer_factory: PeerFactory
) -> None:
    """pg_error, pg_delay, pg_hang and pg_cut read every message of both directions (and
    pg_login joins once logged in): not one byte changes, however the writes are cut."""
    total = 100 * MB
    server_stream = b"".join(pg_stream(random.Random(2), total, b"DdN"))
    client_stream = b"".join(pg_stream(random.Random(1), total, b"dQd"))
    seen_by_server = hashlib.sha256()
    go = threading.Event()

    def postgres(conn: socket.socket) -> None:
        seen_by_server.update(recv_exactly(conn, len(STARTUP)))
        conn.sendall(LOGGED_IN)
        go.wait(IO_TIMEOUT)

        def write_back() -> None:
            send_in_random_pieces(conn, server_stream, random.Random(4))
            conn.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write_back)
        writer.start()
        rng = random.Random(5)
        while data := conn.recv(rng.randint(1, 512 * 1024)):
            seen_by_server.update(data)
        writer.join(IO_TIMEOUT * 6)

    peer = peer_factory(postgres)
    info = engine.create_proxy("pg", peer.address)
    never = "^NEVER MATCHES"
    for toxic_type, attributes in (
        ("pg_error", {"sqlstate": "40001", "match": never}),
        ("pg_delay", {"delay": 1000, "match": never}),
        ("pg_hang", {"match": never}),
        ("pg_cut", {"after_rows": 0, "match": never}),
    ):
        engine.add_toxic("pg", make_toxic(toxic_type, attributes=attributes))
    seen_by_client = hashlib.sha256()
    received = 0
    with connect(info.listen, timeout=IO_TIMEOUT * 6) as sock:
        sock.sendall(STARTUP)
        assert recv_exactly(sock, len(LOGGED_IN)) == LOGGED_IN
        engine.add_toxic("pg", make_toxic("pg_login", attributes={"action": "refuse"}))
        go.set()

        def write() -> None:
            send_in_random_pieces(sock, client_stream, random.Random(3))
            sock.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write)
        writer.start()
        rng = random.Random(6)
        while data := sock.recv(rng.randint(1, 512 * 1024)):
            seen_by_client.update(data)
            received += len(data)
        writer.join(IO_TIMEOUT * 6)
    for thread in peer.threads:
        thread.join(IO_TIMEOUT * 6)
    assert received == len(server_stream)
    assert seen_by_client.hexdigest() == hashlib.sha256(server_stream).hexdigest()
    assert seen_by_server.hexdigest() == hashlib.sha256(STARTUP + client_stream).hexdigest()
    stats = engine.stats("pg")
    assert stats.bytes_upstream == len(STARTUP) + len(client_stream)
    assert set(stats.toxics_hit.values()) == {1}  # each toxic was on the connection...
    assert not [e for e in engine.protocol_events("pg") if e.injected]  # ...and did nothing


def send_all_then_eof(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def test_random_bytes_through_every_protocol_toxic_are_byte_exact(
    engine: Engine, peer_factory: PeerFactory
) -> None:
    """Not PostgreSQL's nor SMTP's: the toxics stand aside from the first bytes on."""
    total = 100 * MB
    rng = random.Random(9)
    up, down = rng.randbytes(total), rng.randbytes(total)
    seen_by_server = hashlib.sha256()

    def server(conn: socket.socket) -> None:
        writer = threading.Thread(target=send_all_then_eof, args=(conn, down))
        writer.start()
        while data := conn.recv(1 << 20):
            seen_by_server.update(data)
        writer.join(IO_TIMEOUT * 6)

    peer = peer_factory(server)
    info = engine.create_proxy("any", peer.address)
    for toxic_type, attributes in (
        ("pg_login", {"action": "refuse"}),
        ("pg_error", {"sqlstate": "40001"}),
        ("pg_cut", {}),
        ("smtp_reply", {"command": "rcpt", "code": 550}),
        ("smtp_cut", {"after": "greeting"}),
    ):
        engine.add_toxic("any", make_toxic(toxic_type, attributes=attributes))
    seen_by_client = hashlib.sha256()
    with connect(info.listen, timeout=IO_TIMEOUT * 6) as sock:
        writer = threading.Thread(target=send_all_then_eof, args=(sock, up))
        writer.start()
        while data := sock.recv(1 << 20):
            seen_by_client.update(data)
        writer.join(IO_TIMEOUT * 6)
    for thread in peer.threads:
        thread.join(IO_TIMEOUT * 6)
    assert seen_by_server.hexdigest() == hashlib.sha256(up).hexdigest()
    assert seen_by_client.hexdigest() == hashlib.sha256(down).hexdigest()
