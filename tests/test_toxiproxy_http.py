"""The Toxiproxy API's own HTTP client, against a server that answers as told.

It must read every framing a Toxiproxy server uses (Content-Length, Go's
chunks, the connection's end), keep a connection for the next call, replace
one the server closed while it was idle without sending the request twice,
fail within its bound on a server that is silent or not HTTP, and leave no
connection open once the loop it was used on has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from conftest import Peer

from pytest_asyncfaults import Faults
from pytest_asyncfaults._backends._process import start_serve_process
from pytest_asyncfaults._backends._toxiproxy import ToxiproxyHost
from pytest_asyncfaults._toxiproxy._http import HttpClient

Reply = Callable[[bytes], bytes | None]
"""The answer to a request (its head and body), None to close without one."""


@dataclass
class Script:
    """An HTTP/1.1 server answering each request with its reply (conftest's ``Peer``)."""

    peer: Peer
    requests: list[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.peer.address}"

    @property
    def connections(self) -> int:
        return len(self.peer.accepted)


@contextlib.contextmanager
def scripted(reply: Reply, *, close_after: bool = False) -> Iterator[Script]:
    """A ``Script`` for the block; ``close_after``: one answer per connection."""
    requests: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                data = conn.recv(65536)
                if not data:
                    return
                buffered += data
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffered) < length:
                buffered += conn.recv(65536)
            request, buffered = head + b"\r\n\r\n" + buffered[:length], buffered[length:]
            requests.append(request)
            answer = reply(request)
            if answer is None:
                return
            conn.sendall(answer)
            if close_after:
                return

    peer = Peer(serve)
    try:
        yield Script(peer, requests)
    finally:
        peer.close()


def json_answer(body: object, *, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def run(coroutine_function: Callable[[HttpClient], object], url: str, timeout: float = 2) -> object:
    async def main() -> object:
        client = HttpClient(url, connect_timeout=timeout, timeout=timeout)
        try:
            return await coroutine_function(client)  # type: ignore[misc]
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_keeps_one_connection_for_call_after_call() -> None:
    with scripted(lambda _: json_answer({"version": "2.12.0"})) as server:

        async def three(client: HttpClient) -> list[object]:
            return [json.loads((await client.request("GET", "/version")).body) for _ in range(3)]

        assert run(three, server.url) == [{"version": "2.12.0"}] * 3
        assert server.connections == 1
        assert server.requests[0].startswith(b"GET /version HTTP/1.1\r\n")


def test_reads_go_s_chunked_answers() -> None:
    body = json.dumps({"proxies": ["x" * 3000]}).encode()
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for start in range(0, len(body), 1000):
        piece = body[start : start + 1000]
        chunked += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    chunked += b"0\r\n\r\n"
    with scripted(lambda _: chunked) as server:

        async def get(client: HttpClient) -> object:
            answer = await client.request("GET", "/proxies")
            again = await client.request("GET", "/proxies")  # the chunks were read exactly
            assert again.body == answer.body
            return json.loads(answer.body)

        assert run(get, server.url) == {"proxies": ["x" * 3000]}
        assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_and_nothing_sent_twice() -> None:
    with scripted(lambda _: json_answer({}), close_after=True) as server:

        async def two(client: HttpClient) -> None:
            await client.request("POST", "/proxies", b"{}")
            await asyncio.sleep(0.05)  # the server's close arrives while the client is idle
            await client.request("POST", "/proxies", b"{}")

        run(two, server.url)
        assert server.connections == 2
        assert len(server.requests) == 2


def test_connection_close_and_an_answer_framed_by_the_end_of_the_connection() -> None:
    answer = b'HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n{"error": "proxy not found"}'
    with scripted(lambda _: answer, close_after=True) as server:

        async def get(client: HttpClient) -> list[tuple[int, bytes]]:
            answers = [await client.request("GET", "/proxies/x") for _ in range(2)]
            return [(a.status, a.body) for a in answers]

        assert run(get, server.url) == [(404, b'{"error": "proxy not found"}')] * 2
        assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_an_answer_that_is_not_http_is_one_clear_error(answer: bytes) -> None:
    with scripted(lambda _: answer, close_after=True) as server:

        async def get(client: HttpClient) -> object:
            return await client.request("GET", "/version")

        with pytest.raises(OSError, match="not an HTTP answer"):
            run(get, server.url)


def _silent(request: bytes) -> None:
    time.sleep(1.5)


def test_a_silent_server_fails_within_the_bound() -> None:
    with scripted(_silent) as server:

        async def get(client: HttpClient) -> object:
            return await client.request("GET", "/version")

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            run(get, server.url, timeout=0.3)
        assert time.monotonic() - started < 1.2


def test_calls_from_a_test_loop_leave_no_connection_once_the_loop_ends() -> None:
    child = start_serve_process(seed=1)
    try:
        with ToxiproxyHost(child.url) as host:

            async def scope() -> None:
                faults = Faults(host, prefix="http-")
                proxy = await faults.create("p", "127.0.0.1:9")
                for _ in range(3):
                    async with proxy.latency(10):
                        pass
                await faults.aclose()

            with warnings.catch_warnings():
                warnings.simplefilter("error", ResourceWarning)
                asyncio.run(scope())  # the loop's shutdown closes its client's connection
                asyncio.run(scope())  # a second loop has a client of its own
                gc.collect()
            assert host.proxies() == {}
    finally:
        child.stop()
