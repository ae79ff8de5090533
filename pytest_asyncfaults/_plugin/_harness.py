"""What runs around an async test that uses the plugin, on the test's own loop.

The test function is wrapped (whatever runs it: pytest-asyncio in strict or
auto mode, or anyio's plugin), so that starting the app, the end-of-test
checks and stopping the app all happen on the loop the test ran on, in the
same task. A leak (a task of the test still running when it ends) fails the
test with the await chains of what is left, then those tasks are cancelled
so the next test starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import re
import sys
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import httpx
import pytest

from .._app._runner import AppRunner
from .._exceptions import (
    AsyncFaultsError,
    AsyncFaultsWarning,
    ExpectationError,
    HangError,
    LifespanError,
    NotFoundError,
    ScenarioError,
)
from .._faults import Faults, FaultWindow, describe_toxic
from .._scenario._model import Scenario, judge_outcome, judge_stalls
from .._settings import Settings
from .._tasks import _detectors as detectors
from .._tasks._frames import describe_site, exception_chain, stack_site
from .._tasks._monitor import TaskMonitor, TaskRecord
from .._tasks._watchdog import LoopWatchdog, Stall
from .._timeline import FaultSpan, Mark, RequestSpan, StallSpan, TaskSpan, Timeline, write_timeline

ORIGIN_DEPTH = 1
"""Frames of creation history kept on each coroutine, for never-awaited reports.

