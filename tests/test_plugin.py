"""The pytest plugin, run in a pytest of its own (pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

ECHO_CONFTEST = """
import socket, threading
import pytest

@pytest.fixture(scope="session", autouse=True)
def echo_upstream():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                try:
                    while data := conn.recv(1024):
                        conn.sendall(data)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()
"""


def test_faults_fixture_gives_declared_and_created_proxies(
    pytester: pytest.Pytester, backend_args: list[str]
) -> None:
    pytester.makeconftest(ECHO_CONFTEST)
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        asyncfaults_proxies =
            echo=127.0.0.1:9
        """
    )
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        async def roundtrip(proxy):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(b"hi")
            data = await asyncio.wait_for(reader.readexactly(2), 5)
            writer.close()
            return data

        async def test_declared(faults, asyncfaults_backend):
            assert faults.echo is faults["echo"]
            assert faults.echo.upstream == "127.0.0.1:9"
            await faults.echo.disable()  # left disabled on purpose: the fixture restores it
            asyncfaults_backend.add_toxic(
                faults.echo.server_name, __import__("pytest_asyncfaults").make_toxic("latency")
            )

        async def test_declared_is_restored(faults, asyncfaults_backend):
            assert asyncfaults_backend.proxy(faults.echo.server_name).enabled
            assert asyncfaults_backend.toxics(faults.echo.server_name) == ()

        async def test_created(faults, echo_upstream, asyncfaults_backend):
            proxy = await faults.create("mine", f"127.0.0.1:{echo_upstream}")
            async with proxy.latency(50):
                assert await roundtrip(proxy) == b"hi"
            assert proxy.server_name in asyncfaults_backend.proxies()

        def test_created_is_gone(asyncfaults_backend):
            assert not [name for name in asyncfaults_backend.proxies() if name.endswith("mine")]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", *backend_args)
    result.assert_outcomes(passed=4)


def test_header_shows_the_seed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("-p", "no:asyncio", "--asyncfaults-seed", "42")
    result.stdout.fnmatch_lines(["asyncfaults: embedded fault engine in process, seed 42"])
    result.assert_outcomes(passed=1)


def test_seed_from_ini_reaches_the_engine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)
    pytester.makeini("[pytest]\nasyncfaults_seed = 7\n")
    pytester.makepyfile(
        "def test_seed(asyncfaults_backend):\n    assert asyncfaults_backend.seed == 7\n"
    )
    pytester.runpytest("-p", "no:asyncio").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("asyncfaults_seed = seven", "asyncfaults_seed='seven' is not valid: expected an integer"),
        (
            "asyncfaults_proxies =\n    postgres",
            "asyncfaults_proxies line 'postgres' is not valid: expected name=host:port",
        ),
        (
            "asyncfaults_proxies =\n    postgres=localhost",
            "asyncfaults_proxies postgres='localhost' is not valid",
        ),
    ],
)
def test_bad_settings_are_usage_errors(pytester: pytest.Pytester, ini: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("-p", "no:asyncio")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert "Traceback" not in result.stderr.str()
