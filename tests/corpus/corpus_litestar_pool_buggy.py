"""Litestar + an asyncpg pool: each order is answered at once, then recorded (buggy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State


async def record_order(pool: asyncpg.Pool, order_id: int) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_notify('orders', $1)", str(order_id))  # BUG: no timeout


@post("/orders/{order_id:int}", status_code=202)
async def create_order(order_id: int, state: State) -> Response[dict[str, int]]:
    return Response(
        {"order": order_id}, background=BackgroundTask(record_order, state.pool, order_id)
    )


def create_app(dsn: str) -> Litestar:
    @asynccontextmanager
    async def db_pool(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=2, max_size=5)
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar([create_order], lifespan=[db_pool])
