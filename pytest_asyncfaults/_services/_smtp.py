"""A real SMTP server for the tests: aiosmtpd in a thread, recording what it receives.

A mail client reacts to a stalled greeting or a reset after ``DATA`` in ways no
mock reproduces, so the ``smtp_server`` fixture runs the real protocol on a
free loopback port, and ``.messages`` keeps what it accepted since the test
began.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from .._address import free_port
from .._exceptions import ServiceError
from ._postgres import PORT_ATTEMPTS

SMTP_TIMEOUT: Final = 10.0
"""Bound on starting and stopping the SMTP server's thread."""


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server got it: the envelope, the bytes, the parsed message.

    ``data`` is what came over the wire (CRLF line ends); ``message`` is
    parsed with plain newlines, so ``get_content()`` reads like what was sent.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: email.message.EmailMessage

    @property
    def subject(self) -> str | None:
        subject = self.message["Subject"]
        return None if subject is None else str(subject)


class _Recorder:
    """aiosmtpd's handler: runs on the server's thread, so every access takes the lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[ReceivedMail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        parsed = email.message_from_bytes(data.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(str(rcpt) for rcpt in envelope.rcpt_tos),
            data=data,
            message=parsed,
        )
        with self.lock:
            self.messages.append(mail)
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a loopback port, keeping every message it accepts.

    It runs its own loop in its own thread (aiosmtpd's ``Controller``), so it
    answers while the test's loop is blocked or busy, like a remote server.
    """

    def __init__(self) -> None:
        self._recorder = _Recorder()
        self._controller: Any = None
        self._port = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SmtpServer {self.host}:{self._port}>" if self._port else "<SmtpServer stopped>"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if not self._port:
            raise ServiceError("the SMTP server is not running: call start() first")
        return self._port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def messages(self) -> list[ReceivedMail]:
        """A snapshot of the messages received so far, oldest first."""
        with self._recorder.lock:
            return list(self._recorder.messages)

    def clear(self) -> None:
        with self._recorder.lock:
            self._recorder.messages.clear()

    def start(self) -> Self:
        from aiosmtpd.controller import Controller

        with self._lock:
            if self._controller is not None:
                return self
            for attempt in range(1, PORT_ATTEMPTS + 1):
                port = free_port()
                controller = Controller(
                    self._recorder,
                    hostname="127.0.0.1",
                    port=port,
                    ready_timeout=SMTP_TIMEOUT,
                    server_hostname="localhost",  # not socket.getfqdn(): DNS may be slow
                    enable_SMTPUTF8=True,
                )
                try:
                    controller.start()
                except OSError as exc:
                    _stop_controller(controller)
                    if attempt < PORT_ATTEMPTS:
                        continue  # the port was taken between our probe and the bind
                    raise ServiceError(f"the SMTP server could not listen: {exc}") from None
                except Exception as exc:
                    _stop_controller(controller)
                    raise ServiceError(f"the SMTP server did not start: {exc}") from None
                self._controller = controller
                self._port = port
                break
            return self

    def stop(self) -> None:
        """Stop listening and end the thread (bounded). Safe to call again."""
        with self._lock:
            controller, self._controller = self._controller, None
            self._port = 0
        if controller is not None and not _stop_controller(controller):
            raise ServiceError(f"the SMTP server's thread did not end within {SMTP_TIMEOUT} s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _stop_controller(controller: Any) -> bool:
    """``Controller.stop`` joins its thread without a bound: give it one. True if it ended."""
    stopper = threading.Thread(
        target=lambda: controller.stop(no_assert=True),
        name="asyncfaults-smtp-stop",
        daemon=True,
    )
    stopper.start()
    stopper.join(SMTP_TIMEOUT)
    return not stopper.is_alive()
