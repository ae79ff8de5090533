"""The ERROR records a test's app wrote, whichever way it logs: stdlib ``logging``, and
loguru when the app uses it (imported before the test starts).

``not_logged`` and ``assert_logged`` ask whether a failure reached the log: an
app that logs with loguru writes nothing stdlib logging sees, so its records
are taken from a sink of loguru's own, added for the test and removed after,
and kept as ``logging.LogRecord``\\ s like the others. There is no dependency on
loguru: only an app that imported it gets the sink.
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

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        if self._loguru is not None:
            logger, handler_id = self._loguru
            self._loguru = None
            with contextlib.suppress(ValueError):  # the app's logger.remove() took it
                logger.remove(handler_id)

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
