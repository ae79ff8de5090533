"""A shared Toxiproxy server: runs and xdist workers never clash, leave nothing
behind (whatever the test did), and never touch proxies they did not make."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_asyncfaults._backends._process import ServeProcess, start_serve_process

pytest_plugins = ["pytester"]

TESTS = textwrap.dedent(
    """
    import asyncio
    import pytest

    @pytest.mark.parametrize("n", range(6))
    async def test_same_name_everywhere(faults, n):
        proxy = await faults.create("db", "127.0.0.1:9")
        assert proxy.name == "db"
        assert proxy.server_name.endswith("-db") and proxy.server_name != "db"
        async with proxy.latency(10):
            await asyncio.sleep(0.05)

    async def test_fails_with_a_toxic_on(faults):
        proxy = await faults.create("mail", "127.0.0.1:9")
        async with proxy.blackhole():
            raise AssertionError("the test fails while its fault is active")
    """
)


@pytest.fixture(scope="module")
def shared() -> Iterator[ServeProcess]:
    child = start_serve_process()
    yield child
    child.stop()


@pytest.fixture
def server(shared: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared.url, timeout=10, trust_env=False) as client:
        response = client.post(
            "/proxies", json={"name": "someone-elses", "upstream": "127.0.0.1:9"}
        )
        assert response.status_code == 201
        client.post(
            "/proxies/someone-elses/toxics", json={"type": "latency", "attributes": {"latency": 7}}
        )
        yield client
        client.delete("/proxies/someone-elses")


def assert_only_the_other_proxy_is_left(server: httpx.Client) -> None:
    proxies = server.get("/proxies").json()
    assert list(proxies) == ["someone-elses"]
    toxics = proxies["someone-elses"]["toxics"]
    assert [(toxic["name"], toxic["attributes"]["latency"]) for toxic in toxics] == [
        ("latency_downstream", 7)
    ]
    assert proxies["someone-elses"]["enabled"]


def write_suite(directory: Path) -> None:
    (directory / "test_shared.py").write_text(TESTS)
    (directory / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "asyncfaults_proxies =\n    cache=127.0.0.1:9\n"
    )


def run_suite(directory: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--toxiproxy-url",
            url,
            *extra,
        ],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_runs_with_xdist_share_one_server(
    pytester: pytest.Pytester, shared: ServeProcess, server: httpx.Client
) -> None:
    write_suite(pytester.path)
    runs = [run_suite(pytester.path, shared.url, "-n", "2") for _ in range(2)]
    for run in runs:
        output, _ = run.communicate(timeout=120)
        # Seven tests per run, one failing on purpose; no error from clashing names.
        assert "1 failed, 6 passed" in output, output
        assert "already exists" not in output, output
    assert_only_the_other_proxy_is_left(server)


def test_an_interrupted_run_cleans_up(
    pytester: pytest.Pytester, shared: ServeProcess, server: httpx.Client
) -> None:
    write_suite(pytester.path)
    (pytester.path / "test_interrupt.py").write_text(
        textwrap.dedent(
            """
            async def test_interrupted(faults):
                proxy = await faults.create("db", "127.0.0.1:9")
                async with proxy.timeout(0):
                    raise KeyboardInterrupt
            """
        )
    )
    run = run_suite(pytester.path, shared.url, "test_interrupt.py")
    output, _ = run.communicate(timeout=60)
    assert "KeyboardInterrupt" in output, output
    assert run.returncode == pytest.ExitCode.INTERRUPTED
    assert_only_the_other_proxy_is_left(server)
