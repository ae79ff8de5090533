"""What the embedded engine adds to a connection, beside doing nothing and beside the
simplest relays, every party in a process of its own.

Fault tests are only believable if the proxy itself is invisible when no
fault is set: it must not add enough latency to hide a timeout bug, nor cap
throughput below what the app moves, and a latency toxic must delay by what
it says. This script puts numbers on that, and fails when they drift past
the targets, so a slow engine shows up in CI rather than as flaky app tests.

The parties: a client and the servers (``bench/_peer.py``, two processes, so
the bulk sender and the sink never take the GIL from each other), and each
proxy in a process of its own (``bench/_relay.py``): the engine (``Engine``,
its loop in a thread, as in a test process), the naive asyncio-streams
forwarder, and the minimal relays (asyncio Protocol, uvloop where installed,
a blocking thread per direction, ``os.splice``, raw epoll, raw epoll that
never sleeps, socat where installed). A proxy in the benchmark's own process
would share its GIL, and threads of one process hide the cost of waking
another process, which is most of what any proxy adds to a round trip.

The machine may be busy with other work, so the paths are measured in
rotating rounds (the order shifts each round) and each figure is the median
over rounds of a per-round value: a burst of background load then hits all
paths alike instead of whichever ran at that moment. The targets are ratios
to the direct path measured in the same round, which travel across machines
(a machine's loopback round trip varies tenfold, from 0.02 to 0.2 ms):

- the engine's added round trip (its round trip minus the direct one) at
  most 1.2 times the direct round trip (Toxiproxy 2.12's ratio, measured
  side by side on this machine class on 2026-12-01);
- its bulk throughput at least 0.35 of the direct one (Toxiproxy's: about
  0.2);
- a 50 ms latency toxic's own error at most 0.3 ms at the median (below).

Toxiproxy itself cannot run here (no Docker, nothing downloaded beyond
package registries), so its figures are quoted in the JSON, not measured.
Relays written in C (socat) and raw Python ones set the floor a proxy cannot
go below on the machine at hand: two wake-ups of the proxy per round trip.

A latency toxic's error is its round trip minus the latency minus a direct
round trip. A round trip that waited 50 ms finds the client's CPU gone idle,
and waking it costs 0.1 ms or more on a virtual machine, which a busy direct
round trip never pays and no proxy can help: so the target is on the error
against a direct round trip taken after the same 50 ms pause (the toxic's
own share, ``idle_matched``); the error against the busy direct round trip is
reported beside it.

The scale check opens ``SCALE_CONNECTIONS`` connections at once through the
engine, a round trip on each, and reports what they cost its process
(memory, descriptors, threads) per connection.

Prints one JSON object. Exit status: 0 when every target is met (always in
``--quick`` mode, which is a smoke test), 1 when a target is missed, 2 when
the benchmark itself failed (the JSON then has an ``error``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from _peer import LineReader
from _relay import KINDS

PEER: Final = Path(__file__).with_name("_peer.py")
RELAY: Final = Path(__file__).with_name("_relay.py")

TARGET_ADDED_RTT_OVER_DIRECT: Final = 1.2
TARGET_THROUGHPUT_OVER_DIRECT: Final = 0.35
TARGET_LATENCY_ERROR_P50_MS: Final = 0.3
LATENCY_MS: Final = 50
SCALE_CONNECTIONS: Final = 500

TOXIPROXY_REFERENCE: Final = {
    "version": "2.12.0",
    "measured": "2026-12-01, side by side on a 2-core machine of this class (direct 0.13-0.14 ms)",
    "added_rtt_ms": [0.155, 0.167],
    "added_rtt_over_direct": 1.2,
    "throughput_mb_s": [320, 450],
    "throughput_over_direct": 0.2,
    "latency_error_p50_ms": 1.4,
    "add_remove_over_http_p50_ms": 1.5,
    "why_not_measured_here": (
        "Toxiproxy cannot be fetched or run on this machine (no Docker engine, no network "
        "beyond package registries): the targets are its ratios to the direct path"
    ),
}

START_TIMEOUT: Final = 15.0
"""Bound on a process starting or stopping."""
COMMAND_TIMEOUT: Final = 180.0
"""Bound on one measurement command (a bulk transfer on a loaded machine is the longest)."""


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
    scale_connections: int


FULL: Final = Plan(
    rounds=11,
    rtt_warmup=200,
    rtt_count=1000,
    message_bytes=16,
    bulk_bytes=128 << 20,
    bulk_chunk=1 << 20,
    latency_samples=10,
    scale_connections=SCALE_CONNECTIONS,
)
QUICK: Final = Plan(
    rounds=3,
    rtt_warmup=50,
    rtt_count=200,
    message_bytes=16,
    bulk_bytes=8 << 20,
    bulk_chunk=1 << 20,
    latency_samples=4,
    scale_connections=50,
)


class BenchError(Exception):
    pass


# -- the processes ------------------------------------------------------------------------


class PeerProcess:
    """A child spoken to one JSON line at a time, every wait bounded: a ``_peer.py`` role,
    or a ``_relay.py`` kind with its upstream ports."""

    def __init__(self, role: str, *, script: Path = PEER, args: tuple[str, ...] = ()) -> None:
        self.role = role
        # Owned by this object and closed in close(): no ``with`` can span the child's life.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), role, *args],
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
            raise BenchError(f"the {self.role} process did not answer within {timeout} s") from None
        if line is None:
            raise BenchError(f"the {self.role} process exited: {self._stderr_tail()}")
        message: dict[str, Any] = json.loads(line)
        return message

    def ask(self, command: dict[str, Any], timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        self._send(command)
        answer = self.receive(timeout)
        if not answer.get("ok"):
            raise BenchError(
                f"the {self.role} process failed {command['op']}: {answer.get('error')}"
            )
        return answer

    def _send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BenchError(f"the {self.role} process is gone: {self._stderr_tail()}") from None

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


def run_context(load_before: tuple[float, float, float], started: float) -> dict[str, Any]:
    """What a report says of the run itself: the Python, the CPUs, the machine's load
    before and after, and how long it took (``started``: a ``perf_counter`` reading)."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_before": [_r(x, 2) for x in load_before],
        "loadavg_after": [_r(x, 2) for x in os.getloadavg()],
        "seconds": _r(time.perf_counter() - started, 1),
    }


