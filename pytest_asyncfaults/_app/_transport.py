"""An httpx transport that serves an ASGI app in process the way uvicorn does.

``httpx.ASGITransport`` awaits the whole ASGI call before it returns, so a
Starlette ``BackgroundTasks`` job that hangs hangs the test's ``client.post()``,
and one that raises raises into the test. Under uvicorn the client has its
answer as soon as the body is sent, the rest of the ASGI call runs on as a
task nobody awaits, and its exception only reaches the ``uvicorn.error`` log.
Tests that look for background work which hangs or fails silently must see the
app as production sees it, so this transport does what uvicorn's h11 protocol
does: the ASGI call is its own task, the response is handed to the client as
soon as it starts, its body streams as the app sends it, and whatever the call
does after that is reported (``RequestInfo``, the log) but never waited for or
raised into the client.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import unquote

import httpx

from .._exceptions import LoopBlockedError
from .._tasks._context import RequestInfo, current_request, current_role
from .._tasks._monitor import create_request_task
from .._tasks._watchdog import interrupt_past, interrupting

__all__ = ["ServerLikeTransport"]

# ASGI's own shapes (as Starlette spells them): written here, so that serving an app in
# process needs no web framework installed.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_logger: Final = logging.getLogger("uvicorn.error")
"""uvicorn's logger, so that tests and log setups written for uvicorn find the errors."""

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

_INCOMPLETE_BODY: Final = "peer closed connection without sending complete message body"
_NO_RESPONSE: Final = "Server disconnected without sending a response."

OnRequest = Callable[[RequestInfo, asyncio.Task[None]], None]
OnTimeout = Callable[[asyncio.Task[None], RequestInfo, str], Awaitable[str]]
"""Given the request's ASGI task, the request and what it failed to do in time, the report."""


async def _wait_within(flag: _Flag, read: float | None, info: RequestInfo) -> bool:
    """Wait for ``flag`` for ``read`` seconds at most (``None``: for ever); whether it came
    in time.

    Not in time either way its timer cannot tell apart: nothing came, or the loop was
    blocked past the deadline before it came (then interrupted where it blocked; what
    came after came too late: a client with a read timeout has given up by then). What
    came in time counts, though a block after it kept the waiter from running.
    """
    if read is None:
        await flag.wait()
        return True
    deadline = time.monotonic() + read
    if not interrupting():  # no watchdog to tell the read timeout to (repro, a bench)
        await asyncio.sleep(0)
        return flag.set_at <= deadline if flag.is_set() else await _wait_rest(flag, deadline)
    with interrupt_past(read, lambda: f"the read timeout of {info} ({read:g} s)"):
        # One turn of the loop lets the other side take its step (queued just before
        # this one): a quick app has answered by then, and the wait costs nothing.
        await asyncio.sleep(0)
        if not flag.is_set():
            return await _wait_rest(flag, deadline)
    return flag.set_at <= deadline


async def _wait_rest(flag: _Flag, deadline: float) -> bool:
    """The rest of ``_wait_within``'s wait, for an answer that did not come in one turn."""
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
            await flag.wait()
    except TimeoutError:
        return False
    return flag.set_at <= deadline


