"""Real services: a throwaway PostgreSQL cluster, an external server by DSN, an SMTP sink.

The run's own cluster (the plugin's ``postgres_server``) is shared by the
tests here; only the tests about starting, stopping and dying start one of
their own, because a cluster costs about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from pytest_asyncfaults import Faults, InvalidError, PostgresServer, ServiceError, SmtpServer
from pytest_asyncfaults._address import dsn_with_address, free_port
from pytest_asyncfaults._services import _postgres as _services
from pytest_asyncfaults._services._postgres import (
    ExternalPostgres,
    PostgresCluster,
    find_pg_bin,
    parse_dsn,
)

pytest_plugins = ["pytester"]

asyncpg = importlib.import_module("asyncpg")  # no type information: imported as Any

GONE_WITHIN = 15.0
"""How long a killed run's watcher may take to stop the server and remove its files."""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_until(condition: Callable[[], bool], within: float = GONE_WITHIN) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def mail(subject: str = "hello", to: str = "bob@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alice@example.com"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("body text\n")
    return message


async def select_one(dsn: str) -> int:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        value: int = await connection.fetchval("SELECT 1")
        return value
    finally:
        await asyncio.wait_for(connection.close(), 10)


# -- the run's PostgreSQL server, direct and through faults.postgres -------------------------------


@pytest.mark.plugin
@pytest.mark.asyncio
async def test_postgres_direct_and_through_the_proxy(
    faults: Faults, postgres_server: PostgresServer
) -> None:
    if isinstance(postgres_server, PostgresCluster):  # not a server given by DSN
        assert re.fullmatch(
            rf"postgresql://postgres:[\w-]{{20,}}@127\.0\.0\.1:{postgres_server.port}/postgres",
            postgres_server.dsn,
        )
        # No trust over TCP: other local users cannot walk in as superuser.
        without_password = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(without_password, timeout=10)
    assert faults.postgres.upstream == postgres_server.address
    via = postgres_server.dsn_via(faults.postgres)
    assert via == dsn_with_address(postgres_server.dsn, faults.postgres.host, faults.postgres.port)
    assert f"@{faults.postgres.host}:{faults.postgres.port}/" in via

    assert await select_one(postgres_server.dsn) == 1
    assert await select_one(via) == 1
    assert (await faults.postgres.read_stats()).accepted >= 1


@pytest.mark.plugin
@pytest.mark.asyncio
async def test_blackholed_postgres_times_the_connect_out(
    faults: Faults, postgres_server: PostgresServer
) -> None:
    async with faults.postgres.blackhole():
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncpg.connect(postgres_server.dsn_via(faults.postgres), timeout=1)
        # asyncpg's own bound, not ours: it gives up after 1 s, and not much later.
        assert 0.9 <= time.monotonic() - started < 5
    assert await select_one(postgres_server.dsn_via(faults.postgres)) == 1


# -- a cluster of its own: stop, atexit, a killed run ---------------------------------------------


def test_own_cluster_steps_over_a_taken_port_and_stop_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    ports = iter([taken.getsockname()[1]])
    real_free_port = free_port
    monkeypatch.setattr(_services, "free_port", lambda: next(ports, None) or real_free_port())
    with taken, PostgresCluster() as cluster:
        pid, directory, port = cluster.pid, cluster.directory, cluster.port
        assert port != taken.getsockname()[1]  # the first try could not bind: a second one
        assert pid is not None
        assert directory is not None
        assert alive(pid)
        assert (directory / "data" / "postmaster.pid").exists()
        watcher = cluster._watcher
        assert watcher is not None
        assert watcher.poll() is None
    assert not directory.exists()
    assert wait_until(lambda: not alive(pid), within=5), f"postmaster {pid} still runs"
    assert refused(port)
    assert watcher.returncode == 0  # told "done": it exited without touching anything
    assert cluster.directory is None
    assert cluster.pid is None
    cluster.stop()  # again: nothing to do
    with pytest.raises(ServiceError, match="not running"):
        _ = cluster.port


HOLD_CLUSTER = """
import os, sys, time
from pytest_asyncfaults._services._postgres import PostgresCluster

cluster = PostgresCluster().start()
print(cluster.pid, cluster.directory, flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)  # no stop(): the atexit handler does it
time.sleep(60)
"""


@pytest.fixture
def cluster_runs() -> Iterator[list[tuple[int, Path]]]:
    """Clusters started by other processes: whatever a test leaves, the fixture cleans."""
    seen: list[tuple[int, Path]] = []
    yield seen
    for pid, directory in seen:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(directory)], check=False, timeout=30)


