"""What reading PostgreSQL's protocol costs a round trip through the engine.

The protocol toxics read every message of both directions, and the engine
reads the client's side of every PostgreSQL connection from its first byte
(so that a toxic joining later knows the statements prepared before). That
must stay small next to what the engine costs a round trip anyway, or a test
that only wants a latency toxic would pay for protocols it does not use.

A Query answered by CommandComplete and ReadyForQuery, one at a time, is
measured on five paths side by side. The differences sought are a few
microseconds, on a machine whose state drifts in bursts: so the client holds
a connection on every path and makes one round trip on each in turn, the
order rotating every time, and each path's figure of a round is the median
of its thousands of round trips, all taken under the same conditions; every
figure below is the median over rounds of a per-round value:

- ``direct``: straight to the server (``bench/_peer.py``'s tiny PostgreSQL
  server);
- ``engine_untracked``: through the engine, on a proxy whose connections do
  not read the client's side (the engine's tracker turned off, which only
  this benchmark does): nothing in it reads the stream, the engine's own
  cost, the baseline of the target;
- ``engine_pg``: through the engine as it is: its tracker reads the client's
  messages;
- ``engine_noop``: the same with a ``noop`` toxic on each stream: what any toxic
  in the path costs (the data goes through a chain of stages instead of
  straight to the other socket), reading nothing;
- ``engine_reader``: the same with a protocol toxic on the proxy that matches
  nothing (``pg_error`` on a statement that never comes), which takes a stage
  in each direction's chain, as the two noops did: the toxic's two readers
  (its reading of the client's side stands in for the tracker's).

The protocol reading's cost is the tracker's, ``engine_pg -
engine_untracked``, plus the readers', ``engine_reader - engine_noop``;
target: at most 20% of the engine's own added round trip, ``engine_untracked
- direct``. The chain's own cost, ``engine_noop - engine_pg``, is reported
beside them: it is any toxic's, not the protocol's. The client and the server
run in other processes, so that they never take the GIL from the engine.

Prints one JSON object. Exit status: 0 when the target is met (always in
``--quick`` mode, a smoke test), 1 when it is missed, 2 when the benchmark
itself failed (the JSON then has an ``error``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Final

from proxy import START_TIMEOUT, PeerProcess, _closing, _r, median, percentile, run_context

from pytest_asyncfaults import Engine, make_toxic

PATHS: Final = ("direct", "engine_untracked", "engine_pg", "engine_noop", "engine_reader")
TARGET_SHARE: Final = 0.20
"""The protocol reading may add at most this share of the engine's own added round trip."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    warmup: int
    count: int
    """Round trips on each path in a round (taken in turn with the other paths')."""


FULL: Final = Plan(rounds=7, warmup=300, count=2000)
QUICK: Final = Plan(rounds=2, warmup=50, count=150)


def _round(client: PeerProcess, ports: list[int], plan: Plan) -> dict[str, float]:
    answer = client.ask(
        {"op": "pgrtts", "ports": ports, "warmup": plan.warmup, "count": plan.count}
    )
    return {
        path: percentile([ns / 1e6 for ns in samples], 0.5)
        for path, samples in zip(PATHS, answer["samples_ns"], strict=True)
    }


def run(plan: Plan, quick: bool) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        server = PeerProcess("server")
        stack.enter_context(_closing(server.close))
        client = PeerProcess("client")
        stack.enter_context(_closing(client.close))
        pg_port = int(server.receive(START_TIMEOUT)["pg"])
        client.receive(START_TIMEOUT)
        engine = stack.enter_context(Engine(seed=1))
        untracked = engine.create_proxy("untracked", f"127.0.0.1:{pg_port}")
        engine.target._proxy("untracked").tracking = False
        plain = engine.create_proxy("plain", f"127.0.0.1:{pg_port}")
        noop = engine.create_proxy("noop", f"127.0.0.1:{pg_port}")
        for stream in ("upstream", "downstream"):
            engine.add_toxic("noop", make_toxic("noop", stream=stream))
        read = engine.create_proxy("read", f"127.0.0.1:{pg_port}")
        engine.add_toxic(
            "read",
            make_toxic("pg_error", attributes={"sqlstate": "40001", "match": "^NEVER SENT"}),
        )
        where = {
            "direct": pg_port,
            "engine_untracked": untracked.port,
            "engine_pg": plain.port,
            "engine_noop": noop.port,
            "engine_reader": read.port,
        }
        ports = [where[path] for path in PATHS]
        rounds = [_round(client, ports, plan) for _ in range(plan.rounds)]
        hits = engine.stats("read").toxics_hit
        injected = [event for event in engine.protocol_events("read") if event.injected]
    if not hits.get("pg_error_downstream") or injected:
        raise RuntimeError(f"the reader was not on the path as planned: {hits}, {injected}")

    def across(values: list[float]) -> float:
        return _r(median(values))

    engine_added = across([r["engine_untracked"] - r["direct"] for r in rounds])
    tracker = across([r["engine_pg"] - r["engine_untracked"] for r in rounds])
    reader = across([r["engine_reader"] - r["engine_noop"] for r in rounds])
    chain = across([r["engine_noop"] - r["engine_pg"] for r in rounds])
    protocol = across(
        [
            (r["engine_pg"] - r["engine_untracked"]) + (r["engine_reader"] - r["engine_noop"])
            for r in rounds
        ]
    )
    share = protocol / engine_added if engine_added > 0 else None
    passed = share is not None and share <= TARGET_SHARE
    return {
        "benchmark": "protocol",
        "mode": "quick" if quick else "full",
        "rtt_p50_ms": {path: across([r[path] for r in rounds]) for path in PATHS},
        "engine_added_rtt_p50_ms": engine_added,
        "protocol_added_rtt_p50_ms": protocol,
        "of_which": {"tracker_ms": tracker, "toxic_readers_ms": reader},
        "any_toxics_chain_ms": chain,
        "protocol_share_of_engine_added": None if share is None else _r(share, 3),
        "targets": {
            "enforced": not quick,
            "all_passed": passed,
            "protocol_share_of_engine_added": {
                "measured": None if share is None else _r(share, 3),
                "target": TARGET_SHARE,
                "op": "<=",
                "passed": passed,
            },
        },
        "rounds": [{path: _r(value) for path, value in r.items()} for r in rounds],
        "setup": {
            "rounds": plan.rounds,
            "round_trips_per_path_per_round": plan.count,
            "warmup": plan.warmup,
            "aggregation": (
                "per round, each path's median over round trips taken in turn with the "
                "other paths' (order rotating); median over rounds of per-round values and "
                "differences"
            ),
            **run_context(load_before, started),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="short smoke run; the target is not enforced"
    )
    args = parser.parse_args(argv)
    quick: bool = args.quick
    try:
        report = run(QUICK if quick else FULL, quick)
    except Exception as exc:  # any failure must still leave one JSON object and status 2
        print(json.dumps({"benchmark": "protocol", "error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps(report, indent=2))
    if quick or report["targets"]["all_passed"]:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
