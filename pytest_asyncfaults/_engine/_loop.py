"""The engine's own event loop: asyncio, with a data path of its own and timers that
keep their word.

**The data path.** A proxied connection's sockets are not asyncio transports:
the engine watches them itself, on the loop's epoll descriptor, and handles
their readiness right where epoll reports it, inside ``select()``. asyncio's
own sockets (the API server, the self-pipe, a connect in progress) go through
asyncio as usual. A chunk read from one socket is written to the other before
``select()`` returns, with no handle, no callback queued, no transport buffer
in between: what a chunk costs is the system calls and a few attribute
look-ups, and a proxy's added round trip comes down to what any relay pays,
the two wake-ups (``bench/proxy.py`` measures it beside minimal relays).
Until asyncio has something to do (an event of its own, a callback or a
timer a handler scheduled, its timeout), ``select()`` does not return: a
chunk relayed costs no turn of asyncio's loop either.

**The timers.** A plain asyncio timer fires late, for three reasons.
``epoll_wait`` takes whole milliseconds and CPython rounds the wait up (up to
1 ms late, 0.5 ms on average). Any kernel wait may overshoot by its "slack",
50 us or 0.1 % of the wait, whichever is more, so that wake-ups can be
batched. And a CPU that went idle during the wait takes time to come back:
little on bare metal, 0.1 to 0.3 ms for the halted vCPU of a virtual machine
(a CI runner, say). For a latency toxic that should be exact, that lateness
is the whole error.

So when a timer is pending, we sleep on the epoll descriptor with
``select()``, whose timeout is in microseconds, until a little before the
deadline (the slack plus ``SPIN_WINDOW``), then poll for events without
blocking until the deadline comes: the thread is awake and running when the
timer is due. The polling releases the GIL on every turn, and it is capped at
``SPIN_SHARE`` of the wait, so dense short timers (a slicer's) cannot turn it
into a busy loop. With no timer pending (no toxic holding data) the loop
blocks as usual and costs nothing extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import selectors
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import Context
from typing import Any, Final, Protocol, TypeVarTuple, final

SPIN_WINDOW: Final = 250e-6
"""How long before a deadline to be awake: about what a halted vCPU takes to wake."""
SPIN_SHARE: Final = 0.05
"""Upper bound on the part of a timer wait spent polling instead of sleeping."""
_MIN_SLACK: Final = 50e-6
"""The kernel's default timer slack, the least a wait may overshoot by."""

_Ts = TypeVarTuple("_Ts")

EVENT_READ: Final = selectors.EVENT_READ
EVENT_WRITE: Final = selectors.EVENT_WRITE

_EPOLLIN: Final = getattr(select, "EPOLLIN", 1)
_EPOLLOUT: Final = getattr(select, "EPOLLOUT", 4)


class Watcher(Protocol):
    """What a socket the engine watches itself answers to (``EngineSelector.watch``)."""

    def io_event(self, mask: int) -> None:
        """The socket is ready: ``mask`` of ``EVENT_READ`` and ``EVENT_WRITE`` (an error
        or a hang-up reports both, as ``selectors`` does). Must not raise."""


def _epoll_mask(events: int) -> int:
    mask = 0
    if events & EVENT_READ:
        mask |= _EPOLLIN
    if events & EVENT_WRITE:
        mask |= _EPOLLOUT
    return mask


def _fd_of(fileobj: Any) -> int:
    fd = fileobj if isinstance(fileobj, int) else int(fileobj.fileno())
    if fd < 0:
        raise ValueError(f"invalid file descriptor: {fd}")
    return fd


@final
class _KeyMap(Mapping[Any, selectors.SelectorKey]):
    """``get_map()``: file objects to their keys, as ``selectors`` gives it."""

    def __init__(self, selector: EngineSelector) -> None:
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector.keys)

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        try:
            return self._selector.keys[self._selector.lookup(fileobj)]
        except (KeyError, ValueError):
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._selector.keys)


