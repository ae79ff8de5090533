"""The ERROR records a test's app wrote, whichever way it logs: stdlib ``logging``, and
loguru or structlog when the app uses them (imported before the test starts).

``not_logged`` and ``assert_logged`` ask whether a failure reached the log: an
app that logs with loguru, or with structlog's own printing loggers, writes
nothing stdlib logging sees. Their records are taken where each library lets a
listener in, for the test only: a sink of loguru's own; a first processor in
structlog's chain (put into the chain the app's loggers already hold, so a
logger cached before the test is seen too). Each is kept as a
``logging.LogRecord`` like the others. Neither is a dependency: only an app that
imported one gets the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any, final

OnTaskException = Callable[[asyncio.Task[Any], BaseException], None]


@final
class _Handler(logging.Handler):
    def __init__(self, logs: ErrorLogs) -> None:
        super().__init__(level=logging.ERROR)
        self._logs = logs

    def emit(self, record: logging.LogRecord) -> None:
        self._logs.add(record)


@final
class ErrorLogs:
    """ERROR records seen while installed, oldest first, in ``records``; each one that
    carries an exception is told to ``on_task_exception`` with the task that logged it."""

    def __init__(self, on_task_exception: OnTaskException | None = None) -> None:
        self.records: list[logging.LogRecord] = []
        self._on_task_exception = on_task_exception
        self._handler = _Handler(self)
        self._loguru: tuple[Any, int] | None = None
        self._structlog: list[Any] | None = None

    def add(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        exception = record.exc_info[1] if record.exc_info else None
        if exception is None or self._on_task_exception is None:
            return
        try:
            task = asyncio.current_task()
        except RuntimeError:  # logged from a thread with no running loop
            return
        if task is not None:
            self._on_task_exception(task, exception)

    def install(self) -> None:
        logging.getLogger().addHandler(self._handler)
        loguru = sys.modules.get("loguru")
        logger = getattr(loguru, "logger", None)
        if logger is not None:
            with contextlib.suppress(Exception):  # a loguru too old, or too new, to take it
                self._loguru = (logger, logger.add(self._from_loguru, level="ERROR"))
        structlog = sys.modules.get("structlog")
        with contextlib.suppress(Exception):  # a structlog too old, or too new
            processors = structlog.get_config()["processors"]  # type: ignore[union-attr]
            if isinstance(processors, list):
                processors.insert(0, self._from_structlog)
                self._structlog = processors

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        if self._loguru is not None:
            logger, handler_id = self._loguru
            self._loguru = None
            with contextlib.suppress(ValueError):  # the app's logger.remove() took it
                logger.remove(handler_id)
        if self._structlog is not None:
            processors, self._structlog = self._structlog, None
            with contextlib.suppress(ValueError):
                processors.remove(self._from_structlog)

    def _from_structlog(self, logger: Any, method: str, event: Any) -> Any:
        """A structlog processor that lets every event through, keeping those at ERROR and
        above as stdlib records, with the exception ``log.exception()`` carries."""
        level = event.get("level", method) if isinstance(event, dict) else method
        number = logging.getLevelNamesMapping().get(str(level).upper(), 0)
        if method == "exception" or number >= logging.ERROR:
            given = event.get("exc_info") if isinstance(event, dict) else None
            if method == "exception" and given is None:
                given = True
            exc_info: Any = None
            if given is True:
                exc_info = sys.exc_info() if sys.exc_info()[1] is not None else None
            elif isinstance(given, BaseException):
                exc_info = (type(given), given, given.__traceback__)
            elif isinstance(given, tuple):
                exc_info = given
            name = event.get("logger") if isinstance(event, dict) else None
            self.add(
                logging.LogRecord(
                    name=str(name or "structlog"),
                    level=max(number, logging.ERROR),
                    pathname="",
                    lineno=0,
                    msg=str(event.get("event", "") if isinstance(event, dict) else event),
                    args=None,
                    exc_info=exc_info,
                )
            )
        return event

    def _from_loguru(self, message: Any) -> None:
        """A loguru sink: its record as stdlib's, with the exception it carries."""
        record = message.record
        exception = record.get("exception")
        value = getattr(exception, "value", None)
        exc_info = (type(value), value, value.__traceback__) if value is not None else None
        self.add(
            logging.LogRecord(
                name=str(record.get("name") or "loguru"),
                level=record["level"].no,
                pathname=record["file"].path,
                lineno=record["line"],
                msg=record["message"],
                args=None,
                exc_info=exc_info,
                func=record["function"],
            )
        )
