"""Whose code a frame is, how a site prints, and what an exception was raised from.

Every report the plugin writes (a hang's await chains, a stalled loop, a
silent failure, a scenario's verdict, the timeline) points at one line and
says "fix this". That only helps if every report agrees on which frames are
the user's and which are machinery, prints a place the same way, and folds
the same library noise: so those rules live here, once, instead of in each
report. The walk along ``__cause__`` / ``__context__`` is here for the same
reason, and because an exception chain can loop (``a.__context__ = b;
b.__context__ = a``), so the one walk is the one that cannot hang.

It imports nothing of the package: anything may use it, and it knows other
packages only through what they register (``machinery_call``).
"""

from __future__ import annotations

import functools
import linecache
import os
import sys
import sysconfig
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, Final, Literal, TypeVar

Frame = tuple[str, int, str]
"""(filename, line number, function name): a frame as stacks are kept, innermost first."""

UNKNOWN_PLACE: Final = "an unknown place"

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# -- where code lives ------------------------------------------------------------------------


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found: list[str] = []
    for candidate in (paths.get("stdlib"), paths.get("platstdlib"), os.path.dirname(os.__file__)):
        if not candidate:
            continue
        for form in (os.path.abspath(candidate), os.path.realpath(candidate)):
            if form not in found:
                found.append(form)
    return tuple(found)


_STDLIB_DIRS: Final = _stdlib_dirs()
_OWN_DIR: Final = os.path.dirname(os.path.abspath(__file__))
"""The package's own directory: its frames are machinery, never the line to blame."""
_SITE_DIRS: Final = ("site-packages", "dist-packages")
_COMPILED_SOURCES: Final = (".pyx", ".pxd", ".pxi")
"""A compiled extension's frames (asyncpg's protocol) carry its source's path relative to
the package, ``asyncpg/protocol/protocol.pyx``: an installed library's, never the app's."""


def _is_pseudo(filename: str) -> bool:
    return filename.startswith("<") and filename.endswith(">")


def _after_site(filename: str) -> str | None:
    parts = filename.replace("\\", "/").split("/")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in _SITE_DIRS:
            return "/".join(parts[index + 1 :]) or None
    return None


def _relative(path: str, root: str) -> str | None:
    try:
        rel = os.path.relpath(path, root)
    except ValueError:  # another drive, on Windows
        return None
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return None
    return rel.replace(os.sep, "/")


@functools.lru_cache(maxsize=4096)
def is_library(filename: str) -> bool:
    """Code the user does not own: stdlib, installed packages, this plugin, ``<frozen ...>``.

    Cached: a report on 10,000 tasks asks it of the same few files again and again."""
    if not filename or _is_pseudo(filename) or _after_site(filename) is not None:
        return True
    if filename.endswith(_COMPILED_SOURCES) and not os.path.isabs(filename):
        return True  # Cython names its code by the package's relative path
    path = os.path.abspath(filename)
    return any(_relative(path, root) is not None for root in (*_STDLIB_DIRS, _OWN_DIR))


def short_path(filename: str) -> str:
    """A file name as short as it can be while a reader still knows which file it is.

    Installed packages print from their top-level package ("asyncpg/connection.py"),
    the stdlib from its own root ("asyncio/streams.py"), the user's files from the
    current directory; anything else stays as it is.
    """
    if not filename or _is_pseudo(filename):
        return filename
    try:
        cwd = os.getcwd()
    except OSError:  # the directory was removed under us
        cwd = ""
    return _short_path(filename, cwd)


@functools.lru_cache(maxsize=4096)
def _short_path(filename: str, cwd: str) -> str:
    after = _after_site(filename)
    if after is not None:
        return after
    path = os.path.abspath(filename)
    for root in _STDLIB_DIRS:
        rel = _relative(path, root)
        if rel is not None:
            return rel
    own = _relative(path, _OWN_DIR)
    if own is not None:  # an editable install: the package prints as installed
        return f"{os.path.basename(_OWN_DIR)}/{own}"
    if not cwd:
        return filename
    rel = _relative(path, cwd)
    return rel if rel is not None else filename


def package_of(filename: str) -> str:
    """The top-level package a file belongs to, as a folded run of frames names it."""
    head = short_path(filename).split("/", 1)[0]
    return head.removesuffix(".py") or filename


