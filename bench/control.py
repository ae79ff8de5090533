"""How long a test waits to put a fault on and take it off, per backend.

Each ``async with proxy.latency(...)`` block costs one add and one remove.
A suite of chaos tests does thousands of them, so this is the price of the
control plane: through the in-process engine (a hop to its thread) against
the Toxiproxy HTTP API of ``asyncfaults serve`` (a request per call, as with
a real Toxiproxy, whose add + remove took 1.50 ms measured side by side on
this machine class on 2026-12-01). Both are measured in one run, interleaved
in rounds, through the same user API (``Proxy`` toxic scopes) on one asyncio
loop.

Prints one JSON object; exits 1 when a target is missed: add + remove p50 at
most ``IN_PROCESS_TARGET_MS`` in process and ``HTTP_TARGET_MS`` over HTTP
(Toxiproxy's own figure; a lost TCP_NODELAY once made it 48 ms); 2 when the
benchmark failed. ``--quick`` never fails on the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from pytest_asyncfaults import Engine, Faults
from pytest_asyncfaults._backends._base import ProxyHost
from pytest_asyncfaults._backends._process import start_serve_process
from pytest_asyncfaults._backends._toxiproxy import ToxiproxyHost

HTTP_TARGET_MS = 1.5
IN_PROCESS_TARGET_MS = 0.3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def add_remove_ms(host: ProxyHost[Any], count: int) -> list[float]:
    """Wall time of one toxic scope (add, then remove), ``count`` times."""
    faults = Faults(host, prefix="bench-")
    proxy = await faults.create("control", "127.0.0.1:9")
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            async with proxy.latency(100):
                pass
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        await faults.aclose()
    return samples


async def measure(rounds: int, per_round: int) -> dict[str, Any]:
    child = start_serve_process(seed=1)
    try:
        with Engine(seed=1) as engine, ToxiproxyHost(child.url) as http:
            hosts: dict[str, ProxyHost[Any]] = {"in_process": engine, "http_serve": http}
            samples: dict[str, list[float]] = {name: [] for name in hosts}
            for host in hosts.values():  # warm-up: connections, caches
                await add_remove_ms(host, 20)
            for index in range(rounds):
                order = list(hosts) if index % 2 == 0 else list(reversed(hosts))
                for name in order:
                    samples[name] += await add_remove_ms(hosts[name], per_round)
    finally:
        child.stop()
    report: dict[str, Any] = {
        name: {
            "add_remove_p50_ms": round(statistics.median(values), 4),
            "add_remove_p99_ms": round(percentile(values, 0.99), 4),
            "samples": len(values),
        }
        for name, values in samples.items()
    }
    report["ratio_http_to_in_process_p50"] = round(
        report["http_serve"]["add_remove_p50_ms"] / report["in_process"]["add_remove_p50_ms"], 2
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    rounds, per_round = (2, 20) if args.quick else (10, 100)
    try:
        report = asyncio.run(asyncio.wait_for(measure(rounds, per_round), 300))
    except Exception as exc:  # reported as JSON: the caller parses stdout
        print(json.dumps({"benchmark": "control", "error": f"{type(exc).__name__}: {exc}"}))
        return 2
    in_process = report["in_process"]["add_remove_p50_ms"]
    http = report["http_serve"]["add_remove_p50_ms"]
    targets = {
        "in_process_add_remove_p50_ms": {
            "measured": in_process,
            "target": IN_PROCESS_TARGET_MS,
            "op": "<=",
            "passed": in_process <= IN_PROCESS_TARGET_MS,
        },
        "http_add_remove_p50_ms": {
            "measured": http,
            "target": HTTP_TARGET_MS,
            "op": "<=",
            "passed": http <= HTTP_TARGET_MS,
        },
    }
    passed = all(target["passed"] for target in targets.values())
    report = {
        "benchmark": "control",
        "mode": "quick" if args.quick else "full",
        **report,
        "targets": {"enforced": not args.quick, "all_passed": passed, **targets},
    }
    print(json.dumps(report, indent=2))
    return 0 if passed or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
