"""What runs around an async test that uses the plugin, on the test's own loop.

The test function is wrapped (whatever runs it: pytest-asyncio in strict or
auto mode, or anyio's plugin), so that starting the app, the end-of-test
checks and stopping the app all happen on the loop the test ran on, in the
same task. A leak (a task of the test still running when it ends) fails the
test with the await chains of what is left, then those tasks are cancelled
so the next test starts clean.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, final

import httpx
import pytest

from ._app import AppRunner, LifespanError
from ._exceptions import AsyncFaultsError
from ._faults import Faults
from ._monitor import HangError, TaskMonitor
from ._settings import Settings


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
            opened = f"{proxy.stats.open} open connection(s)"
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
        if self.runner is not None:
            await self.runner.start()
        body_failed = True
        try:
            result = await test(**kwargs)
            body_failed = False
            return result
        finally:
            try:
                await self._check_leaks(body_failed)
            finally:
                if self.client is not None:
                    await self.client.aclose()
                if self.runner is not None:
                    await self.runner.stop()

    async def _check_leaks(self, body_failed: bool) -> None:
        policy = self.settings.leaks
        stuck = await self.monitor.wait(0 if policy == "off" else self.settings.leak_grace)
        if not stuck:
            return
        if policy == "off":
            await self.monitor.cancel(stuck)
            return
        report = await self.monitor.hang_report(stuck, "still running when the test ended")
        if body_failed:
            # The failure already says what went wrong; the leak goes beside it.
            self.item.add_report_section("call", "asyncfaults", report)
        elif policy == "warn":
            warnings.warn(AsyncFaultsWarning(report), stacklevel=1)
        else:
            raise HangError(report)
