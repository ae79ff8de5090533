"""What the detectors cost an app that is not misbehaving.

A detector that is on for every test must be close to free. Measured today:

- ``requests``: requests per second through ``app_client`` on a trivial
  endpoint with every detector's per-request machinery on (the loop
  watchdog, coroutine origin tracking, the gather hook) against all of them
  off (the task monitor alone, which ``app_client`` always has); the target
  is at least 0.8 of the throughput without them. The checks run when a test
  ends are per test, not per request, and are not in this figure.
- ``task_creation``: microseconds to create and await a trivial task, with
  the monitor and the detectors on, against plain asyncio (reported, no
  target).
- ``watchdog_idle``: the loop watchdog's own CPU use on an idle loop (a loop
  that only awaits ``asyncio.sleep``): the heartbeat on the loop plus the
  watchdog thread's wake-ups. Process CPU time with the watchdog on, minus
  the same run with it off, over wall time; the target is under 1% of a core.

On and off run in alternating rounds (so background load hits both alike);
the figure is the median over rounds. Each measurement is a function
returning ``{"name": ..., <figures>..., "targets": {name: {"measured",
"target", "op", "passed"}}}``; ``main`` runs the list ``MEASUREMENTS`` and
assembles one JSON object. Exits 1 when a target is missed, 2 when the
benchmark failed. ``--quick`` is a ~2 s smoke run that never fails on
targets.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pytest_asyncfaults import TaskMonitor
from pytest_asyncfaults._app._runner import AppRunner, make_client
from pytest_asyncfaults._plugin._harness import ORIGIN_DEPTH
from pytest_asyncfaults._tasks._watchdog import LoopWatchdog

TARGET_REQUEST_RATIO = 0.8
"""Throughput with the detectors on, over throughput with them off."""
TARGET_WATCHDOG_IDLE_CPU_SHARE = 0.01
"""Extra CPU seconds per wall second: 1% of one core."""
THRESHOLD = 0.1
"""The watchdog's default: its heartbeat and its thread wake every 25 ms."""
IDLE_TICK = 0.05
"""How often the idle loop's only task wakes up: idle, but not asleep for good."""

Measurement = Callable[[bool], dict[str, Any]]
"""Takes ``quick``; returns the measurement's figures and its "targets"."""


def _target(measured: float, target: float, op: str) -> dict[str, Any]:
    passed = measured < target if op == "<" else measured >= target
    return {"measured": measured, "target": target, "op": op, "passed": passed}


async def _idle(seconds: float, watched: bool) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, stalls) of a loop doing nothing for ``seconds``."""
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold=THRESHOLD) if watched else None
    cpu, wall = time.process_time(), time.monotonic()
    if watchdog is not None:
        watchdog.start()
    deadline = wall + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(IDLE_TICK)
    if watchdog is not None:
        watchdog.stop()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return cpu, wall, len(watchdog.stalls) if watchdog is not None else 0


def measure_watchdog_idle(quick: bool) -> dict[str, Any]:
    rounds, seconds = (2, 0.5) if quick else (4, 3.0)
    shares: list[float] = []
    on_cpu: list[float] = []
    off_cpu: list[float] = []
    stalls = 0
    for index in range(rounds):
        results: dict[bool, tuple[float, float, int]] = {}
        for watched in (True, False) if index % 2 == 0 else (False, True):
            results[watched] = asyncio.run(_idle(seconds, watched))
        (cpu_on, wall_on, stalled), (cpu_off, wall_off, _) = results[True], results[False]
        stalls += stalled
        on_cpu.append(cpu_on / wall_on)
        off_cpu.append(cpu_off / wall_off)
        shares.append(cpu_on / wall_on - cpu_off / wall_off)
    share = round(statistics.median(shares), 5)
    return {
        "name": "watchdog_idle",
        "watchdog_idle_cpu_share": share,
        "cpu_share_on": round(statistics.median(on_cpu), 5),
        "cpu_share_off": round(statistics.median(off_cpu), 5),
        "share_per_round": [round(value, 5) for value in shares],
        "stalls_seen": stalls,
        "setup": {
            "rounds": rounds,
            "seconds_per_run": seconds,
            "threshold_s": THRESHOLD,
            "idle_tick_s": IDLE_TICK,
        },
        "targets": {
            "watchdog_idle_cpu_share": _target(share, TARGET_WATCHDOG_IDLE_CPU_SHARE, "<"),
        },
    }


class _Detectors:
    """The per-request part of the detectors, as the harness turns it on for a test."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watchdog = LoopWatchdog(loop, threshold=THRESHOLD)
        self._depth = sys.get_coroutine_origin_tracking_depth()

    def __enter__(self) -> _Detectors:
        self._watchdog.start()
        sys.set_coroutine_origin_tracking_depth(ORIGIN_DEPTH)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.set_coroutine_origin_tracking_depth(self._depth)
        self._watchdog.stop()


