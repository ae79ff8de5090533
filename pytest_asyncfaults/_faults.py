"""The user API: a ``Proxy`` handle per upstream, with scoped toxics.

Every toxic method returns an async context manager that adds the toxic on
entry and removes it on exit, whatever ends the block: normal exit, an error,
or cancellation (a test's timeout). A fault that outlives its test would
poison the next one, so removal runs to completion even while the task is
being cancelled, then the cancellation goes on.

The same code runs against any backend (the embedded engine here, a real
Toxiproxy server through its HTTP API): the handle only speaks ``Backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator, Mapping
from types import TracebackType
from typing import Final, Protocol, TypedDict, TypeVar, Unpack, final

from ._engine import Engine
from ._exceptions import EngineError, NotFoundError
from ._spec import ToxicSpec, make_toxic
from ._stats import ProxyInfo, ProxyStats

T = TypeVar("T")

CLEANUP_TIMEOUT: Final = 10.0
"""Bound on removing a toxic or proxy on the way out of a block or a test."""


class Backend(Protocol):
    """What a ``Proxy`` handle needs from wherever the proxies live."""

    async def create_proxy(
        self, name: str, upstream: str, listen: str = ..., enabled: bool = ...
    ) -> ProxyInfo: ...
    async def update_proxy(
        self,
        name: str,
        *,
        upstream: str | None = None,
        listen: str | None = None,
        enabled: bool | None = None,
    ) -> ProxyInfo: ...
    async def delete_proxy(self, name: str) -> None: ...
    async def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicSpec: ...
    async def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, object] | None = None,
        toxicity: float | None = None,
    ) -> ToxicSpec: ...
    async def remove_toxic(self, proxy: str, name: str) -> None: ...
    async def toxics(self, proxy: str) -> tuple[ToxicSpec, ...]: ...
    def stats(self, proxy: str) -> ProxyStats: ...


@final
class EmbeddedBackend:
    """``Backend`` over an in-process ``Engine``: calls hop to its thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> ProxyInfo:
        return await self.engine.acall(
            self.engine.core.create_proxy, name, upstream, listen, enabled
        )

    async def update_proxy(
        self,
        name: str,
        *,
        upstream: str | None = None,
        listen: str | None = None,
        enabled: bool | None = None,
    ) -> ProxyInfo:
        return await self.engine.acall(
            self.engine.core.update_proxy, name, upstream=upstream, listen=listen, enabled=enabled
        )

    async def delete_proxy(self, name: str) -> None:
        await self.engine.acall(self.engine.core.delete_proxy, name)

    async def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicSpec:
        return await self.engine.acall(self.engine.core.add_toxic, proxy, spec)

    async def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, object] | None = None,
        toxicity: float | None = None,
    ) -> ToxicSpec:
        return await self.engine.acall(
            self.engine.core.update_toxic, proxy, name, attributes=attributes, toxicity=toxicity
        )

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self.engine.acall(self.engine.core.remove_toxic, proxy, name)

    async def toxics(self, proxy: str) -> tuple[ToxicSpec, ...]:
        return await self.engine.acall(self.engine.core.toxics, proxy)

    def stats(self, proxy: str) -> ProxyStats:
        return self.engine.stats(proxy)


async def run_to_completion(awaitable: Awaitable[T], bound: float = CLEANUP_TIMEOUT) -> T:
    """Await clean-up work even if this task is cancelled meanwhile (bounded).

    The cancellation is delivered after the work is done, so the caller still
    sees it; the work itself never sees it.
    """
    task = asyncio.ensure_future(awaitable)
    current = asyncio.current_task()
    cancelled = False
    while True:
        try:
            result = await asyncio.wait_for(asyncio.shield(task), bound)
            break
        except asyncio.CancelledError:
            if current is not None:
                # Hold the request back (uncancel keeps asyncio.timeout's count
                # right) and deliver it again once the work is done.
                current.uncancel()
            cancelled = True
            if task.done():
                result = task.result()
                break
        except TimeoutError:
            task.cancel()
            raise EngineError(f"clean-up did not finish within {bound} s") from None
    if cancelled and current is not None:
        current.cancel()
        await asyncio.sleep(0)
    return result


