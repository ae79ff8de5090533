"""ServerLikeTransport against real FastAPI and Starlette apps, held to uvicorn's behaviour.

Every test leaves no task behind: ``serve`` awaits each ASGI task it saw (and
cancels whatever is still running after a bound), so a leak shows up here and
not as a warning in some later test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, Request
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pytest_asyncfaults import RequestInfo
from pytest_asyncfaults._app._transport import ServerLikeTransport
from pytest_asyncfaults._tasks._context import current_request, current_role

LogErrors = Callable[[], list[logging.LogRecord]]
"""The ERROR records on uvicorn.error so far."""

SETTLE = 5.0
"""Upper bound on any wait in these tests, so that a bug fails instead of hanging."""


@dataclass
class Served:
    client: httpx.AsyncClient
    transport: ServerLikeTransport
    requests: list[tuple[RequestInfo, asyncio.Task[None]]] = field(default_factory=list)

    @property
    def only(self) -> tuple[RequestInfo, asyncio.Task[None]]:
        (served,) = self.requests
        return served


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, **kwargs: Any) -> AsyncIterator[Served]:
    requests: list[tuple[RequestInfo, asyncio.Task[None]]] = []

    def on_request(info: RequestInfo, task: asyncio.Task[None]) -> None:
        requests.append((info, task))

    transport = ServerLikeTransport(app, on_request=on_request, **kwargs)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Served(client, transport, requests)
    finally:
        tasks = [task for _, task in requests]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SETTLE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert not pending, f"ASGI tasks still running at the end of the test: {pending}"


@pytest.fixture
def uvicorn_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> LogErrors:
    """caplog for uvicorn.error, even where a logging setup stops "uvicorn" propagating."""
    monkeypatch.setattr(logging.getLogger("uvicorn"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("uvicorn.error"), "propagate", True)
    caplog.set_level(logging.INFO, logger="uvicorn.error")

    def errors() -> list[logging.LogRecord]:
        return [
            r for r in caplog.records if r.name == "uvicorn.error" and r.levelno >= logging.ERROR
        ]

    return errors


async def wait_for(task: asyncio.Task[None]) -> None:
    await asyncio.wait_for(asyncio.shield(task), SETTLE)


# --- responses come back before the ASGI call ends ------------------------------------------


BACKGROUND_SLEEP = 1.0


@pytest.mark.asyncio
async def test_response_returns_before_a_slow_background_task() -> None:
    app = FastAPI()
    done: list[str] = []

    async def send_welcome_mail(to: str) -> None:
        await asyncio.sleep(BACKGROUND_SLEEP)
        done.append(to)

    @app.post("/signup")
    async def signup(background: BackgroundTasks) -> dict[str, str]:
        background.add_task(send_welcome_mail, "ann@example.com")
        return {"status": "ok"}

    async with serve(app) as served:
        started = time.monotonic()
        response = await served.client.post("/signup")
        elapsed = time.monotonic() - started

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert elapsed < 0.5
        info, task = served.only
        assert not task.done()
        assert info.status == 200
        assert info.response_complete_at is not None
        assert info.ended_at is None

        await wait_for(task)
        assert done == ["ann@example.com"]
        assert info.ended_at is not None
        assert info.ended_at - info.response_complete_at >= BACKGROUND_SLEEP * 0.9
        assert info.error is None


@pytest.mark.asyncio
async def test_background_exception_is_logged_not_raised(uvicorn_log: LogErrors) -> None:
    app = FastAPI()

    async def send_welcome_mail() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionRefusedError("smtp down")

    @app.post("/signup")
    async def signup(background: BackgroundTasks) -> dict[str, str]:
        background.add_task(send_welcome_mail)
        return {"status": "ok"}

    async with serve(app) as served:
        response = await served.client.post("/signup")
        assert response.status_code == 200
        info, task = served.only
        await wait_for(task)

    assert task.exception() is None
    assert isinstance(info.error, ConnectionRefusedError)
    (record,) = uvicorn_log()
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Exception in ASGI application\n"
    assert record.exc_info is not None
    assert record.exc_info[1] is info.error


# --- failures answered as uvicorn answers them ----------------------------------------------


@pytest.mark.asyncio
async def test_exception_before_the_response_gives_500(uvicorn_log: LogErrors) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    async with serve(app) as served:
        response = await served.client.get("/")
        info, _ = served.only

    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert isinstance(info.error, ValueError)
    assert info.status == 500
    (record,) = uvicorn_log()
    assert record.getMessage() == "Exception in ASGI application\n"
    assert record.exc_info is not None
    assert record.exc_info[1] is info.error


@pytest.mark.asyncio
async def test_fastapi_endpoint_exception_gives_500_and_is_logged(uvicorn_log: LogErrors) -> None:
    app = FastAPI()

    @app.get("/items")
    async def items() -> None:
        raise KeyError("missing")

    async with serve(app) as served:
        response = await served.client.get("/items")
        info, _ = served.only

    assert response.status_code == 500
    assert isinstance(info.error, KeyError)
    assert [r.getMessage() for r in uvicorn_log()] == ["Exception in ASGI application\n"]


@pytest.mark.asyncio
async def test_app_returning_without_a_response_gives_500(uvicorn_log: LogErrors) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    async with serve(app) as served:
        response = await served.client.get("/")
        info, _ = served.only

    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert info.error is None
    assert [r.getMessage() for r in uvicorn_log()] == [
        "ASGI callable returned without starting response."
    ]


@pytest.mark.asyncio
async def test_app_returning_mid_body_drops_the_connection(uvicorn_log: LogErrors) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    async with serve(app) as served:
        with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
            await served.client.get("/")

    assert [r.getMessage() for r in uvicorn_log()] == [
        "ASGI callable returned without completing response."
    ]


@pytest.mark.asyncio
async def test_exception_mid_body_drops_the_connection(uvicorn_log: LogErrors) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise OSError("upstream reset")

    async with serve(app) as served:
        async with served.client.stream("GET", "/") as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
                await response.aread()
        info, _ = served.only

    assert isinstance(info.error, OSError)
    assert info.response_complete_at is None
    (record,) = uvicorn_log()
    assert record.exc_info is not None
    assert record.exc_info[1] is info.error


@pytest.mark.asyncio
async def test_non_none_return_is_reported(uvicorn_log: LogErrors) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> Any:
        await PlainTextResponse("hi")(scope, receive, send)
        return 42

    async with serve(app) as served:
        response = await served.client.get("/")

    assert response.text == "hi"
    assert [r.getMessage() for r in uvicorn_log()] == [
        "ASGI callable should return None, but returned '42'."
    ]


@pytest.mark.asyncio
async def test_send_after_the_response_is_an_app_error(uvicorn_log: LogErrors) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("hi")(scope, receive, send)
        await send({"type": "http.response.body", "body": b"late"})

    async with serve(app) as served:
        response = await served.client.get("/")
        info, _ = served.only

    assert response.text == "hi"
    assert isinstance(info.error, RuntimeError)
    assert "after response already completed" in str(info.error)
    assert len(uvicorn_log()) == 1


@pytest.mark.asyncio
async def test_cancelled_app_task_drops_a_waiting_client() -> None:
    never = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await never.wait()

    async with serve(app) as served:
        request = asyncio.create_task(served.client.get("/"))
        while not served.requests:
            await asyncio.sleep(0.001)
        info, task = served.only
        task.cancel()
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await asyncio.wait_for(request, SETTLE)
        assert task.cancelled()
        assert info.error is None
        assert info.ended_at is not None


# --- streaming and disconnects ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_streaming_response_chunks_arrive_as_they_are_produced() -> None:
    first_received = asyncio.Event()
    produced: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            produced.append(f"chunk {i}")
            yield f"chunk {i};".encode()
            if i == 0:
                # The next chunk exists only once the client has the first one.
                await asyncio.wait_for(first_received.wait(), SETTLE)
            await asyncio.sleep(0.02)

    async def stream(request: StarletteRequest) -> Response:
        return StreamingResponse(chunks(), media_type="text/plain")

    app = Starlette(routes=[Route("/stream", stream)])
    async with serve(app) as served, served.client.stream("GET", "/stream") as response:
        received = []
        async for chunk in response.aiter_bytes():
            received.append(chunk)
            if len(received) == 1:
                assert produced == ["chunk 0"]
                first_received.set()

    assert b"".join(received) == b"chunk 0;chunk 1;chunk 2;"
    assert len(received) == 3


@pytest.mark.asyncio
async def test_disconnect_is_delivered_only_after_the_client_closes_the_stream() -> None:
    messages: list[Message] = []
    sent_first = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        messages.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        sent_first.set()
        messages.append(await receive())
        # Like uvicorn: whatever is sent to a gone client is dropped silently.
        await send({"type": "http.response.body", "body": b"late", "more_body": False})

    async with serve(app) as served:
        async with served.client.stream("POST", "/", content=b"payload") as response:
            async for chunk in response.aiter_bytes():
                assert chunk == b"first"
                break
            await asyncio.wait_for(sent_first.wait(), SETTLE)
            await asyncio.sleep(0.05)
            assert len(messages) == 1, "the app saw a disconnect while the client was reading"
        info, task = served.only
        await wait_for(task)

    assert messages == [
        {"type": "http.request", "body": b"payload", "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert info.error is None
    assert info.response_complete_at is None


@pytest.mark.asyncio
async def test_starlette_streaming_response_stops_when_the_client_leaves(
    uvicorn_log: LogErrors,
) -> None:
    stopped = asyncio.Event()

    async def forever() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    async def ticks(request: StarletteRequest) -> Response:
        return StreamingResponse(forever())

    app = Starlette(routes=[Route("/ticks", ticks)])
    async with serve(app) as served:
        async with served.client.stream("GET", "/ticks") as response:
            seen = 0
            async for _ in response.aiter_lines():
                seen += 1
                if seen == 3:
                    break
        await asyncio.wait_for(stopped.wait(), SETTLE)
        _, task = served.only
        await wait_for(task)

    assert uvicorn_log() == []


@pytest.mark.asyncio
async def test_client_giving_up_is_a_disconnect_for_the_app(uvicorn_log: LogErrors) -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        seen.append(await receive())  # waits for the client to hang up

    async with serve(app) as served:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(served.client.get("/"), 0.1)
        _, task = served.only
        await wait_for(task)

    assert seen[1] == {"type": "http.disconnect"}
    assert uvicorn_log() == [], "returning without a response to a gone client is not an error"


@pytest.mark.asyncio
async def test_transport_close_disconnects_without_cancelling() -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        seen.append(await receive())

    async with serve(app) as served:
        response = await served.client.send(served.client.build_request("GET", "/"), stream=True)
        info, task = served.only
        await asyncio.sleep(0.02)
        assert not seen
        await served.transport.aclose()
        await wait_for(task)
        assert not task.cancelled()
        assert info.ended_at is not None
        assert seen == [{"type": "http.disconnect"}]
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()
        await response.aclose()


# --- what the app sees -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_body_query_and_headers_reach_the_app() -> None:
    app = FastAPI()

    @app.post("/echo/{name}")
    async def echo(name: str, request: Request, n: int) -> dict[str, Any]:
        return {
            "name": name,
            "n": n,
            "body": (await request.body()).decode(),
            "token": request.headers.get("x-token"),
            "query": request.url.query,
        }

    async with serve(app) as served:
        response = await served.client.post(
            "/echo/a%20b", params={"n": 3, "q": "x y"}, content=b"hello", headers={"X-Token": "t"}
        )

    # the query string as the client encoded it (httpx before 0.25 writes a space as %20)
    query = response.request.url.query.decode()
    assert query in ("n=3&q=x+y", "n=3&q=x%20y")
    assert response.json() == {
        "name": "a b",
        "n": 3,
        "body": "hello",
        "token": "t",
        "query": query,
    }


@pytest.mark.asyncio
async def test_scope_is_built_like_uvicorns() -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        scope["state"]["touched"] = True
        await PlainTextResponse("ok")(scope, receive, send)

    state = {"pool": "the pool"}
    async with serve(app, root_path="/api", client=("10.0.0.1", 5000), state=state) as served:
        await served.client.get("https://example.com:8443/a%2Fb/c d?x=1", headers={"A-B": "c"})
        await served.client.get("/")

    scope = scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "https"
    assert scope["server"] == ("example.com", 8443)
    assert scope["client"] == ("10.0.0.1", 5000)
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/a/b/c d"
    assert scope["raw_path"] == b"/api/a%2Fb/c%20d"
    assert scope["query_string"] == b"x=1"
    assert (b"a-b", b"c") in scope["headers"]
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scopes[1]["server"] == ("testserver", 80)
    # A shallow copy per request, as uvicorn copies the lifespan state.
    assert state == {"pool": "the pool"}
    assert scopes[0]["state"] == {"pool": "the pool", "touched": True}
    assert scopes[0]["state"] is not scopes[1]["state"]


@pytest.mark.asyncio
async def test_head_response_has_no_body() -> None:
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("body"))])
    async with serve(app) as served:
        response = await served.client.head("/")
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.asyncio
async def test_tasks_the_app_creates_inherit_the_current_request() -> None:
    app = FastAPI()
    seen: dict[str, tuple[RequestInfo | None, str | None]] = {}
    spawned: list[asyncio.Task[None]] = []

    async def record(key: str) -> None:
        await asyncio.sleep(0.01)
        seen[key] = (current_request.get(), current_role.get())

    async def background() -> None:
        seen["background"] = (current_request.get(), current_role.get())

    @app.post("/orders")
    async def orders(tasks: BackgroundTasks) -> dict[str, str]:
        seen["endpoint"] = (current_request.get(), current_role.get())
        await asyncio.create_task(record("awaited"))
        spawned.append(asyncio.create_task(record("fire and forget")))
        tasks.add_task(background)
        return {}

    async with serve(app) as served:
        other = await served.client.post("/orders")
        assert other.status_code == 200
        info, task = served.only
        await wait_for(task)
        await asyncio.wait_for(asyncio.gather(*spawned), SETTLE)

    assert seen == {
        "endpoint": (info, "request"),
        "awaited": (info, "request"),
        "fire and forget": (info, "request"),
        "background": (info, "request"),
    }
    assert current_request.get() is None, "the test's own context is left alone"
    assert current_role.get() is None


@pytest.mark.asyncio
async def test_many_concurrent_requests() -> None:
    app = FastAPI()

    @app.get("/items/{n}")
    async def item(n: int, tasks: BackgroundTasks) -> dict[str, Any]:
        await asyncio.sleep(0.01 * (n % 5))
        tasks.add_task(asyncio.sleep, 0.05)
        info = current_request.get()
        assert info is not None
        return {"n": n, "id": info.id}

    async with serve(app) as served:
        responses = await asyncio.wait_for(
            asyncio.gather(*(served.client.get(f"/items/{n}") for n in range(100))), SETTLE
        )
        assert [r.json()["n"] for r in responses] == list(range(100))
        ids = {r.json()["id"] for r in responses}
        assert ids == {info.id for info, _ in served.requests}
        assert len(ids) == 100
        assert {info.path for info, _ in served.requests} == {f"/items/{n}" for n in range(100)}


# --- under anyio's pytest plugin -------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_background_task_under_anyio() -> None:
    app = FastAPI()
    release = asyncio.Event()

    @app.get("/")
    async def index(tasks: BackgroundTasks) -> str:
        tasks.add_task(release.wait)
        return "ok"

    async with serve(app) as served:
        response = await served.client.get("/")
        assert response.json() == "ok"
        _, task = served.only
        assert not task.done()
        release.set()
        await wait_for(task)
