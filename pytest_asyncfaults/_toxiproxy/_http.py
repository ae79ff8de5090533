"""A keep-alive HTTP/1.1 client for the Toxiproxy API: JSON in, JSON out, one server.

Adding and removing a toxic is two requests of a hundred bytes each, and a
chaos suite makes thousands. A general client (httpx) spends about half a
millisecond of Python on each, more than the server and the loopback round
trip together (``bench/control.py``); this one writes the request in one
piece and reads the answer with two stream calls. It speaks only what the
API needs: a request with a JSON body or none; an answer framed by
``Content-Length``, by chunks (Go's server chunks a long answer), or by the
end of the connection; connections kept open and reused, a stale one (the
server closed it while idle) replaced once, before any byte of an answer.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, final
from urllib.parse import quote, urlsplit

HEAD_LIMIT: Final = 64 * 1024
"""Bytes an answer's status line and headers may take."""
BODY_LIMIT: Final = 64 * 1024 * 1024
"""Bytes an answer's body may take (a proxy list of thousands is far below)."""
IDLE_KEPT: Final = 4
"""Idle connections kept for reuse."""


@final
@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@final
class _Connection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False

    @property
    def stale(self) -> bool:
        """The server closed it (or sent something unasked) while it was idle."""
        return self.writer.is_closing() or self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


@final
class HttpClient:
    """Requests to one ``http://`` or ``https://`` base URL; use on one event loop."""

    def __init__(self, url: str, *, connect_timeout: float, timeout: float) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc.rpartition("@")[2]
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self._https else None

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()

    def close_idle(self) -> None:
        """Close the connections kept for reuse (the loop they belong to is ending)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def closed_with_the_loop(self) -> AsyncIterator[None]:
        """An async generator to start (one step) on the loop this client is used on:
        the loop finalizes the generators it saw as it shuts down (``asyncio.run``,
        ``asyncio.Runner``, pytest-asyncio), and this one then closes the connections
        kept open, so that none outlives its loop."""
        try:
            yield
        finally:
            self.close_idle()

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, extra: str = ""
    ) -> Answer:
        """One request and its whole answer, within the client's timeout; ``extra``:
        header lines of the caller's, each ending with CRLF."""
        head = (
            f"{method} {quote(self._prefix + path, safe='/%')} HTTP/1.1\r\n"
            f"Host: {self._host_header}\r\nAccept: application/json\r\n{extra}"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        message = (head + "\r\n").encode("latin-1") + (body or b"")
        async with asyncio.timeout(self._timeout):
            for attempt in range(2):
                conn = await self._take()
                try:
                    answer = await self._exchange(conn, message, method)
                except BaseException:
                    conn.close()
                    raise
                if answer is not None:
                    return answer
                conn.close()  # stale: closed while idle, the request never read
                if attempt:
                    raise OSError("the server closed the connection")
        raise AssertionError("unreachable")

    async def _take(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.stale:
                return conn
            conn.close()
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._ssl, limit=HEAD_LIMIT
                )
        except TimeoutError:
            raise OSError(f"connecting took over {self._connect_timeout} s") from None
        except OSError as exc:
            raise OSError(str(exc) or type(exc).__name__) from None
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, message: bytes, method: str) -> Answer | None:
        """The answer, or None when a reused connection turns out closed before
        any byte of it (the server closed it while idle: the request was not read)."""
        reused, conn.used = conn.used, True
        reader = conn.reader
        try:
            conn.writer.write(message)
            try:
                status, reason, headers = _head(await reader.readuntil(b"\r\n\r\n"))
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                if reused and not partial:
                    return None
                raise OSError("the server closed the connection without an answer") from None
            while 100 <= status < 200:  # an interim answer: the real one follows
                status, reason, headers = _head(await reader.readuntil(b"\r\n\r\n"))
            keep = headers.get("connection", "").lower() != "close"
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _chunks(reader)
            elif "content-length" in headers:
                length = _number(headers["content-length"], 10)
                if length > BODY_LIMIT:
                    raise OSError(f"an answer of {length} bytes, over {BODY_LIMIT}")
                body = await reader.readexactly(length)
            else:
                body = await _to_the_end(reader)
                keep = False
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise OSError(f"not an HTTP answer ({type(exc).__name__})") from None
        except OSError as exc:
            raise OSError(str(exc) or type(exc).__name__) from None
        if keep and len(self._idle) < IDLE_KEPT:
            self._idle.append(conn)
        else:
            conn.close()
        return Answer(status, reason, body, headers)


def _head(block: bytes) -> tuple[int, str, dict[str, str]]:
    """The status and headers (names in lower case) of an answer's head."""
    status_line, *lines = block.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise ValueError("status line")
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("header line")
            headers[name.strip().lower()] = value.strip()
    return int(code), reason.strip(), headers


async def _to_the_end(reader: asyncio.StreamReader) -> bytes:
    """A body framed by the end of the connection."""
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > BODY_LIMIT:
            raise OSError(f"an answer over {BODY_LIMIT} bytes")
    return bytes(body)


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = _number((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return bytes(body)
        if len(body) + size > BODY_LIMIT:
            raise OSError(f"an answer over {BODY_LIMIT} bytes")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk end")


def _number(text: str | bytes, base: int) -> int:
    """A length (decimal) or a chunk size (hexadecimal), nothing else and not huge."""
    value = (text if isinstance(text, str) else text.decode("latin-1")).strip()
    digits = string.hexdigits if base == 16 else string.digits
    if not 0 < len(value) <= 16 or any(char not in digits for char in value):
        raise ValueError("number")
    return int(value, base)