class ToxicOptions(TypedDict, total=False):
    """Options every toxic method takes besides its own attributes."""

    name: str
    stream: str
    toxicity: float
    connections: int | str
    start_after: int
    duration: int


@final
class ToxicScope:
    """``async with`` adds the toxic, leaving the block removes it.

    Inside the block the scope is the live toxic: ``await scope.update(...)``
    changes its attributes (merged, as Toxiproxy does) or its toxicity.
    """

    def __init__(self, proxy: Proxy, spec: ToxicSpec) -> None:
        self._proxy = proxy
        self.spec = spec
        self._added = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hits(self) -> int:
        """Connection streams this toxic has been applied to so far."""
        return self._proxy.stats.toxics_hit.get(self.spec.name, 0)

    async def __aenter__(self) -> ToxicScope:
        self.spec = await self._proxy.backend.add_toxic(self._proxy.name, self.spec)
        self._added = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._added:
            self._added = False
            await run_to_completion(self._remove())

    async def _remove(self) -> None:
        # Already removed by hand, or its proxy is gone: nothing is left behind.
        with contextlib.suppress(NotFoundError):
            await self._proxy.backend.remove_toxic(self._proxy.name, self.spec.name)

    async def update(self, *, toxicity: float | None = None, **attributes: int) -> ToxicSpec:
        self.spec = await self._proxy.backend.update_toxic(
            self._proxy.name, self.spec.name, attributes=attributes or None, toxicity=toxicity
        )
        return self.spec


