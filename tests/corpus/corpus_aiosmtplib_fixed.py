"""Starlette + aiosmtplib: the response's background task mails the receipt (fixed)."""

from __future__ import annotations

import logging
from email.message import EmailMessage

import aiosmtplib
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SMTP_TIMEOUT = 0.4
"""Seconds for each step of the exchange with the mail server (short: this is a test's app)."""

log = logging.getLogger(__name__)


async def send_receipt(host: str, port: int, to: str) -> None:
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = to
    message["Subject"] = "Your receipt"
    message.set_content("Thank you for your order.")
    try:
        await aiosmtplib.send(message, hostname=host, port=port, timeout=SMTP_TIMEOUT)
    except aiosmtplib.SMTPException:
        log.exception("could not mail the receipt to %s", to)
        raise


def create_app(smtp_host: str, smtp_port: int) -> Starlette:
    async def checkout(request: Request) -> JSONResponse:
        email = request.query_params["email"]
        task = BackgroundTask(send_receipt, smtp_host, smtp_port, email)
        return JSONResponse({"status": "paid"}, status_code=202, background=task)

    return Starlette(routes=[Route("/checkout", checkout, methods=["POST"])])