One frame is the line that created the coroutine, which is the line to fix;
each further frame costs every coroutine the app creates (measured on a
trivial endpoint: 2% of throughput at 1, 19% at 4, 49% at 16)."""


async def describe_faults(faults: Faults) -> list[str]:
    """One line per proxy of the test: its toxics and its open connections."""
    lines = []
    for proxy in faults:
        toxics = await proxy.toxics()
        described = (
            ", ".join(f"{toxic.name} ({describe_toxic(toxic)})" for toxic in toxics) or "no toxic"
        )
        if not proxy.enabled:
            described = "DISABLED (connections refused); " + described
        try:
            opened = f"{(await proxy.read_stats()).open} open connection(s)"
        except AsyncFaultsError:
            opened = "connections not counted by this server"
        lines.append(f"{proxy.name} ({proxy.listen} -> {proxy.upstream}): {described}; {opened}")
    return lines


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


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _shorten(text: str, limit: int = 110) -> str:
    line = " ".join(_first_line(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@final
class Harness:
    """The plugin's part of one test: its monitor, its settings, its app, its scenario."""

    def __init__(
        self,
        monitor: TaskMonitor,
        settings: Settings,
        item: pytest.Item,
        faults: Faults | None = None,
    ) -> None:
        self.monitor = monitor
        self.settings = settings
        self.item = item
        self.faults = faults
        self.runner: AppRunner | None = None
        self.client: httpx.AsyncClient | None = None
        self.scenario: Scenario | None = None
        self.verdict = ChaosVerdict()
        self.timeline_dir: Path | None = None
        """Where the timeline of a failure goes; ``None``: none is written."""
        self.started_at = time.monotonic()
        self._watchdog: LoopWatchdog | None = None

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
                    self.verdict.fail(f"{type(exc).__name__}: {exc}")
                    if self.scenario is not None:
                        path = self._write_timeline(f"{type(exc).__name__}: {exc}", "")
                        if path is not None:
                            self.item.add_report_section("call", "asyncfaults timeline", str(path))
                raise
            path = self._write_timeline(report, self.verdict.reason)
            if path is not None:
                report += f"\n\nTimeline of this test: {path} (open it in a browser)"
            # The report is the message; our frames (and the exception chain) would
            # only bury it.
            pytest.fail(report, pytrace=False)

        return run

    async def _run(self, test: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> Any:
        settings = self.settings
        self.started_at = time.monotonic()
        watchdog = self._watchdog = self._start_watchdog()
        depth = sys.get_coroutine_origin_tracking_depth()
        if settings.never_awaited != "off":
            # Unawaited coroutines then say where they were created, not where
            # they happened to be collected.
            sys.set_coroutine_origin_tracking_depth(max(depth, ORIGIN_DEPTH))
        problems: list[tuple[str, str, str]] = []
        escaped: BaseException | None = None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    if self.runner is not None:
                        await self.runner.start()
                    async with contextlib.AsyncExitStack() as scenario_faults:
                        if self.scenario is not None:
                            await self._apply_scenario(self.scenario, scenario_faults)
                        result = await test(**kwargs)
                        if self.scenario is not None:
                            await self._check_expectations(self.scenario)
                    return result
                except BaseException as exc:
                    escaped = exc
                    raise
                finally:
                    if watchdog is not None:
                        watchdog.stop()
                    problems += await self._leaks()
                    self._release_frames(escaped)
                    gc.collect()  # unawaited coroutines and lost tasks show up now
                    problems += self._findings(caught, escaped, watchdog)
                    problems += await self._stop_app()
        finally:
            sys.set_coroutine_origin_tracking_depth(depth)
            raised = self._reemit(caught, escaped)
            self._conclude(problems, failed=escaped is not None)
            if raised is not None:
                raise raised

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
                        "call", "asyncfaults", f"also: {type(exc).__name__}: {exc}"
                    )
        return raised

    def _start_watchdog(self) -> LoopWatchdog | None:
        """The blocked-loop detector's watchdog, low enough for a scenario's ``max_stall_ms``."""
        thresholds = []
        if self.settings.blocked_loop != "off":
            thresholds.append(self.settings.blocked_loop_threshold)
        if self.scenario is not None and self.scenario.expect.max_stall_ms is not None:
            thresholds.append(self.scenario.expect.max_stall_ms / 1000)
        if not thresholds:
            return None
        watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold=min(thresholds))
        watchdog.start()
        return watchdog

    # -- the scenario ----------------------------------------------------------------------

    async def _apply_scenario(self, scenario: Scenario, stack: contextlib.AsyncExitStack) -> None:
        """Put the scenario's faults on, from now (the test body's start) until it is judged."""
        for planned in scenario.toxics:
            try:
                proxy = self.faults[planned.proxy] if self.faults is not None else None
            except NotFoundError:
                proxy = None
            if proxy is None:
                known = ", ".join(p.name for p in self.faults or ()) or "none"
                raise ScenarioError(
                    f"{scenario.source}: {planned.key}.proxy={planned.proxy!r} is not a proxy of "
                    f"this test: expected one of {known} (declare it in asyncfaults_proxies, or "
                    f"use the fixture that makes it: postgres_server, smtp_server)"
                )
            try:
                await stack.enter_async_context(proxy.apply(planned.spec))
            except AsyncFaultsError as exc:
                raise ScenarioError(f"{scenario.source}: {planned.key}: {exc}") from None

    async def _check_expectations(self, scenario: Scenario) -> None:
        expect = scenario.expect
        within = expect.settle if expect.settle is not None else self.settings.settle
        outcome = await self.monitor.settle(within)
        unmet = judge_outcome(expect, outcome)
        if self._watchdog is not None:
            unmet += judge_stalls(
                expect, [(stall.duration, stall_site(stall)) for stall in self._watchdog.stalls]
            )
        if not unmet:
            return
        error = ExpectationError(
            f"asyncfaults: scenario {scenario.name!r} ({scenario.source}): "
            f"{len(unmet)} expectation{'s' if len(unmet) != 1 else ''} not met\n"
            f"  faults: {scenario.describe_faults()}\n"
            f"  expected: {expect.describe()}\n\n" + "\n\n".join(item.detail for item in unmet)
        )
        error.short = "; ".join(item.short for item in unmet)
        raise error

    # -- end-of-test checks ----------------------------------------------------------------

    def _release_frames(self, escaped: BaseException | None) -> None:
        """Let go of what finished failures keep alive, so the collector can judge it.

        A failed background call's traceback holds its frames, and their locals
        (an unawaited coroutine, say) would outlive the test. The locals are
        dropped, the tracebacks themselves stay printable. The test's own
        exception is left alone: pytest still has to show it.
        """
        keep = {id(cause) for cause in exception_chain(escaped)}
        failures = [record.exception for record in self.monitor.records]
        failures += [log.exc_info[1] for log in self.monitor.error_logs if log.exc_info]
        for exc in failures:
            if exc is not None and id(exc) not in keep and exc.__traceback__ is not None:
                with contextlib.suppress(RuntimeError):  # a frame still running
                    traceback.clear_frames(exc.__traceback__)

    def _leak_policy(self) -> str:
        """The ``leaks`` setting, unless the scenario says ``no_leaks``: the same for the
        test's tasks and the lifespan's (after a settle, the lifespan's are the ones left)."""
        if self.scenario is not None and self.scenario.expect.no_leaks is not None:
            return "fail" if self.scenario.expect.no_leaks else "off"
        return self.settings.leaks

    async def _leaks(self) -> list[tuple[str, str, str]]:
        policy = self._leak_policy()
        stuck = await self.monitor.wait(0 if policy == "off" else self.settings.leak_grace)
        stuck = [
            record
            for record in stuck
            if not detectors.Finding("leaks", "", record.name, None).allowed_by(self.settings.allow)
        ]
        if not stuck:
            return []
        if policy == "off":
            await self.monitor.cancel(stuck)
            return []
        report = await self.monitor.hang_report(stuck, "still running when the test ended")
        count = len(stuck)
        short = f"leak: {count} task{'s' if count != 1 else ''} still running at the end"
        return [(policy, report, short)]

    def _findings(
        self,
        caught: list[warnings.WarningMessage],
        escaped: BaseException | None,
        watchdog: LoopWatchdog | None,
    ) -> list[tuple[str, str, str]]:
        monitor = self.monitor
        unretrieved = detectors.never_retrieved(monitor)
        found = [
            *unretrieved,
            *detectors.not_logged(monitor, escaped, [f.task_name or "" for f in unretrieved]),
            *detectors.swallowed_cancel(monitor),
            *detectors.never_awaited(
                caught,
                detectors.unawaited_coroutines() if self.settings.never_awaited != "off" else (),
            ),
            *detectors.lost(monitor),
            *detectors.abandoned(monitor),
        ]
        if watchdog is not None and self.settings.blocked_loop != "off":
            threshold = self.settings.blocked_loop_threshold
            found += detectors.blocked_loop(
                stall for stall in watchdog.stalls if stall.duration >= threshold
            )
        return self._policed(found)

    def _policed(self, found: list[detectors.Finding]) -> list[tuple[str, str, str]]:
        kept = []
        for finding in found:
            policy = (
                self._leak_policy()
                if finding.detector == "leaks"
                else getattr(self.settings, finding.detector)
            )
            if policy != "off" and not finding.allowed_by(self.settings.allow):
                kept.append((policy, detectors.report([finding]), str(finding)))
        return kept

    async def _stop_app(self) -> list[tuple[str, str, str]]:
        if self.client is not None:
            await self.client.aclose()
        if self.runner is None:
            return []
        await self.runner.stop()
        left = [
            record
            for record in self.monitor.records
            if record.role == "lifespan" and not record.done and not record.runner
        ]
        if not left:
            return []
        found = self._policed(detectors.lifespan_leaks(left))
        await self.monitor.cancel(left)
        return found

    def _conclude(self, problems: list[tuple[str, str, str]], *, failed: bool) -> None:
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
        timeline = timeline_of(
            self.monitor,
            journal=self.faults.journal if self.faults is not None else [],
            stalls=self._watchdog.stalls if self._watchdog is not None else [],
            started_at=self.started_at,
            title=self.item.nodeid,
            summary="\n".join(
                dict.fromkeys(line for line in (_first_line(report), reason) if line)
            ),
            scenario=self.scenario,
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


def _machinery(record: TaskRecord) -> bool:
    """A task made by libraries alone (the lifespan's runner, our own clean-up) that ended
    well: noise in a picture of what the app did."""
    site = stack_site(record.stack)
    return record.state in ("completed", "cancelled") and (site is None or not site.is_user)


def stall_site(stall: Stall) -> str:
    return describe_site(stall.blocking_frame)


def timeline_of(
    monitor: TaskMonitor,
    *,
    journal: Sequence[FaultWindow],
    stalls: Sequence[Stall],
    started_at: float,
    title: str,
    summary: str,
    scenario: Scenario | None = None,
) -> Timeline:
    """What the monitor, the faults and the watchdog saw, on one time axis from the test's start."""
    now = time.monotonic()

    def at(moment: float | None) -> float | None:
        return None if moment is None else max(0.0, moment - started_at)

    requests: dict[int, RequestSpan] = {}
    tasks = []
    for record in monitor.records:
        request = record.request
        if request is not None and request.id not in requests:
            requests[request.id] = RequestSpan(
                label=f"{request} #{request.id}",
                start=at(request.started_at) or 0.0,
                response_at=at(request.response_complete_at),
                end=at(request.ended_at),
                status=request.status,
            )
        hung = record.hung_at is not None
        if record.runner or (not record.request_call and not hung and _machinery(record)):
            continue
        exception = None if hung else record.exception
        tasks.append(
            TaskSpan(
                label=record.name,
                detail=record.describe(),
                start=at(record.created_at) or 0.0,
                end=at(record.hung_at) if hung else at(record.finished_at),
                state="pending" if hung else record.state,
                error="" if exception is None else f"{type(exception).__name__}: {exception}",
                request=None if request is None else f"{request} #{request.id}",
                chain=record.hang_chain,
            )
        )
    end = now - started_at
    return Timeline(
        title=title,
        summary=summary,
        end=end,
        requests=tuple(requests.values()),
        tasks=tuple(tasks),
        faults=tuple(
            FaultSpan(
                proxy=window.proxy,
                label=window.description,
                start=at(window.starts_at) or 0.0,
                end=at(window.ends_at),
            )
            for window in journal
        ),
        stalls=tuple(
            StallSpan(
                start=at(stall.started_at) or 0.0, duration=stall.duration, site=stall_site(stall)
            )
            for stall in stalls
        ),
        marks=tuple(  # a deadline the work beat is not part of the story
            Mark(at=at(began + within) or 0.0, label=f"settle deadline ({within:g} s)")
            for began, within in monitor.deadlines
            if began + within <= now
        ),
        scenario="" if scenario is None else scenario.name,
    )
