"""Many connections through one engine at once: no thread each, toxics on all of them.

A pool-heavy app under test (a connection pool of 100, a load test in a
fixture) opens hundreds of connections through one proxy. The engine holds
each one as two sockets watched by its one loop, with no thread and no
asyncio transport per connection; this is the check that 500 of them, open
together, each carry their own bytes, take a toxic added while they are open,
and leave nothing behind when they close.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import IO_TIMEOUT, connect, recv_exactly

from pytest_asyncfaults import Engine, make_toxic

CONNECTIONS = 500
LATENCY_MS = 30


class _SelectorEcho:
    """An echo server of any number of connections on one thread (a thread each would
    be 500 threads in the test process)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=CONNECTIONS)
        self.sock.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="scale-echo", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(IO_TIMEOUT):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                if conn is self.sock:
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            accepted, _ = self.sock.accept()
                            accepted.setblocking(False)
                            self._selector.register(accepted, selectors.EVENT_READ)
                    continue
                if conn is self._wake_read:
                    continue
                try:
                    data = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    conn.setblocking(True)  # echoes are a few bytes: never blocks long
                    conn.sendall(data)
                    conn.setblocking(False)
                else:
                    self._selector.unregister(conn)
                    conn.close()

    def close(self) -> None:
        self._stop = True
        self._wake_write.send(b"x")
        self._thread.join(IO_TIMEOUT)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        self._wake_write.close()


@pytest.fixture
def echo() -> Iterator[_SelectorEcho]:
    server = _SelectorEcho()
    try:
        yield server
    finally:
        server.close()


def _round_trip_all(clients: list[socket.socket]) -> None:
    for number, client in enumerate(clients):
        client.sendall(b"%05d" % number)
    for number, client in enumerate(clients):
        assert recv_exactly(client, 5) == b"%05d" % number


def _wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + IO_TIMEOUT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_five_hundred_connections_at_once_each_carry_their_own_bytes(
    engine: Engine, echo: _SelectorEcho
) -> None:
    started = time.monotonic()
    info = engine.create_proxy("many", echo.address)
    threads_before = threading.active_count()
    fds_before = len(os.listdir("/proc/self/fd"))
    clients: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            clients.append(connect(f"127.0.0.1:{info.port}"))
        _round_trip_all(clients)
        stats = engine.stats("many")
        assert (stats.accepted, stats.open) == (CONNECTIONS, CONNECTIONS)
        # No thread per connection, and each one is its client's socket and the
        # engine's two (plus the echo server's one, in this same process).
        assert threading.active_count() == threads_before
        assert len(os.listdir("/proc/self/fd")) - fds_before == 4 * CONNECTIONS

        # A toxic added while all are open reaches every one of them.
        engine.add_toxic("many", make_toxic("latency", attributes={"latency": LATENCY_MS}))
        toxic_started = time.monotonic()
        _round_trip_all(clients)
        assert time.monotonic() - toxic_started >= LATENCY_MS / 1000
        assert engine.stats("many").toxics_hit == {"latency_downstream": CONNECTIONS}
        engine.remove_toxic("many", "latency_downstream")
        _round_trip_all(clients)
    finally:
        for client in clients:
            client.close()
    _wait_for(lambda: engine.stats("many").open == 0, "the engine still holds connections")
    assert engine.stats("many").closed == CONNECTIONS
    _wait_for(
        lambda: len(os.listdir("/proc/self/fd")) == fds_before,
        "descriptors were left open after the clients closed",
    )
    # Bounded: 500 connections opened, three round trips on each, closed, in seconds.
    assert time.monotonic() - started < 30