async def _ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _requests(rounds: int, count: int) -> dict[str, list[float]]:
    app = Starlette(routes=[Route("/ping", _ping)])
    monitor = TaskMonitor().install()
    results: dict[str, list[float]] = {"on": [], "off": []}
    try:
        runner = AppRunner(app, monitor, startup_timeout=10, shutdown_timeout=10)
        client = make_client(runner)
        loop = asyncio.get_running_loop()

        async def rate() -> float:
            gc.collect()
            started = time.perf_counter()
            for _ in range(count):
                await client.get("/ping")
            return count / (time.perf_counter() - started)

        await rate()  # warm-up
        for index in range(rounds):
            for mode in ("on", "off") if index % 2 == 0 else ("off", "on"):
                if mode == "on":
                    with _Detectors(loop):
                        results[mode].append(await rate())
                else:
                    results[mode].append(await rate())
                await monitor.wait(5)
                monitor.records.clear()
        await client.aclose()
        await runner.stop()
    finally:
        monitor.uninstall()
    return results


def measure_requests(quick: bool) -> dict[str, Any]:
    rounds, count = (2, 100) if quick else (30, 300)
    results = asyncio.run(_requests(rounds, count))
    ratios = [on / off for on, off in zip(results["on"], results["off"], strict=True)]
    ratio = statistics.median(ratios)
    return {
        "name": "requests",
        "requests_per_second": {
            mode: round(statistics.median(values), 1) for mode, values in results.items()
        },
        "ratio_with_detectors": round(ratio, 3),
        "targets": {
            "requests_ratio_with_detectors": _target(round(ratio, 3), TARGET_REQUEST_RATIO, ">=")
        },
    }


async def _create_and_await(count: int) -> float:
    async def nothing() -> None:
        return None

    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for _ in range(count):
        await loop.create_task(nothing())
    return (time.perf_counter() - started) / count * 1e6


async def _task_costs(rounds: int, count: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"plain": [], "monitored": []}
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        results["plain"].append(await _create_and_await(count))
        monitor = TaskMonitor().install()
        try:
            with _Detectors(loop):
                results["monitored"].append(await _create_and_await(count))
        finally:
            monitor.uninstall()
    return results


def measure_task_creation(quick: bool) -> dict[str, Any]:
    rounds, count = (2, 1000) if quick else (10, 20000)
    results = asyncio.run(_task_costs(rounds, count))
    return {
        "name": "task_creation",
        "microseconds_per_task": {
            mode: round(statistics.median(values), 2) for mode, values in results.items()
        },
        "targets": {},
    }


MEASUREMENTS: list[Measurement] = [measure_requests, measure_task_creation, measure_watchdog_idle]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~2 s smoke run")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"benchmark": "detectors", "mode": "quick" if args.quick else "full"}
    targets: dict[str, Any] = {"enforced": not args.quick}
    try:
        for measurement in MEASUREMENTS:
            result = dict(measurement(args.quick))
            name = result.pop("name")
            targets.update(result.pop("targets", {}))
            report[name] = result
    except Exception as exc:  # reported as JSON: the caller parses stdout
        report["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(report, indent=2))
        return 2
    report["targets"] = targets
    passed = all(t["passed"] for key, t in targets.items() if key != "enforced")
    print(json.dumps(report, indent=2))
    return 0 if passed or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