# -- who asked for a task --------------------------------------------------------------------

# Frames of the machinery between a create_task call and whoever asked for it.
_CREATION_PARTS: Final = ("/asyncio/", "/anyio/_backends/", "/anyio/_core/", "/contextlib.py")
# Whoever asked for it is a test runner: the test's own task, anyio's runner task.
_RUNNER_PARTS: Final = ("/pytest_asyncio/", "/anyio/pytest_plugin.py", "/_pytest/", "/pluggy/")

CreatorKind = Literal["library", "runner", "other"]
_KINDS: dict[str, CreatorKind] = {}
"""Per file name, asked once per file and not once per task: this runs on every
``create_task`` of the app. Keyed by the name, whose hash a string keeps, not by the code
object, whose hash Python works out again at each lookup from its constants and names."""


def creator_kind(code: CodeType) -> CreatorKind:
    """What a frame of a task's creation stack is: "library" (asyncio's or anyio's own
    ``create_task`` plumbing, to look past), "runner" (a test runner asking), or "other".

    Narrower than ``is_library`` on purpose: it decides whether a task is the test
    runner's own, so the user's code and this plugin's (which asked for the task)
    must not be looked past, only the plumbing between them and ``create_task``.
    """
    filename = code.co_filename
    kind = _KINDS.get(filename)
    if kind is None:
        path = filename.replace("\\", "/")
        if any(part in path for part in _CREATION_PARTS):
            kind = "library"
        elif any(part in path for part in _RUNNER_PARTS):
            kind = "runner"
        else:
            kind = "other"
        _KINDS[filename] = kind
    return kind


# -- stalls that are not the app's -----------------------------------------------------------

_IDLE_FRAMES: Final = ("/selectors.py", "/asyncio/base_events.py")
_MACHINERY_CALLS: set[tuple[str, str]] = set()
"""(filename, function) of blocking calls made by the plugin's own machinery."""


def machinery_call(func: F) -> F:
    """Mark a function that blocks the calling loop on purpose, as the plugin's own wait.

    The fault proxy's control calls (``proxy.stats`` on a child process or a
    Toxiproxy server) block the test's loop for as long as the far end takes:
    a stall the harness caused, not the app. The module that owns such a call
    registers it here when it is imported, so this module need not import it
    (the tasks package must not depend on the backends).
    """
    code = func.__code__
    _MACHINERY_CALLS.add((code.co_filename, code.co_name))
    return func


def not_the_apps_stall(stack: Sequence[Frame]) -> bool:
    """A stalled loop's stack (innermost first) that is no fault of the app's code.

    The loop was waiting in ``select()`` (the machine, not the app, was slow),
    inside a call registered with ``machinery_call``, or in the plugin's own
    bookkeeping: the innermost frame that is not the standard library's is this
    package's (recording 10,000 new tasks, settling them), so the app's line
    that happened to be below it is not to blame.
    """
    if stack and stack[0][0].replace("\\", "/").endswith(_IDLE_FRAMES):
        return True
    if any((filename, function) in _MACHINERY_CALLS for filename, _, function in stack):
        return True
    innermost = next((frame for frame in stack if not is_stdlib(frame[0])), None)
    return innermost is not None and is_own(innermost[0])


UPKEEP_PACKAGES: Final = frozenset({"loguru", "structlog", "asyncpg", "fastapi", "pydantic"})
"""Libraries whose own CPU work on the loop is their design, not the app's choice: a
logger formatting a traceback (loguru's ``diagnose`` tokenizes every frame's source), a
driver's SCRAM login (4096 HMAC rounds), FastAPI reading a handler's signature on its
first request."""
_UPKEEP_STDLIB: Final = (
    "/logging/",
    "/traceback.py",
    "/linecache.py",
    "/tokenize.py",
    "/inspect.py",
)
"""The standard library's share of that work: formatting a log record, reading source."""


