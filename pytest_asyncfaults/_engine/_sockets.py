"""The engine's sockets, driven without asyncio transports.

A proxied connection is two non-blocking sockets watched by the engine
itself: on its own loop (``_loop.EngineLoop``) their readiness is handled
inside ``select()``; on any other asyncio loop (a test's, a platform without
epoll) through ``add_reader`` / ``add_writer``. Either way the same
``Stream`` code reads, writes, buffers and closes, with the semantics of an
asyncio socket transport: a write goes out at once when it can, the rest is
buffered and the peer told to stop reading above a high-water mark; EOF stops
reading and is reported once; ``write_eof`` half-closes after what is
buffered; ``close`` closes after it; ``abort`` drops it; ``reset`` makes the
peer see a TCP RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Final, final

from ._loop import EVENT_READ, EVENT_WRITE, EngineLoop, EngineSelector, Watcher

READ_SIZE: Final = 64 * 1024
"""Bytes asked of one ``recv`` at first, and again after a short read.

Not asyncio's 256 KiB: CPython allocates what it asks for and shrinks it to
what came, and glibc serves an allocation that large with ``mmap`` (then
``munmap``s it on the shrink) until a large block is freed whole, which
costs about 16 us per read: more than the rest of a small message's trip
through the engine. A socket whose reads fill what was asked (a bulk
transfer) asks for twice as much next time, up to ``READ_SIZE_MAX``, until
a read brings a small message again."""
READ_SIZE_MAX: Final = 256 * 1024
WRITE_HIGH_WATER: Final = 1024 * 1024
"""Bytes buffered for a socket above which its peer stops reading."""
WRITE_LOW_WATER: Final = WRITE_HIGH_WATER // 4
"""Bytes buffered below which the peer reads again."""
ACCEPT_RETRY_DELAY: Final = 1.0
"""Out of descriptors or memory: the listener rests this long (as asyncio's does)."""
_LINGER_ZERO: Final = struct.pack("ii", 1, 0)
_RESOURCE_ERRORS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Poller:
    """Where the engine's sockets are watched: which events of which descriptor go to whom."""

    @staticmethod
    def for_loop(loop: asyncio.AbstractEventLoop) -> Poller:
        if isinstance(loop, EngineLoop):
            return _InlinePoller(loop.engine_selector)
        return _LoopPoller(loop)

    def watch(self, fd: int, events: int, watcher: Watcher) -> None:
        """Hand ``fd``'s ``events`` (0 for none) to ``watcher``."""
        raise NotImplementedError

    def forget(self, fd: int) -> None:
        """``fd`` is about to be closed: watch it no more."""
        raise NotImplementedError


@final
class _InlinePoller(Poller):
    """On the engine's own loop: handled inside ``select()`` (``EngineSelector.watch``)."""

    def __init__(self, selector: EngineSelector) -> None:
        self._selector = selector

    def watch(self, fd: int, events: int, watcher: Watcher) -> None:
        self._selector.watch(fd, events, watcher)

    def forget(self, fd: int) -> None:
        self._selector.forget(fd)


@final
class _LoopPoller(Poller):
    """Through asyncio's ``add_reader`` / ``add_writer``, on any selector loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: dict[int, int] = {}

    def watch(self, fd: int, events: int, watcher: Watcher) -> None:
        loop = self._loop
        before = self._events.get(fd, 0)
        if events & EVENT_READ and not before & EVENT_READ:
            loop.add_reader(fd, watcher.io_event, EVENT_READ)
        elif before & EVENT_READ and not events & EVENT_READ:
            loop.remove_reader(fd)
        if events & EVENT_WRITE and not before & EVENT_WRITE:
            loop.add_writer(fd, watcher.io_event, EVENT_WRITE)
        elif before & EVENT_WRITE and not events & EVENT_WRITE:
            loop.remove_writer(fd)
        if events:
            self._events[fd] = events
        else:
            self._events.pop(fd, None)

    def forget(self, fd: int) -> None:
        before = self._events.pop(fd, 0)
        if before & EVENT_READ:
            self._loop.remove_reader(fd)
        if before & EVENT_WRITE:
            self._loop.remove_writer(fd)


class Stream:
    """One socket of a proxied connection. Subclasses say what reading it means.

    Hooks, all called on the loop: ``received(data)`` for each chunk read,
    ``ended()`` once at EOF (reading then stops, the socket stays open for
    writing), ``failed(exc)`` when reading or writing fails (the socket is then
    closed already), ``write_blocked()`` / ``write_unblocked()`` when the
    write buffer goes above the high-water mark and back under the low one.
    """

    __slots__ = (
        "_buffer",
        "_buffered",
        "_closing",
        "_eof_pending",
        "_events",
        "_poller",
        "_read_ended",
        "_read_size",
        "_reading",
        "_write_blocked",
        "fd",
        "sock",
    )

    def __init__(self, poller: Poller) -> None:
        self._poller = poller
        self.sock: socket.socket | None = None
        self.fd = -1
        self._events = 0
        self._reading = True
        """Not paused: reads when the socket has data (and it has not ended)."""
        self._read_ended = False
        self._read_size = READ_SIZE
        self._closing = False
        self._eof_pending = False
        self._buffer: deque[bytes | memoryview] = deque()
        self._buffered = 0
        self._write_blocked = False

    # -- state ----------------------------------------------------------------------------

    def attach(self, sock: socket.socket) -> None:
        """Take over a connected socket (made non-blocking, Nagle off)."""
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()
        self._update()

    @property
    def open(self) -> bool:
        """Attached and not closing: writes go out."""
        return self.sock is not None and not self._closing

    @property
    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._buffered

    def _update(self) -> None:
        events = 0
        if self._reading and not self._read_ended and not self._closing:
            events = EVENT_READ
        if self._buffer:
            events |= EVENT_WRITE
        if events != self._events:
            self._events = events
            self._poller.watch(self.fd, events, self)

    # -- hooks ----------------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        raise NotImplementedError

    def ended(self) -> None:
        raise NotImplementedError

    def failed(self, exc: OSError) -> None:
        raise NotImplementedError

    def write_blocked(self) -> None:
        """Above the high-water mark: the peer should stop reading."""

    def write_unblocked(self) -> None:
        """Back under the low-water mark."""

    def crashed(self, exc: Exception) -> None:
        """A hook raised: a bug. The default drops the socket."""
        self.abort()

    # -- readiness ------------------------------------------------------------------------

    def io_event(self, mask: int) -> None:
        try:
            if mask & EVENT_READ and self._events & EVENT_READ:
                size = self._read_size
                try:
                    data = self.sock.recv(size)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    self._fail(exc)
                    return
                else:
                    if data:
                        if len(data) == size:
                            if size < READ_SIZE_MAX:
                                self._read_size = size * 2
                        elif size > READ_SIZE and len(data) < READ_SIZE // 4:
                            self._read_size = READ_SIZE
                        self.received(data)
                    else:
                        self._read_ended = True
                        self._update()
                        self.ended()
            if mask & EVENT_WRITE and self._buffer:
                self._flush()
        except Exception as exc:
            self.crashed(exc)

    def _fail(self, exc: OSError) -> None:
        self._drop()
        self.failed(exc)

    # -- writing ----------------------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Send ``data`` after what is buffered; dropped (False) once closing or failed."""
        if self.sock is None or self._closing or self._eof_pending:
            return False
        if not self._buffer:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return False
            if sent == len(data):
                return True
            self._buffer.append(memoryview(data)[sent:])
            self._buffered += len(data) - sent
            self._update()
        else:
            self._buffer.append(data)
            self._buffered += len(data)
        if not self._write_blocked and self._buffered > WRITE_HIGH_WATER:
            self._write_blocked = True
            self.write_blocked()
        return True

    def _flush(self) -> None:
        buffer = self._buffer
        sock = self.sock
        assert sock is not None
        while buffer:
            head = buffer[0]
            try:
                sent = sock.send(head)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._fail(exc)
                return
            self._buffered -= sent
            if sent < len(head):
                buffer[0] = memoryview(head)[sent:]
                break
            buffer.popleft()
        if self._write_blocked and self._buffered <= WRITE_LOW_WATER:
            self._write_blocked = False
            self.write_unblocked()
        if buffer or self.sock is None:
            return
        self._update()
        if self._closing:
            self._drop()
        elif self._eof_pending:
            self._shutdown_write()

    def write_eof(self) -> None:
        """Half-close (FIN) once what is buffered has gone out."""
        if self.sock is None or self._closing or self._eof_pending:
            return
        self._eof_pending = True
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        assert self.sock is not None
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fail(exc)

    # -- flow control ---------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            if self.sock is not None:
                self._update()

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            if self.sock is not None:
                self._update()

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; close once what is buffered has gone out (a clean FIN)."""
        if self.sock is None or self._closing:
            return
        self._closing = True
        if self._buffer:
            self._update()
        else:
            self._drop()

    @property
    def lingering(self) -> bool:
        """Closing, with data still to send."""
        return self.sock is not None and self._closing

    def abort(self) -> None:
        """Close at once, dropping whatever is buffered."""
        self._drop()

    def reset(self) -> None:
        """Close at once with ``SO_LINGER`` 0, so the peer gets a TCP RST."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        self._drop()

    def _drop(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self.sock = None
        self._closing = True
        self._buffer.clear()
        self._buffered = 0
        if self._events:
            self._events = 0
            self._poller.forget(self.fd)
        sock.close()


@final
class Listener:
    """A listening socket whose connections go to ``accepted`` as they come."""

    __slots__ = ("_loop", "_poller", "_resting", "accepted", "sock")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Poller,
        sock: socket.socket,
        accepted: Callable[[socket.socket], None],
    ) -> None:
        self._loop = loop
        self._poller = poller
        self.sock: socket.socket | None = sock
        self.accepted = accepted
        self._resting: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        poller.watch(sock.fileno(), EVENT_READ, self)

    def io_event(self, mask: int) -> None:
        sock = self.sock
        for _ in range(128):
            if sock is None or self.sock is not sock:
                return  # closed by what the last connection did
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    self._loop.call_exception_handler(
                        {
                            "message": "the fault engine cannot accept: out of resources",
                            "exception": exc,
                        }
                    )
                    self._poller.watch(sock.fileno(), 0, self)
                    self._resting = self._loop.call_later(ACCEPT_RETRY_DELAY, self._rested)
                return
            try:
                self.accepted(conn)
            except Exception as exc:  # a bug: the connection goes, the listener stays
                conn.close()
                self._loop.call_exception_handler(
                    {"message": "the fault engine failed a new connection", "exception": exc}
                )

    def _rested(self) -> None:
        self._resting = None
        if self.sock is not None:
            self._poller.watch(self.sock.fileno(), EVENT_READ, self)

    def close(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self.sock = None
        if self._resting is not None:
            self._resting.cancel()
            self._resting = None
        self._poller.forget(sock.fileno())
        sock.close()


async def listen(
    loop: asyncio.AbstractEventLoop, host: str, port: int, backlog: int
) -> list[socket.socket]:
    """Listening sockets for ``host`` (each address it stands for) on ``port``.

    As asyncio's ``create_server`` binds them (``SO_REUSEADDR``, IPv6 only on
    IPv6 sockets), except that port 0 is chosen once, by the first socket, and
    the others take the same: a name with two addresses is one port.
    """
    infos = await resolve(loop, host, port, passive=True)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            if port == 0 and socks:
                address = (address[0], socks[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int, *, passive: bool = False
) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int]]]:
    """The addresses of ``host:port``: at once for an IP address, else from the resolver
    (in asyncio's executor, as ``create_connection`` does), without duplicates."""
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=flags | socket.AI_NUMERICHOST
        )
    except socket.gaierror:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    seen: set[tuple[object, ...]] = set()
    unique = []
    for family, kind, proto, name, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        unique.append((family, kind, proto, name, (str(address[0]), int(address[1]), *address[2:])))
    if not unique:
        raise OSError(f"getaddrinfo({host!r}) returned an empty list")
    return unique  # type: ignore[return-value]


async def dial(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected non-blocking socket to ``host:port``, each address tried in turn."""
    errors: list[OSError] = []
    for family, kind, proto, _, address in await resolve(loop, host, port):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(exc) for exc in errors)}")
