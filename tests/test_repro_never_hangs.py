"""``asyncfaults repro`` never hangs either: stubborn tasks and blocked loops end its run.

The same pathological apps as the plugin's suites, replayed from a shell: the
run exits 1 within its deadline and the bounded clean-up, the report naming the
culprit line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pathological import CANCEL_BOUND, ENDED_WITHIN, SLACK, STUBBORN

from pytest_asyncfaults._address import free_port

APP = (
    STUBBORN
    + """
import time

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def spawn(request):
    return PlainTextResponse("ok", background=BackgroundTask(stubborn))


async def blocks(request):
    time.sleep(3600)  # the culprit: a sync sleep in the handler
    return PlainTextResponse("late")


async def later():
    await asyncio.sleep(0.2)
    time.sleep(3600)  # the culprit: a sync sleep in background work


async def blocks_later(request):
    return PlainTextResponse("ok", background=BackgroundTask(later))


app = Starlette(
    routes=[Route("/spawn", spawn), Route("/blocks", blocks), Route("/later", blocks_later)]
)
"""
)

CASES = {
    "/spawn": [
        "did not end within 0.5 s of being cancelled: it swallows CancelledError",
        "# the culprit: swallowed, again and again",
    ],
    "/blocks": [
        "the event loop was blocked for",
        "time.sleep(3600)  # the culprit: a sync sleep in the handler",
        "Interrupted past the request's deadline (1 s)",
    ],
    "/later": [
        "the event loop was blocked for",
        "time.sleep(3600)  # the culprit: a sync sleep in background work",
        "Interrupted past the settle deadline (1 s)",
    ],
}


@pytest.mark.parametrize("path", list(CASES))
def test_repro_ends_on_a_pathological_app_with_its_line(tmp_path: Path, path: str) -> None:
    (tmp_path / "pathological_app.py").write_text(APP)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_asyncfaults",
            "repro",
            "pathological_app:app",
            "--app-dir",
            str(tmp_path),
            "--proxy",  # the app talks to no service: a proxy to a port nothing listens on
            f"service=127.0.0.1:{free_port()}",
            "--request",
            f"GET {path}",
            "--within",
            "1",
            "--startup-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr  # an abandoned call closed at exit says nothing
    for line in CASES[path]:
        assert line in done.stdout or line in done.stderr, (line, done.stdout, done.stderr)
    # the request's deadline, then the work's, the cancel wait, the interpreter's start
    assert took < 2 * 1.0 + CANCEL_BOUND + ENDED_WITHIN + SLACK, f"repro took {took:.1f} s"
