"""One run of an app under faults, without pytest: what the plugin and ``repro`` share.

A test that uses the plugin and an ``asyncfaults repro`` command do the same
thing around the app: watch its loop, put a scenario's faults on, let its
background work settle, judge what became of it against the scenario's
expectations and the detectors, and draw the timeline of a failure. ``Run``
does each of these once, so the two cannot drift apart (they used to: their
watchdogs had different thresholds). The pytest harness adds what only pytest
has (the test function, warnings filters, report sections); ``repro`` adds
the command line's request and printing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import Final, final

from ._exceptions import AsyncFaultsError, ExpectationError, NotFoundError, ScenarioError
from ._faults import Faults, FaultWindow, describe_toxic
from ._frames import describe_exception, describe_site, exception_chain, stack_site
from ._scenario._judge import Unmet, judge_outcome, judge_stalls
from ._scenario._model import Expectations, Scenario
from ._settings import LeakPolicy, Settings
from ._tasks import _detectors as detectors
from ._tasks._allow import allowed
from ._tasks._monitor import TaskMonitor, TaskRecord
from ._tasks._outcome import Outcome
from ._tasks._threads import ThreadWatch, release_default_executor
from ._tasks._watchdog import LoopWatchdog, Stall
from ._timeline import (
    FaultSpan,
    Mark,
    ProtocolMark,
    RequestSpan,
    StallSpan,
    TaskSpan,
    Timeline,
)

Problem = tuple[LeakPolicy, str, str]
"""What a check found: its policy (fail or warn), the full report, a few words of it."""


EVENTS_BOUND: Final = 2.0
"""Seconds to read the protocol events of every proxy for the timeline of a failure."""
PHASES_SHOWN: Final = 8
"""Connections of one proxy whose protocol phase a report names (held ones first)."""


async def describe_faults(faults: Faults) -> list[str]:
    """One line per proxy of the run: its toxics and its open connections; then, for the
    connections a protocol toxic reads, where each stands ("postgres: connection 3 held in
    authentication"), held ones first."""
    lines = []
    for proxy in faults:
        toxics = await proxy.toxics()
        described = (
            ", ".join(f"{toxic.name} ({describe_toxic(toxic)})" for toxic in toxics) or "no toxic"
        )
        if not proxy.enabled:
            described = "DISABLED (connections refused); " + described
        phases: list[tuple[int, str]] = []
        try:
            stats = await proxy.read_stats()
            opened = f"{stats.open} open connection(s)"
            phases = sorted(stats.phases.items(), key=lambda item: (item[1][:4] != "held", item))
        except AsyncFaultsError:
            opened = "connections not counted by this server"
        lines.append(f"{proxy.name} ({proxy.listen} -> {proxy.upstream}): {described}; {opened}")
        lines.extend(
            f"{proxy.name}: connection {number} {phase}" for number, phase in phases[:PHASES_SHOWN]
        )
        if len(phases) > PHASES_SHOWN:
            lines.append(f"{proxy.name}: ... and {len(phases) - PHASES_SHOWN} more connection(s)")
    return lines


def stall_site(stall: Stall) -> str:
    if stall.busy:
        return "a busy turn of the loop (many callbacks ran, none held it)"
    return describe_site(stall.blocking_frame)


@final
class Run:
    """The app's run under faults: its monitor, settings, faults, scenario and watchdog."""

    def __init__(
        self,
        monitor: TaskMonitor,
        settings: Settings,
        faults: Faults | None = None,
        scenario: Scenario | None = None,
    ) -> None:
        self.monitor = monitor
        self.settings = settings
        self.faults = faults
        self.scenario = scenario
        self.watchdog: LoopWatchdog | None = None
        self.thread_watch: ThreadWatch | None = None
        self.started_at = time.monotonic()
        self.protocol: list[ProtocolMark] = []
        """What the proxies' protocol toxics saw and did during the run (for the timeline)."""

    # -- while it runs ---------------------------------------------------------------------

    def start_watchdog(
        self, *, interrupt_at: float | None = None, what: str | None = None
    ) -> LoopWatchdog | None:
        """The blocked-loop detector's watchdog, low enough for a scenario's ``max_stall_ms``;
        past ``interrupt_at`` (``what``: the test's deadline) it frees a blocked loop, and so
        at the nearer bounds of the waits under way (then it runs even with the detector off).
        """
        thresholds = []
        if self.settings.blocked_loop != "off" or interrupt_at is not None:
            thresholds.append(self.settings.blocked_loop_threshold)
        if self.scenario is not None and self.scenario.expect.max_stall_ms is not None:
            thresholds.append(self.scenario.expect.max_stall_ms / 1000)
        if not thresholds:
            return None
        self.watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold=min(thresholds))
        self.watchdog.interrupt_at = interrupt_at
        self.watchdog.interrupt_what = (
            what or f"the test's deadline ({self.settings.timeout:g} s, the timeout setting)"
        )
        self.watchdog.start()
        return self.watchdog

    def stop_watchdog(self) -> None:
        """Stop the loop's watchdog and the thread watch (idempotent)."""
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.thread_watch is not None:
            self.thread_watch.stop()

    @property
    def stalls(self) -> list[Stall]:
        return [] if self.watchdog is None else list(self.watchdog.stalls)

    async def apply_scenario(self, stack: contextlib.AsyncExitStack) -> None:
        """Put the scenario's faults on, from now until ``stack`` closes."""
        scenario = self.scenario
        if scenario is None:
            return
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

    # -- judging ---------------------------------------------------------------------------

    def unmet(self, expect: Expectations, outcome: Outcome) -> list[Unmet]:
        """The expectations ``outcome`` and the loop's stalls did not meet."""
        unmet = judge_outcome(expect, outcome)
        if self.watchdog is not None:
            unmet += judge_stalls(
                expect,
                [(stall.own, stall_site(stall)) for stall in self.watchdog.stalls_so_far()],
            )
        return unmet

    async def check_expectations(self) -> None:
        """Settle the background work and judge it against the scenario's expectations."""
        scenario = self.scenario
        if scenario is None:
            return
        expect = scenario.expect
        within = expect.settle if expect.settle is not None else self.settings.settle
        unmet = self.unmet(expect, await self.monitor.settle(within))
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

    def release_frames(self, escaped: BaseException | None) -> None:
        """Let go of what finished failures keep alive, so the collector can judge it.

        A failed background call's traceback holds its frames, and their locals
        (an unawaited coroutine, say) would outlive the run. The locals are
        dropped, the tracebacks themselves stay printable. The run's own
        exception is left alone: it still has to be shown.
        """
        keep = {id(cause) for cause in exception_chain(escaped)}
        failures = [record.exception for record in self.monitor.records]
        failures += [log.exc_info[1] for log in self.monitor.error_logs if log.exc_info]
        for exc in failures:
            if exc is not None and id(exc) not in keep and exc.__traceback__ is not None:
                with contextlib.suppress(RuntimeError):  # a frame still running
                    traceback.clear_frames(exc.__traceback__)

    def leak_policy(self) -> LeakPolicy:
        """The ``leaks`` setting, unless the scenario says ``no_leaks``: the same for the
        run's tasks and the lifespan's (after a settle, the lifespan's are the ones left)."""
        if self.scenario is not None and self.scenario.expect.no_leaks is not None:
            return "fail" if self.scenario.expect.no_leaks else "off"
        return self.settings.leaks

    async def leaks(self) -> list[Problem]:
        """Tasks still running at the end; cancelled either way, reported unless allowed."""
        policy = self.leak_policy()
        stuck = await self.monitor.wait(0 if policy == "off" else self.settings.leak_grace)
        stuck = [
            record
            for record in stuck
            if not allowed(self.settings.allow, record.name, record.stack)
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

    def findings(
        self, caught: Sequence[warnings.WarningMessage], escaped: BaseException | None
    ) -> list[Problem]:
        """What the detectors found in the run, under the settings' policies."""
        monitor = self.monitor
        unretrieved = detectors.never_retrieved(monitor)
        found = [
            *unretrieved,
            *detectors.not_logged(monitor, escaped, [f.task_name or "" for f in unretrieved]),
            *detectors.swallowed_cancel(monitor),
            *detectors.swallowed_timeouts(monitor),
            *detectors.never_awaited(
                caught,
                detectors.unawaited_coroutines() if self.settings.never_awaited != "off" else (),
            ),
            *detectors.lost(monitor),
            *detectors.abandoned(monitor),
        ]
        if self.watchdog is not None and self.settings.blocked_loop != "off":
            found += detectors.blocked_loop(
                self.watchdog.stalls_so_far(), self.settings.blocked_loop_threshold
            )
        return self.policed(found)

    def untouched_faults(self) -> list[Problem]:
        """Faults no connection went through while they were on: the app is not pointed at
        the proxy (configured before the environment was set, or given the server's own
        address), and a test of that fault proves nothing."""
        policy = self.settings.untouched_faults
        if policy == "off" or self.faults is None:
            return []
        found: list[Problem] = []
        for window in self.faults.journal:
            if window.connections != 0:
                continue
            kind = window.description.split(" ", 1)[0]
            if window.description.startswith("timeout ") and "timeout=0" in window.description:
                kind = "blackhole"
            text = (
                f"asyncfaults: {window.proxy}: {kind} on, 0 connections: is the "
                f"app pointed at faults.{window.proxy} ({window.listen})? No connection went "
                f"through the proxy while the fault ({window.description}) was on, so it tested "
                f"nothing (setting untouched_faults)"
            )
            found.append((policy, text, f"{window.proxy}: {kind} on, 0 connections"))
        return found

    async def cancel_spared(self) -> bool:
        """Cancel, quietly and bounded, what is still running that the test was not asked
        to wait for: what ``allow`` spared, and what a library started for a request whose
        work the harness cancelled (asyncpg, when a query's task is cancelled, sends
        PostgreSQL's CancelRequest over a new connection, and that task holds the query's
        connection while it runs: a fault can keep it running past the test). The next
        test starts clean, no task is closed by the loop before its first step, and what
        such a task held is let go while the loop can still close it. Whether anything was
        cancelled."""
        current = asyncio.current_task()
        records = self.monitor.records
        killed = {
            id(record.request)
            for record in records
            if record.cancelled_by_harness and record.request is not None
        }
        spared = [
            record
            for record in records
            if not record.done
            and not record.runner
            and not record.abandoned
            and record.task is not current
            and (
                allowed(self.settings.allow, record.name, record.stack)
                or (
                    record.request is not None
                    and id(record.request) in killed
                    and self.monitor.library_owned(record)
                )
            )
        ]
        if spared:
            await self.monitor.cancel(spared)
        return bool(spared)

    def watch_threads(self) -> None:
        """From now on, note the threads started, for ``threads_left`` (off: not at all)."""
        if self.settings.threads != "off":
            self.thread_watch = ThreadWatch().start()

    async def threads_left(self) -> list[Problem]:
        """Threads started since ``watch_threads`` still running once the app stopped (they
        get the leak grace to end); the watch ends here. A default executor stuck in the
        app's code is let go of whatever the detector's policy: the loop's close must not
        wait on it."""
        watch, self.thread_watch = self.thread_watch, None
        left = []
        if watch is not None:
            try:
                left = await watch.left(self.settings.leak_grace)
            finally:
                watch.stop()
        release_default_executor(asyncio.get_running_loop())
        return self.policed(detectors.threads(left))

    def lifespan_leaks(self) -> tuple[list[TaskRecord], list[Problem]]:
        """Tasks the lifespan started and left running after the app stopped."""
        left = [
            record
            for record in self.monitor.records
            if record.role == "lifespan" and not record.done and not record.runner
        ]
        return left, self.policed(detectors.lifespan_leaks(left)) if left else []

    def policed(self, found: list[detectors.Finding]) -> list[Problem]:
        kept: list[Problem] = []
        for finding in found:
            policy: LeakPolicy = (
                self.leak_policy()
                if finding.detector == "leaks"
                else getattr(self.settings, finding.detector)
            )
            if policy != "off" and not finding.allowed_by(self.settings.allow):
                kept.append((policy, detectors.report([finding]), str(finding)))
        return kept

    # -- the picture -----------------------------------------------------------------------

    async def read_protocol_events(self) -> None:
        """Fetch what each proxy's protocol toxics noted since the run started (bounded; a
        server without them, a real Toxiproxy, has none to give)."""
        if self.faults is None:
            return
        marks: list[ProtocolMark] = []
        with contextlib.suppress(AsyncFaultsError, TimeoutError):
            async with asyncio.timeout(EVENTS_BOUND):
                for proxy in self.faults:
                    with contextlib.suppress(AsyncFaultsError):
                        for event in await proxy.protocol_events():
                            if event.at >= self.started_at:
                                marks.append(
                                    ProtocolMark(
                                        proxy=proxy.name,
                                        connection=event.connection,
                                        at=event.at - self.started_at,
                                        text=event.text,
                                        injected=event.injected,
                                        repeats=event.repeats,
                                        until=event.until - self.started_at,
                                    )
                                )
        self.protocol = sorted(marks, key=lambda mark: mark.at)

    def timeline(self, *, title: str, summary: str) -> Timeline:
        return timeline_of(
            self.monitor,
            journal=self.faults.journal if self.faults is not None else [],
            stalls=self.stalls,
            started_at=self.started_at,
            title=title,
            summary=summary,
            scenario=self.scenario,
            protocol=self.protocol,
        )


def _machinery(record: TaskRecord) -> bool:
    """A task made by libraries alone (the lifespan's runner, our own clean-up) that ended
    well: noise in a picture of what the app did."""
    site = stack_site(record.stack)
    return record.state in ("completed", "cancelled") and (site is None or not site.is_user)


def timeline_of(
    monitor: TaskMonitor,
    *,
    journal: Sequence[FaultWindow],
    stalls: Sequence[Stall],
    started_at: float,
    title: str,
    summary: str,
    scenario: Scenario | None = None,
    protocol: Sequence[ProtocolMark] = (),
) -> Timeline:
    """What the monitor, the faults and the watchdog saw, on one time axis from the start."""
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
                error="" if exception is None else describe_exception(exception),
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
        protocol=tuple(protocol),
    )
