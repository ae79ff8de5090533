"""What the task monitor costs at scale: settling 10,000 tasks, and reporting 10,000 stuck.

An app that fans work out (a batch of inserts, one task per row) must not
make the harness slow or turn its own bookkeeping into the app's blocked
loop. Measured today, with the monitor installed as ``tasks`` has it:

- ``settle_completed``: ``await tasks.settle()`` over 10,000 tasks that each
  sleep 10 ms, from the moment they are created, against plain asyncio's
  ``gather`` of the same tasks (the floor: the sleeps themselves). Target:
  within 1.5 s.
- ``report_stuck``: 10,000 tasks stuck on one line, settled with a 0.1 s
  deadline: the time the hang report takes beyond that deadline, its
  cancelling included, and its size (identical chains are one entry with a
  count). Target: within 1.5 s, under 20 kB.

Rounds alternate monitored and plain runs; figures are medians. Prints one
JSON object; exits 1 when a target is missed, 2 when the benchmark failed.
``--quick`` is a smaller smoke run that never fails on the targets.
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

from pytest_asyncfaults import HangError, TaskMonitor

TASKS = 10_000
SETTLE_TARGET = 1.5
REPORT_TARGET = 1.5
REPORT_SIZE_TARGET = 20_000


async def _work() -> None:
    await asyncio.sleep(0.01)


async def _stuck() -> None:
    await asyncio.Event().wait()


async def _plain(count: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(asyncio.create_task(_work()) for _ in range(count)))
    return time.perf_counter() - started


async def _settled(count: int) -> float:
    monitor = TaskMonitor().install()
    try:
        started = time.perf_counter()
        work = [asyncio.create_task(_work()) for _ in range(count)]
        outcome = await monitor.settle(30)
        assert all(task.done() for task in work)
        assert len(outcome) == count
        return time.perf_counter() - started
    finally:
        monitor.uninstall()


async def _reported(count: int, deadline: float) -> tuple[float, int]:
    monitor = TaskMonitor().install()
    try:
        stuck = [asyncio.create_task(_stuck()) for _ in range(count)]
        started = time.perf_counter()
        try:
            await monitor.settle(deadline)
        except HangError as exc:
            assert all(task.done() for task in stuck)  # the report cancelled them
            return time.perf_counter() - started - deadline, len(str(exc))
        raise RuntimeError("the stuck tasks settled")
    finally:
        monitor.uninstall()


def _round(coro: Any) -> Any:
    gc.collect()
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; targets not enforced")
    args = parser.parse_args(argv)
    count = 1_000 if args.quick else TASKS
    rounds = 1 if args.quick else 5
    try:
        plain, settled, reported, sizes = [], [], [], []
        for _ in range(rounds):
            plain.append(_round(_plain(count)))
            settled.append(_round(_settled(count)))
            took, size = _round(_reported(count, 0.1))
            reported.append(took)
            sizes.append(size)
    except Exception as exc:
        print(json.dumps({"benchmark": "scale", "error": f"{type(exc).__name__}: {exc}"}))
        return 2
    settle = statistics.median(settled)
    report_time = statistics.median(reported)
    size = max(sizes)
    targets: dict[str, Any] = {
        "enforced": not args.quick,
        "settle_completed_s": {
            "measured": round(settle, 3),
            "target": SETTLE_TARGET,
            "op": "<=",
            "passed": settle <= SETTLE_TARGET,
        },
        "report_stuck_s": {
            "measured": round(report_time, 3),
            "target": REPORT_TARGET,
            "op": "<=",
            "passed": report_time <= REPORT_TARGET,
        },
        "report_stuck_bytes": {
            "measured": size,
            "target": REPORT_SIZE_TARGET,
            "op": "<=",
            "passed": size <= REPORT_SIZE_TARGET,
        },
    }
    report = {
        "benchmark": "scale",
        "mode": "quick" if args.quick else "full",
        "tasks": count,
        "rounds": rounds,
        "settle_completed_s": round(settle, 3),
        "plain_gather_s": round(statistics.median(plain), 3),
        "report_stuck_s": round(report_time, 3),
        "report_stuck_bytes": size,
        "targets": targets,
    }
    print(json.dumps(report, indent=2))
    passed = all(t["passed"] for key, t in targets.items() if key != "enforced")
    return 0 if passed or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