def library_upkeep(stack: Sequence[Frame]) -> bool:
    """A stalled loop's stack (innermost first) that is in a library's own upkeep: its
    innermost frame outside the standard library is one of ``UPKEEP_PACKAGES``, or the
    app's call into the standard library's logging or source reading (``logger.exception``
    formatting its traceback). A stall there is judged on a longer bound: the app cannot
    make it shorter, but it would still notice one that took half a second."""
    for filename, _, _ in stack:
        if not is_stdlib(filename):
            return package_of(filename) in UPKEEP_PACKAGES
        path = filename.replace("\\", "/")
        if path.endswith(_UPKEEP_STDLIB) or "/logging/" in path:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def is_stdlib(filename: str) -> bool:
    """The file is the standard library's (or a pseudo-file: ``<frozen ...>``)."""
    if not filename or _is_pseudo(filename):
        return True
    path = os.path.abspath(filename)
    return _after_site(filename) is None and any(
        _relative(path, root) is not None for root in _STDLIB_DIRS
    )


@functools.lru_cache(maxsize=4096)
def is_own(filename: str) -> bool:
    """The file is this package's own."""
    return bool(filename) and _relative(os.path.abspath(filename), _OWN_DIR) is not None


# -- sites -----------------------------------------------------------------------------------


def location(filename: str, lineno: int, function: str) -> str:
    """``path:line in function``, the way every report names a frame."""
    return f"{short_path(filename)}:{lineno} in {function}"


@dataclass(frozen=True)
class ChainFrame:
    filename: str
    lineno: int
    function: str
    source: str
    """The stripped source line, "" when the file cannot be read."""

    @property
    def is_user(self) -> bool:
        """The frame is in code the user can change (the line they would fix)."""
        return not is_library(self.filename)

    @property
    def frame(self) -> Frame:
        return (self.filename, self.lineno, self.function)

    def location(self) -> str:
        return location(self.filename, self.lineno, self.function)

    def describe(self) -> str:
        """Its location and, in backquotes, its source line: one line of a report."""
        return f"{self.location()}: `{self.source}`" if self.source else self.location()


def user_first(innermost_first: Iterable[T], filename: Callable[[T], str]) -> T | None:
    """The innermost frame in the user's code; else the innermost in a library outside
    the standard library and this plugin (the driver or framework that did it: a task
    Quart made names Quart's line, not asyncio's ``ensure_future``); else the innermost."""
    innermost: T | None = None
    library: T | None = None
    for frame in innermost_first:
        name = filename(frame)
        if innermost is None:
            innermost = frame
        if not is_library(name):
            return frame
        if library is None and not is_stdlib(name) and not is_own(name):
            library = frame
    return library if library is not None else innermost


def stack_site(frames: Sequence[Frame]) -> ChainFrame | None:
    """The line to blame in a stack, as its author would recognise it.

    ``frames`` is a stack, innermost first (a task's creation, a stalled loop);
    the site is the innermost frame in the user's code, so ``create_task``, a
    driver that did what it was asked, and the libraries between them and the
    user (anyio, starlette, this plugin) are skipped.
    """
    chosen = user_first(frames, lambda frame: frame[0])
    if chosen is None:
        return None
    filename, lineno, function = chosen
    return ChainFrame(filename, lineno, function, linecache.getline(filename, lineno).strip())


def site_frame(frames: Sequence[Frame]) -> Frame | None:
    """``stack_site`` as a plain frame, for an allow-list to match."""
    site = stack_site(frames)
    return None if site is None else site.frame


def describe_site(site: ChainFrame | None, unknown: str = UNKNOWN_PLACE) -> str:
    """One line for "created at ..." / "blocked at ...": the site and its source line."""
    return unknown if site is None else site.describe()


def format_site(frames: Sequence[Frame], *, source: bool = True) -> str:
    """One line for "created at ...": the site and, in backquotes, its source line."""
    site = stack_site(frames)
    if site is None or source:
        return describe_site(site)
    return site.location()


def describe_exception(exception: BaseException) -> str:
    """``Type: message``, or the type alone when the message is empty (``TimeoutError()``)."""
    text = str(exception)
    return f"{type(exception).__name__}: {text}" if text else type(exception).__name__


def leaves(exception: BaseException) -> list[BaseException]:
    """The exceptions an exception group holds, groups opened all the way down: a task
    group (anyio's, Litestar's lifespan) wraps the app's one error in a group of one."""
    if isinstance(exception, BaseExceptionGroup):
        return [leaf for inner in exception.exceptions for leaf in leaves(inner)]
    return [exception]


