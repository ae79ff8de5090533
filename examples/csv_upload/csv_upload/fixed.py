"""The CSV upload after the case study's remedy.

Each fix answers one bug of ``buggy.py``:

1. every wait has a bound: ``asyncpg.connect(timeout=...)``,
   ``command_timeout`` for each query, ``aiosmtplib.send(timeout=...)``, and
   ``asyncio.timeout`` around the whole job, whatever it is stuck on;
2. the upload is written to disk in a worker thread (``asyncio.to_thread``),
   under a name the client does not choose, and the CSV is parsed there too:
   the event loop keeps serving other requests;
3. the rows go in as one transaction (``executemany`` inside
   ``conn.transaction()``): all of them or none; a transaction the
   database could not serialize (or a deadlock) is tried again, as
   PostgreSQL's documentation asks, and the retry is logged;
4. a failure is logged with its traceback (``logger.exception``) and
   re-raised, so the server logs it too and a test can see it;
5. the connection is closed on every path: gracefully after a commit,
   terminated (no waiting on a dead peer) after an error or a cancellation;
6. the mail goes out only once the rows are committed; a server that turns
   it away for now (4xx: greylisting) gets it again later, and a connection
   lost after the message was sent is not retried: the mail may have gone
   out, and a second one would be a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Final

import aiosmtplib
import asyncpg
from fastapi import BackgroundTasks, FastAPI, HTTPException, UploadFile

from .common import INSERT, Row, Settings, completion_mail, parse_csv

logger = logging.getLogger("csv_upload")


RETRIED: Final = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
"""What PostgreSQL asks the client to try again: nothing of the transaction was kept."""


async def insert_rows(settings: Settings, filename: str, rows: list[Row]) -> None:
    """All the rows of one upload, in one transaction, on a connection closed on every path."""
    conn = await asyncpg.connect(
        settings.database_url,
        timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
    )
    records = [(filename, row.row_no, row.name, row.amount) for row in rows]
    try:
        for attempt in range(1, settings.attempts + 1):
            try:
                async with conn.transaction():
                    await conn.executemany(INSERT, records)
                break
            except RETRIED as exc:
                if attempt == settings.attempts:
                    raise
                logger.warning(
                    "upload %s: %s (attempt %d of %d), trying the transaction again",
                    filename,
                    exc,
                    attempt,
                    settings.attempts,
                )
    except BaseException:
        # Failed or cancelled (the job's timeout): do not wait on a peer that may be gone.
        conn.terminate()
        raise
    await conn.close(timeout=settings.command_timeout)


def _transient(exc: aiosmtplib.SMTPException) -> bool:
    """A reply that says "not now" (4xx): the mail was not taken, try again later."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(400 <= refused.code < 500 for refused in exc.recipients)
    return isinstance(exc, aiosmtplib.SMTPResponseException) and 400 <= exc.code < 500


async def send_completion_email(settings: Settings, filename: str, count: int) -> None:
    for attempt in range(1, settings.attempts + 1):
        try:
            await aiosmtplib.send(
                completion_mail(settings, filename, count),
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                timeout=settings.smtp_timeout,
            )
            return
        except aiosmtplib.SMTPException as exc:
            # Only a reply that turned the mail away: a connection lost after the message
            # went out (SMTPServerDisconnected) may have delivered it, and a retry would
            # send it twice.
            if not _transient(exc) or attempt == settings.attempts:
                raise
            logger.warning(
                "upload %s: the mail server said %s (attempt %d of %d), trying again in %g s",
                filename,
                exc,
                attempt,
                settings.attempts,
                settings.smtp_retry_delay,
            )
        await asyncio.sleep(settings.smtp_retry_delay)


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
