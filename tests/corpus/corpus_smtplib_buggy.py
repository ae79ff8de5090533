"""FastAPI + smtplib: a sync background task mails the receipt, in a thread (buggy)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from fastapi import BackgroundTasks, FastAPI


def send_receipt(host: str, port: int, to: str) -> None:
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = to
    message["Subject"] = "Your receipt"
    message.set_content("Thank you for your order.")
    with smtplib.SMTP(host, port) as smtp:  # BUG: no timeout
        smtp.send_message(message)


def create_app(smtp_host: str, smtp_port: int) -> FastAPI:
    app = FastAPI()

    @app.post("/checkout", status_code=202)
    def checkout(email: str, background: BackgroundTasks) -> dict[str, str]:
        background.add_task(send_receipt, smtp_host, smtp_port, email)
        return {"status": "paid"}

    return app
