"""The user API: scoped toxics that always go away, ``down()``, and ``Faults``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import pytest_asyncio
from conftest import Peer

from pytest_asyncfaults import Faults, InvalidError, NotFoundError, Proxy
from pytest_asyncfaults._backends._base import ProxyHost

pytestmark = [pytest.mark.asyncio, pytest.mark.plugin]


async def echo_once(proxy: Proxy, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


@pytest_asyncio.fixture
async def proxy(faults: Faults, echo_server: Peer) -> Proxy:
    return await faults.create("echo", echo_server.address)


async def test_latency_scope_adds_then_removes(proxy: Proxy) -> None:
    async with proxy.latency(200) as toxic:
        assert [spec.name for spec in await proxy.toxics()] == ["latency_downstream"]
        started = time.perf_counter()
        assert await echo_once(proxy) == b"ping"
        assert time.perf_counter() - started >= 0.199
        assert toxic.hits == 1
        assert await toxic.read_hits() == 1
        assert (await proxy.read_stats()).toxics_hit == {"latency_downstream": 1}
    assert await proxy.toxics() == ()
    started = time.perf_counter()
    assert await echo_once(proxy) == b"ping"
    assert time.perf_counter() - started < 0.15


async def test_scope_removes_its_toxic_when_the_block_raises(proxy: Proxy) -> None:
    with pytest.raises(ZeroDivisionError):
        async with proxy.blackhole():
            1 / 0  # noqa: B018
    assert await proxy.toxics() == ()


async def test_scope_removes_its_toxic_when_the_task_is_cancelled(proxy: Proxy) -> None:
    entered = asyncio.Event()

    async def stuck() -> None:
        async with proxy.blackhole(), proxy.latency(10, stream="upstream"):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(stuck())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert task.cancelled()
    assert await proxy.toxics() == ()


async def test_scope_removal_survives_a_timeout(proxy: Proxy) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), proxy.blackhole():
            await echo_once(proxy)  # held by the blackhole until the timeout
    assert await proxy.toxics() == ()
    assert await echo_once(proxy) == b"ping"


async def test_update_inside_the_scope(proxy: Proxy) -> None:
    async with proxy.latency(10) as toxic:
        spec = await toxic.update(latency=250)
        assert spec.attributes == {"latency": 250, "jitter": 0}
        started = time.perf_counter()
        await echo_once(proxy)
        assert time.perf_counter() - started >= 0.249


async def test_down_refuses_then_restores(proxy: Proxy) -> None:
    async with proxy.down():
        assert not proxy.enabled
        with pytest.raises(ConnectionRefusedError):
            await echo_once(proxy)
    assert proxy.enabled
    assert await echo_once(proxy) == b"ping"


async def test_each_toxic_method_builds_its_toxic(proxy: Proxy) -> None:
    scopes = {
        "latency": proxy.latency(1, jitter=1),
        "bandwidth": proxy.bandwidth(100),
        "slow_close": proxy.slow_close(5),
        "timeout": proxy.timeout(5),
        "reset_peer": proxy.reset_peer(5),
        "slicer": proxy.slicer(10, 2, 3),
        "limit_data": proxy.limit_data(9),
        "noop": proxy.toxic("noop"),
    }
    for toxic_type, scope in scopes.items():
        assert scope.spec.type == toxic_type
    assert proxy.blackhole().spec.attributes == {"timeout": 0}
    assert dict(proxy.slicer(10, 2, 3).spec.attributes) == {
        "average_size": 10,
        "size_variation": 2,
        "delay": 3,
    }
    options = proxy.latency(
        5, stream="upstream", toxicity=0.5, connections="2+", start_after=10, duration=20, name="n"
    ).spec
    assert (options.stream, options.toxicity, str(options.connections)) == ("upstream", 0.5, "2+")
    assert (options.start_after, options.duration, options.name) == (10, 20, "n")


async def test_bad_input_fails_before_the_block(proxy: Proxy) -> None:
    with pytest.raises(InvalidError, match=r"latency\.latency=-5 is not valid"):
        proxy.latency(-5)
    with pytest.raises(InvalidError, match="stream='sideways' is not valid"):
        proxy.latency(5, stream="sideways")
    with pytest.raises(InvalidError, match="bandwidth attribute 'speed' is not valid"):
        proxy.toxic("bandwidth", speed=1)
    with pytest.raises(InvalidError, match=r"^pg_cut\.reset='yes' is not valid: expected 0"):
        proxy.pg_cut(reset="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match=r"^smtp_cut\.reset=2 is not valid: expected 0"):
        proxy.smtp_cut(reset=2)  # type: ignore[arg-type]
    assert proxy.smtp_cut(reset=True).spec.attributes["reset"] == 1
    assert await proxy.toxics() == ()


async def test_faults_lookup_and_cleanup(
    asyncfaults_backend: ProxyHost[Any], echo_server: Peer
) -> None:
    faults = Faults(asyncfaults_backend, prefix="lookup-")
    db = await faults.create("db", echo_server.address)
    assert faults["db"] is db
    assert faults.db is db
    assert list(faults) == [db]
    with pytest.raises(NotFoundError, match=r"no proxy named 'smtp' in this test \(known: db\)"):
        faults["smtp"]
    with pytest.raises(NotFoundError):
        faults.smtp  # noqa: B018
    assert "lookup-db" in asyncfaults_backend.proxies()
    await faults.aclose()
    assert "lookup-db" not in asyncfaults_backend.proxies()
