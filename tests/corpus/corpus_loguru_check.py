"""The tests a user of the loguru app writes (run as test_loguru.py)."""

from __future__ import annotations

import types

import corpus_loguru_buggy
import corpus_loguru_fixed
import httpx
import pytest
from fastapi import FastAPI

from pytest_asyncfaults import Faults, PostgresServer, TaskMonitor


@pytest.fixture(params=[corpus_loguru_buggy, corpus_loguru_fixed], ids=["buggy", "fixed"])
def asgi_app(
    request: pytest.FixtureRequest, postgres_server: PostgresServer, faults: Faults
) -> FastAPI:
    module: types.ModuleType = request.param
    app: FastAPI = module.create_app(postgres_server.dsn_via(faults.postgres))
    return app


async def test_the_count_is_refreshed(app_client: httpx.AsyncClient, tasks: TaskMonitor) -> None:
    assert (await app_client.post("/signup")).status_code == 201
    outcome = await tasks.settle(within=2)
    outcome.assert_completed()
    outcome.assert_cleaned_up()


async def test_a_blackholed_database_is_logged(
    app_client: httpx.AsyncClient, tasks: TaskMonitor, faults: Faults
) -> None:
    async with faults.postgres.blackhole():
        assert (await app_client.post("/signup")).status_code == 201
        outcome = await tasks.settle(within=2)
    outcome.assert_failed(TimeoutError)
    outcome.assert_logged(TimeoutError)
    outcome.assert_cleaned_up()
