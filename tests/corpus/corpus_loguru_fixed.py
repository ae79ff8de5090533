"""FastAPI + loguru: a sign-up refreshes the member count after answering (fixed)."""

from __future__ import annotations

import asyncpg
from fastapi import BackgroundTasks, FastAPI
from loguru import logger

DB_TIMEOUT = 0.4
"""Seconds to connect, and for each statement (short: this is a test's app)."""


async def refresh_member_count(dsn: str) -> None:
    try:
        conn = await asyncpg.connect(dsn, timeout=DB_TIMEOUT, command_timeout=DB_TIMEOUT)
        try:
            count = await conn.fetchval("SELECT count(*) FROM pg_roles")
        finally:
            await conn.close(timeout=DB_TIMEOUT)
        logger.info("{} members", count)
    except Exception:
        logger.exception("could not refresh the member count")
        raise


def create_app(dsn: str) -> FastAPI:
    app = FastAPI()

    @app.post("/signup", status_code=201)
    async def signup(background: BackgroundTasks) -> dict[str, bool]:
        background.add_task(refresh_member_count, dsn)
        return {"welcome": True}

    return app
