"""The fault engine proper: proxies, connections and live toxics on one loop.

Everything here runs on the engine's own event loop (``Engine`` gives it a
thread; ``asyncfaults serve`` gives it a process). The toxic logic itself is
sans-IO (``_toxics``, ``_chain``): this module is the thin driver that feeds
socket reads into the chains, writes what comes out, and wakes the chains on
their deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import socket
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, final

from .._address import format_address, is_loopback, is_wildcard, parse_address
from .._exceptions import (
    AlreadyExistsError,
    InvalidError,
    ListenError,
    NotFoundError,
    in_toxiproxy_words,
)
from .._toxics import CLOSE, EOF, RESET, TOXIC_TYPES, Data, Event, Noop, Stage
from .._toxics._chain import ToxicChain
from .._toxics._pgwire import PgSession
from .._toxics._spec import ToxicSpec, check_name, check_spec, update_toxic
from .._toxics._stage import Bulletin, Note
from .._values import spelled
from ._models import ProtocolEvent, ProxyInfo, ProxyStats
from ._sockets import Listener, Poller, Stream, dial, listen

UPSTREAM: Final = 0
"""Direction index: client to server."""
DOWNSTREAM: Final = 1
"""Direction index: server to client."""
_STREAM_INDEX: Final = {"upstream": UPSTREAM, "downstream": DOWNSTREAM}

CONNECT_TIMEOUT: Final = 10.0
"""Bound on dialling the upstream; past it the client connection is closed."""
MAX_HELD: Final = 4 * 1024 * 1024
"""Bytes a chain may hold before the proxy stops reading that side."""
PROTOCOL_LOG: Final = 2000
"""Protocol events a proxy keeps (the latest), for the timeline of a failure."""


def draw(seed: int, *key: object) -> random.Random:
    """A random source fixed by the seed and a key, not by the order of events.

    Seeding from text hashes it with SHA-512, the same on every run and
    platform, so the decision for the Nth connection a toxic meets does not
    depend on what else happened first.
    """
    return random.Random("/".join(map(str, (seed, *key))))


@final
@dataclass(eq=False)
class _ToxicState:
    spec: ToxicSpec
    version: int = 0
    active: bool = False
    hits: int = 0
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    shared: dict[str, int] = field(default_factory=dict)
    """What the toxic counts across its connections (``Stage.shared``)."""
    accepted_before: int = 0
    """Connections the proxy had accepted when the toxic was added.

    Random decisions are keyed by a connection's number counted from there
    (1 for the first connection after the toxic was added; 0 and below for
    those already open), not by the proxy's own count: a proxy shared by a
    whole test run has accepted however many connections earlier tests made,
    and a test run alone (``-k``) must decide exactly as in the full run."""

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


@final
class _Side(Stream):
    """One socket of a proxied connection; reads feed one direction's chain.

    The fast path: while that direction has no toxic (an empty chain), a chunk
    read is written to the other socket at once, inside the loop's ``select()``
    on the engine's own loop (``_loop``): no event object, no timer, no copy.
    """

    __slots__ = ("chain", "conn", "direction", "peer", "tracked")

    def __init__(self, conn: _Connection, direction: int) -> None:
        super().__init__(conn.proxy.core.poller)
        self.conn = conn
        self.direction = direction  # the direction this side's reads travel
        self.chain: ToxicChain = conn.chains[direction]
        self.tracked = direction == UPSTREAM
        """The client's side: what it sends is read by the connection's tracker."""
        self.peer: _Side = self

    def attach(self, sock: socket.socket) -> None:
        super().attach(sock)
        self.conn.side_connected(self)

    def received(self, data: bytes) -> None:
        conn = self.conn
        conn.carried = True
        if self.tracked and conn.tracker is not None:
            conn.track(data)
        if self.chain.active:
            conn.feed(self.direction, Data(data, conn.loop.time()))
        elif self.peer.write(data):
            conn.proxy.bytes[self.direction] += len(data)

    def ended(self) -> None:
        if self.direction == UPSTREAM:
            self.conn.client_done = True
        self.conn.feed(self.direction, EOF)  # the other direction stays open: half-close

    def write_blocked(self) -> None:
        self.conn.block_reading(self.peer, "write")

    def write_unblocked(self) -> None:
        self.conn.unblock_reading(self.peer, "write")

    def failed(self, exc: OSError) -> None:
        self.conn.side_lost(self, exc)

    def _drop(self) -> None:
        super()._drop()
        self.conn.proxy.core.lingering.discard(self)

    def crashed(self, exc: Exception) -> None:
        self.conn.loop.call_exception_handler(
            {"message": "the fault engine failed on a connection", "exception": exc}
        )
        self.conn.abort()


@final
class _Connection:
    """A client connection and its upstream, with a toxic chain each way."""

    def __init__(self, proxy: _Proxy, number: int) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.number = number
        self.chains: tuple[ToxicChain, ToxicChain] = (ToxicChain(), ToxicChain())
        self.bulletin = Bulletin()
        """What the protocol toxics here noted, or made due, since the driver last looked."""
        self.client = _Side(self, UPSTREAM)
        self.server = _Side(self, DOWNSTREAM)
        self.client.peer, self.server.peer = self.server, self.client
        self._timers: list[asyncio.TimerHandle | None] = [None, None]
        self._timer_at: list[float | None] = [None, None]
        self._eof_sent = [False, False]
        self._blocked: dict[_Side, set[str]] = {self.client: set(), self.server: set()}
        self._connect_task: asyncio.Task[None] | None = None
        self.closed = False
        self.client_done = False
        """The client closed its side (sent EOF): it let go of the connection."""
        self.carried = False
        """Data went through: a toxic joining now reads the streams from the middle."""
        self.tracker: PgSession | None = PgSession(tracking=True) if proxy.tracking else None
        """What the client's stream says from its first byte, while it is PostgreSQL's: the
        statements it prepared, where its messages start. A protocol toxic that joins the
        connection later (a pooled connection made before the test's fault) goes on from
        there, instead of from a guess. Dropped at the first sign of another protocol."""
        self._stand_in: PgSession | None = None
        """A PostgreSQL toxic's session reading the client's stream in the tracker's place."""

    def track(self, data: bytes) -> None:
        tracker = self.tracker
        assert tracker is not None
        tracker.client(data)
        if tracker.opaque:
            self.tracker = None

    def _tracked(self) -> PgSession | None:
        """What a toxic joining now goes on from: the tracker, or a copy of what stands in
        for it."""
        stand_in = self._stand_in
        return self.tracker if stand_in is None else stand_in.as_tracker()

    def _review_tracking(self) -> None:
        """One reading of the client's stream, not two: while the first stage of the
        client's chain is a PostgreSQL toxic whose session stands where the tracker does (it
        read the stream from its first byte, or went on from the tracker), that session
        stands in for the tracker, which rests; when it goes, a tracker goes on from where
        it stood."""
        first = self.chains[UPSTREAM].first
        session = first.client_session() if first is not None else None
        stand_in = self._stand_in
        if session is stand_in:
            return
        if stand_in is not None:
            self._stand_in = None
            self.tracker = stand_in.as_tracker()
        tracker = self.tracker
        if (
            isinstance(session, PgSession)
            and tracker is not None
            and session.client_offset == tracker.client_offset
        ):
            self._stand_in = session
            self.tracker = None

    @property
    def phase(self) -> str:
        """Where the connection's protocol stands, as its protocol toxics read it."""
        return self.chains[UPSTREAM].phase or self.chains[DOWNSTREAM].phase

    # -- setup --------------------------------------------------------------------

    def side_connected(self, side: _Side) -> None:
        if side is self.client:
            self.proxy.connections.add(self)
            self.block_reading(self.client, "connect")
            now = self.loop.time()
            for state in self.proxy.toxics.values():
                if state.active:
                    self.add_toxic(state, now)
            self._connect_task = self.loop.create_task(self._connect())
        else:
            self.unblock_reading(self.client, "connect")

    async def _connect(self) -> None:
        host, port = self.proxy.upstream
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                sock = await dial(self.loop, host, port)
        except (OSError, TimeoutError):
            # As Toxiproxy: the client is accepted, the dial fails, the client is closed.
            self.proxy.upstream_errors += 1
            self.close()
            return
        if self.closed:
            sock.close()
            return
        self.server.attach(sock)

    # -- flow control ---------------------------------------------------------------

    def block_reading(self, side: _Side, reason: str) -> None:
        reasons = self._blocked[side]
        if not reasons:
            side.pause_reading()
        reasons.add(reason)

    def unblock_reading(self, side: _Side, reason: str) -> None:
        reasons = self._blocked[side]
        if reason not in reasons:
            return
        reasons.discard(reason)
        if not reasons:
            side.resume_reading()

    # -- data path ------------------------------------------------------------------

    def feed(self, direction: int, event: Event) -> None:
        self.emit(direction, self.chains[direction].feed(event, self.loop.time()))
        self._after_chain_change(direction)
        bulletin = self.bulletin
        if bulletin.nudged or bulletin.notes:
            self._read_bulletin(direction)

    def _read_bulletin(self, direction: int) -> None:
        """The engine's one hook for protocol toxics: a stage may have made output of the
        other chain due (an answer for the client, a cut), so its deadline is asked again;
        and what the toxics noted goes to the proxy's log."""
        bulletin = self.bulletin
        if bulletin.nudged:
            bulletin.nudged = False
            self._after_chain_change(1 - direction)
        if bulletin.notes:
            notes, bulletin.notes = bulletin.notes, []
            self.proxy.log(self.number, notes)

    def _after_chain_change(self, direction: int) -> None:
        if self.closed:
            return
        chain = self.chains[direction]
        source = self.client if direction == UPSTREAM else self.server
        if chain.holding > MAX_HELD:
            self.block_reading(source, "held")
        else:
            self.unblock_reading(source, "held")
        self._schedule(direction, chain.deadline())

    def _schedule(self, direction: int, when: float | None) -> None:
        if when == self._timer_at[direction]:
            return
        timer = self._timers[direction]
        if timer is not None:
            timer.cancel()
        self._timer_at[direction] = when
        self._timers[direction] = (
            None if when is None else self.loop.call_at(when, self._wake, direction)
        )

    def _wake(self, direction: int) -> None:
        self._timers[direction] = None
        self._timer_at[direction] = None
        if self.closed:
            return
        self.emit(direction, self.chains[direction].pump(self.loop.time()))
        self._after_chain_change(direction)
        bulletin = self.bulletin
        if bulletin.nudged or bulletin.notes:
            self._read_bulletin(direction)

    def emit(self, direction: int, events: list[Event]) -> None:
        """Carry out what left a chain: write, half-close, close or reset."""
        if self.closed:
            return
        dest = self.server if direction == UPSTREAM else self.client
        for event in events:
            if isinstance(event, Data):
                if dest.write(event.data):
                    self.proxy.bytes[direction] += len(event.data)
            elif event is EOF:
                self._send_eof(direction, dest)
            elif event is CLOSE:
                self.close()
                return
            elif event is RESET:
                self.reset()
                return

    def _send_eof(self, direction: int, dest: _Side) -> None:
        if self._eof_sent[direction]:
            return
        self._eof_sent[direction] = True
        if self._eof_sent[1 - direction] or dest.sock is None:
            self.close()
        else:
            dest.write_eof()

    # -- toxics on a live connection ---------------------------------------------------

    def _stage_for(self, state: _ToxicState) -> Stage:
        proxy, spec = self.proxy, state.spec
        targeted = spec.connections is None or self.number in spec.connections
        rng = draw(
            proxy.core.seed,
            proxy.name,
            spec.name,
            state.version,
            self.number - state.accepted_before,
            spec.stream,
        )
        if targeted and rng.random() < spec.toxicity:
            state.hits += 1
            stage = TOXIC_TYPES[spec.type](spec.attributes, rng)
            stage.shared = state.shared
            stage.bulletin = self.bulletin
            if stage.partner is not None:
                stage.partner.bulletin = self.bulletin
            if self.carried:
                stage.joined_late(self._tracked())
            return stage
        return Noop({}, rng)

    @staticmethod
    def _placements(state: _ToxicState, stage: Stage) -> list[tuple[int, Stage]]:
        """Where a toxic's stages go: its stream's chain; both chains for a protocol toxic
        (its partner reads the other direction; drawn away, a noop in each)."""
        spec = state.spec
        if not TOXIC_TYPES[spec.type].bidirectional:
            return [(_STREAM_INDEX[spec.stream], stage)]
        partner = stage.partner if stage.partner is not None else Noop({}, random.Random(0))
        return [(UPSTREAM, stage), (DOWNSTREAM, partner)]

    def add_toxic(self, state: _ToxicState, now: float) -> None:
        stage = self._stage_for(state)
        for direction, placed in self._placements(state, stage):
            self.emit(direction, self.chains[direction].append(state.spec.name, placed, now))
            self._after_chain_change(direction)
        self._review_tracking()

    def update_toxic(self, state: _ToxicState, now: float) -> None:
        name = state.spec.name
        new = self._stage_for(state)
        placements = self._placements(state, new)
        old = self.chains[placements[0][0]].stage(name)
        same = type(old) is type(new) and not isinstance(new, Noop)
        for direction, stage in placements:
            chain = self.chains[direction]
            if same:
                events = chain.reconfigure(name, state.spec.attributes, now)
            else:
                events = chain.replace(name, stage, now)
            self.emit(direction, events)
            self._after_chain_change(direction)
        self._review_tracking()

    def remove_toxic(self, state: _ToxicState, now: float) -> None:
        for direction in (UPSTREAM, DOWNSTREAM):
            chain = self.chains[direction]
            if state.spec.name in chain.names:
                self.emit(direction, chain.remove(state.spec.name, now))
                self._after_chain_change(direction)
        self._review_tracking()

    # -- teardown -----------------------------------------------------------------------

    def _finish(self) -> bool:
        if self.closed:
            return False
        self.closed = True
        for timer in self._timers:
            if timer is not None:
                timer.cancel()
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()

        if self in self.proxy.connections:
            self.proxy.connections.discard(self)
            self.proxy.closed += 1
        self.proxy.forget(self.number)
        return True

    def close(self) -> None:
        """Close both sides after what is already written (a clean FIN)."""
        if self._finish():
            for side in (self.client, self.server):
                side.close()
                if side.lingering:
                    self.proxy.core.lingering.add(side)

    def abort(self) -> None:
        """Drop both sides at once (disable, delete, engine stop)."""
        if self._finish():
            self.client.abort()
            self.server.abort()

    def reset(self) -> None:
        """Abort both sides with SO_LINGER 0, so each peer gets a TCP RST."""
        if self._finish():
            self.client.reset()
            self.server.reset()

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if self.closed:
            return
        if exc is not None:
            # A peer reset or a socket error: pass the reset on to the other peer.
            self.reset()
        else:
            self.close()


@final
class _Proxy:
    def __init__(
        self, core: FaultCore, name: str, listen: tuple[str, int], upstream: tuple[str, int]
    ) -> None:
        self.core = core
        self.loop = core.loop
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.listeners: list[Listener] = []
        self.shown_host: str | None = None
        """The wildcard host asked for, bound on loopback instead (``FaultCore._listen``)."""
        self.connections: set[_Connection] = set()
        self.toxics: dict[str, _ToxicState] = {}
        self.accepted = 0
        self.closed = 0
        self.bytes = [0, 0]
        self.upstream_errors = 0
        self.protocol_log: deque[tuple[int, Note]] = deque(maxlen=PROTOCOL_LOG)
        self._last_notes: dict[int, Note] = {}
        self.tracking = True
        """New connections read the client's PostgreSQL side from the first byte (see
        ``_Connection.tracker``); only ``bench/protocol.py`` turns it off, to measure it."""

    def log(self, connection: int, notes: list[Note]) -> None:
        """What a connection's protocol toxics noted. A note is kept as it is (its toxic
        counts repeats in it later); the same note from two toxics reading the same
        connection is kept once."""
        last = self._last_notes
        for note in notes:
            previous = last.get(connection)
            if previous is not None and previous.at == note.at and previous.text == note.text:
                continue
            last[connection] = note
            self.protocol_log.append((connection, note))

    def forget(self, connection: int) -> None:
        self._last_notes.pop(connection, None)

    def protocol_events(self) -> tuple[ProtocolEvent, ...]:
        return tuple(
            ProtocolEvent(number, note.at, note.text, note.injected, note.repeats, note.until)
            for number, note in self.protocol_log
        )

    def _accept(self, sock: socket.socket) -> None:
        self.accepted += 1
        _Connection(self, self.accepted).client.attach(sock)

    async def start(self) -> None:
        host, port = self.listen
        try:
            socks = await listen(self.loop, host, port, backlog=1024)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ListenError(
                f"proxy {self.name!r} cannot listen on {format_address(host, port)}: "
                f"{reason or exc}"
            ) from None
        poller = self.core.poller
        self.listeners = [Listener(self.loop, poller, sock, self._accept) for sock in socks]
        self.listen = (host, socks[0].getsockname()[1])
        self.enabled = True

    def stop(self) -> None:
        """Close the listener and every open connection (Toxiproxy's disable)."""
        self.enabled = False
        for listener in self.listeners:
            listener.close()
        self.listeners = []
        for conn in list(self.connections):
            conn.abort()

    def info(self) -> ProxyInfo:
        return ProxyInfo(
            name=self.name,
            listen=format_address(self.shown_host or self.listen[0], self.listen[1]),
            upstream=format_address(*self.upstream),
            enabled=self.enabled,
            toxics=self.ordered_toxics(),
        )

    def ordered_toxics(self) -> tuple[ToxicSpec, ...]:
        """Upstream toxics first, then downstream, each in the order added."""
        specs = [state.spec for state in self.toxics.values()]
        return tuple(sorted(specs, key=lambda spec: spec.stream != "upstream"))

    def stats(self) -> ProxyStats:
        return ProxyStats(
            accepted=self.accepted,
            open=len(self.connections),
            clients_open=sum(1 for conn in self.connections if not conn.client_done),
            closed=self.closed,
            bytes_upstream=self.bytes[UPSTREAM],
            bytes_downstream=self.bytes[DOWNSTREAM],
            upstream_errors=self.upstream_errors,
            toxics_hit=MappingProxyType({name: state.hits for name, state in self.toxics.items()}),
            phases=MappingProxyType(
                {conn.number: phase for conn in self.connections if (phase := conn.phase)}
            ),
        )

    # -- toxics ------------------------------------------------------------------------

    def toxic(self, name: str) -> _ToxicState:
        try:
            return self.toxics[name]
        except KeyError:
            raise in_toxiproxy_words(
                NotFoundError(f"toxic {name!r} not found on proxy {self.name!r}"), "toxic not found"
            ) from None

    def add_toxic(self, spec: ToxicSpec) -> ToxicSpec:
        """Add a toxic, all or nothing: if putting it on the open connections fails,
        it comes off those it reached and is not registered (no half-added toxic)."""
        if spec.name in self.toxics:
            raise in_toxiproxy_words(
                AlreadyExistsError(f"toxic {spec.name!r} already exists on proxy {self.name!r}"),
                "toxic already exists",
            )
        state = _ToxicState(spec, accepted_before=self.accepted)
        self.toxics[spec.name] = state
        try:
            if spec.start_after > 0:
                state.timers.append(
                    self.loop.call_later(spec.start_after / 1000, self._activate, state)
                )
            else:
                self._activate(state)
        except BaseException:
            state.cancel_timers()
            with contextlib.suppress(Exception):
                self._deactivate(state)
            del self.toxics[spec.name]
            raise
        return spec

    def _activate(self, state: _ToxicState) -> None:
        state.active = True
        now = self.loop.time()
        for conn in list(self.connections):
            conn.add_toxic(state, now)
        if state.spec.duration is not None:
            state.timers.append(
                self.loop.call_later(state.spec.duration / 1000, self._deactivate, state)
            )

    def _deactivate(self, state: _ToxicState) -> None:
        if not state.active:
            return
        state.active = False
        now = self.loop.time()
        for conn in list(self.connections):
            conn.remove_toxic(state, now)

    def update_toxic(
        self, name: str, attributes: Mapping[str, object] | None, toxicity: float | None
    ) -> ToxicSpec:
        state = self.toxic(name)
        state.spec = update_toxic(state.spec, attributes=attributes, toxicity=toxicity)
        state.version += 1
        if state.active:
            now = self.loop.time()
            for conn in list(self.connections):
                conn.update_toxic(state, now)
        return state.spec

    def remove_toxic(self, name: str) -> None:
        state = self.toxic(name)
        state.cancel_timers()
        self._deactivate(state)
        del self.toxics[name]

    def remove_all_toxics(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)


@final
class FaultCore:
    """All proxies of one engine, driven on the loop it was created on.

    Every method must be called on that loop (the ``Engine`` wrapper sees to
    it); the seed fixes every random decision, so a run repeats exactly.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, seed: int, *, allow_remote: bool = False
    ) -> None:
        self.loop = loop
        self.seed = seed
        self.allow_remote = allow_remote
        """Whether a proxy may listen beyond loopback (``--allow-remote``)."""
        self.poller = Poller.for_loop(loop)
        """Where connections' sockets are watched: inside ``select()`` on the engine's own
        loop, through ``add_reader`` on any other."""
        self.lingering: set[Stream] = set()
        """Sockets of closed connections still sending what they were given (a clean
        close waits for that); dropped when the engine stops."""
        self._proxies: dict[str, _Proxy] = {}

    def check_listen(self, listen: object) -> None:
        """Refuse a listen address this engine would refuse (before changing anything)."""
        self._listen(listen)

    def _listen(self, listen: object) -> tuple[tuple[str, int], str | None]:
        """Where a proxy binds, and the host it reports (when it differs).

        Loopback unless the engine was told otherwise, whoever asks: a wildcard
        (``0.0.0.0``, ``::``, what Testcontainers' client asks for) binds to the
        loopback address of its family on the port asked for, and the proxy
        still reports the address as asked, so a client that compares it (a
        second ``populate``) sees the same proxy; any other address beyond
        loopback is refused, naming ``--allow-remote``.
        """
        host, port = parse_address("listen", listen)
        if self.allow_remote or is_loopback(host):
            return (host, port), None
        if is_wildcard(host):
            return ("::1" if ":" in host else "127.0.0.1", port), host
        raise InvalidError(
            f"{spelled('listen', listen)} is not valid here: {host} is not a loopback address, and "
            f"anyone who reaches it could use the proxy; the server must be started with "
            f"--allow-remote to listen there (0.0.0.0 and :: are served on loopback)"
        )

    def _proxy(self, name: str) -> _Proxy:
        try:
            return self._proxies[name]
        except KeyError:
            raise in_toxiproxy_words(
                NotFoundError(f"proxy {name!r} not found"), "proxy not found"
            ) from None

    async def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> ProxyInfo:
        check_name("name", name)
        upstream_address = parse_address("upstream", upstream)
        listen_address, shown_host = self._listen(listen)
        if not isinstance(enabled, bool):
            raise InvalidError(f"enabled={enabled!r} is not valid: expected true or false")
        if name in self._proxies:
            raise in_toxiproxy_words(
                AlreadyExistsError(f"proxy {name!r} already exists"), "proxy already exists"
            )
        proxy = _Proxy(self, name, listen_address, upstream_address)
        proxy.shown_host = shown_host
        if enabled:
            await proxy.start()
        self._proxies[name] = proxy
        return proxy.info()

    async def update_proxy(
        self,
        name: str,
        *,
        upstream: str | None = None,
        listen: str | None = None,
        enabled: bool | None = None,
    ) -> ProxyInfo:
        """Change a proxy; like Toxiproxy, a new address restarts it (connections close)."""
        proxy = self._proxy(name)
        new_upstream = proxy.upstream if upstream is None else parse_address("upstream", upstream)
        new_listen, shown_host = (
            (proxy.listen, proxy.shown_host) if listen is None else self._listen(listen)
        )
        if enabled is not None and not isinstance(enabled, bool):
            raise InvalidError(f"enabled={enabled!r} is not valid: expected true or false")
        want_enabled = proxy.enabled if enabled is None else enabled
        moved = (
            new_upstream != proxy.upstream
            or new_listen != proxy.listen
            or shown_host != proxy.shown_host
        )
        if proxy.enabled and (moved or not want_enabled):
            proxy.stop()
        proxy.upstream, proxy.listen = new_upstream, new_listen
        proxy.shown_host = shown_host
        if want_enabled and not proxy.enabled:
            await proxy.start()
        return proxy.info()

    async def delete_proxy(self, name: str) -> None:
        self._delete(name)

    def _delete(self, name: str) -> None:
        proxy = self._proxy(name)
        for state in proxy.toxics.values():
            state.cancel_timers()
        proxy.stop()
        del self._proxies[name]

    async def proxy_info(self, name: str) -> ProxyInfo:
        return self._proxy(name).info()

    async def proxies(self) -> dict[str, ProxyInfo]:
        return {name: proxy.info() for name, proxy in self._proxies.items()}

    async def stats(self, name: str) -> ProxyStats:
        return self._proxy(name).stats()

    async def protocol_events(self, name: str) -> tuple[ProtocolEvent, ...]:
        """What the proxy's protocol toxics saw and did, oldest first (the latest
        ``PROTOCOL_LOG``)."""
        return self._proxy(name).protocol_events()

    async def toxics(self, proxy: str) -> tuple[ToxicSpec, ...]:
        return self._proxy(proxy).ordered_toxics()

    async def toxic(self, proxy: str, name: str) -> ToxicSpec:
        return self._proxy(proxy).toxic(name).spec

    async def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicSpec:
        return self._proxy(proxy).add_toxic(check_spec(spec))

    async def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, object] | None = None,
        toxicity: float | None = None,
    ) -> ToxicSpec:
        return self._proxy(proxy).update_toxic(name, attributes, toxicity)

    async def remove_toxic(self, proxy: str, name: str) -> None:
        self._proxy(proxy).remove_toxic(name)

    async def open_toxic(
        self, proxy: str, spec: ToxicSpec, *, counted: bool = False
    ) -> tuple[ToxicSpec, ProxyStats | None]:
        target = self._proxy(proxy)
        added = target.add_toxic(check_spec(spec))
        return added, target.stats() if counted else None

    async def close_toxic(
        self, proxy: str, name: str, *, counted: bool = False
    ) -> ProxyStats | None:
        target = self._proxies.get(proxy)
        if target is None:
            return None
        stats = target.stats() if counted else None
        with contextlib.suppress(NotFoundError):
            target.remove_toxic(name)
        return stats

    async def reset(self) -> None:
        """Toxiproxy's reset: every proxy enabled, every toxic removed."""
        for proxy in self._proxies.values():
            proxy.remove_all_toxics()
            if not proxy.enabled:
                await proxy.start()

    def close(self) -> None:
        """Delete every proxy at once (the engine is stopping)."""
        for name in list(self._proxies):
            self._delete(name)
        for side in self.lingering:
            side.abort()
        self.lingering.clear()