@final
class DownScope:
    """``async with proxy.down():`` the proxy is disabled inside, enabled after."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy

    async def __aenter__(self) -> Proxy:
        await self._proxy.disable()
        return self._proxy

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await run_to_completion(self._proxy.enable())


@final
class Proxy:
    """One named proxy: its address, its counters, and its faults.

    Toxic methods take Toxiproxy's attribute names and units (ms, KB/s,
    bytes, us) and, as keywords, ``stream`` ("downstream" by default, server
    to client; "upstream" is client to server), ``toxicity`` (0.0 to 1.0, the
    share of connections affected, drawn from the engine's seed),
    ``connections`` (which connections by number: ``3``, ``"3+"``, ``"2-4"``),
    ``start_after`` and ``duration`` (ms), and ``name``.
    """

    def __init__(self, backend: Backend, info: ProxyInfo) -> None:
        self.backend = backend
        self._info = info

    def __repr__(self) -> str:
        return f"<Proxy {self.name} {self.listen} -> {self.upstream}>"

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def listen(self) -> str:
        """``host:port`` the app should connect to instead of the upstream."""
        return self._info.listen

    @property
    def host(self) -> str:
        return self._info.host

    @property
    def port(self) -> int:
        return self._info.port

    @property
    def upstream(self) -> str:
        return self._info.upstream

    @property
    def enabled(self) -> bool:
        return self._info.enabled

    @property
    def stats(self) -> ProxyStats:
        """Counters now: connections accepted/open/closed, bytes each way, toxics hit."""
        return self.backend.stats(self.name)

    async def toxics(self) -> tuple[ToxicSpec, ...]:
        return await self.backend.toxics(self.name)

    async def enable(self) -> None:
        self._info = await self.backend.update_proxy(self.name, enabled=True)

    async def disable(self) -> None:
        """Close the listener and every open connection: clients get connection refused."""
        self._info = await self.backend.update_proxy(self.name, enabled=False)

    def down(self) -> DownScope:
        return DownScope(self)

    def toxic(self, toxic_type: str, /, **options: object) -> ToxicScope:
        """Any toxic by its Toxiproxy type name; attributes and options as keywords."""
        common = {key: options.pop(key) for key in list(options) if key in _OPTION_NAMES}
        spec = make_toxic(toxic_type, attributes=options, **common)  # type: ignore[arg-type]
        return ToxicScope(self, spec)

    def latency(self, latency: int, jitter: int = 0, **options: Unpack[ToxicOptions]) -> ToxicScope:
        """Delay data by ``latency`` ms (+/- ``jitter`` ms)."""
        return self.toxic("latency", latency=latency, jitter=jitter, **options)

    def bandwidth(self, rate: int, **options: Unpack[ToxicOptions]) -> ToxicScope:
        """Limit to ``rate`` KB/s."""
        return self.toxic("bandwidth", rate=rate, **options)

    def slow_close(self, delay: int, **options: Unpack[ToxicOptions]) -> ToxicScope:
        """Hold the end of the stream for ``delay`` ms."""
        return self.toxic("slow_close", delay=delay, **options)

    def timeout(self, timeout: int, **options: Unpack[ToxicOptions]) -> ToxicScope:
        """Drop all data; close after ``timeout`` ms without data (0: hold forever)."""
        return self.toxic("timeout", timeout=timeout, **options)

    def blackhole(self, **options: Unpack[ToxicOptions]) -> ToxicScope:
        """Drop all data and hold the connection open: ``timeout(0)``."""
        return self.toxic("timeout", timeout=0, **options)

    def reset_peer(self, timeout: int = 0, **options: Unpack[ToxicOptions]) -> ToxicScope:
        """Reset the connection (TCP RST) ``timeout`` ms after the first data."""
        return self.toxic("reset_peer", timeout=timeout, **options)

    def slicer(
        self,
        average_size: int,
        size_variation: int = 0,
        delay: int = 0,
        **options: Unpack[ToxicOptions],
    ) -> ToxicScope:
        """Cut data into pieces of about ``average_size`` bytes, ``delay`` us apart."""
        return self.toxic(
            "slicer",
            average_size=average_size,
            size_variation=size_variation,
            delay=delay,
            **options,
        )

    def limit_data(self, bytes: int, **options: Unpack[ToxicOptions]) -> ToxicScope:
        """Let ``bytes`` bytes through, then close the connection."""
        return self.toxic("limit_data", bytes=bytes, **options)


_OPTION_NAMES: Final = frozenset(ToxicOptions.__annotations__)


@final
class Faults:
    """The proxies of a test: ``faults["postgres"]``, ``faults.postgres``, ``faults.create``.

    Proxies made with ``create`` belong to this object and are deleted by
    ``aclose`` (the fixture does it at the end of the test).
    """

    def __init__(self, backend: Backend, proxies: Mapping[str, Proxy] | None = None) -> None:
        self.backend = backend
        self._proxies: dict[str, Proxy] = dict(proxies or {})
        self._created: list[str] = []

    def __getitem__(self, name: str) -> Proxy:
        try:
            return self._proxies[name]
        except KeyError:
            known = ", ".join(self._proxies) or "none yet"
            raise NotFoundError(
                f"no proxy named {name!r} in this test (known: {known}); declare it in the "
                f"ini key asyncfaults_proxies or make it with await faults.create(...)"
            ) from None

    def __getattr__(self, name: str) -> Proxy:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __iter__(self) -> Iterator[Proxy]:
        return iter(self._proxies.values())

    def __len__(self) -> int:
        return len(self._proxies)

    async def create(self, name: str, upstream: str, *, listen: str = "127.0.0.1:0") -> Proxy:
        """A new proxy to ``upstream`` (``host:port``), listening on a free loopback port."""
        info = await self.backend.create_proxy(name, upstream, listen)
        proxy = Proxy(self.backend, info)
        self._proxies[name] = proxy
        self._created.append(name)
        return proxy

    async def aclose(self) -> None:
        """Delete the proxies this object created (bounded, cancellation-proof)."""
        while self._created:
            name = self._created.pop()
            self._proxies.pop(name, None)
            with contextlib.suppress(NotFoundError):
                await run_to_completion(self.backend.delete_proxy(name))
