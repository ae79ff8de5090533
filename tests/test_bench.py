"""The benchmarks still run (their targets are checked by running them in full)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_proxy_bench_quick_run_reports_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "proxy.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added_rtt_p50_ms"] > 0
    assert set(report["throughput_mb_s"]) == {"direct", "engine", "naive"}
    assert report["latency_toxic"]["error_p50_ms"] >= 0
    assert set(report["targets"]) >= {
        "added_rtt_p50_ms",
        "engine_throughput_mb_s",
        "latency_error_p50_ms",
    }


def test_control_bench_quick_run_compares_both_paths() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "control.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    for path in ("in_process", "http_serve"):
        assert report[path]["add_remove_p50_ms"] > 0
        assert report[path]["add_remove_p99_ms"] >= report[path]["add_remove_p50_ms"]


def test_runner_bench_quick_run_compares_both_clients() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "runner.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert set(report["requests_per_second"]) == {"app_client", "asgi_transport"}
    assert 0 < report["ratio"] < 5


def test_detectors_bench_quick_run_reports_each_cost() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "detectors.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert set(report["requests"]["requests_per_second"]) == {"on", "off"}
    assert set(report["task_creation"]["microseconds_per_task"]) == {"plain", "monitored"}
    assert report["watchdog_idle"]["watchdog_idle_cpu_share"] >= 0
