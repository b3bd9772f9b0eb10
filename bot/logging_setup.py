"""Logging for a running signoff: the config's ``log`` section applied to the root logger.

Two formats: ``text``, one readable line per record, and ``json``, one JSON object per line
with ``time``, ``level``, ``logger``, ``message`` and, on every line about a request,
``request_id`` (from ``extra={"request_id": ...}`` or from
:data:`approvals.log_context.current_request_id`, which the core sets while it works on a
request). Calling :func:`configure_logging` again (on a config reload) replaces signoff's
handler instead of adding a second one.

No secret reaches a log line: the handler's :class:`SecretRedactingFilter` replaces every
known secret with ``[redacted]`` in each record from any logger (signoff's own and every
library's: httpx logs the Telegram token inside each Bot API URL). The secrets are the
config's tokens, signing secrets, webhook secrets and passwords (:func:`remember_config_secrets`)
and the agent API keys the API has accepted (:func:`remember_secret`).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

from pydantic import BaseModel, SecretStr

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


REDACTED = "[redacted]"


class SecretSet:
    """The secrets no log line may show; it only grows (an old token may still be in flight
    after a reload), and is read on every record, so the sorted list is kept ready."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._longest_first: tuple[str, ...] = ()

    def add(self, secret: str) -> None:
        # The percent-encoded spelling too: a token may sit in a URL.
        spellings = {secret, quote(secret, safe="")} - {""}
        if spellings <= self._secrets:
            return
        with self._lock:
            self._secrets = self._secrets | spellings  # replaced, never changed in place
            # Longest first, so a secret containing another is replaced whole.
            self._longest_first = tuple(sorted(self._secrets, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._longest_first:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __bool__(self) -> bool:
        return bool(self._longest_first)


SECRETS = SecretSet()
"""The process's secrets, redacted by every handler :func:`build_handler` makes."""


def remember_secret(secret: str) -> None:
    """Keep ``secret`` (such as an agent API key just accepted) out of every log line."""
    SECRETS.add(secret)


def _secret_values(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_values(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_values(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _secret_values(item)


def remember_config_secrets(settings: BaseModel) -> None:
    """Keep every ``SecretStr`` of a loaded config (platform tokens, signing and webhook
    secrets, passwords) out of every log line."""
    for secret in _secret_values(settings):
        SECRETS.add(secret)


class SecretRedactingFilter(logging.Filter):
    """Replaces every known secret with ``[redacted]`` in a record's message (its arguments
    already merged in and dropped), traceback and stack, from whichever logger it comes."""

    def __init__(self, secrets: SecretSet | None = None) -> None:
        super().__init__()
        self._own_secrets = secrets

    @property
    def _secrets(self) -> SecretSet:
        # Looked up on each record when none was given, so the process's set is the one
        # in force even if it is replaced (tests start each run with an empty one).
        return self._own_secrets if self._own_secrets is not None else SECRETS

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string: show the parts, redacted
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = self._secrets.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._secrets.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._secrets.redact(record.stack_info)
        return True


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
        if record.exc_text:  # the traceback the redacting filter has already cleaned
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request ID]``, then any traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``YYYY-MM-DD HH:MM:SS,mmm`` as the standard formatter writes it, with the part
        up to the second worked out once per second rather than once per line (handlers
        format under their lock, so the cache needs none of its own)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._second_text},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return line if request_id is None else f"{line} [request {request_id}]"


def build_handler(settings: LogSettings, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr by default) in the configured format."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretRedactingFilter())
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    return handler


def configure_logging(settings: LogSettings, stream: IO[str] | None = None) -> None:
    """Apply the ``log`` section to the root logger, replacing what an earlier call set."""
    # Neither format shows the process, the thread or the calling source line: spare every
    # record the lookups (the logging HOWTO's "Optimization" switches). A change's log
    # line is a fair part of what a create costs.
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no caller lookup (documented in the HOWTO)
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
