"""A client of the Toxiproxy HTTP API, and a ``ProxyHost`` driving one.

The same ``faults`` code then runs on a real Toxiproxy server (in Docker, in
CI) or on ``asyncfaults serve``. Toxiproxy's status codes map onto our
exception tree (400 -> ``InvalidError``, 404 -> ``NotFoundError``, 409 ->
``AlreadyExistsError``), each carrying the server's own message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final, final

import httpx

from .._engine._models import ProtocolEvent, ProxyInfo, ProxyStats
from .._exceptions import (
    AsyncFaultsError,
    EngineError,
    InvalidError,
    error_for_status,
)
from .._toxics import PROTOCOL_TOXICS
from .._toxics._spec import ToxicSpec
from .._toxiproxy._json import (
    events_from_json,
    proxy_from_json,
    stats_from_json,
    toxic_from_json,
)
from ._base import CALL_TIMEOUT, ProxyHost

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

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.version = ""
        self.extensions = False
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT),
            transport=transport,
            trust_env=False,  # a proxy setting of the machine must not reroute loopback calls
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def connect(self) -> None:
        """Check the server answers (within ``CONNECT_TIMEOUT``) and learn what it is."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                response = await self._http.get("/version")
        except (httpx.TransportError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise EngineError(
                f"no Toxiproxy server answers at {self.url} ({reason}): {HOW_TO_START}"
            ) from None
        if response.status_code != 200:
            raise EngineError(
                f"{self.url} does not look like a Toxiproxy server: GET /version answered "
                f"{response.status_code}: {HOW_TO_START}"
            )
        try:
            body = response.json()
        except ValueError:
            body = response.text.strip()  # Toxiproxy before 2.6 answered plain text
        if isinstance(body, dict):
            self.version = str(body.get("version", ""))
            self.extensions = "asyncfaults" in body
        else:
            self.version = str(body)

    async def _request(self, method: str, path: str, body: object = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise EngineError(
                f"Toxiproxy at {self.url} did not answer {method} {path}: "
                f"{exc or type(exc).__name__}"
            ) from None
        if response.is_success:
            return response.json() if response.content else None
        try:
            # ``asyncfaults serve`` says what Toxiproxy says in "error", and more in "detail".
            answer: dict[str, Any] = response.json()
            message = str(answer.get("detail") or answer["error"])
        except (ValueError, KeyError, TypeError, AttributeError):
            message = response.text.strip() or response.reason_phrase
        raise error_for_status(response.status_code, message)(f"Toxiproxy at {self.url}: {message}")

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
        return toxic_from_json(await self._request("POST", f"/proxies/{proxy}/toxics", body))

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

    async def reset(self) -> None:
        await self._request("POST", "/reset")


@final
class ToxiproxyHost(ProxyHost[ToxiproxyClient]):
    """A Toxiproxy HTTP API (real, or ``asyncfaults serve``) driven from its own thread."""

    thread_name = "asyncfaults-toxiproxy-client"

    def __init__(self, url: str, *, call_timeout: float = CALL_TIMEOUT) -> None:
        super().__init__(call_timeout=call_timeout)
        self.url = url

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
