"""What the buggy and the fixed app share: their settings, the CSV format, the table.

The apps are built by ``create_app(settings)`` so that a test can point them
at the fault proxies instead of the real database and mail server.
"""

from __future__ import annotations

import csv
import email.message
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final, NamedTuple

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS uploads (
    id serial PRIMARY KEY,
    filename text NOT NULL,
    row_no int NOT NULL,
    name text NOT NULL,
    amount numeric NOT NULL
)
"""
"""The table both apps insert into. The app does not create it: an app whose
start-up waits for the database hangs at start when the database is slow, so
schema creation belongs to a migration step (here: a test fixture)."""

INSERT: Final = "INSERT INTO uploads (filename, row_no, name, amount) VALUES ($1, $2, $3, $4)"


@dataclass(frozen=True)
class Settings:
    """Where the app finds its services, and how long it waits for them.

    The timeouts are used by the fixed app only: the buggy one has none of
    its own (the libraries' defaults are 60 s per attempt).
    """

    database_url: str
    """``postgresql://user@host:port/database``: in tests, the proxy's host and port."""
    smtp_host: str
    smtp_port: int
    upload_dir: Path
    mail_from: str = "uploads@example.com"
    mail_to: str = "ops@example.com"
    connect_timeout: float = 10.0
    """asyncpg.connect(timeout=...): connecting, start-up and authentication (the case
    study's remedy: 10 s; connecting is four round trips: the TLS offer, the start-up,
    the SCRAM exchange)."""
    command_timeout: float = 10.0
    """asyncpg's default timeout for each query."""
    smtp_timeout: float = 5.0
    """aiosmtplib.send(timeout=...): each step of the SMTP conversation."""
    job_timeout: float = 30.0
    """The whole background job, whatever it is stuck on."""
    attempts: int = 3
    """Tries of a transaction the database could not serialize (or that hit a deadlock),
    and of a mail the server turned away for now (4xx: greylisting, a full mailbox)."""
    smtp_retry_delay: float = 60.0
    """Wait before trying a mail again after a 4xx reply (a greylisting server asks for
    minutes; tests use less)."""


class Row(NamedTuple):
    row_no: int
    name: str
    amount: Decimal


class BadCSV(ValueError):
    """The upload is not the CSV we expect (``name,amount`` with a header)."""


def parse_csv(path: Path) -> list[Row]:
    """Read ``name,amount`` rows (after a header line); synchronous: call it off the loop."""
    rows = []
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None or [cell.strip().lower() for cell in header] != ["name", "amount"]:
            raise BadCSV(f"{path.name}: expected the header 'name,amount', got {header!r}")
        for row_no, cells in enumerate(reader, 1):
            if not cells:
                continue
            if len(cells) != 2:
                raise BadCSV(f"{path.name} row {row_no}: expected 2 cells, got {len(cells)}")
            try:
                amount = Decimal(cells[1])
            except InvalidOperation:
                raise BadCSV(f"{path.name} row {row_no}: {cells[1]!r} is not a number") from None
            rows.append(Row(row_no, cells[0], amount))
    return rows


def completion_mail(settings: Settings, filename: str, count: int) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = settings.mail_to
    message["Subject"] = f"Upload {filename} processed"
    message.set_content(f"{count} rows of {filename} were imported.\n")
    return message


def make_csv(rows: int, *, prefix: str = "customer") -> bytes:
    """A valid upload of ``rows`` rows, for tests and demos."""
    lines = ["name,amount"]
    lines += [f"{prefix}-{index},{index}.50" for index in range(1, rows + 1)]
    return ("\n".join(lines) + "\n").encode()
