"""FastAPI + an asyncpg pool: each order is answered at once, then recorded (buggy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import BackgroundTasks, FastAPI, Request


async def record_order(pool: asyncpg.Pool, order_id: int) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_notify('orders', $1)", str(order_id))  # BUG: no timeout


def create_app(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=2, max_size=5)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders/{order_id}", status_code=202)
    async def create_order(
        order_id: int, request: Request, background: BackgroundTasks
    ) -> dict[str, int]:
        background.add_task(record_order, request.app.state.pool, order_id)
        return {"order": order_id}

    return app
