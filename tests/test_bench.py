"""The benchmarks still run (their targets are checked by running them in full)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"
KINDS = (
    "engine",
    "naive",
    "protocol",
    "uvloop",
    "threads",
    "splice",
    "epoll",
    "epoll_spin",
    "socat",
)
"""``bench/_relay.py``'s relays (uvloop and socat measured where installed)."""


def quick_run(script: str) -> dict[str, Any]:
    """The script's ``--quick`` smoke run: it must exit 0 and print one JSON object."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def test_proxy_bench_reports_every_figure() -> None:
    report = quick_run("proxy.py")
    measured = set(report["setup"]["paths"])
    assert {"direct", "engine", "naive", "protocol", "threads", "splice", "epoll"} <= measured
    assert measured | set(report["unavailable"]) == {"direct", *KINDS}
    assert report["added_rtt_ms"]["engine"]["p50"] > 0
    assert report["added_rtt_ms"]["engine"]["over_direct_p50"] > 0
    assert set(report["throughput_mb_s"]) == measured
    assert report["latency_toxic"]["idle_matched"]["error_p50_ms"] >= 0
    # two sockets per connection; a socket of an earlier measurement may still close
    # meanwhile (one of the 50 connections' hundred descriptors, give or take five)
    assert 1.9 <= report["scale"]["per_connection"]["fds"] <= 2.1
    assert report["scale"]["per_connection"]["threads"] == 0
    assert set(report["targets"]) >= {
        "engine_added_rtt_over_direct_p50",
        "engine_throughput_over_direct",
        "latency_error_p50_ms",
    }
    assert report["toxiproxy_reference"]["version"] == "2.12.0"


def test_control_bench_compares_both_paths() -> None:
    report = quick_run("control.py")
    for path in ("in_process", "http_serve"):
        assert report[path]["add_remove_p50_ms"] > 0
        assert report[path]["add_remove_p99_ms"] >= report[path]["add_remove_p50_ms"]


def test_runner_bench_compares_the_clients_and_the_floor() -> None:
    report = quick_run("runner.py")
    assert set(report["requests_per_second"]) == {"app_client", "asgi_transport", "task_per_call"}
    assert 0 < report["ratio"] < 5
    assert 0 < report["floor_ratio"] < 5


def test_detectors_bench_reports_each_cost() -> None:
    report = quick_run("detectors.py")
    assert set(report["requests"]["requests_per_second"]) == {"on", "off"}
    assert set(report["task_creation"]["microseconds_per_task"]) == {"plain", "monitored"}
    assert report["watchdog_idle"]["watchdog_idle_cpu_share"] >= 0


def test_load_bench_compares_with_and_without_the_plugin() -> None:
    report = quick_run("load.py")
    assert set(report["median_seconds"]) == {"with_plugin", "without_plugin"}
    assert all(seconds > 0 for seconds in report["median_seconds"].values())
    assert len(report["extra_ms_per_round"]) == report["rounds"]
    assert report["targets"]["extra_ms"]["measured"] == report["extra_ms"]
    assert isinstance(report["met"], bool)


def test_scale_bench_settles_and_reports_many_tasks() -> None:
    report = quick_run("scale.py")
    assert report["tasks"] == 1_000
    assert report["settle_completed_s"] > 0
    assert report["report_stuck_bytes"] < report["targets"]["report_stuck_bytes"]["target"]
    assert set(report["targets"]) == {
        "enforced",
        "settle_completed_s",
        "report_stuck_s",
        "report_stuck_bytes",
    }


def test_protocol_bench_separates_the_readers_from_the_engine() -> None:
    report = quick_run("protocol.py")
    assert set(report["rtt_p50_ms"]) == {
        "direct",
        "engine_untracked",
        "engine_pg",
        "engine_noop",
        "engine_reader",
    }
    assert report["engine_added_rtt_p50_ms"] > 0
    assert set(report["of_which"]) == {"tracker_ms", "toxic_readers_ms"}
    assert report["targets"]["protocol_share_of_engine_added"]["target"] == 0.2


def test_overhead_bench_times_each_suite_per_test() -> None:
    report = quick_run("overhead.py")
    assert set(report["median_ms_per_test"]) == {"plain", "app_client", "app_client_faults"}
    assert all(ms > 0 for ms in report["median_ms_per_test"].values())
    assert (
        report["targets"]["added_ms_per_test"]["measured"]
        == (report["added_ms_per_test"]["app_client"])
    )


def test_fuzz_bench_runs_the_readers() -> None:
    report = quick_run("fuzz.py")
    assert report["nothing_found"] is True
    assert "passed" in report["result"]
