"""Logging for a running signoff: the config's ``log`` section applied to the root logger.

Two formats: ``text``, one readable line per record, and ``json``, one JSON object per line
with ``time``, ``level``, ``logger``, ``message`` and, on every line about a request,
``request_id`` (from ``extra={"request_id": ...}`` or from
:data:`approvals.log_context.current_request_id`, which the core sets while it works on a
request). Calling :func:`configure_logging` again (on a config reload) replaces signoff's
handler instead of adding a second one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from approvals.log_context import current_request_id
from config.schema import LogSettings

HANDLER_NAME = "signoff"
"""The name of the handler signoff installs on the root logger."""

QUIET_LOGGERS = ("alembic", "apscheduler")
"""Libraries that say too much at ``info``; they log warnings and worse only."""

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id``: the one passed in ``extra``, else the current one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks included, newlines escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request ID]``, then any traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return line if request_id is None else f"{line} [request {request_id}]"


def build_handler(settings: LogSettings, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr by default) in the configured format."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    return handler


def configure_logging(settings: LogSettings, stream: IO[str] | None = None) -> None:
    """Apply the ``log`` section to the root logger, replacing what an earlier call set."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    root.addHandler(build_handler(settings, stream))
    level = LEVELS[settings.level]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
