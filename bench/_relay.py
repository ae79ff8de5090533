"""The proxies of the proxy benchmark, each run as a process of its own.

``bench/proxy.py`` compares the engine with the simplest relays one can
write, every party in a process of its own (client, servers, each proxy): a
relay in the benchmark's own process would share its GIL with the code that
drives the run, and in one process threads hide the cost of waking another
process, which is most of what a proxy adds to a round trip.

Started as ``_relay.py KIND PORT...``, a relay opens one listener per
upstream port (all on 127.0.0.1), prints ``{"ports": [...]}`` (or
``{"unavailable": why}`` and exits), then answers JSON lines on stdin until
``quit`` or EOF; ``usage`` answers with what the process holds (resident
memory, descriptors, threads). The kinds:

* ``engine``: the embedded fault engine as a test process has it (``Engine``:
  its own loop in its own thread), one proxy per upstream; it also takes
  ``add_toxic`` and ``remove_toxic``;
* ``naive``: the asyncio-streams forwarder everyone writes first;
* ``protocol``: a minimal ``asyncio.Protocol`` relay (transports,
  ``data_received``, ``write``: what the engine's data path was built on
  before it watched its sockets itself);
* ``uvloop``: the same Protocol relay on uvloop's loop (libuv), when uvloop
  is installed;
* ``threads``: a blocking thread per direction of each connection;
* ``splice``: the same, moving bytes with ``os.splice`` through a pipe (the
  kernel copies, Python only loops);
* ``epoll``: one thread, non-blocking sockets, ``select.epoll`` and nothing
  else (the floor of a single-threaded Python relay);
* ``epoll_spin``: the same, polling without sleeping for ``SPIN`` after each
  event: the one way found to beat the wake-ups, at the price of a CPU kept
  busy (see ``proxy.py``);
* ``socat``: socat, a relay in C, when it is on ``PATH``.

Every relay passes a half-close on and stops at its peer's close; none does
more than the benchmark needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from _peer import LineReader

from pytest_asyncfaults import Engine, make_toxic

READ_SIZE: Final = 65536
IO_TIMEOUT: Final = 30.0
MAX_LIFETIME: Final = 900.0
"""A relay whose parent went quiet this long exits on its own."""
SPIN: Final = 200e-6
"""How long ``epoll_spin`` polls before it sleeps."""
KINDS: Final = (
    "engine",
    "naive",
    "protocol",
    "uvloop",
    "threads",
    "splice",
    "epoll",
    "epoll_spin",
    "socat",
)

Listening = Callable[[list[int]], None]


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def usage() -> dict[str, int]:
    """What this process (and its children, for socat) holds now, and the CPU time this
    process used so far (its threads', ended ones included; not its children's)."""
    pids = [os.getpid()]
    with contextlib.suppress(OSError):
        children = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
        with open(children) as listing:
            pids += [int(pid) for pid in listing.read().split()]
    rss = fds = threads = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
        with contextlib.suppress(OSError):
            fds += len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kib": rss, "fds": fds, "threads": threads, "cpu_ns": time.process_time_ns()}


def _orders(handle: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """Answer the parent's orders until ``quit``, EOF, or a long silence."""
    reader = LineReader(sys.stdin.fileno())
    while True:
        try:
            line = reader.readline(MAX_LIFETIME)
        except TimeoutError:
            return
        if line is None:
            return
        command: dict[str, Any] = json.loads(line)
        op = command.get("op")
        if op == "quit":
            return
        try:
            if op == "usage":
                answer: dict[str, Any] = usage()
            elif handle is not None:
                answer = handle(command)
            else:
                raise ValueError(f"unknown op {op!r}")
            _answer({"ok": True, **answer})
        except Exception as exc:  # told to the parent, which fails the run
            _answer({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _listener() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0), backlog=1024)


# -- asyncio relays -----------------------------------------------------------------------