def _read_timeout(request: httpx.Request) -> float | None:
    """httpx's read timeout of this request (the client's default or its ``timeout=``).

    In process there is no connection to make or pool to wait for: "read" is how
    long the client waits for the response to start, then for each piece of its
    body, as it is over a socket."""
    timeout = request.extensions.get("timeout", {})
    value = timeout.get("read") if isinstance(timeout, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


class _Flag:
    """An ``asyncio.Event`` made only if someone waits: most requests never do."""

    __slots__ = ("_event", "_value", "set_at")

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._value = False
        self.set_at = 0.0
        """``time.monotonic()`` when it was set: when the news came, not when its waiter
        could run (a blocked loop keeps it from running)."""

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            self.set_at = time.monotonic()
        if self._event is not None:
            self._event.set()

    def clear(self) -> None:
        self._value = False
        if self._event is not None:
            self._event.clear()

    async def wait(self) -> None:
        if self._value:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()


class _Exchange:
    """One request's connection state, shared by the ASGI task and the client.

    Everything is plain attributes and ``asyncio.Event``s because both sides run
    on the same loop: a state change and the ``set()`` that announces it happen
    without an ``await`` in between, so no waiter can miss one.
    """

    def __init__(self, info: RequestInfo, method: str, body: bytes) -> None:
        self.info = info
        self.method = method
        self.request_body: bytes | None = body
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        """The client went away: closed the response, gave up waiting, or closed the transport."""
        self.broken = False
        """The server side dropped the connection before the response was complete."""
        self.started = _Flag()
        """Set on response start, or when no start can come any more."""
        self.data = _Flag()
        """Set whenever the client's body stream may have something new to see."""
        self.finished = _Flag()
        """Set when ``receive()`` has nothing left but ``http.disconnect``."""

    def _wake_all(self) -> None:
        self.started.set()
        self.data.set()

    def disconnect(self) -> None:
        """What uvicorn's ``connection_lost`` does to the cycle."""
        self.disconnected = True
        self.finished.set()
        self._wake_all()

    def drop(self) -> None:
        """What uvicorn's ``transport.close()`` does, seen from the client."""
        if not self.response_complete:
            self.broken = True
        self._wake_all()

    async def receive(self) -> Message:
        if self.request_body is not None and not self.finished.is_set():
            body, self.request_body = self.request_body, None
            return {"type": "http.request", "body": body, "more_body": False}
        # Like uvicorn, a complete response counts as gone: there is nothing
        # the app could still be told about this request. Until then, a
        # StreamingResponse listening for disconnect must keep waiting while the
        # client reads.
        await self.finished.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        # uvicorn drops everything sent after a disconnect, but raises for a
        # message after the complete response when the connection is kept
        # alive, which is the usual case behind a pooled client such as httpx.
        # Checking completeness first makes that app bug show up every time.
        if self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, "
                "after response already completed."
            )
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self.response_started = True
            self.status = self.info.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            self.started.set()
            return
        if message["type"] != "http.response.body":
            raise RuntimeError(
                f"Expected ASGI message 'http.response.body', but got '{message['type']}'."
            )
        body = bytes(message.get("body", b""))
        if body and self.method != "HEAD":
            self.chunks.append(body)
        if not message.get("more_body", False):
            self.response_complete = True
            self.info.response_complete_at = time.monotonic()
            self.finished.set()
        self.data.set()

    async def send_500(self) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"connection", b"close"),
                ],
            }
        )
        await self.send(
            {"type": "http.response.body", "body": b"Internal Server Error", "more_body": False}
        )


