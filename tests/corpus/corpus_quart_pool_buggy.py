"""Quart + an asyncpg pool: each order is answered at once, then recorded (buggy)."""

from __future__ import annotations

import asyncpg
from quart import Quart


def create_app(dsn: str) -> Quart:
    app = Quart(__name__)
    pools: list[asyncpg.Pool] = []

    @app.before_serving
    async def open_pool() -> None:
        pools.append(await asyncpg.create_pool(dsn, min_size=2, max_size=5))

    @app.after_serving
    async def close_pool() -> None:
        await pools.pop().close()

    async def record_order(order_id: int) -> None:
        async with pools[0].acquire() as conn:
            await conn.execute("SELECT pg_notify('orders', $1)", str(order_id))  # BUG: no timeout

    @app.post("/orders/<int:order_id>")
    async def create_order(order_id: int) -> tuple[dict[str, int], int]:
        app.add_background_task(record_order, order_id)
        return {"order": order_id}, 202

    return app
