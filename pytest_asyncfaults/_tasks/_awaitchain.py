"""Where a pending task is stuck: its await chain, walked and printed.

A hung background task shows nothing by itself: no exception, no log, only a
test that never settles. Its coroutine still knows everything, though: each
suspended coroutine points at what it awaits, down to the future the event
loop will (or will never) resolve. This module follows those pointers, and
the ones asyncio keeps to itself (a task's waiter, a ``wait_for``'s inner
task, a ``gather``'s children), and prints the chain so that the line to fix
stands out among the library frames.

It only reads: nothing here resumes, cancels or schedules anything, so it can
look at any task of a loop at any moment, and it never raises, because it
runs while a report is being written about something that already went
wrong.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import linecache
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import AsyncGeneratorType, CodeType, CoroutineType, FrameType, GeneratorType
from typing import Any, Final, NamedTuple

from .._frames import ChainFrame, fold, folded_line, user_first

MAX_DEPTH: Final = 10_000
"""Frames walked at most: deep enough for any recursion Python allows by default, so
the innermost frames (where the chain hangs) are always reached."""
SHOWN_OUTER: Final = 10
SHOWN_INNER: Final = 40
"""A longer chain is printed as its outermost and innermost frames, the middle folded:
the way in, and the culprit."""

_REPR_WIDTH: Final = 80
_COLLAPSE_OVER: Final = 6
"""Library runs longer than this are folded in ``format_chain``, but for their first and
last frame: an await chain goes through few libraries, and how it enters and leaves each
one is part of the story."""
_CHILDREN_SHOWN: Final = 3

# -- the chain -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwaitChain:
    frames: tuple[ChainFrame, ...]
    """Outermost coroutine first; the last one is where the task is blocked."""
    leaf: str
    """What the innermost frame waits on, for a human: not a coroutine, not a frame."""
    hops: tuple[tuple[int, str], ...] = ()
    """Where the chain went into another task it awaits: (index in ``frames`` of that
    task's outermost frame, a label such as "Task 'Task-7'")."""

    def user_frame(self) -> ChainFrame | None:
        """The innermost frame in the user's code, else the innermost frame at all."""
        return user_first(reversed(self.frames), lambda frame: frame.filename)


def _chain_frame(frame: FrameType) -> ChainFrame:
    code = frame.f_code
    lineno = frame.f_lineno or code.co_firstlineno
    source = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
    return ChainFrame(code.co_filename, lineno, code.co_name, source)


def _code_frame(code: CodeType) -> ChainFrame:
    """A compiled (Cython) coroutine has a code object but no frame: its first line it is."""
    lineno = code.co_firstlineno
    source = linecache.getline(code.co_filename, lineno).strip()
    return ChainFrame(code.co_filename, lineno, code.co_name, source)


def _short_repr(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not break the report
        text = f"<{type(obj).__qualname__} object>"
    return text if len(text) <= _REPR_WIDTH else text[: _REPR_WIDTH - 3] + "..."


def _task_label(task: asyncio.Future[Any]) -> str:
    get_name = getattr(task, "get_name", None)
    if get_name is None:
        return _short_repr(task)
    return f"Task {get_name()!r}"


def _future_state(future: asyncio.Future[Any]) -> str:
    if future.cancelled():
        return "cancelled"
    return "done" if future.done() else "pending"


def _peer(transport: object) -> str | None:
    get_extra_info = getattr(transport, "get_extra_info", None)
    if get_extra_info is None:
        return None
    peer = get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer) if peer else None


# -- the walk --------------------------------------------------------------------------------


class _End(NamedTuple):
    """How one task's own frames ended."""

    future: object
    """The future met at the bottom, if the walk saw one."""
    frame: FrameType | None
    """The innermost real frame of this task, for what it tells about the wait."""
    opaque: object = None
    """An awaitable the walk could not see into."""
    bare_yield: bool = False


_Prefix = tuple[str, str, str, str]
_COROUTINE: Final[_Prefix] = ("cr_frame", "cr_await", "cr_running", "cr_code")
_GENERATOR: Final[_Prefix] = ("gi_frame", "gi_yieldfrom", "gi_running", "gi_code")
_ASYNCGEN: Final[_Prefix] = ("ag_frame", "ag_await", "", "ag_code")

_UNWRAPPED: Final = frozenset(
    {
        "FutureIter",  # Future.__await__ in C: holds the future
        "async_generator_asend",  # `async for` / agen.asend(): holds the generator
        "async_generator_athrow",  # agen.athrow() / aclose()
        "anext_awaitable",  # anext(agen): holds the generator
        "coroutine_wrapper",  # coro.__await__(): holds the coroutine
    }
)


def _attrs(obj: object) -> _Prefix | None:
    if hasattr(obj, "cr_await"):
        return _COROUTINE
    if hasattr(obj, "ag_await"):
        return _ASYNCGEN
    if hasattr(obj, "gi_yieldfrom"):
        return _GENERATOR
    return None


def _unwrap(obj: object) -> object:
    """What a C-level await helper holds; there is no attribute for it, only the GC's view."""
    if type(obj).__name__ not in _UNWRAPPED:
        return None
    for ref in gc.get_referents(obj):
        if isinstance(ref, asyncio.Future) or _attrs(ref) is not None:
            return ref
    return None


def _code_of(owner: object, name: str) -> CodeType | None:
    func = getattr(owner, name, None)
    func = getattr(func, "__func__", func)
    code = getattr(func, "__code__", None)
    return code if isinstance(code, CodeType) else None


_PY_FUTURE_AWAIT: Final = _code_of(getattr(asyncio.futures, "_PyFuture", None), "__await__")


class _Walk:
    def __init__(self, *, depth: int = MAX_DEPTH, detail: bool = True) -> None:
        self.depth = depth
        self.detail = detail
        """Only the report's own walk looks into a gather's children: nested gathers
        must not multiply the work."""
        self.frames: list[ChainFrame] = []
        self.hops: list[tuple[int, str]] = []
        self._seen: set[int] = set()
        self._alive: list[object] = []  # what is in _seen stays alive, so no id is reused

    def _see(self, obj: object) -> bool:
        """False when already seen: the chain loops."""
        if id(obj) in self._seen:
            return False
        self._seen.add(id(obj))
        self._alive.append(obj)
        return True

    # one task -----------------------------------------------------------------------------

    def task(self, task: asyncio.Task[Any]) -> str:
        if not self._see(task):
            return f"{_task_label(task)} again: these tasks wait on each other (a deadlock)"
        coro = task.get_coro()
        if coro is None:
            return f"{_task_label(task)}, which has no coroutine to walk"
        start = len(self.frames)
        real: list[FrameType] = []
        end = self._walk(coro, real)
        graph = _graph_frames(task)
        if graph is not None and not {id(frame) for frame in graph} <= {id(f) for f in real}:
            # The official graph saw frames the walk did not: trust it for this task.
            del self.frames[start:]
            self.frames.extend(_chain_frame(frame) for frame in graph[: self.depth - start])
            end = _End(None, graph[-1] if graph else None)
        if isinstance(end, str):
            return end
        return self._waiting_on(task, end)

    def _walk(self, obj: object, real: list[FrameType]) -> _End | str:
        """This task's own frames, down to what its innermost frame awaits."""
        innermost: FrameType | None = None
        while True:
            if obj is None:
                return _End(None, innermost)
            if isinstance(obj, asyncio.Future):
                return _End(obj, innermost)
            if len(self.frames) >= self.depth:
                return f"(chain cut at {self.depth} frames)"
            if not self._see(obj):
                return f"{_short_repr(obj)} again: the chain loops"
            attrs = _attrs(obj)
            if attrs is None:
                inner = _unwrap(obj)
                if inner is None:
                    return _End(None, innermost, opaque=obj)
                obj = inner
                continue
            frame_attr, await_attr, running_attr, code_attr = attrs
            frame = getattr(obj, frame_attr, None)
            if isinstance(frame, FrameType):
                if frame.f_code is _PY_FUTURE_AWAIT:  # the pure-Python Future: `yield self`
                    obj = frame.f_locals.get("self")
                    continue
                self.frames.append(_chain_frame(frame))
                real.append(frame)
                innermost = frame
            elif isinstance(obj, CoroutineType | GeneratorType | AsyncGeneratorType):
                return f"{_short_repr(obj)}, which has already finished"
            else:
                code = getattr(obj, code_attr, None)
                if isinstance(code, CodeType):
                    self.frames.append(_code_frame(code))
            awaited = getattr(obj, await_attr, None)
            if awaited is None:
                if running_attr and getattr(obj, running_attr, False):
                    return "nothing: it is running right now (this walk runs inside it)"
                if isinstance(obj, CoroutineType) and (
                    inspect.getcoroutinestate(obj) == inspect.CORO_CREATED
                ):
                    return "nothing yet: not started, it runs on a coming loop iteration"
                if isinstance(obj, GeneratorType) and (
                    inspect.getgeneratorstate(obj) == inspect.GEN_SUSPENDED
                ):
                    return _End(None, innermost, bare_yield=True)
            obj = awaited

    # what the innermost frame waits on ----------------------------------------------------

    def _waiting_on(self, task: asyncio.Task[Any], end: _End) -> str:
        future = end.future
        if future is None:
            future = getattr(task, "_fut_waiter", None)
        if end.frame is not None:
            describe = _CONTEXTS.get(end.frame.f_code)
            text: str | None = None
            if describe is not None:
                try:
                    text = describe(_Context(self, task, end.frame.f_locals, future))
                except Exception:  # asyncio's internals moved: the plain description will do
                    text = None
            if text is not None:
                return text
        if isinstance(future, asyncio.Task):
            return self.hop(future, _task_label(future))
        if isinstance(future, asyncio.Future):
            children = getattr(future, "_children", None)
            if type(future).__name__ == "_GatheringFuture" and children is not None:
                return self.children("asyncio.gather", children)
            return _resolved(future, f"a Future ({_future_state(future)})")
        if end.bare_yield:
            return "a bare yield: the task runs again on the next loop iteration"
        if end.opaque is not None:
            return f"{_short_repr(end.opaque)} (the walk cannot see into it)"
        if future is not None:
            return _short_repr(future)
        return "nothing the walk can see"

    def hop(self, task: asyncio.Task[Any], label: str) -> str:
        """Go on into a task this one awaits: the chain must reach the bottom."""
        if task.done():
            return f"{label}, done: the waiter resumes on the next loop iteration"
        if id(task) in self._seen:
            return f"{label} again: these tasks wait on each other (a deadlock)"
        if len(self.frames) >= self.depth:
            return f"{label} (see its own chain)"
        self.hops.append((len(self.frames), label))
        return self.task(task)

    def children(self, what: str, futures: Iterable[object]) -> str:
        items = [item for item in futures if isinstance(item, asyncio.Future)]
        pending = [item for item in items if not item.done()]
        shown = [self._child(item) for item in pending[:_CHILDREN_SHOWN]]
        if len(pending) > _CHILDREN_SHOWN:
            shown.append(f"and {len(pending) - _CHILDREN_SHOWN} more")
        head = f"{what} of {len(items)}, {len(pending)} pending"
        return f"{head}: {'; '.join(shown)}" if shown else head

    def _child(self, future: asyncio.Future[Any]) -> str:
        if not isinstance(future, asyncio.Task):
            return f"a Future ({_future_state(future)})"
        label = _task_label(future)
        if not self.detail or id(future) in self._seen:
            return f"{label} (see its own chain)"
        walk = _Walk(detail=False)
        try:
            walk.task(future)
        except Exception:  # the child's own chain is reported on its own anyway
            return f"{label} (see its own chain)"
        where = user_first(reversed(walk.frames), lambda frame: frame.filename)
        return f"{label} at {where.location()}" if where is not None else label


def _resolved(future: asyncio.Future[Any], text: str) -> str:
    if future.done():
        return f"{text}, resolved: the task resumes on the next loop iteration"
    return text


def _graph_frames(task: asyncio.Task[Any]) -> list[FrameType] | None:
    """This task's own frames by ``asyncio.capture_call_graph`` (3.14+), outermost first."""
    capture: Any = getattr(asyncio, "capture_call_graph", None)
    if capture is None:
        return None
    try:
        graph = capture(task)
        if graph is None:
            return None
        frames = [getattr(entry, "frame", None) for entry in reversed(graph.call_stack)]
    except Exception:  # then the walk alone it is
        return None
    return [frame for frame in frames if isinstance(frame, FrameType)]


# -- what asyncio's own frames tell about the wait ---------------------------------------------


class _Context(NamedTuple):
    walk: _Walk
    task: asyncio.Task[Any]
    local: Mapping[str, Any]
    future: object


def _sleep(ctx: _Context) -> str | None:
    handle = ctx.local.get("h")
    if not isinstance(handle, asyncio.TimerHandle):
        return None
    delay = ctx.local.get("delay")
    due = handle.when() - ctx.task.get_loop().time()
    text = f"asyncio.sleep timer ({delay:g} s, due in {due:.2f} s)"
    return _resolved(ctx.future, text) if isinstance(ctx.future, asyncio.Future) else text


def _sleep0(ctx: _Context) -> str | None:
    return "asyncio.sleep(0): the task runs again on the next loop iteration"


def _event(ctx: _Context) -> str | None:
    event = ctx.local.get("self")
    state = "set" if isinstance(event, asyncio.Event) and event.is_set() else "not set"
    return f"an Event's waiter (the event is {state})"


def _lock(ctx: _Context) -> str | None:
    waiters = getattr(ctx.local.get("self"), "_waiters", None) or ()
    return f"a Lock's waiter (the lock is held; {len(waiters)} waiting)"


def _semaphore(ctx: _Context) -> str | None:
    waiters = getattr(ctx.local.get("self"), "_waiters", None) or ()
    return f"a Semaphore's waiter (no slot free; {len(waiters)} waiting)"


def _condition(ctx: _Context) -> str | None:
    return "a Condition's waiter (until notified)"


def _queue_get(ctx: _Context) -> str | None:
    return "an empty Queue's get (until something is put)"


def _queue_put(ctx: _Context) -> str | None:
    queue = ctx.local.get("self")
    size = queue.maxsize if isinstance(queue, asyncio.Queue) else "?"
    return f"a full Queue's put (maxsize {size}, until something is taken)"


def _stream_data(ctx: _Context) -> str | None:
    reader = ctx.local.get("self")
    function = ctx.local.get("func_name") or "read"
    peer = _peer(getattr(reader, "_transport", None))
    buffered = len(getattr(reader, "_buffer", b"") or b"")
    source = f" from {peer}" if peer else ""
    return (
        f"a StreamReader {function}() waiting for data{source} "
        f"({buffered} bytes buffered, no EOF yet)"
    )


def _drain(ctx: _Context) -> str | None:
    return "a write drain: the peer does not read, the transport's buffer is full"


def _sock_connect(ctx: _Context) -> str | None:
    address = ctx.local.get("address")
    return f"a socket connect to {_short_repr(address)} (no answer yet)"


def _sock_read(ctx: _Context) -> str | None:
    return "a socket read (no data yet)"


def _sock_write(ctx: _Context) -> str | None:
    return "a socket write (the peer does not read)"


def _sock_accept(ctx: _Context) -> str | None:
    return "a socket accept (no connection yet)"


def _getaddrinfo(ctx: _Context) -> str | None:
    host, port = ctx.local.get("host"), ctx.local.get("port")
    return f"a DNS lookup getaddrinfo({host!r}, {port!r}) in the default executor"


def _wait_for(ctx: _Context) -> str | None:
    """Python 3.11's wait_for awaits a private waiter; the real work is its inner task."""
    inner = ctx.local.get("fut")
    handle = ctx.local.get("timeout_handle")
    timeout = ""
    if isinstance(handle, asyncio.TimerHandle):
        timeout = f", times out in {handle.when() - ctx.task.get_loop().time():.2f} s"
    if isinstance(inner, asyncio.Task):
        return ctx.walk.hop(inner, f"{_task_label(inner)} (wait_for's inner task{timeout})")
    if isinstance(inner, asyncio.Future):
        return f"asyncio.wait_for on a Future ({_future_state(inner)}{timeout})"
    return None


def _wait(ctx: _Context) -> str | None:
    futures = ctx.local.get("fs")
    if futures is None:
        return None
    return ctx.walk.children("asyncio.wait", futures)


def _task_group(ctx: _Context) -> str | None:
    tasks = getattr(ctx.local.get("self"), "_tasks", None)
    if tasks is None:
        return None
    return ctx.walk.children("a TaskGroup's exit waiting for its tasks", tasks)


def _contexts() -> dict[CodeType, Callable[[_Context], str | None]]:
    from asyncio import base_events, locks, queues, selector_events, streams, tasks

    table: list[tuple[object, str, Callable[[_Context], str | None]]] = [
        (tasks, "sleep", _sleep),
        (tasks, "__sleep0", _sleep0),
        (tasks, "wait_for", _wait_for),
        (tasks, "_wait", _wait),
        (locks.Event, "wait", _event),
        (locks.Lock, "acquire", _lock),
        (locks.Semaphore, "acquire", _semaphore),
        (locks.Condition, "wait", _condition),
        (queues.Queue, "get", _queue_get),
        (queues.Queue, "put", _queue_put),
        (streams.StreamReader, "_wait_for_data", _stream_data),
        (streams.FlowControlMixin, "_drain_helper", _drain),
        (base_events.BaseEventLoop, "getaddrinfo", _getaddrinfo),
        (selector_events.BaseSelectorEventLoop, "sock_connect", _sock_connect),
        (selector_events.BaseSelectorEventLoop, "sock_recv", _sock_read),
        (selector_events.BaseSelectorEventLoop, "sock_recv_into", _sock_read),
        (selector_events.BaseSelectorEventLoop, "sock_sendall", _sock_write),
        (selector_events.BaseSelectorEventLoop, "sock_accept", _sock_accept),
        (getattr(asyncio, "TaskGroup", None), "__aexit__", _task_group),
    ]
    found: dict[CodeType, Callable[[_Context], str | None]] = {}
    for owner, name, describe in table:
        code = _code_of(owner, name)
        if code is not None:
            found[code] = describe
    return found


_CONTEXTS: Final = _contexts()


def await_chain(task: asyncio.Task[Any]) -> AwaitChain:
    """Where ``task`` is blocked, outermost coroutine first; never raises."""
    try:
        if task.done():
            return AwaitChain((), "done")
    except Exception as exc:  # a broken Task subclass
        return AwaitChain((), f"unknown: {_short_repr(exc)}")
    walk = _Walk()
    try:
        leaf = walk.task(task)
    except Exception as exc:  # keep what was walked: it is most of the answer
        leaf = f"unknown: the walk stopped on {_short_repr(exc)}"
    return AwaitChain(tuple(walk.frames), leaf, tuple(walk.hops))


# -- printing --------------------------------------------------------------------------------


def _width(item: int | tuple[int, int]) -> int:
    """How many frames one printed item stands for: one, or a folded run."""
    return 1 if isinstance(item, int) else item[1] - item[0] + 1


def format_chain(chain: AwaitChain, *, indent: str = "    ") -> str:
    """The chain for a terminal: every line starts with ``indent``; "> " marks the line to fix.

    Runs of library frames are folded; the user's frames, the innermost few
    and the first and last frame of each run stay, so the way into and out of
    a library is still readable.
    """
    frames = chain.frames
    user = chain.user_frame()
    marked = next((i for i in range(len(frames) - 1, -1, -1) if frames[i] is user), -1)
    filenames = [frame.filename for frame in frames]
    hops = dict(chain.hops)
    lines: list[str] = []
    items = fold(filenames, marked=marked, longer_than=_COLLAPSE_OVER, keep_ends=1, breaks=hops)
    shown = [i for i, item in enumerate(items) if isinstance(item, int)]
    middle: range = range(0)
    if len(shown) > SHOWN_OUTER + SHOWN_INNER:
        middle = range(shown[SHOWN_OUTER], shown[-SHOWN_INNER])
    for position, item in enumerate(items):
        if position in middle and item != marked:
            if position == middle.start:
                hidden = sum(_width(items[i]) for i in middle)
                deep = f"the chain is {len(frames)} deep"
                lines.append(f"{indent}  ... {hidden} frames more ({deep}) ...")
            continue
        if isinstance(item, tuple):
            first, last = item
            lines.append(folded_line(filenames[first : last + 1], indent))
            continue
        if item in hops:
            lines.append(f"{indent}  -- awaiting {hops[item]} --")
        frame = frames[item]
        mark = "> " if item == marked else "  "
        lines.append(f"{indent}{mark}{frame.location()}")
        if frame.source:
            lines.append(f"{indent}      {frame.source}")
    if len(frames) in hops:  # a task awaited before it ever ran: no frame of its own
        lines.append(f"{indent}  -- awaiting {hops[len(frames)]} --")
    lines.append(f"{indent}  waiting on: {chain.leaf}")
    return "\n".join(lines)
