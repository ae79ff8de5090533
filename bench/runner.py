"""What serving the app like uvicorn costs, next to httpx's own ASGI transport.

``app_client`` runs each ASGI call as a task of its own, watched by the task
monitor, and returns the response as soon as its body is complete; plain
``httpx.ASGITransport`` awaits the whole call inline. The extra machinery
must not slow a test suite down noticeably: the target is at least 0.8 of
the plain transport's requests per second on a trivial endpoint.

A third client shows what part of the gap is the design and what part is
ours: ``task_per_call`` is the plain transport with the ASGI call moved into a
task of its own, taken after one turn of the loop, and nothing else (no
record, no read timeout, no uvicorn-like exchange): the floor of serving as
uvicorn does on this Python, which no tracking can beat.

All run on one loop in one process, the order rotating from round to round
(so background load hits each alike); rates are medians over rounds, and each
ratio is the median of the per-round ratios to the plain transport. Prints
one JSON object; exits 1 when the ratio misses its target, 2 when the
benchmark failed. ``--quick`` is a smoke run that never fails on the target.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pytest_asyncfaults import TaskMonitor
from pytest_asyncfaults._app._runner import AppRunner, make_client

TARGET_RATIO = 0.8


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


APP = Starlette(routes=[Route("/ping", ping)])


def task_per_call(app: Any) -> Any:
    """``app`` with each call run as a task of its own, awaited after one turn of the loop
    (by then a trivial endpoint has answered): the least serving like uvicorn costs.

    The task is made with ``asyncio.Task``, past the task monitor's hook on
    ``loop.create_task``: untracked, on purpose."""

    async def call(scope: Any, receive: Any, send: Any) -> None:
        task = asyncio.Task(app(scope, receive, send))
        await asyncio.sleep(0)
        await task

    return call


async def requests_per_second(client: httpx.AsyncClient, count: int) -> float:
    gc.collect()  # start each block clean: garbage left by the other client is not ours to pay
    started = time.perf_counter()
    for _ in range(count):
        response = await client.get("/ping")
        assert response.status_code == 200
    return count / (time.perf_counter() - started)


async def measure(rounds: int, per_round: int) -> dict[str, Any]:
    monitor = TaskMonitor().install()
    try:
        runner = AppRunner(APP, monitor, startup_timeout=10, shutdown_timeout=10)
        ours = make_client(runner)
        clients = {
            "app_client": ours,
            "asgi_transport": httpx.AsyncClient(
                transport=httpx.ASGITransport(app=APP), base_url="http://testserver"
            ),
            "task_per_call": httpx.AsyncClient(
                transport=httpx.ASGITransport(app=task_per_call(APP)),
                base_url="http://testserver",
            ),
        }
        results: dict[str, list[float]] = {name: [] for name in clients}
        for client in clients.values():  # warm-up
            await requests_per_second(client, 50)
        names = list(clients)
        for index in range(rounds):
            shift = index % len(names)
            order = names[shift:] + names[:shift]
            if index // len(names) % 2:
                order.reverse()
            for name in order:
                results[name].append(await requests_per_second(clients[name], per_round))
            await monitor.wait(5)  # the ASGI tails of our requests end
            monitor.records.clear()  # a long benchmark must not measure a growing list
        for client in clients.values():
            await client.aclose()
        await runner.stop()
    finally:
        monitor.uninstall()
    medians = {name: statistics.median(values) for name, values in results.items()}
    # Each round measures all back to back; the machine's speed drifts between
    # rounds, so a ratio is taken per round, then its median.
    plain = results["asgi_transport"]
    ratios = [ours / base for ours, base in zip(results["app_client"], plain, strict=True)]
    floor = [task / base for task, base in zip(results["task_per_call"], plain, strict=True)]
    return {
        "requests_per_second": {name: round(value, 1) for name, value in medians.items()},
        "ratio": round(statistics.median(ratios), 3),
        "ratio_per_round": [round(ratio, 3) for ratio in ratios],
        "floor_ratio": round(statistics.median(floor), 3),
        "setup": {
            "rounds": rounds,
            "requests_per_round": per_round,
            "endpoint": "GET /ping",
            "python": sys.version.split()[0],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    rounds, per_round = (2, 100) if args.quick else (40, 300)
    try:
        report = asyncio.run(asyncio.wait_for(measure(rounds, per_round), 300))
    except Exception as exc:  # reported as JSON: the caller parses stdout
        print(json.dumps({"benchmark": "runner", "error": f"{type(exc).__name__}: {exc}"}))
        return 2
    passed = report["ratio"] >= TARGET_RATIO
    report = {
        "benchmark": "runner",
        "mode": "quick" if args.quick else "full",
        **report,
        "targets": {
            "enforced": not args.quick,
            "ratio": {
                "measured": report["ratio"],
                "target": TARGET_RATIO,
                "op": ">=",
                "passed": passed,
            },
        },
    }
    print(json.dumps(report, indent=2))
    return 0 if passed or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
