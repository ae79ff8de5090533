"""Shared test parts: a started engine and real loopback peers in threads.

The peers use blocking sockets in their own threads, so the engine (its own
thread and loop) is exercised exactly as an app would use it: over TCP.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import fastapi  # noqa: F401 - see below
import pytest

from pytest_asyncfaults import Engine

# In-process pytester runs forget the modules first imported inside them. FastAPI
# imported by a first inner run, then afresh by a second, would be a second copy
# of FastAPI on top of the one Starlette the plugin already holds, and its
# routing would stop matching (307 for every path). Imported here once, it stays.

# Two plugins of the test tools cost every pytest start more than the plugin under test:
# Faker's (installed with Litestar, through polyfactory: a third of a second of imports)
# and Hypothesis's (its whole library, over a second; the fuzz tests' @given needs only
# the library). No test uses either: the pytest runs the tests start (pytester's, the
# examples') go without them, as this one does (pyproject's addopts).
_WITHOUT_TOOL_PLUGINS = "-p no:faker -p no:hypothesispytest"
os.environ["PYTEST_ADDOPTS"] = " ".join(
    filter(None, [os.environ.get("PYTEST_ADDOPTS", ""), _WITHOUT_TOOL_PLUGINS])
)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester's own runs, without the two plugins too: pytester drops PYTEST_ADDOPTS.

    Not only for the time: Hypothesis's plugin, imported afresh by an in-process run
    (pytester forgets the modules a run imported), counts itself "initializing"
    until the run's session starts. A run that ends before (a usage error, which
    tests/test_bad_inputs.py makes on purpose) leaves the count up, and every
    @given test later in the same process then fails on a side-effect warning.

    The terminal is 80 columns wide for every run, whatever the caller's: pytest's
    short summary holds as much of a failure's message as the width lets it, so a
    test that counts or splits a run's output would read another text on a wide
    CI terminal.
    """
    monkeypatch.setenv("PYTEST_ADDOPTS", _WITHOUT_TOOL_PLUGINS)
    monkeypatch.setenv("COLUMNS", "80")
    return pytester


IO_TIMEOUT = 10.0
"""Every blocking socket in the tests gives up after this many seconds."""


@dataclass
class Peer:
    """A loopback TCP server run by a thread; ``handler`` serves one connection."""

    handler: Callable[[socket.socket], None]
    sock: socket.socket = field(init=False)
    threads: list[threading.Thread] = field(default_factory=list)
    accepted: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(IO_TIMEOUT)
            self.accepted.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(IO_TIMEOUT)
        self.sock.close()
        for conn in self.accepted:
            conn.close()
        for thread in self.threads:
            thread.join(IO_TIMEOUT)


def echo(conn: socket.socket) -> None:
    """Send back everything; pass a half-close back as a half-close."""
    while data := conn.recv(1 << 16):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


@pytest.fixture
def backend_args(pytestconfig: pytest.Config) -> list[str]:
    """This run's backend options, for the pytest runs that tests start (pytester)."""
    args = []
    for option, dest in (
        ("--asyncfaults-engine", "asyncfaults_engine"),
        ("--toxiproxy-url", "toxiproxy_url"),
    ):
        value = pytestconfig.getoption(dest)
        if value:
            args += [option, str(value)]
    return args


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine(seed=1234) as running:
        yield running


@pytest.fixture
def peer_factory() -> Iterator[Callable[[Callable[[socket.socket], None]], Peer]]:
    peers: list[Peer] = []

    def make(handler: Callable[[socket.socket], None]) -> Peer:
        peer = Peer(handler)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


@pytest.fixture
def echo_server(peer_factory: Callable[[Callable[[socket.socket], None]], Peer]) -> Peer:
    return peer_factory(echo)


def connect(address: str, timeout: float = IO_TIMEOUT) -> socket.socket:
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        data = sock.recv(size - len(chunks))
        if not data:
            break
        chunks += data
    return bytes(chunks)


def expect_closed(sock: socket.socket, within: float = IO_TIMEOUT) -> None:
    """The peer closed: EOF, or a reset where the close raced unread data."""
    sock.settimeout(within)
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(100) == b""
