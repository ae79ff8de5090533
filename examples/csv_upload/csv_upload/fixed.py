"""The CSV upload after the case study's remedy.

Each fix answers one bug of ``buggy.py``:

1. every wait has a bound: ``asyncpg.connect(timeout=...)``,
   ``command_timeout`` for each query, ``aiosmtplib.send(timeout=...)``, and
   ``asyncio.timeout`` around the whole job, whatever it is stuck on;
2. the upload is written to disk in a worker thread (``asyncio.to_thread``),
   under a name the client does not choose, and the CSV is parsed there too:
   the event loop keeps serving other requests;
3. the rows go in as one transaction (``executemany`` inside
   ``conn.transaction()``): all of them or none;
4. a failure is logged with its traceback (``logger.exception``) and
   re-raised, so the server logs it too and a test can see it;
5. the connection is closed on every path: gracefully after a commit,
   terminated (no waiting on a dead peer) after an error or a cancellation;
6. the mail goes out only once the rows are committed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

import aiosmtplib
import asyncpg
from fastapi import BackgroundTasks, FastAPI, HTTPException, UploadFile

from .common import INSERT, Row, Settings, completion_mail, parse_csv

logger = logging.getLogger("csv_upload")


async def insert_rows(settings: Settings, filename: str, rows: list[Row]) -> None:
    """All the rows of one upload, in one transaction, on a connection closed on every path."""
    conn = await asyncpg.connect(
        settings.database_url,
        timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
    )
    try:
        async with conn.transaction():
            await conn.executemany(
                INSERT, [(filename, row.row_no, row.name, row.amount) for row in rows]
            )
    except BaseException:
        # Failed or cancelled (the job's timeout): do not wait on a peer that may be gone.
        conn.terminate()
        raise
    await conn.close(timeout=settings.command_timeout)


async def send_completion_email(settings: Settings, filename: str, count: int) -> None:
    await aiosmtplib.send(
        completion_mail(settings, filename, count),
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        timeout=settings.smtp_timeout,
    )


async def process_csv(settings: Settings, path: Path, filename: str) -> None:
    try:
        async with asyncio.timeout(settings.job_timeout):
            rows = await asyncio.to_thread(parse_csv, path)
            await insert_rows(settings, filename, rows)
            await send_completion_email(settings, filename, len(rows))
    except Exception:
        logger.exception("processing the upload %s failed", filename)
        raise
    logger.info("upload %s: %d rows imported, mail sent", filename, len(rows))


def _save(source: BinaryIO, target: Path) -> None:
    with target.open("wb") as file:
        shutil.copyfileobj(source, file)


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="csv upload (fixed)")

    @app.post("/upload")
    async def upload_file(file: UploadFile, background_tasks: BackgroundTasks) -> dict[str, str]:
        filename = Path(file.filename or "").name  # never a path the client chose
        if not filename:
            raise HTTPException(status_code=400, detail="the upload needs a file name")
        path = settings.upload_dir / f"{uuid.uuid4().hex}-{filename}"
        await asyncio.to_thread(_save, file.file, path)
        background_tasks.add_task(process_csv, settings, path, filename)
        return {"status": "processing"}

    return app
