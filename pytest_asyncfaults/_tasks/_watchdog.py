"""A blocked event loop, caught in the act: how long it did not turn, and the line to blame.

A handler that calls ``time.sleep()``, reads a big file, spins on the CPU or
talks to a synchronous driver inside ``async def`` freezes every other
request, and nothing fails: the app is only slow. Once the block is over
there is nothing left to see, so the evidence has to be taken while it lasts.

Two parts do it. A heartbeat on the loop (a timer, re-armed each beat) marks
every time the loop turns; a daemon thread wakes a few times per threshold
and, when the last beat is older than the threshold, takes the loop thread's
stack from ``sys._current_frames()``, once per stall, the way ``py-spy dump``
would: at that moment the loop thread is still inside the blocking call. The
first beat after the stall closes it, so its duration is the loop's real gap
between two turns, not the watchdog's guess.

The watchdog thread only reads the loop thread's frames; it never runs code
on the loop. A C call that holds the GIL (a huge regex, ``sum`` over a giant
range) keeps the watchdog thread from running too: that stall is still
caught, but its stack is taken as the call returns: the same function, most
often still the same line.

Three kinds of "the loop did not turn" are no line of the app's to fix, and a
stall says so, so that the blocked-loop detector does not blame one:

- Python's garbage collector: a full collection over a big heap (a long test
  session holds one) pauses the loop's thread for tens of milliseconds, inside
  whatever callback allocated last. The watchdog keeps the time the loop
  thread's collections took (``gc.callbacks``) and a stall counts only the
  loop's own time.
- A loaded machine: the loop's thread was ready to run, and the system ran
  something else (Linux tells how long, ``_RunQueue``).
- A busy loop: one turn that runs ten thousand short callbacks (a fan-out's
  tasks finishing together) is late without anything blocking it. The watchdog
  notes which callback runs (the frame of ``Handle._run``) when a beat is half a
  threshold late and at every look while a stall is open. A callback caught at
  two looks held the loop between them: that stall is a block. One where
  ``BUSY_LOOKS`` looks caught callbacks, each a different one, is ``busy``. A
  look may fall in the loop's own code between two callbacks (no callback to
  catch): that look says nothing either way.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Final, final

from .._exceptions import InvalidError, LoopBlockedError
from .._frames import (
    ChainFrame,
    Frame,
    describe_site,
    format_stack,
    stack_of,
    stack_site,
)

STACK_DEPTH: Final = 30
"""Frames kept per stall, innermost first: the blocking call is at the inner end, and
the outer end is the event loop and the test runner."""
MIN_INTERVAL: Final = 0.01
"""The heartbeat never runs more often than this: an idle loop must stay idle."""
INTERRUPT_SIGNAL: Final = signal.SIGUSR1
"""Sent to the main thread to free a blocked loop (pytest-timeout's signal method uses
SIGALRM: the two do not meet)."""
INTERRUPT_EVERY: Final = 1.0
INTERRUPT_TIMES: Final = 5
"""A blocking call whose caller swallows the interruption is interrupted again, this
often, this many times at most."""
STOP_BOUND: Final = 1.0
"""How long ``stop()`` waits for the watchdog thread."""
BUSY_LOOKS: Final = 3
"""Looks that caught a different callback each, for a stall to be a busy turn: a block
just over the threshold is caught once, or twice with the callbacks run after it."""
COLLECTING_SHOWN: Final = 0.05
"""The collector's share of a stall is told past this."""
_HANDLE_RUN: Final = asyncio.events.Handle._run.__code__
"""Where the event loop runs one callback: a task's step, a timer, a future's callback."""


