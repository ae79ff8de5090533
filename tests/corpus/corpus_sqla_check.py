"""The tests a user of the SQLAlchemy app writes (run as test_sqla.py).

The app reads its database's URL from the environment when it is imported: the
ini key ``asyncfaults_env`` points it at the proxy, and the app is imported once
the environment is set (as ``asyncfaults_app`` would import it).
"""

from __future__ import annotations

import importlib

import httpx
import pytest
from starlette.applications import Starlette

from pytest_asyncfaults import Faults, PostgresServer, TaskMonitor


@pytest.fixture(params=["buggy", "fixed"])
def asgi_app(
    request: pytest.FixtureRequest, asyncfaults_env: dict[str, str], postgres_server: PostgresServer
) -> Starlette:
    app: Starlette = importlib.import_module(f"corpus_sqla_{request.param}").app
    return app


async def test_the_stock_is_counted(app_client: httpx.AsyncClient, tasks: TaskMonitor) -> None:
    response = await app_client.get("/stock")
    assert response.status_code == 200
    assert response.json()["items"] > 0
    outcome = await tasks.settle(within=2)
    outcome.assert_completed()
    outcome.assert_cleaned_up()


async def test_a_blackholed_database_answers_503(
    app_client: httpx.AsyncClient, tasks: TaskMonitor, faults: Faults
) -> None:
    async with faults.postgres.blackhole():
        response = await app_client.get("/stock", timeout=2)
        assert response.status_code == 503
        outcome = await tasks.settle(within=2)
    # no background task failed: the handler logged the timeout and answered
    assert any(
        isinstance(log.exc_info[1], TimeoutError) for log in outcome.error_logs if log.exc_info
    )
    outcome.assert_cleaned_up()


async def test_a_slow_database_answers_503(
    app_client: httpx.AsyncClient, tasks: TaskMonitor, faults: Faults
) -> None:
    async with faults.postgres.latency(3000):
        response = await app_client.get("/stock", timeout=2)
        assert response.status_code == 503
        outcome = await tasks.settle(within=2)
    assert any(
        isinstance(log.exc_info[1], TimeoutError) for log in outcome.error_logs if log.exc_info
    )
    outcome.assert_cleaned_up()
