from __future__ import annotations

from conftest import Peer, connect, recv_exactly

from pytest_asyncfaults import Engine


def test_echo_through_proxy(engine: Engine, echo_server: Peer) -> None:
    info = engine.create_proxy("echo", echo_server.address)
    with connect(info.listen) as sock:
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"
