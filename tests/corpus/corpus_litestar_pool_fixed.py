"""Litestar + an asyncpg pool: each order is answered at once, then recorded (fixed)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State

DB_TIMEOUT = 0.4
"""Seconds any database step of the job may take (short: this is a test's app)."""

log = logging.getLogger(__name__)


async def record_order(pool: asyncpg.Pool, order_id: int) -> None:
    try:
        async with asyncio.timeout(DB_TIMEOUT):
            async with pool.acquire(timeout=DB_TIMEOUT) as conn:
                await conn.execute("SELECT pg_notify('orders', $1)", str(order_id))
    except Exception:
        log.exception("could not record order %s", order_id)
        raise


@post("/orders/{order_id:int}", status_code=202)
async def create_order(order_id: int, state: State) -> Response[dict[str, int]]:
    return Response(
        {"order": order_id}, background=BackgroundTask(record_order, state.pool, order_id)
    )


def create_app(dsn: str) -> Litestar:
    @asynccontextmanager
    async def db_pool(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(
            dsn, min_size=2, max_size=5, timeout=5, command_timeout=DB_TIMEOUT
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar([create_order], lifespan=[db_pool])