@dataclass(frozen=True)
class Stall:
    """One time the event loop did not turn for longer than the threshold."""

    started_at: float
    """``time.monotonic()`` of the last beat before the stall."""
    duration: float
    """Seconds from that beat to the first beat after the stall."""
    stack: tuple[Frame, ...]
    """The loop thread's stack when the watchdog first saw the stall, innermost first."""
    collecting: float = 0.0
    """Seconds of ``duration`` that Python's garbage collector took."""
    busy: bool = False
    """Many callbacks ran in it and the one ``stack`` caught did not hold the loop:
    a busy turn, with no blocking line to name."""
    queued: float = 0.0
    """Seconds of ``duration`` the loop's thread was ready to run but the system ran
    something else (a loaded machine: other workers, the database server)."""

    @property
    def own(self) -> float:
        """Seconds the loop itself did not turn: ``duration`` less the collector's and the
        time the system kept its thread off the CPU: what the blocking code itself took."""
        return max(self.duration - self.collecting - self.queued, 0.0)

    @property
    def blocking_frame(self) -> ChainFrame | None:
        """The line to fix: the innermost frame in the user's code, else the innermost frame.

        The innermost frame itself is often a library (a sync DB driver, ``json``,
        ``ssl``) that did what it was asked; the user's line that called it is the
        one to change.
        """
        return stack_site(self.stack)


