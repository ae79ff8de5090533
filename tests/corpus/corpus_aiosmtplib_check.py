"""The tests a user of the aiosmtplib app writes (run as test_aiosmtplib.py)."""

from __future__ import annotations

import types

import corpus_aiosmtplib_buggy
import corpus_aiosmtplib_fixed
import httpx
import pytest
from starlette.applications import Starlette

from pytest_asyncfaults import Faults, SmtpServer, TaskMonitor


@pytest.fixture(params=[corpus_aiosmtplib_buggy, corpus_aiosmtplib_fixed], ids=["buggy", "fixed"])
def asgi_app(request: pytest.FixtureRequest, smtp_server: SmtpServer, faults: Faults) -> Starlette:
    module: types.ModuleType = request.param
    app: Starlette = module.create_app(faults.smtp.host, faults.smtp.port)
    return app


async def test_the_receipt_is_mailed(
    app_client: httpx.AsyncClient, tasks: TaskMonitor, smtp_server: SmtpServer
) -> None:
    response = await app_client.post("/checkout", params={"email": "ann@example.com"})
    assert response.status_code == 202
    outcome = await tasks.settle(within=2)
    outcome.assert_completed()
    outcome.assert_cleaned_up()
    assert len(smtp_server.messages) == 1


async def test_a_blackholed_mail_server_times_out(
    app_client: httpx.AsyncClient, tasks: TaskMonitor, faults: Faults
) -> None:
    async with faults.smtp.blackhole():
        response = await app_client.post("/checkout", params={"email": "ann@example.com"})
        assert response.status_code == 202
        outcome = await tasks.settle(within=2)
    outcome.assert_failed(TimeoutError)
    outcome.assert_logged(TimeoutError)
    outcome.assert_cleaned_up()
