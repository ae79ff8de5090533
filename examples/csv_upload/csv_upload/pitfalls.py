"""The other async pitfalls of the seed articles, as small endpoints, buggy and fixed.

``create_app("buggy")`` and ``create_app("fixed")`` serve the same routes;
each buggy handler has the one mistake its route is about (marked ``BUG``),
and its fixed twin does what the articles recommend:

- ``POST /orders/{id}/pay``: a fire-and-forget ``create_task`` with no
  reference kept: the task waiting for the payment confirmation is
  garbage-collected, and the confirmation finds nobody waiting;
- ``GET /dashboard/{user}``: ``asyncio.gather`` fails on its first error and
  abandons its siblings, still running, unawaited (the page is a 503 although
  the parts that work are still being fetched);
- ``GET /rates/{currency}``: a ``CancelledError`` caught and turned into a
  value defeats the timeout of ``asyncio.wait_for``: a stale rate is served
  as a fresh one;
- ``POST /sessions/{id}/monitor``: a per-session monitor task that nothing
  stops, not even the app's shutdown;
- ``GET /users/{user}/status``: a ``create_task`` on the critical path that
  nobody awaits: the answer does not wait for it and its error is never seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, HTTPException

logger = logging.getLogger("csv_upload.pitfalls")

Variant = Literal["buggy", "fixed"]

USERS = {"ada": {"name": "Ada Lovelace", "plan": "pro"}}
ORDERS = {"ada": [{"id": 1, "total": 12.5}]}
CACHED_RATES = {"EUR": 1.0, "USD": 1.08}
RATE_TIMEOUT = 0.1
"""How long a rates answer may take before the cached one is served."""


# -- the services the handlers talk to (simulated) ---------------------------------------


async def fetch_user(user: str) -> dict[str, str]:
    await asyncio.sleep(0.01)
    try:
        return USERS[user]
    except KeyError:
        raise LookupError(f"no user {user!r}") from None


async def fetch_orders(user: str) -> list[dict[str, Any]]:
    await asyncio.sleep(0.2)  # the slow one
    return ORDERS.get(user, [])


async def fetch_recommendations(user: str) -> list[str]:
    await asyncio.sleep(0)  # fails at once: connection refused
    raise ConnectionError("the recommendations service is down")


async def rates_service(currency: str) -> float:
    await asyncio.sleep(1.0)  # the rates provider is having a bad day
    return CACHED_RATES[currency] * 1.01


# -- 1. fire-and-forget, no reference kept --------------------------------------------------


class Payments:
    """Orders waiting for the payment provider's confirmation."""

    def __init__(self) -> None:
        # Waiters are held weakly so that abandoned checkouts do not pile up:
        # the task waiting on one is what keeps it alive.
        self.waiting: weakref.WeakValueDictionary[str, asyncio.Future[str]] = (
            weakref.WeakValueDictionary()
        )
        self.paid: dict[str, str] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def await_confirmation(self, order: str) -> None:
        confirmed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[order] = confirmed
        self.paid[order] = await confirmed
        logger.info("order %s paid: %s", order, self.paid[order])

    def confirm(self, order: str, reference: str) -> bool:
        waiter = self.waiting.pop(order, None)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(reference)
        return True


# -- 3. the swallowed cancellation ----------------------------------------------------------


async def fetch_rate_buggy(currency: str) -> tuple[float, bool]:
    try:
        return await rates_service(currency), True
    except asyncio.CancelledError:  # BUG: the timeout's cancellation becomes a value
        return CACHED_RATES[currency], True


async def fetch_rate_fixed(currency: str) -> tuple[float, bool]:
    return await rates_service(currency), True  # cancellation goes through


# -- 4. per-session monitors ----------------------------------------------------------------


async def monitor_session(session: str) -> None:
    while True:
        await asyncio.sleep(0.05)  # check the session's health
        logger.debug("session %s alive", session)


# -- the app ----------------------------------------------------------------------------------


def create_app(variant: Variant) -> FastAPI:
    fixed = variant == "fixed"
    payments = Payments()
    monitors: dict[str, asyncio.Task[None]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if fixed:
            # Stop what the app started, and wait for each to end.
            for task in monitors.values():
                task.cancel()
            await asyncio.gather(*monitors.values(), return_exceptions=True)
            monitors.clear()
        # BUG (buggy): the monitors outlive the app

    app = FastAPI(title=f"async pitfalls ({variant})", lifespan=lifespan)

    @app.post("/orders/{order}/pay")
    async def pay(order: str) -> dict[str, str]:
        if fixed:
            task = asyncio.create_task(payments.await_confirmation(order))
            payments.tasks.add(task)  # a strong reference until it is done
            task.add_done_callback(payments.tasks.discard)
        else:
            asyncio.create_task(payments.await_confirmation(order))  # noqa: RUF006 - BUG
        return {"order": order, "status": "waiting for the payment provider"}

    @app.post("/payments/{order}/confirm")
    async def confirm(order: str, reference: str = "ok") -> dict[str, str]:
        if not payments.confirm(order, reference):
            raise HTTPException(status_code=404, detail=f"no payment of order {order} is awaited")
        await asyncio.sleep(0)  # let the waiter record it
        return {"order": order, "status": "confirmed"}

    @app.get("/orders/{order}")
    async def order_status(order: str) -> dict[str, Any]:
        return {"order": order, "paid": order in payments.paid}

    @app.get("/dashboard/{user}")
    async def dashboard(user: str) -> dict[str, Any]:
        parts = (fetch_user(user), fetch_orders(user), fetch_recommendations(user))
        if fixed:
            # Every part runs to its end; a failed one is logged and left out.
            results = await asyncio.gather(*parts, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    logger.error("dashboard of %s: a part failed", user, exc_info=result)
            found, history, picks = (
                None if isinstance(result, BaseException) else result for result in results
            )
            return {"user": found, "orders": history, "recommendations": picks}
        try:
            found, history, picks = await asyncio.gather(*parts)  # BUG: abandons the others
        except ConnectionError:
            logger.exception("dashboard of %s: a part failed", user)
            raise HTTPException(status_code=503, detail="try again later") from None
        return {"user": found, "orders": history, "recommendations": picks}

    @app.get("/rates/{currency}")
    async def rate(currency: str) -> dict[str, Any]:
        fetch = fetch_rate_fixed if fixed else fetch_rate_buggy
        try:
            value, fresh = await asyncio.wait_for(fetch(currency), timeout=RATE_TIMEOUT)
        except TimeoutError:
            value, fresh = CACHED_RATES[currency], False
        return {"currency": currency, "rate": value, "fresh": fresh}

    @app.post("/sessions/{session}/monitor")
    async def start_monitor(session: str) -> dict[str, str]:
        if session not in monitors or monitors[session].done():
            monitors[session] = asyncio.create_task(
                monitor_session(session), name=f"monitor-{session}"
            )
        return {"session": session, "status": "monitored"}

    @app.get("/users/{user}/status")
    async def user_status(user: str) -> dict[str, Any]:
        if fixed:
            try:
                found = await fetch_user(user)  # the answer needs it: await it
            except LookupError as missing:
                raise HTTPException(status_code=404, detail=str(missing)) from None
            return {"user": found, "status": "ready"}
        asyncio.create_task(fetch_user(user))  # noqa: RUF006 - BUG: never awaited
        return {"user": None, "status": "processing"}

    return app
