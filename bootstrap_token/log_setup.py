"""Process logging of both services and their command lines: a format, a level, and where audit
lines go.

* ``logFormat: text`` (default): ``<time> <LEVEL> <logger>: <message>`` on stderr, as before.
  ``logFormat: json``: one JSON object per line on stderr, with the keys log pipelines map
  without configuration (Fluent Bit, Vector, Loki, Elastic's ``ecs`` defaults read ``time``,
  ``level`` and ``message``): ``{"time": "2026-12-05T11:33:06.123Z", "level": "warning",
  "logger": "approver.store.health", "message": "..."}``, plus ``"exception"`` (the traceback
  as one string) when the record has one. ``time`` is RFC 3339 in UTC with milliseconds; the
  line is written by :func:`json.dumps` and :func:`bootstrap_token.audit.terminal_safe`, so a
  message holding a newline or a bidirectional override is still one safe line.
* ``logLevel`` (``debug``, ``info``, ``warning``, ``error``; default ``info``) sets the project's
  own loggers. Third-party libraries (Alembic's seven INFO lines at every start, SQLAlchemy,
  aiohttp, kubernetes-asyncio, asyncio) log at WARNING and above only, whatever ``logLevel``
  says, so ``debug`` shows this project's detail, not its libraries'.
* Audit events (the ``agent_bootstrap.audit`` logger) are already JSON lines: a service writes
  each as it is, message only, on **stdout**, in both formats, so a pipeline can tell them from
  the process log by stream. A command line (``api-keys``, ``migrate``, ``audit verify``)
  writes none unless asked (``audit_stream``): the approver stores what it audits, and a
  terminal is for the command's own output.

:func:`configure` is idempotent: it replaces the handlers it installed before.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from enum import StrEnum
from typing import TextIO

from bootstrap_token.audit import AUDIT_LOGGER, terminal_safe

#: Loggers of libraries held at WARNING and above (module docstring).
THIRD_PARTY_LOGGERS = (
    "alembic",
    "sqlalchemy",
    "aiohttp",
    "aiosqlite",
    "asyncio",
    "kubernetes_asyncio",
    "urllib3",
)


class LogFormat(StrEnum):
    """``logFormat``."""

    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    """``logLevel``: the least severe level of the project's own lines that is written."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def number(self) -> int:
        """The :mod:`logging` level (``logging.INFO`` for ``info``)."""
        return int(logging.getLevelName(self.value.upper()))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exception"] = record.exc_text
        return terminal_safe(json.dumps(line, ensure_ascii=False, separators=(",", ":")))


def formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of the process log in ``log_format``."""
    if log_format is LogFormat.JSON:
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure(
    *,
    log_format: LogFormat = LogFormat.TEXT,
    level: LogLevel = LogLevel.INFO,
    audit_stream: TextIO | None = None,
    stream: TextIO | None = None,
) -> None:
    """Install the process's logging (module docstring).

    Args:
        log_format: the process log's format.
        level: the project's loggers' level.
        audit_stream: where audit lines go (a service: ``sys.stdout``); None: nowhere (a
            command line that was not asked for them).
        stream: where the process log goes (default ``sys.stderr`` at call time).
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(log_format))
    root.handlers = [handler]
    root.setLevel(level.number)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(max(level.number, logging.WARNING))

    audit = logging.getLogger(AUDIT_LOGGER)
    audit.propagate = False
    audit.setLevel(logging.INFO)
    if audit_stream is None:
        audit.handlers = [logging.NullHandler()]
        return
    audit_handler = logging.StreamHandler(audit_stream)
    audit_handler.setFormatter(logging.Formatter("%(message)s"))
    audit.handlers = [audit_handler]