class _ResponseStream(httpx.AsyncByteStream):
    """The body as the app sends it; closing it is the client hanging up."""

    def __init__(
        self,
        exchange: _Exchange,
        request: httpx.Request,
        timed_out: Callable[[str], Awaitable[httpx.ReadTimeout]],
    ) -> None:
        self._exchange = exchange
        self._request = request
        self._timed_out = timed_out
        self._read = _read_timeout(request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        ex = self._exchange
        while True:
            while ex.chunks:
                yield ex.chunks.popleft()
            if ex.response_complete:
                return
            if ex.broken or ex.disconnected:
                raise httpx.RemoteProtocolError(_INCOMPLETE_BODY, request=self._request)
            ex.data.clear()
            if not await _wait_within(ex.data, self._read, ex.info):
                raise await self._timed_out(
                    f"sent no more of its body within {self._read:g} s (the read timeout)"
                ) from None

    async def aclose(self) -> None:
        self._exchange.disconnect()


class ServerLikeTransport(httpx.AsyncBaseTransport):
    """Serves each request as uvicorn would, with the ASGI call as a task of its own.

    ``on_request`` is called with each request's ``RequestInfo`` and ASGI task
    as soon as the task exists, so a task monitor can track the call from its
    start; the transport itself never awaits or cancels that task.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        on_request: OnRequest | None = None,
        on_timeout: OnTimeout | None = None,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.on_request = on_request
        self.on_timeout = on_timeout
        self.root_path = root_path
        self.client = client
        self.state = state
        self._in_flight: dict[asyncio.Task[None], _Exchange] = {}
        """Strong references too: the loop keeps only weak ones to tasks."""

    def _scope(self, request: httpx.Request) -> Scope:
        url = request.url
        raw_path, _, query_string = url.raw_path.partition(b"?")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": (url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80)),
            "client": self.client,
            "scheme": url.scheme,
            "method": request.method,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path.decode("ascii")),
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": query_string,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
        }
        if self.state is not None:
            scope["state"] = dict(self.state)
        return scope

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("ServerLikeTransport needs an async request body (httpx.AsyncClient)")
        body = await request.aread()
        scope = self._scope(request)
        info = RequestInfo(request.method, request.url.path)
        exchange = _Exchange(info, request.method, body)

        task = create_request_task(
            asyncio.get_running_loop(),
            self._run_asgi(scope, exchange),
            f"ASGI {info.method} {info.path} #{info.id}",
            info,
        )
        self._in_flight[task] = exchange
        # For a call cancelled before its first step, which never runs _run_asgi's
        # clean-up; removed by that clean-up when it runs.
        task.add_done_callback(self._task_done)
        if self.on_request is not None:
            self.on_request(info, task)

        read = _read_timeout(request)
        try:
            in_time = await _wait_within(exchange.started, read, info)
        except BaseException:
            # The client gave up waiting (cancelled, timed out): to the app that
            # is a closed connection, as it would be under uvicorn.
            exchange.disconnect()
            raise
        if not in_time:
            raise await self._timed_out(
                task, exchange, request, f"got no response within {read:g} s (the read timeout)"
            )
        if not exchange.response_started:
            raise httpx.RemoteProtocolError(_NO_RESPONSE, request=request)
        assert exchange.status is not None
        # A body already complete (the usual case) goes back whole; otherwise it
        # streams as the app sends it.
        stream: httpx.AsyncByteStream = (
            httpx.ByteStream(b"".join(exchange.chunks))
            if exchange.response_complete
            else _ResponseStream(
                exchange, request, functools.partial(self._timed_out, task, exchange, request)
            )
        )
        return httpx.Response(
            exchange.status,
            headers=exchange.headers,
            stream=stream,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": _reason_phrase(exchange.status),
            },
            request=request,
        )

    async def _timed_out(
        self, task: asyncio.Task[None], exchange: _Exchange, request: httpx.Request, what: str
    ) -> httpx.ReadTimeout:
        """The client gives up, as over a socket: a closed connection to the app, and
        httpx's own exception, carrying what the request's task is stuck on."""
        info = exchange.info
        # The report first: hanging up wakes whatever listens for a disconnect,
        # and the chains must show what the call was stuck on, not its clean-up.
        report = (
            f"{info} #{info.id} {what}"
            if self.on_timeout is None
            else await self.on_timeout(task, info, what)
        )
        exchange.disconnect()
        if isinstance(info.error, LoopBlockedError):  # the loop was blocked past it
            report += f"\n\n{info.error}"
        return httpx.ReadTimeout(report, request=request)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        exchange = self._in_flight.pop(task)
        # A task cancelled before its first step never ran _run_asgi's cleanup.
        if exchange.info.ended_at is None:
            exchange.info.ended_at = time.monotonic()
        exchange.drop()

    async def _run_asgi(self, scope: Scope, exchange: _Exchange) -> None:
        info = exchange.info
        # The task runs in its own copy of the context: what is set here is seen
        # by every task the app creates for this request, and nowhere else.
        current_request.set(info)
        current_role.set("request")
        # Typed as returning anything: an app that breaks the ASGI contract by
        # returning a value is reported, as uvicorn does.
        app: Callable[[Scope, Receive, Send], Awaitable[object]] = self.app
        try:
            result = await app(scope, exchange.receive, exchange.send)
        except asyncio.CancelledError:
            # Whoever cancelled the call (the harness settling it) reports it;
            # to the client it is a dropped connection, and the task must end
            # cancelled so that its canceller sees it did.
            exchange.drop()
            raise
        except Exception as exc:
            info.error = exc
            _logger.error("Exception in ASGI application\n", exc_info=exc)
            if not exchange.response_started:
                await exchange.send_500()
            else:
                exchange.drop()
        except GeneratorExit:
            # Closed without a loop (an abandoned call, collected at the interpreter's
            # exit): nothing to tell, nobody to tell it to.
            raise
        except BaseException as exc:
            # uvicorn swallows these too, but in a test run that would eat a
            # Ctrl-C or a pytest.exit() raised inside the app.
            info.error = exc
            _logger.error("Exception in ASGI application\n", exc_info=exc)
            exchange.drop()
            raise
        else:
            if result is not None:
                _logger.error("ASGI callable should return None, but returned '%s'.", result)
                exchange.drop()
            elif not exchange.response_started and not exchange.disconnected:
                _logger.error("ASGI callable returned without starting response.")
                await exchange.send_500()
            elif not exchange.response_complete and not exchange.disconnected:
                _logger.error("ASGI callable returned without completing response.")
                exchange.drop()
        finally:
            info.ended_at = time.monotonic()
            # The call is over: no more body can come, whatever happened.
            exchange.drop()
            # Its clean-up is done here, so the done callback (kept for a task
            # cancelled before its first step) need not run: one loop handle
            # fewer per request.
            task = asyncio.current_task() if asyncio._get_running_loop() is not None else None
            if task is not None and task.remove_done_callback(self._task_done):
                self._in_flight.pop(task, None)

    async def aclose(self) -> None:
        """Hang up on every request still in flight, but let their ASGI calls run on.

        The calls are the harness's to settle or report; cancelling them here
        would hide exactly the hangs the plugin is there to show.
        """
        for exchange in list(self._in_flight.values()):
            exchange.disconnect()


@functools.cache
def _reason_phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
