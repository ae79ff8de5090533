"""How much the embedded engine costs a connection, next to doing nothing and doing it naively.

Fault tests are only believable if the proxy itself is invisible when no
fault is set: it must not add enough latency to hide a timeout bug, nor cap
throughput below what the app moves, and a latency toxic must delay by what
it says. This script puts numbers on that, and fails when they drift past
the targets, so a slow engine shows up in CI rather than as flaky app tests.

Three paths are measured side by side in one run: direct (client to server),
through the engine with no toxic, and through the textbook asyncio-streams
forwarder, which is what "pure Python proxy" usually means and so the honest
baseline for what the engine's design buys. The engine and the forwarder run
here, each on its own loop in its own thread, exactly as the engine runs
inside a test process; the client and the servers run in two other processes
(``bench/_peer.py``) so that they never take the GIL from the engine and the
bulk sender and the sink never take it from each other.

The machine may be busy with other work, so the paths are measured in
alternating rounds (the order rotates each round) and every figure reported
is the median over rounds of a per-round value: a burst of background load
then hits all three paths alike instead of whichever ran at that moment.

The latency toxic's error is the round trip through the engine with a 50 ms
toxic, minus the direct round trip, minus 50 ms (that is the target). A round
trip that waited 50 ms finds every CPU on its way gone idle, and waking one
costs 0.1 ms or more on a virtual machine, which a busy direct round trip
never pays; so the report also gives the error against a direct round trip
taken after the same 50 ms pause, which is the toxic's own share.

Prints one JSON object. Exit status: 0 when every target is met (always in
``--quick`` mode, which is a smoke test), 1 when a target is missed, 2 when
the benchmark itself failed (the JSON then has an ``error``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from _peer import LineReader

from pytest_asyncfaults import Engine, make_toxic

PEER: Final = Path(__file__).with_name("_peer.py")
PATHS: Final = ("direct", "engine", "naive")

TARGET_ADDED_RTT_P50_MS: Final = 0.08
TARGET_ENGINE_MB_S: Final = 800.0
TARGET_LATENCY_ERROR_P50_MS: Final = 0.5
LATENCY_MS: Final = 50

START_TIMEOUT: Final = 15.0
"""Bound on a peer process starting, a forwarder starting, or anything stopping."""
COMMAND_TIMEOUT: Final = 180.0
"""Bound on one measurement command (a bulk transfer on a loaded machine is the longest)."""
NAIVE_READ: Final = 65536


@dataclass(frozen=True)
class Plan:
    rounds: int
    rtt_warmup: int
    rtt_count: int
    message_bytes: int
    bulk_bytes: int
    bulk_chunk: int
    latency_samples: int
    """Per round; the error is computed over all rounds' samples together."""


FULL: Final = Plan(
    rounds=9,
    rtt_warmup=300,
    rtt_count=1500,
    message_bytes=16,
    bulk_bytes=256 << 20,
    bulk_chunk=1 << 20,
    latency_samples=12,
)
QUICK: Final = Plan(
    rounds=3,
    rtt_warmup=100,
    rtt_count=400,
    message_bytes=16,
    bulk_bytes=32 << 20,
    bulk_chunk=1 << 20,
    latency_samples=5,
)


class BenchError(Exception):
    pass


# -- the peer processes ----------------------------------------------------------------


