"""FastAPI + smtplib: a sync background task mails the receipt, in a thread (fixed)."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from fastapi import BackgroundTasks, FastAPI

SMTP_TIMEOUT = 0.4
"""Seconds for each socket operation with the mail server (short: this is a test's app)."""

log = logging.getLogger(__name__)


def send_receipt(host: str, port: int, to: str) -> None:
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = to
    message["Subject"] = "Your receipt"
    message.set_content("Thank you for your order.")
    try:
        with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as smtp:
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException):
        log.exception("could not mail the receipt to %s", to)
        raise


def create_app(smtp_host: str, smtp_port: int) -> FastAPI:
    app = FastAPI()

    @app.post("/checkout", status_code=202)
    def checkout(email: str, background: BackgroundTasks) -> dict[str, str]:
        background.add_task(send_receipt, smtp_host, smtp_port, email)
        return {"status": "paid"}

    return app