# -- the run ---------------------------------------------------------------------------


@dataclass
class Path_:
    """Where a path's echo and sink listen, and the relay process behind it (None: direct)."""

    echo: int
    sink: int
    relay: PeerProcess | None


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
    cpu_us: dict[str, float]
    """The relay process's CPU time per round trip (its threads', not its children's)."""
    throughput: dict[str, float]
    idle_direct_p50: float
    errors: list[float]
    """Latency toxic: round trip - this round's direct p50 - the latency (the target's)."""
    idle_errors: list[float]
    """The same against a direct round trip after the same idle spell: this leaves
    out the machine's wake-up from idle, which any proxy (or none) would pay."""


def _cpu_ns(path: Path_) -> int:
    return 0 if path.relay is None else int(path.relay.ask({"op": "usage"})["cpu_ns"])


def run_round(index: int, plan: Plan, client: PeerProcess, paths: dict[str, Path_]) -> Round:
    names = tuple(paths)
    shift = index % len(names)
    order = names[shift:] + names[:shift]
    p50: dict[str, float] = {}
    p99: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name in order:
        path = paths[name]
        before = _cpu_ns(path)
        samples = _rtt_ms(client, path.echo, plan, plan.rtt_warmup, plan.rtt_count)
        cpu[name] = (_cpu_ns(path) - before) / 1e3 / (plan.rtt_warmup + plan.rtt_count)
        p50[name], p99[name] = percentile(samples, 0.5), percentile(samples, 0.99)
    throughput = {name: _bulk_mb_s(client, paths[name].sink, plan) for name in order}
    idle = _rtt_ms(client, paths["direct"].echo, plan, 1, plan.latency_samples, LATENCY_MS / 1e3)
    engine = paths["engine"].relay
    assert engine is not None
    added = engine.ask(
        {"op": "add_toxic", "proxy": 0, "type": "latency", "attributes": {"latency": LATENCY_MS}}
    )
    try:
        toxic = _rtt_ms(client, paths["engine"].echo, plan, 2, plan.latency_samples)
    finally:
        engine.ask({"op": "remove_toxic", "proxy": 0, "name": added["name"]})
    idle_p50 = percentile(idle, 0.5)
    return Round(
        order=order,
        rtt_p50=p50,
        rtt_p99=p99,
        cpu_us=cpu,
        throughput=throughput,
        idle_direct_p50=idle_p50,
        errors=[sample - p50["direct"] - LATENCY_MS for sample in toxic],
        idle_errors=[sample - idle_p50 - LATENCY_MS for sample in toxic],
    )


