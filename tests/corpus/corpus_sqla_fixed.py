"""Starlette + SQLAlchemy's async engine, made at import from the environment (fixed)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DB_TIMEOUT = 0.4
"""Seconds to connect, and for each statement (short: this is a test's app)."""

log = logging.getLogger(__name__)
engine = create_async_engine(
    os.environ["CORPUS_DATABASE_URL"],
    pool_timeout=DB_TIMEOUT,
    connect_args={"timeout": DB_TIMEOUT, "command_timeout": DB_TIMEOUT},
)


async def stock(request: Request) -> JSONResponse:
    try:
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM pg_class"))).scalar_one()
    except (OSError, TimeoutError):
        log.exception("the stock count is unavailable")
        return JSONResponse({"error": "database unavailable"}, status_code=503)
    return JSONResponse({"items": count})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = Starlette(routes=[Route("/stock", stock)], lifespan=lifespan)
