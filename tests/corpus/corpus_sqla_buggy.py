"""Starlette + SQLAlchemy's async engine, made at import from the environment (buggy)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

engine = create_async_engine(os.environ["CORPUS_DATABASE_URL"])


async def stock(request: Request) -> JSONResponse:
    async with engine.connect() as conn:  # BUG: no connect timeout
        count = (await conn.execute(text("SELECT count(*) FROM pg_class"))).scalar_one()
    return JSONResponse({"items": count})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = Starlette(routes=[Route("/stock", stock)], lifespan=lifespan)