def measure_scale(plan: Plan, client: PeerProcess, engine: Path_) -> dict[str, Any]:
    """``plan.scale_connections`` at once through the engine: what each one costs it."""
    relay = engine.relay
    assert relay is not None
    count = plan.scale_connections
    _wait_all_closed(relay)  # the rounds' last connections are not this figure's
    before = relay.ask({"op": "usage"})
    seconds = float(client.ask({"op": "hold", "port": engine.echo, "count": count})["seconds"])
    try:
        during = relay.ask({"op": "usage"})
        open_during = int(relay.ask({"op": "stats", "proxy": 0})["open"])
    finally:
        client.ask({"op": "release"})
    left = _wait_all_closed(relay)
    if open_during < count or left:
        raise BenchError(f"the engine held {open_during} of {count} connections, then {left}")
    return {
        "connections": count,
        "open_and_one_round_trip_each_s": _r(seconds, 3),
        "per_connection": {
            "rss_kib": _r((during["rss_kib"] - before["rss_kib"]) / count, 1),
            "fds": _r((during["fds"] - before["fds"]) / count, 2),
            "threads": _r((during["threads"] - before["threads"]) / count, 3),
        },
        "all_closed_after_release": True,
    }


def _wait_all_closed(relay: PeerProcess) -> int:
    """Wait (bounded) until the engine holds no connection; how many it still holds."""
    deadline = time.monotonic() + START_TIMEOUT
    while (left := int(relay.ask({"op": "stats", "proxy": 0})["open"])) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return left


def _error_stats(errors: list[float]) -> dict[str, float]:
    magnitudes = [abs(e) for e in errors]
    return {
        "error_p50_ms": _r(percentile(magnitudes, 0.5)),
        "error_p99_ms": _r(percentile(magnitudes, 0.99)),
        "signed_error_p50_ms": _r(percentile(errors, 0.5)),
    }


def summarize(rounds: list[Round], names: tuple[str, ...], quick: bool) -> dict[str, Any]:
    relays = [name for name in names if name != "direct"]

    def across(values: list[float], digits: int = 4) -> float:
        return _r(median(values), digits)

    rtt = {
        name: {
            "p50": across([r.rtt_p50[name] for r in rounds]),
            "p99": across([r.rtt_p99[name] for r in rounds]),
        }
        for name in names
    }
    # Per-round differences and ratios: both figures of a pair saw the same background load.
    added = {
        name: {
            "p50": across([r.rtt_p50[name] - r.rtt_p50["direct"] for r in rounds]),
            "p99": across([r.rtt_p99[name] - r.rtt_p99["direct"] for r in rounds]),
            "over_direct_p50": across(
                [(r.rtt_p50[name] - r.rtt_p50["direct"]) / r.rtt_p50["direct"] for r in rounds],
                3,
            ),
        }
        for name in relays
    }
    throughput = {name: across([r.throughput[name] for r in rounds], 1) for name in names}
    throughput_ratio = {
        name: across([r.throughput[name] / r.throughput["direct"] for r in rounds], 3)
        for name in relays
    }
    cpu = {name: across([r.cpu_us[name] for r in rounds], 1) for name in relays}
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
    checks = (
        (
            "engine_added_rtt_over_direct_p50",
            added["engine"]["over_direct_p50"],
            "<=",
            TARGET_ADDED_RTT_OVER_DIRECT,
        ),
        (
            "engine_throughput_over_direct",
            throughput_ratio["engine"],
            ">=",
            TARGET_THROUGHPUT_OVER_DIRECT,
        ),
        (
            "latency_error_p50_ms",
            float(latency["idle_matched"]["error_p50_ms"]),
            "<=",
            TARGET_LATENCY_ERROR_P50_MS,
        ),
    )
    targets: dict[str, Any] = {}
    for key, value, op, goal in checks:
        passed = value <= goal if op == "<=" else value >= goal
        targets[key] = {"measured": value, "target": goal, "op": op, "passed": passed}
    floor = [
        added[name]["over_direct_p50"]
        for name in relays
        if name not in ("engine", "naive", "epoll_spin")
    ]
    return {
        "direct_rtt_p50_ms": rtt["direct"]["p50"],
        "added_rtt_ms": added,
        "rtt_ms": rtt,
        "throughput_mb_s": throughput,
        "throughput_over_direct": throughput_ratio,
        "relay_cpu_us_per_round_trip": cpu,
        "latency_toxic": latency,
        "sleeping_relays_best_added_over_direct": min(floor) if floor else None,
        "targets": {
            "enforced": not quick,
            "all_passed": all(t["passed"] for t in targets.values()),
            **targets,
        },
        "rounds": [
            {
                "order": list(r.order),
                "rtt_p50_ms": {p: _r(r.rtt_p50[p]) for p in names},
                "throughput_mb_s": {p: _r(r.throughput[p], 1) for p in names},
                "latency_error_p50_ms": _error_stats(r.errors)["error_p50_ms"],
            }
            for r in rounds
        ],
    }


