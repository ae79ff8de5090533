"""The apps as a server starts them: their settings from the environment.

``uvicorn csv_upload.main:fixed_app`` in production reads these variables;
``asyncfaults repro csv_upload.main:buggy_app --env CSV_DATABASE_URL=...``
sets them to the fault proxies' addresses before it imports this module:

- ``CSV_DATABASE_URL``: ``postgresql://user@host:port/database``
- ``CSV_SMTP_HOST``, ``CSV_SMTP_PORT``: the mail server
- ``CSV_UPLOAD_DIR``: where uploads are stored (default: the system's temp dir)
- ``CSV_CONNECT_TIMEOUT``, ``CSV_COMMAND_TIMEOUT``, ``CSV_SMTP_TIMEOUT``,
  ``CSV_JOB_TIMEOUT``, ``CSV_SMTP_RETRY_DELAY``: the fixed app's limits in seconds
  (default: ``Settings``'s)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from . import buggy, fixed
from .common import Settings


def settings_from_environment() -> Settings:
    missing = [
        name
        for name in ("CSV_DATABASE_URL", "CSV_SMTP_HOST", "CSV_SMTP_PORT")
        if name not in os.environ
    ]
    if missing:
        raise RuntimeError(f"csv_upload needs the environment variables {', '.join(missing)}")
    limits: dict[str, Any] = {
        name: float(os.environ[f"CSV_{name.upper()}"])
        for name in (
            "connect_timeout",
            "command_timeout",
            "smtp_timeout",
            "job_timeout",
            "smtp_retry_delay",
        )
        if f"CSV_{name.upper()}" in os.environ
    }
    return Settings(
        database_url=os.environ["CSV_DATABASE_URL"],
        smtp_host=os.environ["CSV_SMTP_HOST"],
        smtp_port=int(os.environ["CSV_SMTP_PORT"]),
        upload_dir=Path(os.environ.get("CSV_UPLOAD_DIR", tempfile.gettempdir())),
        **limits,
    )


SETTINGS = settings_from_environment()
buggy_app = buggy.create_app(SETTINGS)
fixed_app = fixed.create_app(SETTINGS)
