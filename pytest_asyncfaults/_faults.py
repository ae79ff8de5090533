"""The user API: a ``Proxy`` handle per upstream, with scoped toxics.

Every toxic method returns an async context manager that adds the toxic on
entry and removes it on exit, whatever ends the block: normal exit, an error,
or cancellation (a test's timeout). A fault that outlives its test would
poison the next one, so removal runs to completion even while the task is
being cancelled, then the cancellation goes on.

The same code runs against any backend (the embedded engine, a real
Toxiproxy server or ``asyncfaults serve`` through the HTTP API): the handle
only speaks to a ``ProxyHost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec, TypedDict, TypeVar, Unpack, final

from ._address import dsn_fields, dsn_with_address, mask_secrets
from ._backends._base import ProxyHost
from ._engine._models import ProtocolEvent, ProxyInfo, ProxyStats
from ._exceptions import (
    AlreadyExistsError,
    AsyncFaultsError,
    EngineError,
    InvalidError,
    NotFoundError,
)
from ._toxics._spec import ToxicSpec, check_name, make_toxic

Host = ProxyHost[Any]

T = TypeVar("T")
P = ParamSpec("P")

CLEANUP_TIMEOUT: Final = 10.0
"""Bound on removing a toxic or proxy on the way out of a block or a test."""


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


@final
@dataclass(eq=False)
class FaultWindow:
    """When one fault was on a proxy during a test, for the timeline of a failure.

    Times are ``time.monotonic()``; ``start_after`` and ``duration`` (ms) are
    the toxic's own timing, applied by the engine from ``added_at``.
    """

    proxy: str
    description: str
    added_at: float
    removed_at: float | None = None
    start_after: int = 0
    duration: int | None = None
    connections: int | None = None
    """Connections the fault could touch while it was on (open when it went on, plus those
    accepted until it came off); ``None`` where the server keeps no counters."""
    listen: str = ""
    _seen: tuple[int, int] | None = None

    def opened(self, stats: ProxyStats | None) -> None:
        """The proxy's counters as the fault goes on: connections open, connections accepted."""
        if stats is not None:
            self._seen = (stats.open, stats.accepted)

    def closed(self, stats: ProxyStats | None) -> None:
        """The proxy's counters as the fault comes off."""
        if stats is not None and self._seen is not None:
            was_open, accepted = self._seen
            self.connections = was_open + max(0, stats.accepted - accepted)

    @property
    def starts_at(self) -> float:
        return self.added_at + self.start_after / 1000

    @property
    def ends_at(self) -> float | None:
        """When it stopped acting: removed, or its duration over; ``None``: still on."""
        ends = [] if self.removed_at is None else [self.removed_at]
        if self.duration is not None:
            ends.append(self.starts_at + self.duration / 1000)
        return min(ends) if ends else None


def describe_toxic(spec: ToxicSpec) -> str:
    """``timeout downstream timeout=0``: the toxic as a report names it (a protocol toxic,
    which reads both directions, without its stream: ``pg_error sqlstate=40001``)."""
    return spec.describe() + (f" toxicity={spec.toxicity:g}" if spec.toxicity != 1.0 else "")


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
        self._window: FaultWindow | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hits(self) -> int:
        """Connection streams this toxic has been applied to so far.

        A blocking read, like ``proxy.stats``; ``await scope.read_hits()`` waits
        without holding the event loop.
        """
        return self._proxy.stats.toxics_hit.get(self.spec.name, 0)

    async def read_hits(self) -> int:
        """``hits``, read without blocking the caller's event loop."""
        return (await self._proxy.read_stats()).toxics_hit.get(self.spec.name, 0)

    async def __aenter__(self) -> ToxicScope:
        # One call each way (the toxic and, for the test's journal, the counters that
        # tell which connections the fault touched): a chaos suite makes thousands.
        proxy = self._proxy
        self.spec, stats = await proxy.call(
            proxy.backend.target.open_toxic, self.spec, counted=proxy.journal is not None
        )
        self._added = True
        self._window = proxy.record_fault(
            describe_toxic(self.spec), self.spec.start_after, self.spec.duration
        )
        if self._window is not None:
            self._window.opened(stats)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._added:
            self._added = False
            proxy, window = self._proxy, self._window
            # Already removed by hand, or its proxy is gone: nothing is left behind.
            stats = await run_to_completion(
                proxy.call(
                    proxy.backend.target.close_toxic, self.spec.name, counted=window is not None
                )
            )
            if window is not None:
                window.closed(stats)
                window.removed_at = time.monotonic()

    async def update(self, *, toxicity: float | None = None, **attributes: int | str) -> ToxicSpec:
        self.spec = await self._proxy.call(
            self._proxy.backend.target.update_toxic,
            self.spec.name,
            attributes=attributes or None,
            toxicity=toxicity,
        )
        return self.spec