@contextlib.contextmanager
def _closing(close: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        close()


def run(plan: Plan, quick: bool, kinds: tuple[str, ...]) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = time.perf_counter()
    unavailable: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        server = PeerProcess("server")
        stack.enter_context(_closing(server.close))
        client = PeerProcess("client")
        stack.enter_context(_closing(client.close))
        listening = server.receive(START_TIMEOUT)
        client.receive(START_TIMEOUT)
        echo, sink = int(listening["echo"]), int(listening["sink"])
        paths = {"direct": Path_(echo, sink, None)}
        for kind in kinds:
            relay = PeerProcess(kind, script=RELAY, args=(str(echo), str(sink)))
            stack.enter_context(_closing(relay.close))
            ready = relay.receive(START_TIMEOUT)
            if "unavailable" in ready:
                unavailable[kind] = str(ready["unavailable"])
                continue
            paths[kind] = Path_(int(ready["ports"][0]), int(ready["ports"][1]), relay)
        if "engine" not in paths:
            raise BenchError("the engine's relay did not start")
        rounds = [run_round(index, plan, client, paths) for index in range(plan.rounds)]
        scale = measure_scale(plan, client, paths["engine"])
    return {
        "benchmark": "proxy",
        "mode": "quick" if quick else "full",
        **summarize(rounds, tuple(paths), quick),
        "scale": scale,
        "toxiproxy_reference": TOXIPROXY_REFERENCE,
        "unavailable": unavailable,
        "setup": {
            "paths": list(paths),
            "rounds": plan.rounds,
            "rtt_round_trips_per_round": plan.rtt_count,
            "rtt_warmup": plan.rtt_warmup,
            "message_bytes": plan.message_bytes,
            "bulk_bytes": plan.bulk_bytes,
            "latency_samples": plan.latency_samples * plan.rounds,
            "aggregation": "median over rounds of per-round values; MB = 10**6 bytes",
            **run_context(load_before, started),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="short smoke run; targets are not enforced"
    )
    parser.add_argument(
        "--relays",
        default=",".join(KINDS),
        help=f"the proxies to measure beside direct, comma-separated (engine always): {KINDS}",
    )
    args = parser.parse_args(argv)
    quick: bool = args.quick
    wanted = tuple(dict.fromkeys(["engine", *filter(None, args.relays.split(","))]))
    unknown = [kind for kind in wanted if kind not in KINDS]
    if unknown:
        parser.error(f"--relays: {', '.join(unknown)} not among {', '.join(KINDS)}")
    try:
        report = run(QUICK if quick else FULL, quick, wanted)
    except Exception as exc:  # any failure must still leave one JSON object and status 2
        print(json.dumps({"benchmark": "proxy", "error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps(report, indent=2))
    if quick or report["targets"]["all_passed"]:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
