"""What runs around an async test that uses the plugin, on the test's own loop.

The test function is wrapped (whatever runs it: pytest-asyncio in strict or
auto mode, or anyio's plugin), so that starting the app, the end-of-test
checks and stopping the app all happen on the loop the test ran on, in the
same task. A leak (a task of the test still running when it ends) fails the
test with the await chains of what is left, then those tasks are cancelled
so the next test starts clean.

The run itself (watchdog, scenario faults, judging, detectors, timeline) is
``_run.Run``, which ``asyncfaults repro`` drives too; this module adds what
only pytest has: the test function, warnings filters, report sections.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import re
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

import pytest

from .._exceptions import (
    AsyncFaultsError,
    AsyncFaultsWarning,
    ExpectationError,
    HangError,
    LifespanError,
    ScenarioError,
)
from .._frames import describe_exception, raised_at
from .._run import Problem, Run
from .._tasks import _detectors as detectors
from .._tasks._awaitchain import await_chain, format_chain
from .._timeline import write_timeline
from ._keys import TIMEOUT_TIMER_KEY

if TYPE_CHECKING:
    import httpx

    from .._app._runner import AppRunner
    from .._faults import Faults
    from .._scenario._model import Scenario
    from .._settings import Settings
    from .._tasks._monitor import TaskMonitor

ORIGIN_DEPTH = 1
"""Frames of creation history kept on each coroutine, for never-awaited reports.

One frame is the line that created the coroutine, which is the line to fix;
each further frame costs every coroutine the app creates (measured on a
trivial endpoint: 2% of throughput at 1, 19% at 4, 49% at 16)."""


@final
@dataclass
class ChaosVerdict:
    """How a test ended, in a few words, for the scenario matrix."""

    passed: bool = True
    reason: str = ""
    timeline: Path | None = None

    def fail(self, reason: str) -> None:
        """Keep the first reason: what went wrong first explains the rest."""
        if self.passed:
            self.passed = False
            self.reason = _shorten(reason)


TIMEOUT_SPARE = 1.5
"""What the harness leaves of pytest-timeout's timer for its own report and clean-up."""