class _Half(asyncio.Protocol):
    """One socket of the Protocol relay: what it reads is written to its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.early: list[bytes] = []
        """Read before the peer was connected (uvloop reads before a pause takes effect)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        mine: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = mine
        peer = self.peer
        assert peer is not None
        if peer.transport is None:
            mine.pause_reading()  # the client waits while its upstream is dialled
            return
        for data in peer.early:
            mine.write(data)
        peer.early.clear()
        peer.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        if self.peer.transport is None:
            self.early.append(data)
        else:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def _protocol_relay(ports: list[int], listening: Listening) -> None:
    loop = asyncio.get_running_loop()
    dialling: set[asyncio.Task[Any]] = set()

    def accepted(port: int) -> asyncio.Protocol:
        client, server = _Half(), _Half()
        client.peer, server.peer = server, client
        task = loop.create_task(loop.create_connection(lambda: server, "127.0.0.1", port))
        dialling.add(task)
        task.add_done_callback(dialling.discard)
        return client

    def factory(port: int) -> Callable[[], asyncio.Protocol]:
        return lambda: accepted(port)

    servers = [await loop.create_server(factory(port), "127.0.0.1", 0) for port in ports]
    listening([server.sockets[0].getsockname()[1] for server in servers])
    await loop.run_in_executor(None, _orders)


async def _naive_relay(ports: list[int], listening: Listening) -> None:
    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(READ_SIZE):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    def handler(port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
            finally:
                writer.close()
                up_writer.close()

        return handle

    servers = [await asyncio.start_server(handler(port), "127.0.0.1", 0) for port in ports]
    listening([server.sockets[0].getsockname()[1] for server in servers])
    await asyncio.get_running_loop().run_in_executor(None, _orders)


# -- blocking relays ----------------------------------------------------------------------


def _copy(source: socket.socket, dest: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(READ_SIZE):
            dest.sendall(data)
        dest.shutdown(socket.SHUT_WR)


def _splice(source: socket.socket, dest: socket.socket) -> None:
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):
            while moved := os.splice(source.fileno(), write_end, READ_SIZE):
                while moved:
                    moved -= os.splice(read_end, dest.fileno(), moved)
            dest.shutdown(socket.SHUT_WR)
    finally:
        os.close(read_end)
        os.close(write_end)


def _accepting(ports: list[int], accepted: Callable[[socket.socket, int], None]) -> list[int]:
    """Listeners for ``ports``, served by a thread until the process ends; their ports."""
    listeners = {sock.fileno(): (sock, port) for sock, port in ((_listener(), p) for p in ports)}

    def accept_loop() -> None:
        poller = select.poll()
        for fd in listeners:
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll(500):
                sock, port = listeners[fd]
                conn, _ = sock.accept()
                accepted(conn, port)

    threading.Thread(target=accept_loop, daemon=True).start()
    return [sock.getsockname()[1] for sock, _ in listeners.values()]


def _threaded_relay(
    ports: list[int], listening: Listening, copy: Callable[[socket.socket, socket.socket], None]
) -> None:
    def accepted(conn: socket.socket, port: int) -> None:
        up = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT)
        for sock in (conn, up):
            sock.settimeout(None)
            _nodelay(sock)
        for pair in ((conn, up), (up, conn)):
            threading.Thread(target=copy, args=pair, daemon=True).start()

    listening(_accepting(ports, accepted))
    _orders()


# -- raw epoll relays ---------------------------------------------------------------------


