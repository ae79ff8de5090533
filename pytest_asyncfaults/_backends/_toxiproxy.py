"""A client of the Toxiproxy HTTP API, and a ``ProxyHost`` driving one.

The same ``faults`` code then runs on a real Toxiproxy server (in Docker, in
CI) or on ``asyncfaults serve``. Toxiproxy's status codes map onto our
exception tree (400 -> ``InvalidError``, 404 -> ``NotFoundError``, 409 ->
``AlreadyExistsError``), each carrying the server's own message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Final, ParamSpec, TypeVar, final

from .._engine._models import ProtocolEvent, ProxyInfo, ProxyStats
from .._exceptions import (
    AsyncFaultsError,
    EngineError,
    InvalidError,
    NotFoundError,
    error_for_status,
)
from .._toxics import PROTOCOL_TOXICS
from .._toxics._spec import ToxicSpec
from .._toxiproxy._http import HttpClient
from .._toxiproxy._json import (
    STATS_HEADER,
    events_from_json,
    proxy_from_json,
    stats_from_json,
    toxic_from_json,
)
from ._base import CALL_TIMEOUT, ProxyHost

T = TypeVar("T")
P = ParamSpec("P")

CONNECT_TIMEOUT: Final = 2.0
"""An unreachable server must fail the run fast, not after a long TCP timeout."""
REQUEST_TIMEOUT: Final = 5.0

HOW_TO_START: Final = (
    "start one with `asyncfaults serve` (or `docker compose -f docker-compose.toxiproxy.yml "
    "up -d`), or unset TOXIPROXY_URL / --toxiproxy-url to use the embedded engine"
)


@final
class ToxiproxyClient:
    """An async client of one Toxiproxy HTTP API (a ``ProxyTarget``).

    ``extensions`` tells whether the server is ``asyncfaults serve``, which
    also keeps counters and understands ``connections``, ``start_after`` and
    ``duration``; a real Toxiproxy would silently ignore those, so asking it
    for them is an error instead.
    """

    def __init__(self, url: str, *, like: ToxiproxyClient | None = None) -> None:
        self.url = url.rstrip("/")
        self.version: str = "" if like is None else like.version
        self.extensions: bool = False if like is None else like.extensions
        self._guard: AsyncIterator[None] | None = None
        # Its own lean HTTP/1.1 (``_http``): no proxy setting of the machine reroutes it.
        self._http = HttpClient(self.url, connect_timeout=CONNECT_TIMEOUT, timeout=REQUEST_TIMEOUT)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def bind_to_this_loop(self) -> None:
        """Close the connections kept open when the running loop shuts down (see
        ``HttpClient.closed_with_the_loop``)."""
        self._guard = self._http.closed_with_the_loop()
        await anext(self._guard)

    async def connect(self) -> None:
        """Check the server answers (within ``CONNECT_TIMEOUT``) and learn what it is."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                response = await self._http.request("GET", "/version")
        except (OSError, TimeoutError) as exc:  # unreachable, or no HTTP answer
            reason = str(exc) or type(exc).__name__
            raise EngineError(
                f"no Toxiproxy server answers at {self.url} ({reason}): {HOW_TO_START}"
            ) from None
        if response.status != 200:
            raise EngineError(
                f"{self.url} does not look like a Toxiproxy server: GET /version answered "
                f"{response.status}: {HOW_TO_START}"
            )
        try:
            body = json.loads(response.body)
        except ValueError:
            body = response.text.strip()  # Toxiproxy before 2.6 answered plain text
        if isinstance(body, dict):
            self.version = str(body.get("version", ""))
            self.extensions = "asyncfaults" in body
        else:
            self.version = str(body)

    async def _request(self, method: str, path: str, body: object = None) -> Any:
        return (await self._exchange(method, path, body))[0]

    async def _exchange(
        self, method: str, path: str, body: object = None, *, counted: bool = False
    ) -> tuple[Any, ProxyStats | None]:
        """The answer's JSON body and, asked with ``counted`` of a server that has
        the extension, the proxy's counters it sent along (``STATS_HEADER``)."""
        content = None if body is None else json.dumps(body).encode()
        extra = f"{STATS_HEADER}: 1\r\n" if counted else ""
        try:
            response = await self._http.request(method, path, content, extra=extra)
        except (OSError, TimeoutError) as exc:  # unreachable, or no HTTP answer
            raise EngineError(
                f"Toxiproxy at {self.url} did not answer {method} {path}: "
                f"{str(exc) or type(exc).__name__}"
            ) from None
        if response.ok:
            stats = response.headers.get(STATS_HEADER) if counted else None
            return (
                json.loads(response.body) if response.body else None,
                None if stats is None else stats_from_json(json.loads(stats)),
            )
        try:
            # ``asyncfaults serve`` says what Toxiproxy says in "error", and more in "detail".
            answer: dict[str, Any] = json.loads(response.body)
            message = str(answer.get("detail") or answer["error"])
        except (ValueError, KeyError, TypeError, AttributeError):
            message = response.text.strip() or response.reason
        raise error_for_status(response.status, message)(f"Toxiproxy at {self.url}: {message}")

    # -- ProxyTarget -----------------------------------------------------------------------

    async def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> ProxyInfo:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return proxy_from_json(await self._request("POST", "/proxies", body))

    async def update_proxy(
        self,
        name: str,
        *,
        upstream: str | None = None,
        listen: str | None = None,
        enabled: bool | None = None,
    ) -> ProxyInfo:
        given = {"upstream": upstream, "listen": listen, "enabled": enabled}
        body = {key: value for key, value in given.items() if value is not None}
        return proxy_from_json(await self._request("POST", f"/proxies/{name}", body))

    async def delete_proxy(self, name: str) -> None:
        await self._request("DELETE", f"/proxies/{name}")

    async def proxy_info(self, name: str) -> ProxyInfo:
        return proxy_from_json(await self._request("GET", f"/proxies/{name}"))

    async def proxies(self) -> dict[str, ProxyInfo]:
        data = await self._request("GET", "/proxies")
        return {name: proxy_from_json(proxy) for name, proxy in data.items()}

    async def populate(self, proxies: list[Mapping[str, object]]) -> list[ProxyInfo]:
        data = await self._request("POST", "/populate", proxies)
        return [proxy_from_json(proxy) for proxy in data.get("proxies") or ()]

    async def stats(self, name: str) -> ProxyStats:
        if not self.extensions:
            raise AsyncFaultsError(
                f"Toxiproxy at {self.url} keeps no counters: proxy.stats needs the embedded "
                f"engine or `asyncfaults serve`"
            )
        data = await self._request("GET", f"/proxies/{name}/stats")
        return stats_from_json(data)

    async def protocol_events(self, name: str) -> tuple[ProtocolEvent, ...]:
        if not self.extensions:
            raise AsyncFaultsError(
                f"Toxiproxy at {self.url} has no protocol toxics, so no protocol events: "
                f"they need the embedded engine or `asyncfaults serve`"
            )
        return events_from_json(await self._request("GET", f"/proxies/{name}/events"))

    async def toxics(self, proxy: str) -> tuple[ToxicSpec, ...]:
        data = await self._request("GET", f"/proxies/{proxy}/toxics")
        return tuple(toxic_from_json(toxic) for toxic in data)

    async def toxic(self, proxy: str, name: str) -> ToxicSpec:
        return toxic_from_json(await self._request("GET", f"/proxies/{proxy}/toxics/{name}"))

    async def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicSpec:
        return (await self.open_toxic(proxy, spec))[0]

    async def open_toxic(
        self, proxy: str, spec: ToxicSpec, *, counted: bool = False
    ) -> tuple[ToxicSpec, ProxyStats | None]:
        # Refused here what a real Toxiproxy would not do, or would ignore silently.
        if spec.type in PROTOCOL_TOXICS and not self.extensions:
            raise InvalidError(
                f"type={spec.type!r} is not supported by the Toxiproxy at {self.url}: "
                f"{spec.type} is a protocol toxic of pytest-asyncfaults' embedded engine "
                f"(Toxiproxy only knows bytes): use the embedded engine (no "
                f"--toxiproxy-url) or `asyncfaults serve`"
            )
        body = spec.to_json()
        extras = sorted(set(body) - {"name", "type", "stream", "toxicity", "attributes"})
        if extras and not self.extensions:
            raise InvalidError(
                f"{', '.join(extras)} is not supported by the Toxiproxy at {self.url} (it would "
                f"ignore it silently): use the embedded engine or `asyncfaults serve`"
            )
        # A real Toxiproxy keeps no counters: only serve is asked for them.
        data, stats = await self._exchange(
            "POST", f"/proxies/{proxy}/toxics", body, counted=counted and self.extensions
        )
        return toxic_from_json(data), stats

    async def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, object] | None = None,
        toxicity: float | None = None,
    ) -> ToxicSpec:
        body: dict[str, object] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = f"/proxies/{proxy}/toxics/{name}"
        return toxic_from_json(await self._request("POST", path, body))

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self._request("DELETE", f"/proxies/{proxy}/toxics/{name}")

    async def close_toxic(
        self, proxy: str, name: str, *, counted: bool = False
    ) -> ProxyStats | None:
        # Already removed, or its proxy gone: nothing is left behind, and nothing counted.
        with contextlib.suppress(NotFoundError):
            _, stats = await self._exchange(
                "DELETE",
                f"/proxies/{proxy}/toxics/{name}",
                counted=counted and self.extensions,
            )
            return stats
        return None

    async def reset(self) -> None:
        await self._request("POST", "/reset")


