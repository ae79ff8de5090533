"""The far ends of the proxy benchmark, run as separate processes.

``bench/proxy.py`` measures a proxy that lives in its own process, next to a
naive forwarder; if the client and the servers shared that process they would
fight the proxy for the GIL and the numbers would describe the contention, not
the proxy. So they live here, in plain blocking-socket code with TCP_NODELAY
(the cheapest, least jittery Python peer there is), and take orders as JSON
lines on stdin, answering one JSON line each on stdout.

Two roles, two processes, so that the bulk sender and the sink do not contend
for one GIL either:

* ``server``: an echo listener, a sink listener and a tiny PostgreSQL server
  (``pg``, for ``bench/protocol.py``: it logs anyone in and answers each
  Query with CommandComplete and ReadyForQuery); prints their ports, then
  runs until stdin says ``quit`` or closes.
* ``client``: runs ``rtt``, ``pgrtts`` and ``bulk`` measurements against a
  port it is given and answers with the raw figures; the parent does the
  statistics. ``hold`` opens many connections at once (a round trip on each)
  and keeps them until ``release``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final

IO_TIMEOUT: Final = 30.0
"""Every blocking socket operation here gives up after this many seconds."""
ACCEPT_POLL: Final = 0.5
"""How often the acceptor looks at the stop flag (rare, so it adds no jitter)."""
MAX_LIFETIME: Final = 900.0
"""A peer whose parent went quiet this long exits on its own."""
HEADER: Final = struct.Struct("!Q")
"""A bulk transfer starts with its length, so the sink knows when to answer."""
ACK: Final = b"\x01"
RECV_SIZE: Final = 1 << 20

Handler = Callable[[socket.socket], None]


def _pg_message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


_PG_PARAMS: Final = struct.pack("!i", 196608) + b"user\0bench\0database\0bench\0\0"
PG_STARTUP: Final = struct.pack("!i", len(_PG_PARAMS) + 4) + _PG_PARAMS
PG_LOGGED_IN: Final = _pg_message(b"R", struct.pack("!i", 0)) + _pg_message(b"Z", b"I")
PG_QUERY: Final = _pg_message(b"Q", b"SELECT 1\0")
PG_REPLY: Final = _pg_message(b"C", b"SELECT 1\0") + _pg_message(b"Z", b"I")


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        data = sock.recv(size - len(buf))
        if not data:
            raise ConnectionError(f"peer closed after {len(buf)} of {size} bytes")
        buf += data
    return bytes(buf)


# -- server role ---------------------------------------------------------------------


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def _sink(conn: socket.socket) -> None:
    """Count one announced transfer after another; answer each with one byte."""
    buf = bytearray(RECV_SIZE)
    view = memoryview(buf)
    while True:
        header = conn.recv(HEADER.size, socket.MSG_WAITALL)
        if not header:
            return
        if len(header) != HEADER.size:
            raise ConnectionError("truncated bulk header")
        (left,) = HEADER.unpack(header)
        while left > 0:
            got = conn.recv_into(view, min(left, RECV_SIZE))
            if got == 0:
                raise ConnectionError(f"sender closed with {left} bytes still due")
            left -= got
        conn.sendall(ACK)


def _pg(conn: socket.socket) -> None:
    """Anyone is logged in; each Query is answered by CommandComplete and ReadyForQuery.

    The client sends nothing but Queries after its login, and a Terminate last (shorter)."""
    first = _recv_exactly(conn, 8)
    length, code = struct.unpack("!ii", first)
    if not (8 <= length <= 10000 and code >> 16 == 3):
        return
    _recv_exactly(conn, length - 8)
    conn.sendall(PG_LOGGED_IN)
    while len(conn.recv(len(PG_QUERY), socket.MSG_WAITALL)) == len(PG_QUERY):
        conn.sendall(PG_REPLY)


class _Servers:
    def __init__(self) -> None:
        self.echo = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sink = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.pg = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._handlers: dict[socket.socket, Handler] = {
            self.echo: _echo,
            self.sink: _sink,
            self.pg: _pg,
        }
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="acceptor", daemon=True)

    def start(self) -> None:
        self._acceptor.start()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            for listener in self._handlers:
                selector.register(listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(ACCEPT_POLL):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    try:
                        conn, _ = ready.accept()
                    except OSError:
                        continue
                    self._serve(conn, self._handlers[ready])

    def _serve(self, conn: socket.socket, handler: Handler) -> None:
        _nodelay(conn)
        conn.settimeout(IO_TIMEOUT)
        thread = threading.Thread(target=self._run, args=(conn, handler), daemon=True)
        with self._lock:
            self._conns.append(conn)
            self._threads.append(thread)
        thread.start()

    @staticmethod
    def _run(conn: socket.socket, handler: Handler) -> None:
        try:
            handler(conn)
        except OSError:
            pass  # the client went away or timed out: nothing to serve
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(IO_TIMEOUT)
        self.echo.close()
        self.sink.close()
        self.pg.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv
        for thread in threads:
            thread.join(IO_TIMEOUT)


class LineReader:
    """Lines from a pipe with a bound on every wait (a buffered file cannot do that)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray()

    def readline(self, timeout: float) -> bytes | None:
        """The next line; None at EOF; TimeoutError if none came within ``timeout``."""
        deadline = time.monotonic() + timeout
        while (end := self._buf.find(b"\n")) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._fd], [], [], remaining)[0]:
                raise TimeoutError(f"no line within {timeout} s")
            data = os.read(self._fd, 65536)
            if not data:
                return None
            self._buf += data
        line = bytes(self._buf[: end + 1])
        del self._buf[: end + 1]
        return line