def _threshold(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise InvalidError(f"threshold={value!r} is not valid: expected a number of seconds > 0")
    return float(value)


def _stack_of(thread_id: int) -> tuple[Frame, ...]:
    return stack_of(thread_id, STACK_DEPTH)


class _RunQueue:
    """Seconds one thread has waited, ready to run, for a CPU the system gave to others
    (Linux's ``/proc/.../schedstat``, its second field, in ns); always 0 where the
    system does not say.

    On a loaded machine (two test workers, the database server) a callback that takes
    20 ms of CPU can take 150 ms of wall time: the difference is not the app's, and a
    stall counts without it. The file is kept open and re-read in place (under a
    microsecond), as the loop reads it at every beat."""

    def __init__(self, native_id: int) -> None:
        try:
            self._fd: int | None = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def seconds(self) -> float:
        if self._fd is None:
            return 0.0
        try:
            return int(os.pread(self._fd, 64, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return 0.0

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _callback_of(thread_id: int) -> FrameType | None:
    """The frame of the callback the loop thread runs now (``Handle._run``), if any."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None and frame.f_code is not _HANDLE_RUN:
        frame = frame.f_back
    return frame


@dataclass
class _Open:
    since: float
    stack: tuple[Frame, ...]
    collected_before: float
    """The collector's total time when the stall began."""
    queued_before: float
    """The loop thread's wait for a CPU when the stall began (``_RunQueue``)."""
    caught: list[FrameType] = field(default_factory=list)
    """The callbacks the looks caught running, each once (held: a frame is not reused
    while it is held, so identity tells one callback's run from the next)."""
    held: bool = False
    """A callback was caught at two looks: it held the loop between them."""

    def until(self, now: float, collected: float, queued: float) -> Stall:
        """The stall from its start to ``now``, the collector's total being ``collected``
        and the loop thread's run-queue wait ``queued``."""
        duration = now - self.since
        return Stall(
            self.since,
            duration,
            self.stack,
            collecting=collected - self.collected_before,
            busy=not self.held and len(self.caught) >= BUSY_LOOKS,
            queued=min(max(queued - self.queued_before, 0.0), duration),
        )

    def saw(self, callback: FrameType | None) -> None:
        """A look caught ``callback`` running (``None``: the loop's own code)."""
        if callback is None:
            return
        if any(callback is seen for seen in self.caught):
            self.held = True
        else:
            self.caught.append(callback)


class LoopWatchdog:
    """Records every stall of one event loop longer than ``threshold`` seconds.

    ``start()`` runs in the loop's thread (the watchdog must know which thread's
    stack to take); ``stop()`` ends it and closes a stall still open. ``stalls``
    is complete once ``stop()`` returned.

    A loop that is not running is not blocked: while ``loop.is_running()`` is
    false (between the ``run_until_complete`` calls of a test runner, after the
    test) the watchdog flags nothing, so it can span a whole test, fixtures
    included.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, threshold: float = 0.1) -> None:
        self.loop: Final = loop
        self.threshold: Final = _threshold(threshold)
        self.interval: Final = max(self.threshold / 4, MIN_INTERVAL)
        """How often the loop beats and the watchdog looks: a stall is seen at most
        about one interval after it crossed the threshold."""
        self.stalls: list[Stall] = []
        self._lock = threading.Lock()
        """Guards the beat time, the open stall and ``stalls``: the loop thread beats and
        closes stalls, the watchdog thread opens them (and closes them if the loop stops)."""
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_id = 0
        self._run_queue: _RunQueue | None = None
        """The loop thread's wait for a CPU, once started."""
        self._queued_at_beat = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._last_beat = 0.0
        self._not_running_seen = 0.0
        self._open: _Open | None = None
        self._collecting = 0.0
        """Seconds the garbage collector took while watched, all collections summed."""
        self._collection_started = 0.0
        self._collection_queued = 0.0
        self._queued_collecting = 0.0
        """The loop thread's waits for a CPU inside its collections, all summed."""
        self._collected_at_beat = 0.0
        self._early: FrameType | None = None
        """The callback running when the beat was first seen half a threshold late."""
        self._started = False
        self._stopped = False
        self.interrupt_at: float | None = None
        """``time.monotonic()`` past which a stall is interrupted, not only recorded: the
        blocking code gets ``LoopBlockedError`` (main thread only). ``None``: never. Set it
        before ``start()``, which installs the signal handler only when it is set: then
        ``interrupt_past`` adds the nearer deadlines of what waits (a request, a settle)."""
        self.interrupt_what = "the test's deadline"
        """What ``interrupt_at`` is, for the report."""
        self._deadlines: dict[int, tuple[float, str]] = {}
        """The deadlines of the waits under way, by token: the earliest past one applies."""
        self._next_token = 0
        self.interrupted = 0
        self._interrupt_message = ""
        self._next_interrupt = 0.0
        self._previous_handler: Any = None
        self._handler_installed = False

    def __enter__(self) -> LoopWatchdog:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def start(self) -> LoopWatchdog:
        """Begin watching; call it from the loop's thread, as its stack is the one to take."""
        if self._started:
            raise RuntimeError("this LoopWatchdog was already started; make a new one")
        if self.loop.is_running() and _running_loop() is not self.loop:
            raise RuntimeError("LoopWatchdog.start() must be called from the loop's own thread")
        self._started = True
        self._thread_id = threading.get_ident()
        self._run_queue = _RunQueue(threading.get_native_id())
        self._queued_at_beat = self._run_queue.seconds()
        self._last_beat = time.monotonic()
        gc.callbacks.append(self._on_collection)
        self._handle = self.loop.call_later(self.interval, self._beat)
        if self.interrupt_at is not None and threading.get_ident() == threading.main_thread().ident:
            # Signal handlers run in the main thread only: a loop elsewhere is recorded.
            self._previous_handler = signal.signal(INTERRUPT_SIGNAL, self._on_signal)
            self._handler_installed = True
            _interrupting[self._thread_id] = self
        self._thread = threading.Thread(
            target=self._watch, name="asyncfaults-loop-watchdog", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, closing a stall still open with its duration so far. Idempotent.

        Bounded: the thread is woken at once and joined for at most ``STOP_BOUND``.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._open is not None:
                self._close(time.monotonic())
            handle, self._handle = self._handle, None
            self._early = None
            if self._run_queue is not None:  # read under this lock only
                self._run_queue.close()
        if handle is not None:
            handle.cancel()
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_BOUND)
        if _interrupting.get(self._thread_id) is self:
            del _interrupting[self._thread_id]
        if self._handler_installed and threading.get_ident() == threading.main_thread().ident:
            self._handler_installed = False
            previous = self._previous_handler
            signal.signal(INTERRUPT_SIGNAL, signal.SIG_DFL if previous is None else previous)

    def stalls_so_far(self) -> list[Stall]:
        """The stalls until now. From the loop's thread, a stall still open is over (the
        loop runs the caller), though its closing beat has not come yet: it is closed now,
        as that beat would."""
        with self._lock:
            if self._open is not None and threading.get_ident() == self._thread_id:
                self._beaten(time.monotonic())
            return list(self.stalls)

    def deadline(self, at: float, what: str) -> int:
        """From now on, a stall past ``at`` (``time.monotonic()``) is interrupted too, with
        ``what`` named as the deadline; ``drop_deadline(token)`` ends it."""
        with self._lock:
            self._next_token += 1
            self._deadlines[self._next_token] = (at, what)
            return self._next_token

    def drop_deadline(self, token: int) -> None:
        with self._lock:
            self._deadlines.pop(token, None)

    def _passed(self, now: float) -> str | None:
        """The deadline a stall now is past, the earliest first; the caller holds the lock."""
        passed = [(at, what) for at, what in self._deadlines.values() if at <= now]
        if self.interrupt_at is not None and self.interrupt_at <= now:
            passed.append((self.interrupt_at, self.interrupt_what))
        return min(passed)[1] if passed else None

    def _on_signal(self, signum: int, frame: object) -> None:
        """In the main thread, wherever it blocks: raise the stall's report there."""
        if self._interrupt_message:
            message, self._interrupt_message = self._interrupt_message, ""
            raise LoopBlockedError(message)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        """``gc.callbacks``: sums the collector's time in the loop's thread.

        A collection in another thread (the fault engine's) stops the loop only if the
        loop wanted the GIL meanwhile: a loop blocked in ``time.sleep`` or a sync
        ``recv`` did not, and its stall is the app's whole. Only the loop thread's own
        collections are told apart.

        No lock: a collection runs holding the GIL, and only here is the sum written.
        The GIL can pass to the watchdog inside these callbacks, so a collection under
        way counts too (``_collected``)."""
        if threading.get_ident() != self._thread_id:
            return
        if phase == "start":
            self._collection_started = time.monotonic()
            self._collection_queued = self._queued()
        else:
            self._collecting += time.monotonic() - self._collection_started
            self._collection_started = 0.0
            # A collection's wall time holds its own waits for a CPU: counted once.
            self._queued_collecting += self._queued() - self._collection_queued

    def _queued(self) -> float:
        """The loop thread's waits for a CPU so far, less those inside its collections
        (the collector's time is told apart whole)."""
        waited = 0.0 if self._run_queue is None else self._run_queue.seconds()
        return waited - self._queued_collecting

    def _collected(self, now: float) -> float:
        """The collector's total time until ``now``, a collection under way included."""
        started = self._collection_started
        return self._collecting + (now - started if started else 0.0)

    # the loop thread ---------------------------------------------------------------------

    def _beat(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._stopped:
                return
            self._beaten(now)
            self._handle = self.loop.call_later(self.interval, self._beat)

    def _beaten(self, now: float) -> None:
        """The loop turned at ``now``; the caller holds the lock."""
        self._last_beat = now
        self._collected_at_beat = self._collecting
        self._queued_at_beat = self._queued()
        self._early = None
        if self._open is not None:
            self._close(now)

    def _close(self, now: float) -> None:
        """Turn the open stall into a record; the caller holds the lock."""
        assert self._open is not None
        opened, self._open = self._open, None
        self.stalls.append(opened.until(now, self._collected(now), self._queued()))

    # the watchdog thread -----------------------------------------------------------------

    def _watch(self) -> None:
        while not self._wake.wait(self.interval):
            self._look()

    def _look(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._stopped:
                return
            if not self.loop.is_running():
                # Stopped, not blocked. A stall still open ended before the loop
                # stopped, and no beat will come to close it: close it now.
                self._not_running_seen = now
                self._collected_at_beat = self._collecting
                self._queued_at_beat = self._queued()
                self._early = None
                if self._open is not None:
                    self._close(now)
                return
            if self._open is not None:
                # Seen already: the stack taken first is the blocking call.
                self._open.saw(_callback_of(self._thread_id))
                self._maybe_interrupt(now)
                return
            since = max(self._last_beat, self._not_running_seen)
            late = now - since - (self._collected(now) - self._collected_at_beat)
            if late > self.threshold:
                opened = _Open(
                    since,
                    _stack_of(self._thread_id),
                    self._collected_at_beat,
                    self._queued_at_beat,
                )
                opened.saw(self._early)
                opened.saw(_callback_of(self._thread_id))
                self._early = None
                self._open = opened
                self._maybe_interrupt(now)
            elif late > self.threshold / 2 and self._early is None:
                self._early = _callback_of(self._thread_id)

    def _maybe_interrupt(self, now: float) -> None:
        """Past ``interrupt_at``, free the loop: the caller holds the lock."""
        if (
            not self._handler_installed
            or self.interrupted >= INTERRUPT_TIMES
            or now < self._next_interrupt
            or self._open is None
        ):
            return
        what = self._passed(now)
        if what is None:
            return
        opened = self._open
        stall = opened.until(now, self._collected(now), self._queued())
        # Made here, not in the handler: the handler runs in the blocked thread,
        # which may hold this watchdog's lock (a beat) when the signal lands.
        self._interrupt_message = (
            f"asyncfaults: {format_stall(stall)}\n\nInterrupted past {what} so the run goes "
            f"on (raised where the loop was blocked)."
        )
        self.interrupted += 1
        self._next_interrupt = now + INTERRUPT_EVERY
        signal.pthread_kill(self._thread_id, INTERRUPT_SIGNAL)


_interrupting: dict[int, LoopWatchdog] = {}
"""The watchdog that interrupts the loop of each thread (by thread id), while it runs."""


def interrupting() -> bool:
    """Whether a watchdog interrupts this thread's loop now (``interrupt_past`` would do
    something): a caller on a hot path skips making one where none would."""
    return bool(_interrupting) and threading.get_ident() in _interrupting


@final
class interrupt_past:
    """While inside, a block of this thread's loop that lasts past ``seconds`` from now is
    interrupted, ``what`` named as the deadline it overran (a callable: made only where
    a watchdog will use it, as this is on the path of every request).

    For the waits that have a bound of their own (a request's read timeout, a settle,
    the lifespan's limits): their timer cannot fire while the loop is blocked, so
    without this a block would run on to the test's deadline. Nothing happens where
    no interrupting watchdog watches (``repro`` without one, a loop in another thread).
    """

    __slots__ = ("_seconds", "_token", "_watchdog", "_what")

    def __init__(self, seconds: float | None, what: str | Callable[[], str]) -> None:
        self._seconds = seconds
        self._what = what
        self._watchdog = _interrupting.get(threading.get_ident()) if _interrupting else None
        self._token = 0

    def __enter__(self) -> None:
        watchdog, seconds = self._watchdog, self._seconds
        if watchdog is not None and seconds is not None:
            what = self._what if isinstance(self._what, str) else self._what()
            self._token = watchdog.deadline(time.monotonic() + seconds, what)

    def __exit__(self, *exc_info: object) -> None:
        if self._token:
            assert self._watchdog is not None
            self._watchdog.drop_deadline(self._token)


# -- the report ------------------------------------------------------------------------------


def format_stall(stall: Stall, *, indent: str = "    ") -> str:
    """The stall for a terminal: one headline, then the stack, outermost first.

    "> " marks the blocking frame; runs of library frames (the event loop, the
    test runner) are folded whole, to one line naming their packages: unlike an
    await chain's, they are not the way to the blocking line, only what ran it.
    """
    where = describe_site(stall.blocking_frame, "an unknown place (no stack was taken)")
    headline = f"the event loop was blocked for {stall.own:.2f} s at {where}"
    if stall.collecting >= COLLECTING_SHOWN:
        headline += f" (and {stall.collecting:.2f} s in Python's garbage collector)"
    stack = format_stack(stall.stack, indent=indent)
    return f"{headline}\n{stack}" if stack else headline
