"""What the plugin's fixtures cost per test, next to plain ``httpx.ASGITransport``.

A user's test of an ASGI app costs something whichever way it is written. This
bench measures what ``app_client`` + ``tasks`` (and, beside them, ``faults``
with one proxy) add to each test over the same test written with a plain
``httpx.AsyncClient(transport=ASGITransport(app))``: the app's lifespan
started and stopped, the task monitor, the watchdog, settle and the checks at
the end.

Three generated suites of ``TESTS`` trivial tests (one request, then settle or
nothing), each a pytest run of its own in a subprocess, in ``--rounds``
rotating rounds (so background load hits each alike). A small plugin records
each test's set-up + call + tear-down, as pytest times them: a round's figure is
the median over its tests, the added cost the difference with the plain
suite's in the same round, and the result the median over rounds. Prints one
JSON object; exits 1 when a target is missed, 2 when the bench itself failed.
``--quick`` is a smoke run that never fails on a target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

TESTS: Final = 300
ROUNDS: Final = 3
TARGET_ADDED_MS: Final = 5.0
"""Median milliseconds ``app_client`` + ``tasks`` may add to a test (issue 17)."""
RUN_TIMEOUT: Final = 600
LEAKY_VARIABLES: Final = ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_CURRENT_TEST")

APP: Final = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ping(request):
    return JSONResponse({"ok": True})


app = Starlette(routes=[Route("/ping", ping)])
"""

TIMING_PLUGIN: Final = '''
"""Records each test's set-up + call + tear-down, as pytest timed them."""
import json
import os

_took = {}


def pytest_runtest_logreport(report):
    _took[report.nodeid] = _took.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    with open(os.environ["OVERHEAD_TIMINGS"], "w") as out:
        json.dump(_took, out)
'''

SUITES: Final = {
    "plain": """
import httpx
import pytest

from app_module import app


@pytest.fixture
async def client():
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


@pytest.mark.parametrize("n", range({tests}))
async def test_ping(client, n):
    assert (await client.get("/ping")).status_code == 200
""",
    "app_client": """
import pytest

from app_module import app


@pytest.fixture
def asgi_app():
    return app


@pytest.mark.parametrize("n", range({tests}))
async def test_ping(app_client, tasks, n):
    assert (await app_client.get("/ping")).status_code == 200
    (await tasks.settle()).assert_completed()
""",
    "app_client_faults": """
import pytest

from app_module import app


@pytest.fixture
def asgi_app(faults):
    assert faults.db.port
    return app


@pytest.mark.parametrize("n", range({tests}))
async def test_ping(app_client, tasks, faults, n):
    assert (await app_client.get("/ping")).status_code == 200
    (await tasks.settle()).assert_completed()
""",
}

INI: Final = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncfaults_proxies =
    db=127.0.0.1:9
"""


class BenchError(Exception):
    """The benchmark could not measure what it says it measures."""


def make_project(root: Path, tests: int) -> None:
    (root / "pytest.ini").write_text(INI)
    (root / "app_module.py").write_text(APP)
    (root / "overhead_timing.py").write_text(TIMING_PLUGIN)
    for name, source in SUITES.items():
        (root / f"test_{name}.py").write_text(source.replace("{tests}", str(tests)))


def run_suite(root: Path, name: str, tests: int) -> float:
    """The median seconds of one test of suite ``name``, in a pytest run of its own."""
    timings = root / f"timings_{name}.json"
    env = {key: value for key, value in os.environ.items() if key not in LEAKY_VARIABLES}
    env["OVERHEAD_TIMINGS"] = str(timings)
    env["PYTHONPATH"] = str(root)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"test_{name}.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:faker",
            "-p",
            "no:hypothesispytest",
            "-p",
            "no:randomly",
            "-p",
            "overhead_timing",
        ],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise BenchError(f"suite {name} exited {done.returncode}: {tail}")
    took: dict[str, float] = json.loads(timings.read_text())
    if len(took) != tests:
        raise BenchError(f"suite {name}: {len(took)} tests timed, expected {tests}")
    return statistics.median(took.values())


def measure(rounds: int, tests: int) -> dict[str, Any]:
    per_round: list[dict[str, float]] = []
    names = list(SUITES)
    with tempfile.TemporaryDirectory(prefix="asyncfaults-overhead-") as directory:
        root = Path(directory)
        make_project(root, tests)
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            per_round.append({name: run_suite(root, name, tests) for name in order})
    medians = {name: statistics.median(entry[name] for entry in per_round) * 1000 for name in names}
    added = {
        name: statistics.median((entry[name] - entry["plain"]) * 1000 for entry in per_round)
        for name in names
        if name != "plain"
    }
    return {
        "tests_per_suite": tests,
        "rounds": rounds,
        "median_ms_per_test": {name: round(value, 3) for name, value in medians.items()},
        "added_ms_per_test": {name: round(value, 3) for name, value in added.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run, no target")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--tests", type=int, default=TESTS)
    args = parser.parse_args(argv)
    rounds, tests = (1, 20) if args.quick else (args.rounds, args.tests)
    started = time.perf_counter()
    try:
        report = measure(rounds, tests)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    added = report["added_ms_per_test"]["app_client"]
    passed = added <= TARGET_ADDED_MS
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["targets"] = {
        "added_ms_per_test": {
            "measured": added,
            "target": TARGET_ADDED_MS,
            "op": "<=",
            "passed": passed,
        }
    }
    print(json.dumps(report, indent=2))
    return 0 if args.quick or passed else 1


if __name__ == "__main__":
    sys.exit(main())