def _read_command(reader: LineReader) -> dict[str, Any] | None:
    """The next order from the parent; None on EOF or when it went quiet too long."""
    try:
        line = reader.readline(MAX_LIFETIME)
    except TimeoutError:
        return None
    if line is None:
        return None
    command: dict[str, Any] = json.loads(line)
    return command


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def serve() -> None:
    reader = LineReader(sys.stdin.fileno())
    servers = _Servers()
    servers.start()
    try:
        _answer(
            {
                "echo": servers.echo.getsockname()[1],
                "sink": servers.sink.getsockname()[1],
                "pg": servers.pg.getsockname()[1],
            }
        )
        while (command := _read_command(reader)) is not None:
            if command.get("op") == "quit":
                break
    finally:
        servers.close()


# -- client role ---------------------------------------------------------------------


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    _nodelay(sock)
    return sock


def measure_rtt(port: int, size: int, warmup: int, count: int, pause: float = 0.0) -> list[int]:
    """Round trips in ns, one message in flight at a time (a request/response app).

    ``pause`` idles the connection before each round trip (the clock starts after
    it): a round trip after an idle spell pays for waking sleeping CPUs and cold
    caches on every hop, so that is the fair baseline for one that waited on a
    latency toxic.
    """
    message = b"x" * size
    samples: list[int] = []
    clock = time.perf_counter_ns
    with _connect(port) as sock:
        recv = sock.recv
        for index in range(warmup + count):
            if pause > 0:
                time.sleep(pause)
            start = clock()
            sock.sendall(message)
            got = 0
            while got < size:
                data = recv(size - got)
                if not data:
                    raise ConnectionError("echo closed the connection")
                got += len(data)
            elapsed = clock() - start
            if index >= warmup:
                samples.append(elapsed)
        sock.shutdown(socket.SHUT_WR)
    return samples