@final
class _Deadline:
    """The test timeout: past it, the await chain of the test's own task is taken (while it
    is still suspended where it hangs) and the task is cancelled, all from the loop itself,
    so a body that awaits forever ends with the line it waits on."""

    def __init__(self, seconds: float, what: str = "the test timeout") -> None:
        self.seconds = seconds
        self.what = what
        self.fired = False
        self.chain = ""
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> _Deadline:
        task = asyncio.current_task()
        if task is not None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self.seconds, self._fire, task)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def _fire(self, task: asyncio.Task[Any]) -> None:
        if task.done():
            return
        self.fired = True
        self.chain = format_chain(await_chain(task), indent="    ")
        task.cancel(msg=f"asyncfaults: {self.what} ({self.seconds:g} s)")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _shorten(text: str, limit: int = 110) -> str:
    line = " ".join(_first_line(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@final
class Harness:
    """The plugin's part of one test: its run, its pytest item, its app and client."""

    def __init__(
        self,
        monitor: TaskMonitor,
        settings: Settings,
        item: pytest.Item,
        faults: Faults | None = None,
        scenario: Scenario | None = None,
    ) -> None:
        self.run = Run(monitor, settings, faults, scenario)
        self.item = item
        self.runner: AppRunner | None = None
        self.client: httpx.AsyncClient | None = None
        self.verdict = ChaosVerdict()
        self.timeline_dir: Path | None = None
        """Where the timeline of a failure goes; ``None``: none is written."""

    @property
    def scenario(self) -> Scenario | None:
        return self.run.scenario

    def wrap(self, test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(test)
        async def run(**kwargs: Any) -> Any:
            try:
                return await self._run(test, kwargs)
            except (HangError, LifespanError, ExpectationError, ScenarioError) as exc:
                short = exc.short if isinstance(exc, HangError | ExpectationError) else ""
                self.verdict.fail(short or str(exc))
                report = str(exc)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    self.verdict.fail(describe_exception(exc))
                    if self.scenario is not None:
                        await self.run.read_protocol_events()
                        path = self._write_timeline(describe_exception(exc), "")
                        if path is not None:
                            self.item.add_report_section("call", "asyncfaults timeline", str(path))
                raise
            if self.timeline_dir is not None:
                await self.run.read_protocol_events()
            path = self._write_timeline(report, self.verdict.reason)
            if path is not None:
                report += f"\n\nTimeline of this test: {path} (open it in a browser)"
            # The report is the message; our frames (and the exception chain) would
            # only bury it.
            pytest.fail(report, pytrace=False)

        return run

    async def _run(self, test: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> Any:
        run = self.run
        run.started_at = time.monotonic()
        # Past the test's timeout, a blocked loop is interrupted where it blocks: the
        # deadline's own timer cannot fire while the loop does not turn.
        limit, what = self._test_limit()
        run.start_watchdog(
            interrupt_at=run.started_at + limit,
            what=f"the test's deadline ({limit:g} s, {what})",
        )
        run.watch_threads()
        depth = sys.get_coroutine_origin_tracking_depth()
        if run.settings.never_awaited != "off":
            # Unawaited coroutines then say where they were created, not where
            # they happened to be collected.
            sys.set_coroutine_origin_tracking_depth(max(depth, ORIGIN_DEPTH))
        problems: list[Problem] = []
        escaped: BaseException | None = None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    with _Deadline(limit, what) as deadline:
                        try:
                            if self.runner is not None:
                                await self.runner.start()
                            async with contextlib.AsyncExitStack() as scenario_faults:
                                await run.apply_scenario(scenario_faults)
                                result = await test(**kwargs)
                                await run.check_expectations()
                            return result
                        except asyncio.CancelledError:
                            if not deadline.fired:
                                raise
                            raise await self._timed_out(deadline) from None
                except BaseException as exc:
                    escaped = exc
                    raise
                finally:
                    # The watchdog runs on to the end, so that a block past the settle
                    # deadline or the lifespan's shutdown limit is interrupted too; what
                    # it found is judged before the shutdown, the test's own time.
                    try:
                        problems += await run.leaks()
                        run.release_frames(escaped)
                        gc.collect()  # unawaited coroutines and lost tasks show up now
                        problems += run.findings(caught, escaped)
                        problems += run.untouched_faults()
                        problems += await self._stop_app(escaped)
                        if await run.cancel_spared():
                            # What they held (the connection of a query the harness
                            # cancelled) goes now: its loop can still close it, and its
                            # ResourceWarning is this test's, said beside its failure.
                            gc.collect()
                        problems += await run.threads_left()
                    finally:
                        run.stop_watchdog()
        finally:
            sys.set_coroutine_origin_tracking_depth(depth)
            raised = self._reemit(caught, escaped)
            self._conclude(problems, failed=escaped is not None)
            if raised is not None:
                raise raised

    def _test_limit(self) -> tuple[float, str]:
        """The test's deadline from now, and what sets it: the ``timeout`` setting, or
        pytest-timeout's timer where that ends sooner (its report is a bare stack dump;
        this one, with the chains and the faults, must come first, with a moment to spare
        for the clean-up)."""
        limit = self.run.settings.timeout
        timer = self.item.stash.get(TIMEOUT_TIMER_KEY, None)
        if timer is not None:
            started, seconds = timer
            left = seconds - (time.monotonic() - started)
            within = round(max(left - TIMEOUT_SPARE, left / 2), 1)
            if within < limit:
                return within, f"the test timeout, inside pytest-timeout's {seconds:g} s"
        return limit, "the test timeout"

    def interrupted_by_the_app(self, exc: BaseException) -> str | None:
        """The report of a ``KeyboardInterrupt`` / ``SystemExit`` an app task raised, or
        ``None`` when no task of the test raised it (a real Ctrl-C ends the session).

        Such an exception leaves the event loop through the runner, skipping the
        test's own clean-up: the watchdog is stopped here, and the test's task is
        left for the runner to cancel when it closes the loop."""
        record = next(
            (
                record
                for record in self.run.monitor.records
                if record.done and record.exception is exc
            ),
            None,
        )
        if record is None:
            return None
        if (task := record.task) is not None:
            task.exception()  # reported here: not again as "never retrieved"
        self.run.stop_watchdog()
        report = (
            f"asyncfaults: {type(exc).__name__} raised in {record.describe()}\n"
            f"  raised at {raised_at(exc)}\n"
            f"  It left the event loop, so this test could not finish; the session goes "
            f"on. Raise an ordinary exception there, and let the caller decide what ends."
        )
        self.verdict.fail(f"{type(exc).__name__} raised in task {record.name!r}")
        return report

    async def _timed_out(self, deadline: _Deadline) -> HangError:
        """The test overran its timeout: where its own task was, and what else is pending."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # the deadline's cancel is spent; the clean-up must run
        why = f"the test did not end within {deadline.seconds:g} s ({deadline.what})"
        lines = [f"asyncfaults: {why}", "", "The test itself, outermost first:", deadline.chain]
        pending = self.run.monitor.pending()
        if pending:
            lines += [
                "",
                await self.run.monitor.hang_report(pending, "pending at the test timeout"),
            ]
        error = HangError("\n".join(lines))
        error.short = f"timeout: the test did not end within {deadline.seconds:g} s"
        return error

    def _reemit(
        self, caught: list[warnings.WarningMessage], escaped: BaseException | None
    ) -> Warning | None:
        """Pass on the warnings seen during the test (never-awaited ones are findings).

        Where the suite turns warnings into errors (``filterwarnings = error``), the
        first becomes the test's failure, unless the test already failed: then it
        goes beside that failure instead of hiding it (a hang report replaced by the
        ``ResourceWarning`` of the connection the hang abandoned).
        """
        raised: Warning | None = None
        for warning in caught:
            if detectors.never_awaited([warning]):
                continue
            try:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
            except Warning as exc:
                if escaped is None and raised is None:
                    raised = exc
                else:
                    self.item.add_report_section(
                        "call", "asyncfaults", f"also: {describe_exception(exc)}"
                    )
        return raised

    async def _stop_app(self, escaped: BaseException | None) -> list[Problem]:
        """Stop the app; a shutdown that fails after the test failed goes beside that
        failure (the test's own error, an ``assert_cleaned_up`` that saw a connection
        left, is what the user reads first), else it is the failure."""
        if self.client is not None:
            await self.client.aclose()
        if self.runner is None:
            return []
        try:
            await self.runner.stop()
        except AsyncFaultsError as exc:
            if escaped is None:
                raise
            self.item.add_report_section("call", "asyncfaults", str(exc))
        left, found = self.run.lifespan_leaks()
        if left:
            await self.run.monitor.cancel(left)
        return found

    def _conclude(self, problems: list[Problem], *, failed: bool) -> None:
        if not problems:
            return
        if failed:
            # The failure already says what went wrong; these go beside it.
            for _, text, _ in problems:
                self.item.add_report_section("call", "asyncfaults", text)
            return
        for policy, text, _ in problems:
            if policy == "warn":
                warnings.warn(AsyncFaultsWarning(text), stacklevel=1)
        fails = [(text, short) for policy, text, short in problems if policy == "fail"]
        if fails:
            error = HangError("\n\n".join(text for text, _ in fails))
            error.short = fails[0][1]
            raise error

    # -- the timeline of a failure ---------------------------------------------------------

    def _write_timeline(self, report: str, reason: str) -> Path | None:
        if self.timeline_dir is None:
            return None
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.item.nodeid).strip("_")[:150]
        timeline = self.run.timeline(
            title=self.item.nodeid,
            summary="\n".join(
                dict.fromkeys(line for line in (_first_line(report), reason) if line)
            ),
        )
        try:
            path = write_timeline(timeline, self.timeline_dir / f"{name}.html")
        except OSError as exc:
            self.item.add_report_section(
                "call", "asyncfaults", f"the timeline could not be written: {exc}"
            )
            return None
        self.verdict.timeline = path
        return path