class PeerProcess:
    """A ``_peer.py`` child, spoken to one JSON line at a time, every wait bounded."""

    def __init__(self, role: str) -> None:
        self.role = role
        # Owned by this object and closed in close(): no ``with`` can span the child's life.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(PEER), role],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
        except BaseException:
            self._stderr.close()
            raise
        assert self.proc.stdout is not None
        self._reader = LineReader(self.proc.stdout.fileno())

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._reader.readline(timeout)
        except TimeoutError:
            raise BenchError(f"the {self.role} peer did not answer within {timeout} s") from None
        if line is None:
            raise BenchError(f"the {self.role} peer exited: {self._stderr_tail()}")
        message: dict[str, Any] = json.loads(line)
        return message

    def ask(self, command: dict[str, Any], timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        self._send(command)
        answer = self.receive(timeout)
        if not answer.get("ok"):
            raise BenchError(f"the {self.role} peer failed {command['op']}: {answer.get('error')}")
        return answer

    def _send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BenchError(f"the {self.role} peer is gone: {self._stderr_tail()}") from None

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.proc.wait(1.0)
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f"exit status {self.proc.returncode}, stderr: {text[-2000:] or '(empty)'}"

    def close(self) -> None:
        with contextlib.suppress(OSError, BenchError):
            self._send({"op": "quit"})
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(START_TIMEOUT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()


# -- the naive forwarder ----------------------------------------------------------------


class NaiveForwarder:
    """The asyncio-streams proxy everyone writes first, on its own loop and thread.

    Same placement as the engine (a thread of this process), so the comparison
    is about the code, not about where it runs.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="naive-forwarder", daemon=True)

    def start(self) -> NaiveForwarder:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._error is not None:
            raise BenchError(f"the naive forwarder did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._forward(reader, writer)
            finally:
                handlers.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(handlers):
                task.cancel()
            if handlers:
                await asyncio.wait(list(handlers), timeout=START_TIMEOUT)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(START_TIMEOUT):
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self._upstream_port
                )
        except (OSError, TimeoutError):
            writer.close()
            return
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for each in (writer, up_writer):
                each.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(START_TIMEOUT):
                    for each in (writer, up_writer):
                        await each.wait_closed()

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(START_TIMEOUT)
        if self._thread.is_alive():
            raise BenchError("the naive forwarder thread did not stop")


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(NAIVE_READ):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass  # one side reset: the other is closed by the caller


# -- statistics -----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise BenchError("no samples")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: list[float]) -> float:
    return statistics.median(values)


def _r(value: float, digits: int = 4) -> float:
    return round(value, digits)


# -- the run ---------------------------------------------------------------------------


@dataclass
class Ports:
    echo: dict[str, int]
    sink: dict[str, int]


def _rtt_ms(
    client: PeerProcess, port: int, plan: Plan, warmup: int, count: int, pause: float = 0.0
) -> list[float]:
    answer = client.ask(
        {
            "op": "rtt",
            "port": port,
            "size": plan.message_bytes,
            "warmup": warmup,
            "count": count,
            "pause": pause,
        }
    )
    return [ns / 1e6 for ns in answer["samples_ns"]]


def _bulk_mb_s(client: PeerProcess, port: int, plan: Plan) -> float:
    answer = client.ask(
        {"op": "bulk", "port": port, "total": plan.bulk_bytes, "chunk": plan.bulk_chunk}
    )
    seconds = float(answer["seconds"])
    return plan.bulk_bytes / seconds / 1e6


@dataclass(frozen=True)
class Round:
    """One round's figures; every path was measured within seconds of the others."""

    order: tuple[str, ...]
    rtt_p50: dict[str, float]
    rtt_p99: dict[str, float]
    throughput: dict[str, float]
    idle_direct_p50: float
    errors: list[float]
    """Latency toxic: round trip - this round's direct p50 - the latency (the target's)."""
    idle_errors: list[float]
    """The same against a direct round trip after the same idle spell: this leaves
    out the machine's wake-up from idle, which any proxy (or none) would pay."""


def run_round(index: int, plan: Plan, client: PeerProcess, engine: Engine, ports: Ports) -> Round:
    order = PATHS[index % 3 :] + PATHS[: index % 3]
    p50: dict[str, float] = {}
    p99: dict[str, float] = {}
    for path in order:
        samples = _rtt_ms(client, ports.echo[path], plan, plan.rtt_warmup, plan.rtt_count)
        p50[path], p99[path] = percentile(samples, 0.5), percentile(samples, 0.99)
    throughput = {path: _bulk_mb_s(client, ports.sink[path], plan) for path in order}
    idle = _rtt_ms(client, ports.echo["direct"], plan, 1, plan.latency_samples, LATENCY_MS / 1e3)
    engine.add_toxic("echo", make_toxic("latency", attributes={"latency": LATENCY_MS}))
    try:
        toxic = _rtt_ms(client, ports.echo["engine"], plan, 2, plan.latency_samples)
    finally:
        engine.remove_toxic("echo", "latency_downstream")
    idle_p50 = percentile(idle, 0.5)
    return Round(
        order=order,
        rtt_p50=p50,
        rtt_p99=p99,
        throughput=throughput,
        idle_direct_p50=idle_p50,
        errors=[sample - p50["direct"] - LATENCY_MS for sample in toxic],
        idle_errors=[sample - idle_p50 - LATENCY_MS for sample in toxic],
    )


def _error_stats(errors: list[float]) -> dict[str, float]:
    magnitudes = [abs(e) for e in errors]
    return {
        "error_p50_ms": _r(percentile(magnitudes, 0.5)),
        "error_p99_ms": _r(percentile(magnitudes, 0.99)),
        "signed_error_p50_ms": _r(percentile(errors, 0.5)),
    }


def summarize(rounds: list[Round], quick: bool) -> dict[str, Any]:
    def across(values: list[float], digits: int = 4) -> float:
        return _r(median(values), digits)

    def added(path: str, table: Callable[[Round], dict[str, float]]) -> float:
        # Per-round differences: both figures of a pair saw the same background load.
        return across([table(r)[path] - table(r)["direct"] for r in rounds])

    def p50s(r: Round) -> dict[str, float]:
        return r.rtt_p50

    def p99s(r: Round) -> dict[str, float]:
        return r.rtt_p99

    rtt = {
        path: {
            "p50": across([r.rtt_p50[path] for r in rounds]),
            "p99": across([r.rtt_p99[path] for r in rounds]),
        }
        for path in PATHS
    }
    throughput = {path: across([r.throughput[path] for r in rounds], 1) for path in PATHS}
    errors = [e for r in rounds for e in r.errors]
    latency: dict[str, Any] = {
        "latency_ms": LATENCY_MS,
        "samples": len(errors),
        **_error_stats(errors),
        "idle_matched": {
            "baseline": f"direct round trip after a {LATENCY_MS} ms pause (p50 of its round)",
            "baseline_rtt_p50_ms": across([r.idle_direct_p50 for r in rounds]),
            **_error_stats([e for r in rounds for e in r.idle_errors]),
        },
    }
    added_p50 = added("engine", p50s)
    checks = (
        ("added_rtt_p50_ms", added_p50, "<=", TARGET_ADDED_RTT_P50_MS),
        ("engine_throughput_mb_s", throughput["engine"], ">=", TARGET_ENGINE_MB_S),
        ("latency_error_p50_ms", float(latency["error_p50_ms"]), "<=", TARGET_LATENCY_ERROR_P50_MS),
    )
    targets: dict[str, Any] = {}
    for key, value, op, goal in checks:
        passed = value <= goal if op == "<=" else value >= goal
        targets[key] = {"measured": value, "target": goal, "op": op, "passed": passed}
    naive_p50 = added("naive", p50s)
    return {
        "added_rtt_p50_ms": added_p50,
        "added_rtt_p99_ms": added("engine", p99s),
        "naive_added_rtt_p50_ms": naive_p50,
        "naive_added_rtt_p99_ms": added("naive", p99s),
        "rtt_ms": rtt,
        "throughput_mb_s": throughput,
        "latency_toxic": latency,
        "ratios": {
            "engine_vs_naive_added_rtt_p50": _safe_ratio(added_p50, naive_p50),
            "engine_vs_direct_throughput": _safe_ratio(throughput["engine"], throughput["direct"]),
            "engine_vs_naive_throughput": _safe_ratio(throughput["engine"], throughput["naive"]),
        },
        "targets": {
            "enforced": not quick,
            "all_passed": all(t["passed"] for t in targets.values()),
            **targets,
        },
        "rounds": [
            {
                "order": list(r.order),
                "rtt_p50_ms": {p: _r(r.rtt_p50[p]) for p in PATHS},
                "rtt_p99_ms": {p: _r(r.rtt_p99[p]) for p in PATHS},
                "throughput_mb_s": {p: _r(r.throughput[p], 1) for p in PATHS},
                "latency_error_p50_ms": _error_stats(r.errors)["error_p50_ms"],
            }
            for r in rounds
        ],
    }


def _safe_ratio(a: float, b: float) -> float | None:
    return _r(a / b, 3) if b else None


@contextlib.contextmanager
def _closing(close: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        close()


def run(plan: Plan, quick: bool) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        server = PeerProcess("server")
        stack.enter_context(_closing(server.close))
        client = PeerProcess("client")
        stack.enter_context(_closing(client.close))
        listening = server.receive(START_TIMEOUT)
        client.receive(START_TIMEOUT)
        echo_port, sink_port = int(listening["echo"]), int(listening["sink"])

        engine = stack.enter_context(Engine(seed=1))
        engine_echo = engine.create_proxy("echo", f"127.0.0.1:{echo_port}")
        engine_sink = engine.create_proxy("sink", f"127.0.0.1:{sink_port}")
        naive_echo = NaiveForwarder(echo_port).start()
        stack.enter_context(_closing(naive_echo.close))
        naive_sink = NaiveForwarder(sink_port).start()
        stack.enter_context(_closing(naive_sink.close))
        ports = Ports(
            echo={"direct": echo_port, "engine": engine_echo.port, "naive": naive_echo.port},
            sink={"direct": sink_port, "engine": engine_sink.port, "naive": naive_sink.port},
        )
        rounds = [run_round(index, plan, client, engine, ports) for index in range(plan.rounds)]
    report = {
        "benchmark": "proxy",
        "mode": "quick" if quick else "full",
        **summarize(rounds, quick),
        "setup": {
            "rounds": plan.rounds,
            "rtt_round_trips_per_round": plan.rtt_count,
            "rtt_warmup": plan.rtt_warmup,
            "message_bytes": plan.message_bytes,
            "bulk_bytes": plan.bulk_bytes,
            "latency_samples": plan.latency_samples * plan.rounds,
            "aggregation": "median over rounds of per-round values; MB = 10**6 bytes",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_before": [_r(x, 2) for x in load_before],
            "loadavg_after": [_r(x, 2) for x in os.getloadavg()],
            "seconds": _r(time.perf_counter() - started, 1),
        },
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="short smoke run; targets are not enforced"
    )
    args = parser.parse_args(argv)
    quick: bool = args.quick
    try:
        report = run(QUICK if quick else FULL, quick)
    except Exception as exc:  # any failure must still leave one JSON object and status 2
        print(json.dumps({"benchmark": "proxy", "error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps(report, indent=2))
    if quick or report["targets"]["all_passed"]:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