def measure_pg_rtts(ports: list[int], warmup: int, count: int) -> list[list[int]]:
    """Round trips in ns of a Query answered by CommandComplete and ReadyForQuery, after a
    login, on each port: one connection each, one round trip on each in turn, the order
    rotating every time, so that every path is measured under the same conditions (a
    machine's state drifts in bursts; paths measured one after the other would compare
    different moments, and the differences sought are a few microseconds)."""
    size = len(PG_REPLY)
    clock = time.perf_counter_ns
    with contextlib.ExitStack() as stack:
        turns: list[tuple[socket.socket, list[int]]] = []
        for port in ports:
            sock = stack.enter_context(_connect(port))
            sock.sendall(PG_STARTUP)
            _recv_exactly(sock, len(PG_LOGGED_IN))
            turns.append((sock, []))
        for index in range(warmup + count):
            shift = index % len(turns)
            for sock, samples in turns[shift:] + turns[:shift]:
                start = clock()
                sock.sendall(PG_QUERY)
                got = 0
                while got < size:
                    data = sock.recv(size - got)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    got += len(data)
                elapsed = clock() - start
                if index >= warmup:
                    samples.append(elapsed)
        for sock, _ in turns:
            sock.sendall(_pg_message(b"X", b""))
            sock.shutdown(socket.SHUT_WR)
        return [samples for _, samples in turns]


def measure_bulk(port: int, total: int, chunk: int) -> float:
    """Seconds from the first byte sent to the sink's word that it has them all.

    The sink's one-byte answer rides back through the proxy, which adds one
    round trip (well under a millisecond) to a transfer of hundreds of ms.
    """
    payload = memoryview(bytes(chunk))
    with _connect(port) as sock:
        start = time.perf_counter()
        sock.sendall(HEADER.pack(total))
        left = total
        while left >= chunk:
            sock.sendall(payload)
            left -= chunk
        if left:
            sock.sendall(payload[:left])
        if _recv_exactly(sock, len(ACK)) != ACK:
            raise ConnectionError("the sink answered with something else")
        elapsed = time.perf_counter() - start
        sock.shutdown(socket.SHUT_WR)
    return elapsed


def hold_connections(port: int, count: int, held: list[socket.socket]) -> float:
    """Open ``count`` connections to ``port`` at once, then one round trip on each while
    all stay open; returns the seconds it took. They stay in ``held``."""
    start = time.perf_counter()
    for _ in range(count):
        held.append(_connect(port))
    message = b"held"
    for sock in held:
        sock.sendall(message)
    for sock in held:
        if _recv_exactly(sock, len(message)) != message:
            raise ConnectionError("a held connection echoed something else")
    return time.perf_counter() - start


def client() -> None:
    reader = LineReader(sys.stdin.fileno())
    held: list[socket.socket] = []
    _answer({"ready": True})
    while (command := _read_command(reader)) is not None:
        op = command.get("op")
        if op == "quit":
            return
        try:
            if op == "rtt":
                _answer(
                    {
                        "ok": True,
                        "samples_ns": measure_rtt(
                            command["port"],
                            command["size"],
                            command["warmup"],
                            command["count"],
                            float(command.get("pause", 0.0)),
                        ),
                    }
                )
            elif op == "pgrtts":
                ports = [int(port) for port in command["ports"]]
                samples_per_path = measure_pg_rtts(ports, command["warmup"], command["count"])
                _answer({"ok": True, "samples_ns": samples_per_path})
            elif op == "bulk":
                seconds = measure_bulk(command["port"], command["total"], command["chunk"])
                _answer({"ok": True, "seconds": seconds})
            elif op == "hold":
                seconds = hold_connections(command["port"], command["count"], held)
                _answer({"ok": True, "seconds": seconds})
            elif op == "release":
                for sock in held:
                    sock.close()
                held.clear()
                _answer({"ok": True})
            else:
                _answer({"ok": False, "error": f"unknown op {op!r}"})
        except (OSError, KeyError, ValueError) as exc:
            _answer({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str]) -> int:
    if argv == ["server"]:
        serve()
    elif argv == ["client"]:
        client()
    else:
        print("usage: _peer.py server|client", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
