"""The engine in a child process: its results match, and it never outlives the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _embedded_engine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """These runs choose their backend themselves, whatever this run was given."""
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)


SLEEPER = textwrap.dedent(
    """
    import time

    def test_holds_the_run(faults):
        print("READY", flush=True)
        time.sleep(60)
    """
)


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_serve_child_dies_with_a_killed_run(pytester: pytest.Pytester, how: signal.Signals) -> None:
    (pytester.path / "test_sleeper.py").write_text(SLEEPER)
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-s",
            "-q",
            "-p",
            "no:cacheprovider",
            "--asyncfaults-engine=process",
            "test_sleeper.py",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "READY" in run.stdout.readline():
                break
        serve = [
            pid
            for pid in children(run.pid)
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(serve) == 1
        os.kill(run.pid, how)
        run.wait(10)
        deadline = time.monotonic() + 10
        while alive(serve[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(serve[0]), "the serve child outlived its parent"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        if run.stdout is not None:
            run.stdout.close()


def test_header_names_the_child_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(faults): pass")
    result = pytester.runpytest_subprocess(
        "-p", "no:asyncio", "--asyncfaults-engine=process", "--asyncfaults-seed=3"
    )
    result.stdout.fnmatch_lines(["asyncfaults: embedded fault engine in a child process, seed 3"])
    result.assert_outcomes(passed=1)


def test_engine_mode_and_url_together_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess(
        "-p", "no:asyncio", "--asyncfaults-engine=process", "--toxiproxy-url=http://127.0.0.1:8474"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*both given: choose one*"])


def test_unreachable_toxiproxy_url_is_one_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses_faults(faults): pass")
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "--toxiproxy-url=http://127.0.0.1:1")
    assert time.monotonic() - started < 15
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*no Toxiproxy server answers at http://127.0.0.1:1*asyncfaults serve*"]
    )
    assert "Traceback" not in result.stderr.str()
