"""``asyncfaults demo``: the fault proxy in front of a loopback service, fault by fault.

Each step prints what a client of the service saw; the numbers are measured,
not stated. It is also an end-to-end check a user can run in a second.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from .._backends._embedded import Engine
from .._faults import Faults, Proxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _round_trip(host: str, port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        received = b""
        while len(received) < len(payload):
            data = await reader.read(65536)
            if not data:
                break
            received += data
        return received
    finally:
        writer.close()


async def _timed(call: Callable[[], Awaitable[bytes]]) -> str:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(0.5):
            data = await call()
    except TimeoutError:
        return (
            f"TimeoutError after {time.perf_counter() - started:.2f} s (the client's own timeout)"
        )
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc} after {_ms(started)}"
    return f"received {data!r} after {_ms(started)}"


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.1f} ms"


async def _median_rtt(host: str, port: int, count: int = 200) -> float:
    reader, writer = await asyncio.open_connection(host, port)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(b"x" * 16)
            await reader.readexactly(16)
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    return statistics.median(samples)


async def _tour(engine: Engine) -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    service_port = server.sockets[0].getsockname()[1]
    faults = Faults(engine)
    try:
        proxy = await faults.create("service", f"127.0.0.1:{service_port}")
        await _steps(proxy, service_port)
    finally:
        await faults.aclose()
        server.close()
        await server.wait_closed()


async def _steps(proxy: Proxy, service_port: int) -> None:
    host, port = proxy.host, proxy.port
    print(f"service on 127.0.0.1:{service_port}, fault proxy {proxy.name!r} on {proxy.listen}")
    direct = await _median_rtt("127.0.0.1", service_port)
    proxied = await _median_rtt(host, port)
    print(f"  no fault          round trip median {direct:.3f} ms direct, {proxied:.3f} ms proxied")

    def call() -> Awaitable[bytes]:
        return _round_trip(host, port)

    async with proxy.latency(100):
        print(f"  latency 100 ms    {await _timed(call)}")
    async with proxy.bandwidth(10):  # 10 KB/s
        started = time.perf_counter()
        data = await _round_trip(host, port, b"x" * 2000)
        print(f"  bandwidth 10 KB/s 2000 bytes back after {_ms(started)}, {len(data)} bytes")
    async with proxy.blackhole():
        print(f"  blackhole         {await _timed(call)}")
    async with proxy.reset_peer():
        print(f"  reset_peer        {await _timed(call)}")
    async with proxy.limit_data(2):
        print(f"  limit_data 2      {await _timed(call)}")
    async with proxy.down():
        print(f"  down              {await _timed(call)}")
    print(f"  back up           {await _timed(call)}")

    async with proxy.reset_peer(toxicity=0.3) as toxic:
        outcomes = []
        for _ in range(100):
            outcome = await _timed(call)
            outcomes.append("reset" if "ConnectionResetError" in outcome else "ok")
        print(
            f"  reset_peer 30%    {outcomes.count('reset')} of 100 connections reset "
            f"(applied to {toxic.hits}); the same seed resets the same ones"
        )
    stats = proxy.stats
    print(
        f"  counters          {stats.accepted} accepted, {stats.open} open, {stats.closed} closed,"
        f" {stats.bytes_upstream} bytes up, {stats.bytes_downstream} bytes down,"
        f" {stats.upstream_errors} upstream errors"
    )


def run_demo(*, seed: int) -> int:
    print(f"asyncfaults demo: embedded fault engine, seed {seed}")
    with Engine(seed=seed) as engine:
        asyncio.run(asyncio.wait_for(_tour(engine), 60))
    print("done: every fault was removed on leaving its block; no proxy is left running")
    return 0
