"""The upload under every shipped scenario (``scenarios/*.toml``), as CI would run it.

One test, marked ``chaos``: the plugin runs it once per scenario file, puts
that scenario's faults on the proxies when the body starts, and checks the
scenario's expectations after it (settled in time, failed with the right
type, logged, nothing left open). The body adds what only this app can say:
an upload is all in or not at all, and a job that "succeeds" has sent its mail.

The fixed app runs by default. ``CSV_UPLOAD_APPS=buggy,fixed`` runs both, side
by side in the matrix (the demo does that); the buggy one fails most scenarios,
each with the reason the case study took six hours to find.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from csv_upload import buggy, fixed
from csv_upload.common import Settings, make_csv
from csv_upload.testing import UploadsTable
from fastapi import FastAPI

if TYPE_CHECKING:
    from pytest_asyncfaults import SmtpServer, TaskMonitor

ROWS = 200
APPS = {"buggy": buggy.create_app, "fixed": fixed.create_app}
CHOSEN = [name.strip() for name in os.environ.get("CSV_UPLOAD_APPS", "fixed").split(",")]

pytestmark = [
    pytest.mark.asyncio,
    # A loop stalled for 0.1 s (the default) is within the reach of a garbage
    # collection on a busy 2-core machine; the scenarios say what they tolerate.
    pytest.mark.asyncfaults(blocked_loop_threshold=0.5),
]


@pytest.fixture(params=CHOSEN)
def asgi_app(request: pytest.FixtureRequest, settings: Settings) -> FastAPI:
    if request.param not in APPS:
        pytest.fail(f"CSV_UPLOAD_APPS={request.param!r}: expected buggy, fixed or both")
    return APPS[request.param](settings)


@pytest.mark.chaos
async def test_an_upload_under_chaos(
    app_client: httpx.AsyncClient,
    tasks: TaskMonitor,
    uploads: UploadsTable,
    smtp_server: SmtpServer,
) -> None:
    started = time.perf_counter()
    response = await app_client.post(
        "/upload", files={"file": ("march.csv", make_csv(ROWS), "text/csv")}
    )
    assert response.status_code == 200, response.text
    assert time.perf_counter() - started < 2, "the answer does not wait for the job"

    outcome = await tasks.settle()  # within the scenario's deadline, else a hang report
    rows = await uploads.count("march.csv")
    mails = [m for m in smtp_server.messages if m.subject == "Upload march.csv processed"]
    assert rows in (0, ROWS), f"half an upload is in the table: {rows} of {ROWS} rows"
    if not outcome.failures:
        assert rows == ROWS, (
            f"the job completed, yet {rows} of {ROWS} rows are in: a failure was swallowed"
        )
        assert mails, "the job completed, yet no mail was sent: a failure was swallowed"
    assert len(mails) <= 1
    if mails:
        assert rows == ROWS, "a mail announced rows that are not in the table"
