"""FastAPI + an asyncpg pool: each order is answered at once, then recorded (fixed)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import BackgroundTasks, FastAPI, Request

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


def create_app(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(
            dsn, min_size=2, max_size=5, timeout=5, command_timeout=DB_TIMEOUT
        )
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
