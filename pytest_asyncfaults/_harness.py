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
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, final

import httpx
import pytest

from . import _detectors as detectors
from ._app import AppRunner, LifespanError
from ._exceptions import AsyncFaultsError
from ._faults import Faults
from ._monitor import HangError, TaskMonitor
from ._settings import Settings
from ._watchdog import LoopWatchdog

ORIGIN_DEPTH = 1
"""Frames of creation history kept on each coroutine, for never-awaited reports.

One frame is the line that created the coroutine, which is the line to fix;
each further frame costs every coroutine the app creates (measured on a
trivial endpoint: 2% of throughput at 1, 19% at 4, 49% at 16)."""


class AsyncFaultsWarning(UserWarning):
    """A check of pytest-asyncfaults set to "warn" found something."""


async def describe_faults(faults: Faults) -> list[str]:
    """One line per proxy of the test: its toxics and its open connections."""
    lines = []
    for proxy in faults:
        toxics = await proxy.toxics()
        described = (
            ", ".join(
                f"{toxic.name} ({toxic.type} {toxic.stream}"
                + "".join(f" {key}={value}" for key, value in toxic.attributes.items())
                + (f" toxicity={toxic.toxicity:g}" if toxic.toxicity != 1.0 else "")
                + ")"
                for toxic in toxics
            )
            or "no toxic"
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
class Harness:
    """The plugin's part of one test: its monitor, its settings, its app."""

    def __init__(self, monitor: TaskMonitor, settings: Settings, item: pytest.Item) -> None:
        self.monitor = monitor
        self.settings = settings
        self.item = item
        self.runner: AppRunner | None = None
        self.client: httpx.AsyncClient | None = None

    def wrap(self, test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(test)
        async def run(**kwargs: Any) -> Any:
            try:
                return await self._run(test, kwargs)
            except (HangError, LifespanError) as exc:
                report = str(exc)
            # The report is the message; our frames (and the exception chain) would
            # only bury it.
            pytest.fail(report, pytrace=False)

        return run

    async def _run(self, test: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> Any:
        settings = self.settings
        watchdog = None
        if settings.blocked_loop != "off":
            watchdog = LoopWatchdog(
                asyncio.get_running_loop(), threshold=settings.blocked_loop_threshold
            )
            watchdog.start()
        depth = sys.get_coroutine_origin_tracking_depth()
        if settings.never_awaited != "off":
            # Unawaited coroutines then say where they were created, not where
            # they happened to be collected.
            sys.set_coroutine_origin_tracking_depth(max(depth, ORIGIN_DEPTH))
        problems: list[tuple[str, str]] = []
        escaped: BaseException | None = None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    if self.runner is not None:
                        await self.runner.start()
                    return await test(**kwargs)
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
            for warning in caught:
                if not detectors.never_awaited([warning]):
                    warnings.warn_explicit(
                        warning.message, warning.category, warning.filename, warning.lineno
                    )
            self._conclude(problems, failed=escaped is not None)

    def _release_frames(self, escaped: BaseException | None) -> None:
        """Let go of what finished failures keep alive, so the collector can judge it.

        A failed background call's traceback holds its frames, and their locals
        (an unawaited coroutine, say) would outlive the test. The locals are
        dropped, the tracebacks themselves stay printable. The test's own
        exception is left alone: pytest still has to show it.
        """
        keep: set[int] = set()
        cause = escaped
        while cause is not None and id(cause) not in keep:
            keep.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        failures = [record.exception for record in self.monitor.records]
        failures += [log.exc_info[1] for log in self.monitor.error_logs if log.exc_info]
        for exc in failures:
            if exc is not None and id(exc) not in keep and exc.__traceback__ is not None:
                with contextlib.suppress(RuntimeError):  # a frame still running
                    traceback.clear_frames(exc.__traceback__)

    async def _leaks(self) -> list[tuple[str, str]]:
        policy = self.settings.leaks
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
        return [(policy, report)]

    def _findings(
        self,
        caught: list[warnings.WarningMessage],
        escaped: BaseException | None,
        watchdog: LoopWatchdog | None,
    ) -> list[tuple[str, str]]:
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
        if watchdog is not None:
            found += detectors.blocked_loop(watchdog.stalls)
        return self._policed(found)

    def _policed(self, found: list[detectors.Finding]) -> list[tuple[str, str]]:
        kept = []
        for finding in found:
            policy = getattr(self.settings, finding.detector)
            if policy != "off" and not finding.allowed_by(self.settings.allow):
                kept.append((policy, detectors.report([finding])))
        return kept

    async def _stop_app(self) -> list[tuple[str, str]]:
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

    def _conclude(self, problems: list[tuple[str, str]], *, failed: bool) -> None:
        if not problems:
            return
        if failed:
            # The failure already says what went wrong; these go beside it.
            for _, text in problems:
                self.item.add_report_section("call", "asyncfaults", text)
            return
        for policy, text in problems:
            if policy == "warn":
                warnings.warn(AsyncFaultsWarning(text), stacklevel=1)
        fails = [text for policy, text in problems if policy == "fail"]
        if fails:
            raise HangError("\n\n".join(fails))