@final
class EngineSelector(selectors.BaseSelector):
    """An epoll selector for asyncio that also serves the engine's own sockets.

    asyncio registers its file objects as with any selector. The engine
    ``watch``-es its sockets instead: their events are handled inside
    ``select()`` and never reach asyncio (see the module doc).
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.keys: dict[int, selectors.SelectorKey] = {}
        """asyncio's registrations, by descriptor."""
        self._watched: dict[int, tuple[Watcher, int]] = {}
        """The engine's sockets, by descriptor: the watcher and the events asked for."""
        self._map = _KeyMap(self)
        self.on_error: Callable[[Exception], None] | None = None
        """Told of an exception a watcher let out (its socket is no longer watched)."""
        self.scheduled = False
        """A callback or timer was scheduled on the loop since ``select`` last looked."""

    def fileno(self) -> int:
        return self._epoll.fileno()

    def lookup(self, fileobj: Any) -> int:
        try:
            return _fd_of(fileobj)
        except ValueError:
            for key in self.keys.values():  # closed since it was registered
                if key.fileobj is fileobj:
                    return key.fd
            raise

    # -- asyncio's side ------------------------------------------------------------------

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        fd = self.lookup(fileobj)
        if fd in self.keys or fd in self._watched:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._epoll.register(fd, _epoll_mask(events))
        self.keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        try:
            key = self.keys.pop(self.lookup(fileobj))
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        with contextlib.suppress(OSError):  # closed since it was registered
            self._epoll.unregister(key.fd)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        try:
            key = self.keys[self.lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events != key.events:
            if not events or events & ~(EVENT_READ | EVENT_WRITE):
                raise ValueError(f"Invalid events: {events!r}")
            try:
                self._epoll.modify(key.fd, _epoll_mask(events))
            except BaseException:
                self.unregister(fileobj)
                raise
        if events != key.events or data is not key.data:
            key = key._replace(events=events, data=data)
            self.keys[key.fd] = key
        return key

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._map

    def close(self) -> None:
        self._epoll.close()
        self.keys.clear()
        self._watched.clear()

    # -- the engine's side ---------------------------------------------------------------

    def watch(self, fd: int, events: int, watcher: Watcher) -> None:
        """Hand ``fd``'s ``events`` to ``watcher`` (0: stop watching it, while it is open)."""
        current = self._watched.get(fd)
        if current is not None and current[1] == events:
            return
        if not events:
            if current is not None:
                del self._watched[fd]
                self._epoll.unregister(fd)
            return
        if fd in self.keys:
            raise KeyError(f"FD {fd} is registered by asyncio")
        if current is None:
            self._epoll.register(fd, _epoll_mask(events))
        else:
            self._epoll.modify(fd, _epoll_mask(events))
        self._watched[fd] = (watcher, events)

    def forget(self, fd: int) -> None:
        """``fd`` is about to be closed: stop watching it, whatever it was watched for."""
        if self._watched.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    # -- waiting ----------------------------------------------------------------------------

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait for events until ``timeout``; handle the engine's, return asyncio's.

        While only watched sockets are ready and their handlers scheduled nothing
        (``scheduled`` stays False: ``EngineLoop`` sets it on every ``call_soon`` and
        ``call_at``), it waits again for what is left of ``timeout`` instead of
        returning empty-handed: asyncio would only come back to wait once more.
        """
        poll = self._epoll.poll
        if timeout is not None and timeout <= 0:
            return self._dispatch(poll(0))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                events = poll(-1)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                events = self._precise_wait(remaining)
            self.scheduled = False
            ready = self._dispatch(events)
            if ready or self.scheduled or not events:
                return ready

    def _precise_wait(self, timeout: float) -> list[tuple[int, int]]:
        poll = self._epoll.poll
        deadline = time.monotonic() + timeout
        max_early = timeout * SPIN_SHARE
        while True:
            remaining = deadline - time.monotonic()
            # Wake early by the wait's slack and the wake-up time; long waits take
            # two sleeps, the second with a slack small enough to stay early.
            early = min(SPIN_WINDOW + max(remaining / 1000, _MIN_SLACK), max_early)
            wait = remaining - early
            if wait <= 0:
                break
            try:
                ready = select.select([self._epoll.fileno()], [], [], wait)[0]
            except (ValueError, OSError):
                # Descriptor above FD_SETSIZE: epoll takes whole milliseconds and
                # rounds up, so wait a millisecond less (or not at all), then poll.
                if wait < 1e-3:
                    break
                events = poll(wait - 1e-3)
                if events:
                    return events
                continue
            if ready:
                return poll(0)
        while True:
            events = poll(0)
            if events or time.monotonic() >= deadline:
                return events

    def _dispatch(self, events: list[tuple[int, int]]) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = []
        watched = self._watched
        keys = self.keys
        for fd, event in events:
            mask = 0
            if event & ~_EPOLLIN:
                mask |= EVENT_WRITE
            if event & ~_EPOLLOUT:
                mask |= EVENT_READ
            entry = watched.get(fd)
            if entry is not None:
                try:
                    entry[0].io_event(mask & entry[1])
                except Exception as exc:  # a bug in a watcher: it must not stop the loop
                    self.forget(fd)
                    if self.on_error is not None:
                        self.on_error(exc)
                continue
            key = keys.get(fd)
            if key is not None:
                ready.append((key, mask & key.events))
        return ready


@final
class EngineLoop(asyncio.SelectorEventLoop):
    """The loop the engine runs on: ``selector`` serves the proxied sockets directly."""

    def __init__(self, selector: EngineSelector) -> None:
        super().__init__(selector)
        self.engine_selector = selector
        selector.on_error = self._watcher_failed

    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        self.engine_selector.scheduled = True
        return super().call_soon(callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        self.engine_selector.scheduled = True
        return super().call_at(when, callback, *args, context=context)

    def _watcher_failed(self, exc: Exception) -> None:
        self.call_exception_handler(
            {"message": "a socket handler of the fault engine failed", "exception": exc}
        )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The engine's loop where epoll exists, a plain asyncio one elsewhere."""
    if hasattr(select, "epoll"):
        return EngineLoop(EngineSelector())
    return asyncio.new_event_loop()
