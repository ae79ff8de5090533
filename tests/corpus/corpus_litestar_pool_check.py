"""The tests a user of the litestar + asyncpg pool app writes (run as test_litestar_pool.py)."""

from __future__ import annotations

import types

import asyncpg
import corpus_litestar_pool_buggy
import corpus_litestar_pool_fixed
import httpx
import pytest
from litestar import Litestar

from pytest_asyncfaults import Faults, PostgresServer, TaskMonitor


@pytest.fixture(
    params=[corpus_litestar_pool_buggy, corpus_litestar_pool_fixed], ids=["buggy", "fixed"]
)
def asgi_app(
    request: pytest.FixtureRequest, postgres_server: PostgresServer, faults: Faults
) -> Litestar:
    module: types.ModuleType = request.param
    app: Litestar = module.create_app(postgres_server.dsn_via(faults.postgres))
    return app


async def test_an_order_is_recorded(app_client: httpx.AsyncClient, tasks: TaskMonitor) -> None:
    response = await app_client.post("/orders/17")
    assert response.status_code == 202
    outcome = await tasks.settle(within=2)
    outcome.assert_completed()
    outcome.assert_cleaned_up()


async def test_a_blackholed_database_times_out(
    app_client: httpx.AsyncClient, tasks: TaskMonitor, faults: Faults
) -> None:
    async with faults.postgres.blackhole():
        response = await app_client.post("/orders/17")
        assert response.status_code == 202
        outcome = await tasks.settle(within=2)
    outcome.assert_failed(TimeoutError)
    outcome.assert_logged(TimeoutError)
    outcome.assert_cleaned_up()


async def test_a_slow_database_times_out(
    app_client: httpx.AsyncClient, tasks: TaskMonitor, faults: Faults
) -> None:
    async with faults.postgres.latency(3000):
        response = await app_client.post("/orders/17")
        assert response.status_code == 202
        outcome = await tasks.settle(within=2)
    outcome.assert_failed(TimeoutError)
    outcome.assert_logged(TimeoutError)
    outcome.assert_cleaned_up()


async def test_a_reset_connection_is_logged(
    app_client: httpx.AsyncClient, tasks: TaskMonitor, faults: Faults
) -> None:
    async with faults.postgres.reset_peer():
        response = await app_client.post("/orders/17")
        assert response.status_code == 202
        outcome = await tasks.settle(within=2)
    outcome.assert_failed(asyncpg.PostgresConnectionError)
    outcome.assert_logged(asyncpg.PostgresConnectionError)
    outcome.assert_cleaned_up()
