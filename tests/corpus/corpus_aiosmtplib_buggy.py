"""Starlette + aiosmtplib: the response's background task mails the receipt (buggy)."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def send_receipt(host: str, port: int, to: str) -> None:
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = to
    message["Subject"] = "Your receipt"
    message.set_content("Thank you for your order.")
    await aiosmtplib.send(message, hostname=host, port=port)  # BUG: its default timeout is a minute


def create_app(smtp_host: str, smtp_port: int) -> Starlette:
    async def checkout(request: Request) -> JSONResponse:
        email = request.query_params["email"]
        task = BackgroundTask(send_receipt, smtp_host, smtp_port, email)
        return JSONResponse({"status": "paid"}, status_code=202, background=task)

    return Starlette(routes=[Route("/checkout", checkout, methods=["POST"])])
