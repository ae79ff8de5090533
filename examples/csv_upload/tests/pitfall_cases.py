"""Each pitfall of ``csv_upload.pitfalls``, buggy and fixed: the tests a user would write.

Not collected here (the name does not start with ``test_``):
``test_csv_upload_pitfalls.py`` runs this file in a pytest of its own, where
every ``*_bug`` test must fail with the finding that names its bug, and every
``*_fixed`` test must pass. A test gets the buggy app when its name ends in
``_bug``, else the fixed one.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING

import httpx
import pytest
from asgi_lifespan import LifespanManager
from csv_upload.pitfalls import create_app
from fastapi import FastAPI

if TYPE_CHECKING:
    from pytest_asyncfaults import TaskMonitor

pytestmark = pytest.mark.asyncio


@pytest.fixture
def asgi_app(request: pytest.FixtureRequest) -> FastAPI:
    return create_app("buggy" if request.node.name.endswith("_bug") else "fixed")


# -- a fire-and-forget task with no reference kept: [lost] -----------------------------------


async def pay_and_confirm(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.post("/orders/42/pay")
    assert response.status_code == 200
    await asyncio.sleep(0.01)
    gc.collect()  # the collector runs when it likes; in a test, now
    return await client.post("/payments/42/confirm", params={"reference": "PSP-1"})


async def test_fire_and_forget_bug(app_client: httpx.AsyncClient) -> None:
    confirmed = await pay_and_confirm(app_client)
    assert confirmed.status_code == 404  # the waiter is gone: the payment is lost


async def test_fire_and_forget_fixed(app_client: httpx.AsyncClient, tasks: TaskMonitor) -> None:
    confirmed = await pay_and_confirm(app_client)
    assert confirmed.status_code == 200
    assert (await app_client.get("/orders/42")).json()["paid"] is True
    (await tasks.settle(within=2)).assert_completed()


# -- gather abandoning its siblings: [abandoned] -----------------------------------------------


async def test_gather_bug(app_client: httpx.AsyncClient, tasks: TaskMonitor) -> None:
    response = await app_client.get("/dashboard/ada")
    assert response.status_code == 503  # one part failed, the page is lost
    await tasks.settle(within=2)


async def test_gather_fixed(app_client: httpx.AsyncClient, tasks: TaskMonitor) -> None:
    response = await app_client.get("/dashboard/ada")
    assert response.status_code == 200  # what works is shown
    page = response.json()
    assert page["orders"] == [{"id": 1, "total": 12.5}]
    assert page["recommendations"] is None
    (await tasks.settle(within=2)).assert_logged(ConnectionError)


# -- a swallowed CancelledError defeats the timeout: [swallowed_cancel] ------------------


async def test_swallowed_cancel_bug(app_client: httpx.AsyncClient) -> None:
    rate = (await app_client.get("/rates/EUR")).json()
    assert rate["fresh"] is True  # a cached rate, served as a fresh one


async def test_swallowed_cancel_fixed(app_client: httpx.AsyncClient) -> None:
    rate = (await app_client.get("/rates/EUR")).json()
    assert rate == {"currency": "EUR", "rate": 1.0, "fresh": False}


# -- a per-session monitor that outlives the app: leaks ---------------------------------------
# These drive the app's lifespan themselves: the plugin looks for leftover tasks
# before it shuts the app down, and what matters here is the shutdown.


async def monitor_sessions(variant: str) -> None:
    app = create_app("buggy" if variant == "bug" else "fixed")
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            for session in ("s1", "s2"):
                response = await client.post(f"/sessions/{session}/monitor")
                assert response.status_code == 200
            await asyncio.sleep(0.1)
    # The app has shut down here.


async def test_session_monitor_bug(tasks: TaskMonitor) -> None:
    await monitor_sessions("bug")


async def test_session_monitor_fixed(tasks: TaskMonitor) -> None:
    await monitor_sessions("fixed")
    (await tasks.settle(within=2)).assert_cleaned_up()


# -- a task on the critical path nobody awaits: [never_retrieved] ---------------------------


async def test_critical_task_bug(app_client: httpx.AsyncClient, tasks: TaskMonitor) -> None:
    response = await app_client.get("/users/grace/status")
    assert response.status_code == 200  # "processing": the error went nowhere
    await tasks.settle(within=2)


async def test_critical_task_fixed(app_client: httpx.AsyncClient, tasks: TaskMonitor) -> None:
    response = await app_client.get("/users/grace/status")
    assert response.status_code == 404
    assert (await app_client.get("/users/ada/status")).json()["status"] == "ready"
    (await tasks.settle(within=2)).assert_completed()
