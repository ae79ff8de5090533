"""Quart + an asyncpg pool: each order is answered at once, then recorded (fixed)."""

from __future__ import annotations

import asyncio

import asyncpg
from quart import Quart

DB_TIMEOUT = 0.4
"""Seconds any database step of the job may take (short: this is a test's app)."""


def create_app(dsn: str) -> Quart:
    app = Quart(__name__)
    pools: list[asyncpg.Pool] = []

    @app.before_serving
    async def open_pool() -> None:
        pools.append(
            await asyncpg.create_pool(
                dsn, min_size=2, max_size=5, timeout=5, command_timeout=DB_TIMEOUT
            )
        )

    @app.after_serving
    async def close_pool() -> None:
        await pools.pop().close()

    async def record_order(order_id: int) -> None:
        try:
            async with asyncio.timeout(DB_TIMEOUT):
                async with pools[0].acquire(timeout=DB_TIMEOUT) as conn:
                    await conn.execute("SELECT pg_notify('orders', $1)", str(order_id))
        except Exception:
            app.logger.exception("could not record order %s", order_id)
            raise

    @app.post("/orders/<int:order_id>")
    async def create_order(order_id: int) -> tuple[dict[str, int], int]:
        app.add_background_task(record_order, order_id)
        return {"order": order_id}, 202

    return app