@final
class DownScope:
    """``async with proxy.down():`` the proxy is disabled inside, enabled after."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._window: FaultWindow | None = None

    async def __aenter__(self) -> Proxy:
        await self._proxy.disable()
        self._window = self._proxy.record_fault("down (connections refused)")
        return self._proxy

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await run_to_completion(self._proxy.enable())
        if self._window is not None:
            self._window.removed_at = time.monotonic()


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

    def __init__(
        self,
        backend: Host,
        info: ProxyInfo,
        alias: str | None = None,
        *,
        service_dsn: str | None = None,
    ) -> None:
        self.backend = backend
        self._info = info
        self._alias = alias or info.name
        self.service_dsn = service_dsn
        """The DSN of the server behind this proxy, when it is known (``postgres_server``'s):
        what ``dsn`` points at the proxy, user, password and database kept."""
        self.journal: list[FaultWindow] | None = None
        """Where the faults put on this proxy are noted, while a test holds it (``Faults``)."""

    def __repr__(self) -> str:
        return f"<Proxy {self.name} {self.listen} -> {self.upstream}>"

    def refresh(self, info: ProxyInfo) -> None:
        """Take the server's word for the proxy's settings (after a change made elsewhere)."""
        self._info = info

    async def call(
        self,
        fn: Callable[Concatenate[str, P], Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run a host operation on this proxy (by its name on the server)."""
        return await self.backend.acall(fn, self.server_name, *args, **kwargs)

    @property
    def name(self) -> str:
        """The name the test knows it by (``faults[name]``)."""
        return self._alias

    @property
    def server_name(self) -> str:
        """The name on the server: prefixed to be unique on a shared Toxiproxy."""
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
    def dsn(self) -> str:
        """The server's DSN through this proxy: its user, password and database, this address.

        Known for the proxies of ``postgres_server`` (and of a ``--proxy`` given
        as a DSN); an ``InvalidError`` otherwise.
        """
        if self.service_dsn is None:
            raise InvalidError(
                f"the proxy {self.name!r} ({self.listen} -> {self.upstream}) has no DSN: it "
                f"was declared by its address alone; use the postgres_server fixture (its "
                f"proxy faults.postgres knows the DSN; --asyncfaults-postgres-dsn names your "
                f"own server), or declare the proxy with a DSN, "
                f"{self.name}=postgresql://user:password@host:port/database"
            )
        return dsn_with_address(self.service_dsn, self.host, self.port)

    @property
    def enabled(self) -> bool:
        return self._info.enabled

    @property
    def stats(self) -> ProxyStats:
        """Counters now: connections accepted/open/closed, bytes each way, toxics hit.

        A blocking read: instant on the embedded engine in a thread, an HTTP round
        trip on a child process or a Toxiproxy server. In async code that must not
        hold its loop, ``await proxy.read_stats()``.
        """
        return self.backend.stats(self.server_name)

    async def read_stats(self) -> ProxyStats:
        """``stats``, read without blocking the caller's event loop."""
        return await self.call(self.backend.target.stats)

    async def protocol_events(self) -> tuple[ProtocolEvent, ...]:
        """What this proxy's protocol toxics saw and did on its connections, oldest first:
        logins, statements, SMTP commands and replies, the answers they gave, the cuts."""
        return await self.call(self.backend.target.protocol_events)

    async def toxics(self) -> tuple[ToxicSpec, ...]:
        return await self.call(self.backend.target.toxics)

    async def enable(self) -> None:
        self._info = await self.call(self.backend.target.update_proxy, enabled=True)

    async def disable(self) -> None:
        """Close the listener and every open connection: clients get connection refused."""
        self._info = await self.call(self.backend.target.update_proxy, enabled=False)

    def down(self) -> DownScope:
        return DownScope(self)

    def record_fault(
        self, description: str, start_after: int = 0, duration: int | None = None
    ) -> FaultWindow | None:
        """Note a fault put on now, in the journal of the test holding this proxy, if any."""
        if self.journal is None:
            return None
        window = FaultWindow(
            self.name,
            description,
            time.monotonic(),
            None,
            start_after,
            duration,
            listen=self.listen,
        )
        self.journal.append(window)
        return window

    def apply(self, spec: ToxicSpec) -> ToxicScope:
        """A toxic already built (``make_toxic``, a scenario): ``async with proxy.apply(spec)``."""
        return ToxicScope(self, spec)

    def toxic(self, toxic_type: str, /, **options: object) -> ToxicScope:
        """Any toxic by its Toxiproxy type name; attributes and options as keywords."""
        common = {key: options.pop(key) for key in list(options) if key in _OPTION_NAMES}
        spec = make_toxic(toxic_type, attributes=options, **common)  # type: ignore[arg-type]
        return self.apply(spec)

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

    # -- the protocol toxics (PostgreSQL, SMTP): the embedded engine only ---------------------

    def pg_login(
        self,
        action: str = "hold",
        *,
        delay: int = 0,
        sqlstate: str = "",
        message: str = "",
        **options: Unpack[ToxicOptions],
    ) -> ToxicScope:
        """New connections' login (startup, authentication) is held (``"hold"``), delayed by
        ``delay`` ms (``"delay"``), or refused (``"refuse"``) with ``sqlstate``: 53300
        too_many_connections by default, 57P03 cannot_connect_now...; connections already
        logged in carry on."""
        return self.toxic(
            "pg_login",
            action=action,
            delay=delay,
            sqlstate=sqlstate,
            message=message,
            **options,
        )

    def pg_error(
        self,
        sqlstate: str,
        *,
        message: str = "",
        match: str = "",
        nth: int = 0,
        **options: Unpack[ToxicOptions],
    ) -> ToxicScope:
        """Statements that ``match`` (a regex searched in their SQL; every one by default)
        fail with an error of ``sqlstate`` (``"40001"`` serialization_failure,
        ``"40P01"``, ``"57014"``, ``"57P01"`` admin_shutdown and a close, ``"23505"``...);
        ``nth``: only the Nth of them the proxy sees from now on (across its connections)."""
        return self.toxic(
            "pg_error", sqlstate=sqlstate, message=message, match=match, nth=nth, **options
        )

    def pg_delay(
        self, delay: int, *, match: str = "", nth: int = 0, **options: Unpack[ToxicOptions]
    ) -> ToxicScope:
        """Statements that ``match`` reach the server ``delay`` ms late."""
        return self.toxic("pg_delay", delay=delay, match=match, nth=nth, **options)

    def pg_hang(
        self, *, match: str = "", nth: int = 0, **options: Unpack[ToxicOptions]
    ) -> ToxicScope:
        """Statements that ``match`` do not reach the server while the toxic is on."""
        return self.toxic("pg_hang", match=match, nth=nth, **options)

    def pg_cut(
        self,
        after_rows: int = 0,
        *,
        match: str = "",
        nth: int = 0,
        reset: bool = False,
        **options: Unpack[ToxicOptions],
    ) -> ToxicScope:
        """The connection is closed (``reset``: reset) in the result of a statement that
        ``match``, once ``after_rows`` of its rows reached the client (or of its data, in a
        ``COPY ... FROM STDIN``, reached the server)."""
        return self.toxic(
            "pg_cut", after_rows=after_rows, match=match, nth=nth, reset=_switch(reset), **options
        )

    def smtp_reply(
        self,
        command: str,
        code: int,
        *,
        text: str = "",
        nth: int = 0,
        **options: Unpack[ToxicOptions],
    ) -> ToxicScope:
        """``command`` (``"greeting"``, ``"ehlo"``, ``"mail"``, ``"rcpt"``, ``"data"``,
        ``"end_of_data"``...) is answered with ``code`` and ``text`` by the proxy, which
        keeps it from the server: 451 greylisting, 452, 550, 552, 554, 421 (and a close);
        ``nth``: only the Nth such command from now on (``nth=1``: the retry goes through)."""
        return self.toxic("smtp_reply", command=command, code=code, text=text, nth=nth, **options)

    def smtp_delay(
        self, command: str, delay: int, *, nth: int = 0, **options: Unpack[ToxicOptions]
    ) -> ToxicScope:
        """``command`` reaches the server ``delay`` ms late (the greeting, the client)."""
        return self.toxic("smtp_delay", command=command, delay=delay, nth=nth, **options)

    def smtp_cut(
        self,
        after: str = "data",
        *,
        nth: int = 0,
        reset: bool = False,
        **options: Unpack[ToxicOptions],
    ) -> ToxicScope:
        """The connection is cut after ``after`` reached the server, before its reply reaches
        the client; ``"data"``: the whole message (the server takes it, the app never knows)."""
        return self.toxic("smtp_cut", after=after, nth=nth, reset=_switch(reset), **options)


def _switch(reset: object) -> object:
    """``reset=True`` as the attribute's 1; anything but a bool goes to the validator as it
    is, to be refused there by name (``int("yes")`` would be a ValueError, not our error)."""
    return int(reset) if isinstance(reset, bool) else reset


_OPTION_NAMES: Final = frozenset(ToxicOptions.__annotations__)


@final
class Faults:
    """The proxies of a test: ``faults["postgres"]``, ``faults.postgres``, ``faults.create``.

    Proxies made with ``create`` belong to this object and are deleted by
    ``aclose`` (the fixture does it at the end of the test).
    """

    def __init__(
        self, backend: Host, proxies: Mapping[str, Proxy] | None = None, *, prefix: str = ""
    ) -> None:
        self.backend = backend
        self.prefix = prefix
        """Put before the names of proxies made here, so a shared server has no clashes."""
        self._proxies: dict[str, Proxy] = dict(proxies or {})
        self._created: list[Proxy] = []
        self.journal: list[FaultWindow] = []
        """Every fault put on these proxies while this object held them, in order."""
        for proxy in self._proxies.values():
            proxy.journal = self.journal

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
        check_name("name", name)
        if name in self._proxies:
            raise AlreadyExistsError(f"proxy {name!r} already exists in this test")
        info = await self.backend.acall(
            self.backend.target.create_proxy, self.prefix + name, upstream, listen
        )
        proxy = Proxy(self.backend, info, alias=name)
        proxy.journal = self.journal
        self._proxies[name] = proxy
        self._created.append(proxy)
        return proxy

    async def aclose(self) -> None:
        """Delete the proxies this object created (bounded, cancellation-proof)."""
        self.release()
        while self._created:
            proxy = self._created.pop()
            self._proxies.pop(proxy.name, None)
            with contextlib.suppress(NotFoundError):
                await run_to_completion(proxy.call(self.backend.target.delete_proxy))

    def fill(self, template: str, *, field: str) -> str:
        """A value naming these proxies, filled in: ``DB_PORT={postgres.port}``,
        ``DATABASE_URL={postgres.dsn}``.

        The app's settings come from where it reads them (the environment, a
        config string): a proxy's ``host``, ``port`` and ``listen``, and for a
        proxy in front of a known server (``postgres_server``'s) the ``dsn``
        through the proxy, its ``user``, ``password`` and ``database``.
        """
        known = ", ".join(self._proxies) or "none"
        shown = mask_secrets(template)
        try:
            return template.format_map(_ByName(self))
        except NotFoundError as exc:
            raise InvalidError(
                f"{field}={shown!r} cannot be filled in: no proxy named {exc.args[0]!r} in this "
                f"test (proxies: {known}); {{postgres.FIELD}} and {{smtp.FIELD}} start the "
                f"postgres_server and smtp_server fixtures, other proxies are declared in "
                f"asyncfaults_proxies (or --asyncfaults-proxy NAME=HOST:PORT)"
            ) from None
        except InvalidError as exc:
            raise InvalidError(f"{field}={shown!r} cannot be filled in: {exc}") from None
        except (KeyError, AttributeError, IndexError, ValueError) as exc:
            raise InvalidError(
                f"{field}={shown!r} cannot be filled in ({exc}): expected {{NAME.FIELD}} with "
                f"FIELD one of {', '.join(PLACEHOLDER_FIELDS)} (proxies: {known}); a literal "
                f"brace is written twice, {{{{ or }}}}"
            ) from None

    def ports(self) -> dict[str, int]:
        """Per proxy, the port its clients connect to."""
        return {proxy.name: proxy.port for proxy in self}

    async def clients_open(self) -> dict[str, int]:
        """Per proxy, connections its clients still hold (proxies whose server keeps no
        counters, a real Toxiproxy, are left out).

        A connection the app closed counts as closed even while the proxy still
        delivers what it sent before (a bandwidth toxic can take long over it).
        """
        counts = {}
        for proxy in self:
            with contextlib.suppress(AsyncFaultsError):
                counts[proxy.name] = (await proxy.read_stats()).clients_open
        return counts

    def release(self) -> None:
        """Stop noting faults of the proxies this object was lent (they outlive the test)."""
        for proxy in self._proxies.values():
            if proxy.journal is self.journal:
                proxy.journal = None

    def close(self) -> None:
        """``aclose`` for synchronous code (fixture teardown): blocks, bounded."""
        self.release()
        while self._created:
            proxy = self._created.pop()
            self._proxies.pop(proxy.name, None)
            with contextlib.suppress(NotFoundError):
                self.backend.delete_proxy(proxy.server_name)


PLACEHOLDER_FIELDS: Final = ("host", "port", "listen", "dsn", "user", "password", "database")
"""What ``{name.FIELD}`` may name: the proxy's address, and its server's DSN and parts."""


@final
class _ByName:
    """``{postgres.port}`` in a template: the proxy the name stands for."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults

    def __getitem__(self, name: str) -> _Fields:
        if name not in self._faults._proxies:
            raise NotFoundError(name)  # the name alone: fill() says the rest
        return _Fields(self._faults[name])


@final
class _Fields:
    """The fields of one proxy a template may name (and nothing else of the object)."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy

    def __getattr__(self, name: str) -> object:
        proxy = self._proxy
        if name in ("host", "port", "listen", "dsn"):
            return getattr(proxy, name)
        if name in ("user", "password", "database"):
            return dsn_fields(proxy.dsn)[name]
        raise AttributeError(f"a proxy has no field {name!r}")

    def __format__(self, spec: str) -> str:
        raise ValueError(
            f"{{{self._proxy.name}}} names a proxy, not a value: add a field, "
            f"{{{self._proxy.name}.port}}"
        )
