"""The services one run shares: a PostgreSQL server and an SMTP server, each started once.

Starting a cluster costs about a second, so each service starts on first use,
lives for the run, and is emptied (SMTP's inbox) before each test; ``close``
stops what was started, and only that.
"""

from __future__ import annotations

import contextlib
import threading

from .._exceptions import ServiceError
from ._postgres import ExternalPostgres, PostgresCluster, PostgresServer
from ._smtp import SmtpServer


class Services:
    """The run's real services, each started on first use and stopped with the run.

    ``postgres_dsn`` (with ``setting``, the name it was given under) selects
    an external server instead of a cluster of our own.
    """

    def __init__(self, postgres_dsn: str | None = None, setting: str = "postgres dsn") -> None:
        self._postgres_dsn = postgres_dsn
        self._setting = setting
        self._postgres: PostgresServer | None = None
        self._smtp: SmtpServer | None = None
        self._lock = threading.Lock()

    def postgres(self) -> PostgresServer:
        with self._lock:
            if self._postgres is None:
                server: PostgresServer
                if self._postgres_dsn:
                    server = ExternalPostgres(self._postgres_dsn, setting=self._setting)
                else:
                    server = PostgresCluster()
                self._postgres = server.start()
            return self._postgres

    def smtp(self) -> SmtpServer:
        with self._lock:
            if self._smtp is None:
                self._smtp = SmtpServer().start()
            return self._smtp

    def before_test(self) -> None:
        """Each test starts with an empty mailbox: messages of earlier tests are not its own."""
        if self._smtp is not None:
            self._smtp.clear()

    def close(self) -> None:
        with self._lock:
            postgres, self._postgres = self._postgres, None
            smtp, self._smtp = self._smtp, None
        try:
            if smtp is not None:
                # A thread that would not end is a daemon: it dies with the process.
                with contextlib.suppress(ServiceError):
                    smtp.stop()
        finally:
            if postgres is not None:
                postgres.stop()
