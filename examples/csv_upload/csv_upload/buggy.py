"""The CSV upload of the case study, with every bug it finds.

Users upload a CSV, get an answer at once, and get a mail when the rows are
in. In production the background job "fails silently about 30% of the
time": no exception, no log, no mail. The bugs, each marked ``BUG`` below:

1. ``asyncpg.connect`` with no timeout of its own: when the database (or the
   network to it) stops answering, the job waits on the connection (asyncpg's
   default is 60 s per attempt; behind a pool or a retry loop, forever);
2. a synchronous ``open().write()`` inside the ``async def`` handler: a large
   upload freezes every other request while it is written;
3. rows inserted one by one, outside a transaction: a failure half-way
   leaves half an upload in the table;
4. failures are printed, not logged, and then swallowed: nothing reaches the
   logs, the task "completes";
5. the connection is closed only on the happy path;
6. the mail is sent with no timeout of its own either;
7. the file is stored under the name the client sent (``../`` included), and
   parsed synchronously inside the background job, on the event loop;
8. ``/upload-coro`` hands ``BackgroundTasks`` a coroutine instead of the
   function (``add_task(process_csv(path))``): the job never runs at all.

``fixed.py`` is the same app after the case study's remedy.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiosmtplib
import asyncpg
from fastapi import BackgroundTasks, FastAPI, UploadFile

from .common import INSERT, Settings, completion_mail, parse_csv


async def send_completion_email(settings: Settings, filename: str, count: int) -> None:
    await aiosmtplib.send(  # BUG: no timeout of our own
        completion_mail(settings, filename, count),
        hostname=settings.smtp_host,
        port=settings.smtp_port,
    )


async def process_csv(settings: Settings, filepath: str) -> None:
    try:
        print(f"Starting process_csv for {filepath}", flush=True)
        conn = await asyncpg.connect(settings.database_url)  # BUG: no timeout
        print("Database connected", flush=True)
        filename = os.path.basename(filepath)
        data = parse_csv(Path(filepath))  # BUG: synchronous parsing on the event loop
        print(f"Parsed {len(data)} rows", flush=True)
        for row in data:  # BUG: one by one, no transaction
            await conn.execute(INSERT, filename, row.row_no, row.name, row.amount)
        print("Data inserted", flush=True)
        await send_completion_email(settings, filename, len(data))
        print("Email sent", flush=True)
        await conn.close()  # BUG: only on the happy path
    except Exception as exc:
        print(f"Error: {exc}", flush=True)  # BUG: a print is not a log, and it is swallowed


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="csv upload (buggy)")

    @app.post("/upload")
    async def upload_file(file: UploadFile, background_tasks: BackgroundTasks) -> dict[str, str]:
        content = await file.read()
        filepath = f"{settings.upload_dir}/{file.filename}"  # BUG: a path the client chose
        with open(filepath, "wb") as f:  # noqa: ASYNC230 - BUG: blocks the event loop
            f.write(content)  # BUG: a large upload freezes every request while it is written
        background_tasks.add_task(process_csv, settings, filepath)
        return {"status": "processing"}

    @app.post("/upload-coro")
    async def upload_file_coro(
        file: UploadFile, background_tasks: BackgroundTasks
    ) -> dict[str, str]:
        content = await file.read()
        filepath = f"{settings.upload_dir}/{file.filename}"
        with open(filepath, "wb") as f:  # noqa: ASYNC230 - BUG: blocks the event loop
            f.write(content)
        background_tasks.add_task(process_csv(settings, filepath))  # type: ignore[arg-type]  # BUG
        return {"status": "processing"}

    return app