def _epoll_relay(ports: list[int], listening: Listening, spin: float) -> None:
    epoll = select.epoll()
    routes: dict[int, tuple[socket.socket, socket.socket]] = {}
    lock = threading.Lock()

    def accepted(conn: socket.socket, port: int) -> None:
        up = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT)
        for sock in (conn, up):
            _nodelay(sock)
            sock.setblocking(False)
        with lock:
            routes[conn.fileno()] = (conn, up)
            routes[up.fileno()] = (up, conn)
        epoll.register(conn.fileno(), select.EPOLLIN)
        epoll.register(up.fileno(), select.EPOLLIN)

    def relay(source: socket.socket, dest: socket.socket) -> None:
        try:
            data = source.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            try:
                sent = dest.send(data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):  # the bulk transfer's sink is behind: wait for it here
                dest.setblocking(True)
                dest.sendall(data[sent:])
                dest.setblocking(False)
            return
        epoll.unregister(source.fileno())
        with lock:
            del routes[source.fileno()]
        with contextlib.suppress(OSError):
            dest.shutdown(socket.SHUT_WR)

    def loop() -> None:
        clock = time.perf_counter
        busy_until = 0.0
        while True:
            events = epoll.poll(0) if spin else None
            if not events:
                if spin and clock() < busy_until:
                    continue
                events = epoll.poll(-1)
            for fd, _ in events:
                with lock:
                    route = routes.get(fd)
                if route is not None:
                    relay(*route)
            busy_until = clock() + spin

    threading.Thread(target=loop, daemon=True).start()
    listening(_accepting(ports, accepted))
    _orders()


# -- socat ----------------------------------------------------------------------------------


def _socat(ports: list[int], listening: Listening) -> None:
    children: list[subprocess.Popen[bytes]] = []
    bound: list[int] = []
    try:
        for port in ports:
            with _listener() as probe:  # a free port, for socat to listen on
                free = probe.getsockname()[1]
            children.append(
                subprocess.Popen(
                    [
                        "socat",
                        f"TCP-LISTEN:{free},bind=127.0.0.1,reuseaddr,fork,nodelay,backlog=1024",
                        f"TCP:127.0.0.1:{port},nodelay",
                    ]
                )
            )
            bound.append(free)
        for port in bound:  # listening yet?
            deadline = time.monotonic() + IO_TIMEOUT
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1.0).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        listening(bound)
        _orders()
    finally:
        for child in children:
            child.terminate()
            child.wait(IO_TIMEOUT)


# -- the engine ---------------------------------------------------------------------------


def _engine(ports: list[int], listening: Listening) -> None:
    with Engine(seed=1) as engine:
        names = [f"to-{port}" for port in ports]
        infos = [
            engine.create_proxy(name, f"127.0.0.1:{port}")
            for name, port in zip(names, ports, strict=True)
        ]
        listening([info.port for info in infos])

        def handle(command: dict[str, Any]) -> dict[str, Any]:
            proxy = names[int(command["proxy"])]
            if command["op"] == "add_toxic":
                toxic = make_toxic(
                    command["type"],
                    stream=command.get("stream", "downstream"),
                    attributes=command.get("attributes", {}),
                )
                engine.add_toxic(proxy, toxic)
                return {"name": toxic.name}
            if command["op"] == "remove_toxic":
                engine.remove_toxic(proxy, command["name"])
                return {}
            if command["op"] == "stats":
                return {"open": engine.stats(proxy).open}
            raise ValueError(f"unknown op {command['op']!r}")

        _orders(handle)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in KINDS:
        print(f"usage: _relay.py {'|'.join(KINDS)} PORT...", file=sys.stderr)
        return 2
    kind, ports = argv[0], [int(port) for port in argv[1:]]

    def listening(bound: list[int]) -> None:
        _answer({"ports": bound})

    if kind == "engine":
        _engine(ports, listening)
    elif kind == "naive":
        asyncio.run(_naive_relay(ports, listening))
    elif kind == "protocol":
        asyncio.run(_protocol_relay(ports, listening))
    elif kind == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            _answer({"unavailable": "uvloop is not installed"})
            return 0
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        uvloop.run(_protocol_relay(ports, listening))
    elif kind == "threads":
        _threaded_relay(ports, listening, _copy)
    elif kind == "splice":
        _threaded_relay(ports, listening, _splice)
    elif kind in ("epoll", "epoll_spin"):
        _epoll_relay(ports, listening, SPIN if kind == "epoll_spin" else 0.0)
    elif kind == "socat":
        if shutil.which("socat") is None:
            _answer({"unavailable": "socat is not on PATH"})
            return 0
        _socat(ports, listening)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