def test_atexit_stops_a_cluster_nobody_stopped(cluster_runs: list[tuple[int, Path]]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HOLD_CLUSTER, "exit"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid_text, directory_text = done.stdout.split()
    pid, directory = int(pid_text), Path(directory_text)
    cluster_runs.append((pid, directory))
    # atexit ran before the interpreter was gone, so nothing is left now.
    assert not directory.exists()
    assert wait_until(lambda: not alive(pid), within=5), f"postmaster {pid} still runs"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_run_leaves_no_server_and_no_directory(
    pytester: pytest.Pytester, sig: signal.Signals, cluster_runs: list[tuple[int, Path]]
) -> None:
    pytester.makepyfile(
        """
        import os, time
        from pathlib import Path

        def test_hold(postgres_server):
            Path(os.environ["REPORT"]).write_text(
                f"{postgres_server.pid} {postgres_server.directory}"
            )
            time.sleep(60)
        """
    )
    report = pytester.path / "report.txt"
    with subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=pytester.path,
        env={
            **{k: v for k, v in os.environ.items() if k != "ASYNCFAULTS_POSTGRES_DSN"},
            "REPORT": str(report),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as run:
        try:
            assert wait_until(lambda: report.exists() and " " in report.read_text(), within=60)
            pid_text, directory_text = report.read_text().split()
            pid, directory = int(pid_text), Path(directory_text)
            cluster_runs.append((pid, directory))
            assert alive(pid)
            run.send_signal(sig)
            run.wait(timeout=30)
        finally:
            if run.poll() is None:
                run.kill()
    assert run.returncode == -sig  # killed: no atexit, no unconfigure ran
    assert wait_until(lambda: not alive(pid)), f"postmaster {pid} outlived the run"
    assert wait_until(lambda: not directory.exists()), f"{directory} outlived the run"


# -- finding the binaries ------------------------------------------------------------------------


def _fake_bin(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for tool in ("initdb", "pg_ctl"):
        (directory / tool).write_text("#!/bin/sh\n")
        (directory / tool).chmod(0o755)
    return directory


def test_missing_binaries_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ServiceError) as caught:
        find_pg_bin(globs=[str(tmp_path / "*" / "bin")], path=str(tmp_path))
    message = str(caught.value)
    assert "initdb" in message
    assert "apt-get install postgresql" in message
    assert "brew install postgresql" in message
    assert "--asyncfaults-postgres-dsn" in message


def test_the_newest_packaged_version_wins_then_path(tmp_path: Path) -> None:
    for version in ("9.6", "15", "10"):
        _fake_bin(tmp_path / "lib" / version / "bin")
    found = find_pg_bin(globs=[str(tmp_path / "lib" / "*" / "bin")], path="")
    assert found == tmp_path / "lib" / "15" / "bin"  # by number: "9.6" sorts after "15"

    real = _fake_bin(tmp_path / "cellar" / "bin")
    links = tmp_path / "links"
    links.mkdir()
    (links / "initdb").symlink_to(real / "initdb")
    assert find_pg_bin(globs=[], path=str(links)) == real  # pg_ctl sits beside the target


def test_fixture_reports_missing_binaries(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ASYNCFAULTS_POSTGRES_DSN", raising=False)
    monkeypatch.setattr(_services, "PG_BIN_GLOBS", (str(tmp_path / "*" / "bin"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    pytester.makepyfile("def test_db(postgres_server): pass")
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*PostgreSQL server binaries (initdb, pg_ctl) were not found*"])
    result.stdout.fnmatch_lines(["*apt-get install postgresql*brew install postgresql*"])
    assert "Traceback" not in result.stdout.str()


# -- DSNs and an external server -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "address"),
    [
        ("postgresql://app:secret@db.internal:6543/app", ("db.internal", 6543)),
        ("postgres://app@10.0.0.5/app?sslmode=disable", ("10.0.0.5", 5432)),
        ("postgresql://[::1]:5433/app", ("::1", 5433)),
    ],
)
def test_dsn_host_and_port(dsn: str, address: tuple[str, int]) -> None:
    assert parse_dsn("asyncfaults_postgres_dsn", dsn) == address
    assert ExternalPostgres(dsn).address == (
        f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
    )


@pytest.mark.parametrize(
    ("dsn", "why"),
    [
        ("mysql://root@db:3306/app", "it is not a postgresql:// URL"),
        ("db.internal:5432", "it is not a postgresql:// URL"),
        ("postgresql:///app?host=/var/run/postgresql", "it names no host"),
        ("postgresql://app:pw@db:port/app", "its port is not a number"),
        ("postgresql://db1:5432,db2:5432/app", "it names several hosts"),
        ("postgresql://db/app?sslmode=require&host=other", "its query sets host or port"),
    ],
)
def test_bad_dsn_names_the_setting_and_the_value(dsn: str, why: str) -> None:
    with pytest.raises(InvalidError) as caught:
        parse_dsn("ASYNCFAULTS_POSTGRES_DSN", dsn)
    message = str(caught.value)
    assert message.startswith("ASYNCFAULTS_POSTGRES_DSN=")
    assert why in message
    assert "expected postgresql://user[:password]@host[:port]/dbname" in message


def test_a_password_never_shows_in_messages() -> None:
    with pytest.raises(InvalidError) as caught:
        parse_dsn("--asyncfaults-postgres-dsn", "postgresql://app:hunter2@db:nope/app")
    assert "hunter2" not in str(caught.value)
    assert "app:***@db:nope" in str(caught.value)
    assert "hunter2" not in repr(ExternalPostgres("postgresql://app:hunter2@db/app"))


def test_dsn_through_a_proxy_keeps_everything_but_the_address() -> None:
    dsn = "postgresql://app:s%40cret@db.internal:6543/app?sslmode=disable&application_name=x"
    assert dsn_with_address(dsn, "127.0.0.1", 40001) == (
        "postgresql://app:s%40cret@127.0.0.1:40001/app?sslmode=disable&application_name=x"
    )
    assert dsn_with_address("postgres://db/app", "::1", 7) == "postgres://[::1]:7/app"


def test_unreachable_external_server_is_one_clear_error() -> None:
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = ExternalPostgres(f"postgresql://u@127.0.0.1:{port}/db", setting="ASYNC_DSN")
        with pytest.raises(ServiceError, match=rf"ASYNC_DSN=.*not reachable at 127.0.0.1:{port}"):
            server.start()


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ("option", "--asyncfaults-postgres-dsn"),
        ("env", "ASYNCFAULTS_POSTGRES_DSN"),
        ("ini", "asyncfaults_postgres_dsn"),
    ],
)
def test_bad_dsn_setting_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, named: str
) -> None:
    bad = "mysql://root@db/app"
    args = ["-p", "no:asyncio"]
    monkeypatch.delenv("ASYNCFAULTS_POSTGRES_DSN", raising=False)
    if how == "option":
        args += ["--asyncfaults-postgres-dsn", bad]
    elif how == "env":
        monkeypatch.setenv("ASYNCFAULTS_POSTGRES_DSN", bad)
    else:
        pytester.makeini(f"[pytest]\nasyncfaults_postgres_dsn = {bad}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{named}='{bad}' is not valid: it is not a postgresql:// URL*"])


PLUGIN_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


@pytest.mark.plugin
def test_external_server_through_the_fixtures(
    pytester: pytest.Pytester, postgres_server: PostgresServer, backend_args: list[str]
) -> None:
    pytester.makeini(PLUGIN_INI)
    pytester.makepyfile(
        f"""
        import asyncpg, pytest
        from pytest_asyncfaults._services._postgres import ExternalPostgres

        async def test_external(faults, postgres_server):
            # faults before postgres_server: the proxy exists all the same
            assert isinstance(postgres_server, ExternalPostgres)
            assert postgres_server.dsn == {postgres_server.dsn!r}
            assert faults.postgres.upstream == {postgres_server.address!r}
            connection = await asyncpg.connect(postgres_server.dsn_via(faults.postgres), timeout=10)
            assert await connection.fetchval("SELECT 1") == 1
            await connection.close()
            await faults.postgres.disable()  # the faults fixture restores it

        async def test_proxy_was_restored(postgres_server, faults, asyncfaults_backend):
            assert asyncfaults_backend.proxy(faults.postgres.server_name).enabled
            assert await faults.postgres.toxics() == ()
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--asyncfaults-postgres-dsn", postgres_server.dsn, *backend_args
    )
    result.assert_outcomes(passed=2)


def test_ini_proxy_named_postgres_clashes_with_the_fixture(
    pytester: pytest.Pytester, postgres_server: PostgresServer
) -> None:
    pytester.makeini("[pytest]\nasyncfaults_proxies =\n    postgres=127.0.0.1:9\n")
    pytester.makepyfile("def test_db(postgres_server): pass")
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:asyncio",
        "--asyncfaults-postgres-dsn",
        postgres_server.dsn,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*asyncfaults_proxies declares a proxy named 'postgres'*"])


@pytest.mark.plugin
def test_fixture_starts_a_cluster_lazily_and_removes_it(
    pytester: pytest.Pytester, backend_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASYNCFAULTS_POSTGRES_DSN", raising=False)
    pytester.makeini(PLUGIN_INI)
    pytester.makepyfile(
        """
        import asyncpg
        from pytest_asyncfaults._plugin._keys import SERVICES_KEY as _SERVICES_KEY
        from pytest_asyncfaults._services._postgres import PostgresCluster

        def test_nothing_started_yet(request):
            assert _SERVICES_KEY not in request.config.stash

        async def test_cluster(postgres_server, faults):
            assert isinstance(postgres_server, PostgresCluster)
            connection = await asyncpg.connect(postgres_server.dsn_via(faults.postgres), timeout=10)
            assert await connection.fetchval("SELECT 1") == 1
            await connection.close()
            print(f"CLUSTER {postgres_server.pid} {postgres_server.directory}")

        def test_same_cluster_again(postgres_server):
            assert postgres_server.running
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", *backend_args)
    result.assert_outcomes(passed=3)
    found = re.search(r"CLUSTER (\d+) (\S+)", result.stdout.str())
    assert found is not None
    pid, directory = int(found[1]), Path(found[2])
    # The run is over (unconfigure ran): the cluster is gone with it.
    assert not directory.exists()
    assert wait_until(lambda: not alive(pid), within=5), f"postmaster {pid} outlived the run"


# -- SMTP ----------------------------------------------------------------------------------------


@pytest.mark.plugin
@pytest.mark.asyncio
async def test_smtp_direct_and_through_the_proxy(faults: Faults, smtp_server: SmtpServer) -> None:
    assert smtp_server.messages == []  # emptied before each test
    await aiosmtplib.send(
        mail("direct"), hostname=smtp_server.host, port=smtp_server.port, timeout=10
    )
    await aiosmtplib.send(
        mail("proxied", to="carol@example.com"),
        hostname=faults.smtp.host,
        port=faults.smtp.port,
        timeout=10,
    )
    direct, proxied = smtp_server.messages
    assert direct.subject == "direct"
    assert direct.mail_from == "alice@example.com"
    assert direct.rcpt_tos == ("bob@example.com",)
    assert direct.message.get_content() == "body text\n"
    assert b"Subject: direct" in direct.data
    assert proxied.subject == "proxied"
    assert proxied.rcpt_tos == ("carol@example.com",)
    assert faults.smtp.upstream == smtp_server.address


@pytest.mark.plugin
@pytest.mark.asyncio
async def test_smtp_reset_peer_fails_the_send_promptly(
    faults: Faults, smtp_server: SmtpServer
) -> None:
    async with faults.smtp.reset_peer():
        started = time.monotonic()
        with pytest.raises((aiosmtplib.SMTPException, ConnectionError)):
            await aiosmtplib.send(
                mail(), hostname=faults.smtp.host, port=faults.smtp.port, timeout=10
            )
        assert time.monotonic() - started < 5  # the reset, not the client's 10 s timeout
    assert smtp_server.messages == []


@pytest.mark.asyncio
async def test_smtp_server_of_its_own() -> None:
    with SmtpServer() as server:
        port = server.port
        await asyncio.gather(
            *(
                aiosmtplib.send(mail(f"m{n}"), hostname=server.host, port=port, timeout=10)
                for n in range(5)
            )
        )
        assert sorted(str(mail.subject) for mail in server.messages) == [f"m{n}" for n in range(5)]
        server.clear()
        assert server.messages == []
    assert refused(port)
    server.stop()  # again: nothing to do
    with pytest.raises(ServiceError, match="not running"):
        _ = server.port


@pytest.mark.plugin
def test_smtp_fixtures_in_a_run(pytester: pytest.Pytester, backend_args: list[str]) -> None:
    pytester.makeini(PLUGIN_INI)
    pytester.makepyfile(
        """
        import aiosmtplib
        from email.message import EmailMessage

        async def test_send(faults, smtp_server):
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "a@x.org", "b@x.org", "hi"
            message.set_content("hello")
            await aiosmtplib.send(message, hostname=faults.smtp.host, port=faults.smtp.port,
                                  timeout=10)
            assert [mail.subject for mail in smtp_server.messages] == ["hi"]

        def test_next_test_starts_empty(smtp_server):
            assert smtp_server.messages == []
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", *backend_args)
    result.assert_outcomes(passed=2)