@final
class ToxiproxyHost(ProxyHost[ToxiproxyClient]):
    """A Toxiproxy HTTP API (real, or ``asyncfaults serve``) driven from its own thread.

    The blocking calls go through that thread; ``acall`` does not: a request
    from another loop (a test's) is made from that loop, by a client of its
    own, kept for the loop's life. The server keeps the faults' time, not the
    client, so nothing is lost, and each call saves two hops between threads
    (two wake-ups, most of a call's time beside a server's answer).
    """

    thread_name = "asyncfaults-toxiproxy-client"

    def __init__(self, url: str, *, call_timeout: float = CALL_TIMEOUT) -> None:
        super().__init__(call_timeout=call_timeout)
        self.url = url
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ToxiproxyClient] = (
            weakref.WeakKeyDictionary()
        )
        self._by_loop_lock = threading.Lock()

    async def acall(
        self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        target = self._target
        if target is None or getattr(fn, "__self__", None) is not target or not self.running:
            return await super().acall(fn, *args, **kwargs)
        client = await self._client_here()
        method: Callable[P, Coroutine[Any, Any, T]] = getattr(client, fn.__name__)
        try:
            async with asyncio.timeout(self._call_timeout):
                return await method(*args, **kwargs)
        except TimeoutError:
            raise EngineError(
                f"{self.describe()} did not answer within {self._call_timeout} s"
            ) from None

    async def _client_here(self) -> ToxiproxyClient:
        loop = asyncio.get_running_loop()
        with self._by_loop_lock:
            client = self._by_loop.get(loop)
            fresh = client is None
            if client is None:
                client = self._by_loop[loop] = ToxiproxyClient(self.url, like=self.target)
        if fresh:
            await client.bind_to_this_loop()
        return client

    def describe(self) -> str:
        return f"the Toxiproxy server at {self.url}"

    @property
    def client(self) -> ToxiproxyClient:
        return self.target

    async def _open(self, loop: asyncio.AbstractEventLoop) -> ToxiproxyClient:
        client = ToxiproxyClient(self.url)
        try:
            await client.connect()
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _close(self, target: ToxiproxyClient) -> None:
        await target.aclose()
