"""``asyncfaults repro`` on the case study: the incident replayed from a shell.

What an on-call engineer runs to reproduce the production hang on a laptop:
the app (configured from its environment, as in production) in process,
fault proxies in front of the real PostgreSQL and mail server, the case
study's fault, one upload. The buggy app's run ends at the deadline with the
hang report and a non-zero exit status; the fixed app's run exits 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from csv_upload.common import make_csv
from csv_upload.testing import UploadsTable

from pytest_asyncfaults import PostgresServer, SmtpServer

EXAMPLE_DIR = Path(__file__).resolve().parents[1]
ROOT = EXAMPLE_DIR.parents[1]
RUN_BOUND = 60


def repro(
    app: str,
    postgres_server: PostgresServer,
    smtp_server: SmtpServer,
    tmp_path: Path,
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    upload = tmp_path / "march.csv"
    upload.write_bytes(make_csv(20))
    dsn = postgres_server.dsn.replace(postgres_server.address, "{postgres.listen}")
    command = [
        sys.executable,
        "-m",
        "pytest_asyncfaults",
        "repro",
        f"csv_upload.main:{app}",
        "--app-dir",
        str(EXAMPLE_DIR),
        "--proxy",
        f"postgres={postgres_server.address}",
        "--proxy",
        f"smtp={smtp_server.address}",
        "--env",
        f"CSV_DATABASE_URL={dsn}",
        "--env",
        "CSV_SMTP_HOST={smtp.host}",
        "--env",
        "CSV_SMTP_PORT={smtp.port}",
        "--env",
        f"CSV_UPLOAD_DIR={tmp_path}",
        "--env",
        "CSV_CONNECT_TIMEOUT=3",
        "--request",
        "POST /upload",
        "--file",
        f"file={upload}",
        "--timeline",
        str(tmp_path / "timeline.html"),
        *extra,
    ]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=RUN_BOUND,
        check=False,
    )


@pytest.mark.asyncio
async def test_repro_shows_the_buggy_hang_and_exits_non_zero(
    postgres_server: PostgresServer,
    smtp_server: SmtpServer,
    uploads: UploadsTable,
    tmp_path: Path,
) -> None:
    result = repro(
        "buggy_app",
        postgres_server,
        smtp_server,
        tmp_path,
        "--scenario",
        str(ROOT / "scenarios" / "db_blackhole.toml"),
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "POST /upload -> 200" in out  # answered at once, as in production
    assert "1 background task still pending after 5 s (the settle deadline)" in out
    assert "conn = await asyncpg.connect(settings.database_url)  # BUG: no timeout" in out
    assert "asyncpg/connect_utils.py" in out
    assert "timeout_downstream (timeout downstream timeout=0); 1 open connection(s)" in out
    assert "result: FAILED: hang: 1 task still pending after 5 s" in out
    assert f"Timeline: {tmp_path / 'timeline.html'}" in out
    assert (tmp_path / "timeline.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert await uploads.count() == 0


@pytest.mark.asyncio
async def test_repro_of_the_fixed_app_exits_zero(
    postgres_server: PostgresServer,
    smtp_server: SmtpServer,
    uploads: UploadsTable,
    tmp_path: Path,
) -> None:
    result = repro(
        "fixed_app",
        postgres_server,
        smtp_server,
        tmp_path,
        "--scenario",
        str(ROOT / "scenarios" / "db_blackhole.toml"),
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "failed with TimeoutError" in out
    assert ", logged" in out
    assert "result: OK" in out
    assert not (tmp_path / "timeline.html").exists()  # nothing to look at
    assert await uploads.count() == 0


@pytest.mark.asyncio
async def test_repro_with_an_inline_fault_and_a_silent_failure(
    postgres_server: PostgresServer,
    smtp_server: SmtpServer,
    uploads: UploadsTable,
    tmp_path: Path,
) -> None:
    """No scenario: a failure nobody logged is what makes the run fail."""
    fixed = repro("fixed_app", postgres_server, smtp_server, tmp_path, "--toxic", "smtp:reset_peer")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "faults (inline): smtp: reset_peer downstream timeout=0" in fixed.stdout
    assert "failed with SMTPConnectError" in fixed.stdout
    assert await uploads.count("march.csv") == 20  # committed before the mail
    buggy = repro(
        "buggy_app", postgres_server, smtp_server, tmp_path, "--toxic", "postgres:reset_peer"
    )
    # The buggy job prints its error and "completes": the run passes on its face, so
    # the reason to suspect it is in the output: no rows, no mail, no log.
    assert "completed" in buggy.stdout
    assert "Error:" in buggy.stdout  # its print(), the only trace it leaves


@pytest.mark.asyncio
async def test_repro_of_the_login_stall_names_the_phase_the_connection_is_held_in(
    postgres_server: PostgresServer,
    smtp_server: SmtpServer,
    uploads: UploadsTable,
    tmp_path: Path,
) -> None:
    """The case study's production cause, a login that never finishes, given inline."""
    result = repro(
        "buggy_app",
        postgres_server,
        smtp_server,
        tmp_path,
        "--toxic",
        "postgres:pg_login:action=hold",
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "faults (inline): postgres: pg_login action=hold" in out
    assert "conn = await asyncpg.connect(settings.database_url)  # BUG: no timeout" in out
    assert "postgres: connection 1 held in authentication" in out
    timeline = (tmp_path / "timeline.html").read_text(encoding="utf-8")
    assert "login held: the server&#x27;s answer is kept from the client" in timeline
    assert await uploads.count() == 0


def test_repro_bad_usage_names_the_option(tmp_path: Path) -> None:
    cases = {
        ("--proxy", "postgres"): "--proxy='postgres' is not valid: expected NAME=HOST:PORT",
        ("--proxy", "p=127.0.0.1:1", "--toxic", "q:timeout"): "--toxic proxy='q' is not a proxy",
        ("--proxy", "p=127.0.0.1:1", "--toxic", "p:timeoutt"): "'timeoutt' is not valid",
        ("--proxy", "p=127.0.0.1:1", "--request", "upload"): "--request='upload' is not valid",
        ("--proxy", "p=127.0.0.1:1", "--file", "file=/no/such"): "--file file='/no/such'",
        ("--proxy", "p=127.0.0.1:1", "--env", "X={nope.port}"): "--env X='{nope.port}' cannot",
        ("--proxy", "p=127.0.0.1:1"): "APP='app:app': cannot import 'app'",
    }
    for args, message in cases.items():
        result = subprocess.run(
            [sys.executable, "-m", "pytest_asyncfaults", "repro", "app:app", *args],
            capture_output=True,
            text=True,
            timeout=RUN_BOUND,
            check=False,
        )
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
