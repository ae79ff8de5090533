"""``asyncfaults proxy``: a standalone fault proxy, driven the way a shell script would."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import IO_TIMEOUT, Peer, connect, recv_exactly

RUN_BOUND = 30


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest_asyncfaults", "proxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until_running(process: subprocess.Popen[str]) -> list[str]:
    """Its first lines: one per proxy and fault, then the "running" line."""
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("asyncfaults proxy: seed"):
        line = process.stdout.readline()
        assert line, f"exited early: {process.wait(RUN_BOUND)} {process.stderr.read()}"  # type: ignore[union-attr]
        lines.append(line.rstrip("\n"))
    return lines


def round_trip(address: str) -> float:
    with connect(address) as sock:
        started = time.perf_counter()
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"
        return time.perf_counter() - started


def test_a_latency_on_a_standalone_proxy_until_interrupted(echo_server: Peer) -> None:
    process = start("--proxy", f"db={echo_server.address}", "--toxic", "db:latency:latency=200")
    try:
        lines = read_until_running(process)
        listening = lines[0]
        assert listening.startswith("db: listening on 127.0.0.1:")
        assert listening.endswith(f"-> {echo_server.address}")
        assert lines[1] == "fault db: latency downstream latency=200 jitter=0"
        address = listening.split()[3]
        assert round_trip(address) >= 0.199
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=RUN_BOUND)
    finally:
        process.kill()
        process.wait(RUN_BOUND)
    assert process.returncode == 0, err
    assert "db: 1 accepted, " in out  # (open: 0 or 1, as the close may still be under way)
    assert ", 4 bytes up, 4 bytes down" in out
    assert "{'latency_downstream': 1}" in out


def test_a_protocol_toxic_answers_and_the_end_says_what_it_did(
    peer_factory: Callable[[Callable[[socket.socket], None]], Peer],
) -> None:
    def smtp(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.example.com ESMTP\r\n")
        reader = conn.makefile("rb")
        while line := reader.readline():
            conn.sendall(b"221 bye\r\n" if line.startswith(b"QUIT") else b"250 OK\r\n")

    peer = peer_factory(smtp)
    toxic = "smtp:smtp_reply:command=rcpt,code=550,text='5.1.1 No such user, sorry'"
    process = start("--proxy", f"smtp={peer.address}", "--toxic", toxic)
    try:
        lines = read_until_running(process)
        assert (
            lines[1]
            == "fault smtp: smtp_reply command=rcpt code=550 text='5.1.1 No such user, sorry'"
        )
        with connect(lines[0].split()[3]) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220")
            sock.sendall(b"MAIL FROM:<a@example.com>\r\n")
            assert reader.readline() == b"250 OK\r\n"
            sock.sendall(b"RCPT TO:<b@example.com>\r\n")
            assert reader.readline() == b"550 5.1.1 No such user, sorry\r\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=RUN_BOUND)
    finally:
        process.kill()
        process.wait(RUN_BOUND)
    assert process.returncode == 0, err
    assert "smtp: connection 1: injected reply to RCPT: 550 5.1.1 No such user, sorry" in out, out


def test_a_fixed_listen_port_and_a_timed_scenario(echo_server: Peer, tmp_path: Path) -> None:
    scenario = tmp_path / "blip.toml"
    scenario.write_text(
        "[[steps]]\nat = 0\nfaults = []\n\n"
        "[[steps]]\nat = 300\n"
        'faults = [{ proxy = "db", toxic = "latency", attributes = { latency = 300 } }]\n',
        encoding="utf-8",
    )
    process = start(
        "--proxy",
        f"db={echo_server.address}@127.0.0.1:0",
        "--scenario",
        str(scenario),
        "--duration",
        "5",
    )
    try:
        lines = read_until_running(process)
        address = lines[0].split()[3]
        assert "fault db: latency downstream latency=300 jitter=0 (from 300 ms)" in lines
        assert round_trip(address) < 0.25  # healthy at first
        time.sleep(0.4)
        assert round_trip(address) >= 0.299  # then the step's latency
        out, err = process.communicate(timeout=RUN_BOUND)  # --duration ends it
    finally:
        process.kill()
        process.wait(RUN_BOUND)
    assert process.returncode == 0, err
    assert "db: 2 accepted" in out


def test_bad_usage_names_the_option_and_exits_2(echo_server: Peer) -> None:
    cases = {
        ("--proxy", "db"): "--proxy='db' is not valid: expected NAME=HOST:PORT",
        ("--proxy", f"db={echo_server.address}@0.0.0.0:0"): "is not a loopback address",
        ("--proxy", f"db={echo_server.address}", "--toxic", "pg:timeout"): "--toxic proxy='pg'",
        ("--proxy", f"db={echo_server.address}", "--toxic", "db:latency:latency=-1"): (
            "latency=-1 is not valid"
        ),
        ("--proxy", f"db={echo_server.address}", "--duration", "0"): "--duration=0.0",
        ("--proxy", f"db={echo_server.address}", "--scenario", "/no/such.toml"): "/no/such.toml",
    }
    for args, message in cases.items():
        result = subprocess.run(
            [sys.executable, "-m", "pytest_asyncfaults", "proxy", *args],
            capture_output=True,
            text=True,
            timeout=IO_TIMEOUT,
            check=False,
        )
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_listen_port_in_use_exits_1(echo_server: Peer) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_asyncfaults",
            "proxy",
            "--proxy",
            f"db={echo_server.address}@{echo_server.address}",
        ],
        capture_output=True,
        text=True,
        timeout=IO_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "in use" in result.stderr
    assert "Traceback" not in result.stderr