def raised_at(exception: BaseException) -> str:
    """Where ``exception`` was raised, as its author would look for it: the innermost frame
    of its traceback in the user's code, with its source line."""
    frames: list[Frame] = []
    tb = exception.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return format_site(frames[::-1])


# -- folding library frames ------------------------------------------------------------------

KEEP_INNERMOST: Final = 3
"""Frames at the inner end of a printed stack that are never folded."""

Folded = int | tuple[int, int]
"""A frame index to print, or a folded run as its (first, last) index."""


def fold(
    filenames: Sequence[str],
    *,
    marked: int,
    longer_than: int,
    keep_ends: int,
    breaks: Collection[int] = (),
) -> list[Folded]:
    """Which frames of a stack (outermost first) to print, library runs folded.

    The user's frames, the ``KEEP_INNERMOST`` innermost ones and ``marked``
    stay; a run of other frames longer than ``longer_than`` is folded, but for
    ``keep_ends`` frames at each of its ends (a way into and out of a library
    readable on its own). A run never goes across one of ``breaks``.
    """
    count = len(filenames)
    keep = {i for i, filename in enumerate(filenames) if not is_library(filename)}
    keep.update(range(max(0, count - KEEP_INNERMOST), count))
    keep.add(marked)
    out: list[Folded] = []
    run: list[int] = []

    def flush() -> None:
        if len(run) > longer_than:
            inner = run[keep_ends : len(run) - keep_ends]
            out.extend([*run[:keep_ends], (inner[0], inner[-1]), *run[len(run) - keep_ends :]])
        else:
            out.extend(run)
        run.clear()

    for index in range(count):
        if index in breaks:
            flush()
        if index in keep:
            flush()
            out.append(index)
        else:
            run.append(index)
    flush()
    return out


def folded_line(filenames: Sequence[str], indent: str) -> str:
    """The one line that stands for a folded run: how many frames, in which packages."""
    packages = ", ".join(dict.fromkeys(package_of(filename) for filename in filenames))
    return f"{indent}  ... {len(filenames)} frames in {packages} ..."


# -- what an exception was raised from -------------------------------------------------------


def exception_chain(exception: BaseException | None) -> Iterator[BaseException]:
    """The exception, then what it was raised from or while handling, and so on.

    Follows ``__cause__``, else ``__context__``, as Python prints them; each
    exception once, so a chain that loops ends instead of hanging the report.
    """
    seen: set[int] = set()
    current = exception
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def stack_of(thread_id: int, depth: int) -> tuple[Frame, ...]:
    """A thread's current stack, innermost first, at most ``depth`` frames."""
    return stack_from(sys._current_frames().get(thread_id), depth)


def stack_from(frame: FrameType | None, depth: int) -> tuple[Frame, ...]:
    """The stack from ``frame`` outwards, innermost first, at most ``depth`` frames."""
    stack: list[Frame] = []
    while frame is not None and len(stack) < depth:
        code = frame.f_code
        stack.append((code.co_filename, frame.f_lineno or code.co_firstlineno, code.co_name))
        frame = frame.f_back
    return tuple(stack)


def format_stack(stack: Sequence[Frame], *, indent: str = "    ") -> str:
    """A stack (innermost first) for a terminal, outermost first, "> " on the line to fix.

    Runs of library frames (the event loop, a thread pool, the test runner) are
    folded whole, to one line naming their packages: unlike an await chain's,
    they are not the way to the blocking line, only what ran it.
    """
    site = stack_site(stack)
    frames = list(reversed(stack))
    blocking = list(stack).index(site.frame) if site else -1
    marked = len(frames) - 1 - blocking if blocking >= 0 else -1
    filenames = [frame[0] for frame in frames]
    lines = []
    for item in fold(filenames, marked=marked, longer_than=1, keep_ends=0):
        if isinstance(item, tuple):
            first, last = item
            lines.append(folded_line(filenames[first : last + 1], indent))
            continue
        filename, lineno, function = frames[item]
        mark = "> " if item == marked else "  "
        lines.append(f"{indent}{mark}{location(filename, lineno, function)}")
        if not is_library(filename):
            source = linecache.getline(filename, lineno).strip()
            if source:
                lines.append(f"{indent}      {source}")
    return "\n".join(lines)
