"""A plugin for the inner runs of the never-hang suites (``-p inner_timing``): what each
test took once its set-up was done, written to ``inner_timings.json``, and when the
session started (``time.monotonic()``, the system's clock: the outer run reads it too).

The call (where the harness runs: the app's start, the body, the checks) and the
tear-down count; the set-up does not: a session's first test starts the shared
servers there, which is no part of any test's deadline.
"""

from __future__ import annotations

import json
import time

import pytest

TIMINGS = "inner_timings.json"
SESSION = "inner_session.json"
took: dict[str, tuple[str, float]] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    with open(session.config.rootpath / SESSION, "w") as file:
        json.dump({"started": time.monotonic()}, file)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when in ("call", "teardown"):
        name = report.nodeid.split("::")[-1]
        outcome, seconds = took.get(name, ("passed", 0.0))
        if report.failed:
            outcome = "failed"
        took[name] = (outcome, seconds + report.duration)


def pytest_sessionfinish(session: pytest.Session) -> None:
    with open(session.config.rootpath / TIMINGS, "w") as file:
        json.dump(took, file)
