"""Nothing listens beyond loopback unless asked: every component, every listen request.

With the embedded engine, ``asyncfaults serve`` (its config file and its HTTP
API), ``asyncfaults proxy``, the SMTP and PostgreSQL servers all running, and
every way of asking for a wildcard or a remote address tried, the listening
sockets of this process tree (read from /proc/net/tcp and tcp6) are all on
127.0.0.0/8 or ::1. A wildcard (what Testcontainers' client asks for,
``0.0.0.0:8666``) is served on loopback and reported as asked; only
``--allow-remote`` opens the machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Peer
from listening import Listener, all_listeners, listeners_of

from pytest_asyncfaults import Engine, InvalidError, PostgresServer, SmtpServer
from pytest_asyncfaults._backends._process import _read_ready_line

SERVE = [sys.executable, "-m", "pytest_asyncfaults", "serve", "--port", "0", "--exit-on-stdin-eof"]
START_TIMEOUT = 20.0


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[tuple[str, subprocess.Popen[str]]]]:
    """Start ``asyncfaults serve`` children; each is stopped (stdin closed) at the end."""
    started: list[tuple[str, subprocess.Popen[str]]] = []
    yield started
    for _, process in started:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def start_serve(
    started: list[tuple[str, subprocess.Popen[str]]], *args: str
) -> tuple[str, subprocess.Popen[str]]:
    process = subprocess.Popen(
        [*SERVE, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = _read_ready_line(process.stdout, time.monotonic() + START_TIMEOUT)
    if url is None:
        process.kill()
        _, errors = process.communicate(timeout=10)
        pytest.fail(f"asyncfaults serve did not start: {errors}")
    started.append((url, process))
    return url, process


def request_every_listen(url: str, upstream: str, *, remote_refused: bool) -> list[str]:
    """Ask the API for every kind of listen address; the wildcard proxies' reported listens."""
    wildcards = [("wild4", "0.0.0.0:0")]
    if has_ipv6():
        wildcards.append(("wild6", "[::]:0"))
    reported = []
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as api:
        for name, listen in [*wildcards, ("local", "127.0.0.1:0"), ("named", "localhost:0")]:
            response = api.post(
                "/proxies", json={"name": name, "upstream": upstream, "listen": listen}
            )
            assert response.status_code == 201, response.text
            if name.startswith("wild"):
                reported.append(response.json()["listen"])
        for listen in ["192.0.2.1:0", "example.com:0", "[2001:db8::1]:0"]:
            response = api.post(
                "/proxies", json={"name": "far", "upstream": upstream, "listen": listen}
            )
            if remote_refused:
                assert response.status_code == 400, response.text
                assert "--allow-remote" in response.json()["error"]
        populate = api.post(
            "/populate", json=[{"name": "pop", "upstream": upstream, "listen": "0.0.0.0:0"}]
        )
        assert populate.status_code == 201, populate.text
        reported.append(populate.json()["proxies"][0]["listen"])
        moved = api.patch("/proxies/local", json={"listen": "0.0.0.0:0"})
        assert moved.status_code == 200, moved.text
        reported.append(moved.json()["listen"])
        refused = api.patch("/proxies/local", json={"listen": "198.51.100.7:0"})
        if remote_refused:
            assert refused.status_code == 400, refused.text
    return reported


def not_loopback(listeners: set[Listener]) -> list[str]:
    return sorted(str(listener) for listener in listeners if not listener.loopback)


def test_nothing_listens_beyond_loopback_unless_allowed(
    tmp_path: Path,
    echo_server: Peer,
    smtp_server: SmtpServer,
    postgres_server: PostgresServer,
    serve: list[tuple[str, subprocess.Popen[str]]],
) -> None:
    upstream = echo_server.address
    # The embedded engine: wildcards served on loopback, a remote address refused.
    with Engine(seed=1) as engine:
        info = engine.create_proxy("wild", upstream, listen="0.0.0.0:0")
        assert info.listen.startswith("0.0.0.0:")  # reported as asked
        with socket.create_connection(("127.0.0.1", info.port), timeout=5) as sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"  # and served, on loopback
        with pytest.raises(InvalidError, match="--allow-remote"):
            engine.create_proxy("far", upstream, listen="192.0.2.1:0")
        # serve: a config file asking for the wildcard, then the API asked for everything.
        config = tmp_path / "toxiproxy.json"
        config.write_text(
            json.dumps([{"name": "testcontainers", "listen": "0.0.0.0:0", "upstream": upstream}])
        )
        url, _ = start_serve(serve, "--config", str(config))
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as api:
            assert api.get("/proxies/testcontainers").json()["listen"].startswith("0.0.0.0:")
        reported = request_every_listen(url, upstream, remote_refused=True)
        assert all(listen.startswith(("0.0.0.0:", "[::]:")) for listen in reported), reported
        # asyncfaults proxy: refuses the wildcard, runs on loopback.
        refused = subprocess.run(
            [sys.executable, "-m", "pytest_asyncfaults", "proxy", "--proxy",
             f"p={upstream}@0.0.0.0:0", "--duration", "1"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert "--allow-remote" in refused.stderr
        with subprocess.Popen(
            [sys.executable, "-m", "pytest_asyncfaults", "proxy", "--proxy", f"p={upstream}",
             "--duration", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        ) as proxy_cli:  # fmt: skip
            assert proxy_cli.stdout is not None
            assert "listening on 127.0.0.1:" in proxy_cli.stdout.readline()
            ours = listeners_of()
            # PostgreSQL runs detached (pg_ctl), as the postgres user: found by its port.
            pg_port = int(postgres_server.address.rpartition(":")[2])
            postgres = {listener for listener in all_listeners() if listener.port == pg_port}
            assert postgres, "the PostgreSQL server's socket was not found"
            assert any(listener.port == int(smtp_server.address.rpartition(":")[2])
                       for listener in ours)  # fmt: skip
            assert len(ours) >= 10, ours  # the engine, serve's API and proxies, proxy, SMTP
            assert not_loopback(ours | postgres) == []
            proxy_cli.terminate()


def test_allow_remote_is_what_opens_a_wildcard(
    echo_server: Peer, serve: list[tuple[str, subprocess.Popen[str]]]
) -> None:
    """The rule is the flag's: with --allow-remote a wildcard listen binds every interface."""
    url, process = start_serve(serve, "--allow-remote")
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as api:
        response = api.post(
            "/proxies",
            json={"name": "open", "upstream": echo_server.address, "listen": "0.0.0.0:0"},
        )
        assert response.status_code == 201, response.text
        port = int(response.json()["listen"].rpartition(":")[2])
    served = {listener for listener in listeners_of({process.pid}) if listener.port == port}
    assert {listener.host for listener in served} == {"0.0.0.0"}
