"""Bugs the plugin reports when a test ends: a blocked event loop, a coroutine never run.

These findings fail the test they happen in, after its body, so they cannot
be caught with ``pytest.raises`` inside it. Each is checked the way a user
meets it: a pytest run of its own (a subprocess) on a test that uploads to the
buggy app, whose output must name the bug and the line to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE_DIR = Path(__file__).resolve().parents[1]
BUGGY = EXAMPLE_DIR / "csv_upload" / "buggy.py"

INI = "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"

CONFTEST = f"""
import sys

sys.path.insert(0, {str(EXAMPLE_DIR)!r})

import pytest

from csv_upload import buggy
from csv_upload.common import Settings


@pytest.fixture
def asgi_app(postgres_server, smtp_server, faults, tmp_path):
    return buggy.create_app(
        Settings(
            database_url=postgres_server.dsn_via(faults.postgres),
            smtp_host=faults.smtp.host,
            smtp_port=faults.smtp.port,
            upload_dir=tmp_path,
        )
    )
"""

LARGE_UPLOAD = '''
import os
import threading
import time

import pytest

pytestmark = pytest.mark.asyncio

LARGE = b"name,amount\\n" + b"x" * (4 << 20)  # 4 MB


@pytest.fixture
def slow_disk(tmp_path):
    """The upload directory on slow storage, as a network volume on a bad day.

    big.csv there is a pipe that a thread drains at about 6 MB/s: writing it
    takes as long as it would on such a volume (a local disk's page cache takes
    4 MB in a few milliseconds, too fast to see on a test machine).
    """
    path = tmp_path / "big.csv"
    os.mkfifo(path)

    def drain():
        with open(path, "rb") as pipe:
            while pipe.read(64 << 10):
                time.sleep(0.01)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    yield path
    # A reader still waiting for a writer (the app never wrote): let it go. Not
    # blocking: the reader may have just ended, and an open for writing would then
    # wait for one forever (ENXIO says nobody reads).
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass
    thread.join(10)


async def test_large_upload(app_client, tasks, faults, slow_disk):
    # The background job is not the subject: with the database down it ends at once.
    async with faults.postgres.down():
        response = await app_client.post("/upload", files={"file": ("big.csv", LARGE)})
        assert response.status_code == 200
        await tasks.settle(within=5)
'''

COROUTINE_UPLOAD = """
import pytest

pytestmark = pytest.mark.asyncio


async def test_upload_coro(app_client, tasks):
    upload = {"file": ("small.csv", b"name,amount\\n")}
    response = await app_client.post("/upload-coro", files=upload)
    assert response.status_code == 200
    await tasks.settle(within=5)
"""


def line_of(path: Path, marker: str) -> int:
    """The number of the first line of ``path`` that holds ``marker``."""
    lines = path.read_text().splitlines()
    return next(number for number, text in enumerate(lines, 1) if marker in text)


def run(pytester: pytest.Pytester, tests: str) -> pytest.RunResult:
    """Run ``tests`` against the buggy app; its one test must fail by the plugin's finding."""
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_upload=tests)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["asyncfaults: 1 silent failure found", "FAILED *Failed: asyncfaults*"]
    )
    assert "AssertionError" not in result.stdout.str()  # not by an assert of the test itself
    return result


def test_a_large_upload_written_synchronously_blocks_the_loop(pytester: pytest.Pytester) -> None:
    result = run(pytester, LARGE_UPLOAD)
    write = line_of(BUGGY, "f.write(content)  # BUG")
    result.stdout.fnmatch_lines(
        [
            # "[" opens a character class in fnmatch patterns: "[[]" is a literal one.
            "*[[]blocked_loop] the event loop was blocked for * s at "
            f"*csv_upload/buggy.py:{write} in upload_file: `f.write(content)*",
        ]
    )


def test_a_coroutine_handed_to_background_tasks_never_runs(pytester: pytest.Pytester) -> None:
    result = run(pytester, COROUTINE_UPLOAD)
    handed = line_of(BUGGY, "background_tasks.add_task(process_csv(settings, filepath))")
    result.stdout.fnmatch_lines(
        [
            "*[[]never_awaited] coroutine 'process_csv' was created and never awaited*",
            f"*created at *csv_upload/buggy.py:{handed} in upload_file_coro*",
        ]
    )
