"""Audit lines on the hot path: the shared event schema, written without a syscall per review.

:class:`bootstrap_token.AuditSink` builds a pydantic :class:`~bootstrap_token.AuditEvent` and
logs it through :mod:`logging`, whose stream handler writes and flushes once per event. In the
webhook that cost about 30 µs per review in place (model validation and serialisation, LogRecord,
handler lock, one ``write`` each; docs/webhook.md, "Where the time goes"). Here:

* :func:`audit_line` writes the exact JSON line ``AuditEvent(**fields).to_json()`` writes (same
  keys in the same order, ``None`` omitted, time as RFC 3339 UTC with ``Z``), straight from a
  dict; tests/webhook/test_audit.py checks byte equality against the model on generated events;
* :class:`BatchingAuditSink` appends lines to a buffer and writes it with one ``write`` +
  ``flush`` from a callback scheduled with ``loop.call_soon``: after the reviews the event loop
  handled in this iteration, before it waits for I/O again. An idle webhook still writes each
  line at once; under load, one syscall carries many lines.

A line is lost only if the process dies between the review's answer being queued and the end of
that loop iteration (microseconds); :meth:`BatchingAuditSink.flush` runs at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic_core import PydanticUndefined

from bootstrap_token import AuditEvent, AuditSink
from bootstrap_token.audit import terminal_safe

try:
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    orjson = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: The event's fields in declaration order: the order of the keys in the JSON line.
FIELDS: tuple[str, ...] = tuple(AuditEvent.model_fields)
_DEFAULTS: dict[str, Any] = {
    name: info.default for name, info in AuditEvent.model_fields.items() if name != "time"
}
_DEFAULT_ITEMS = tuple(_DEFAULTS.items())
_KNOWN = frozenset(FIELDS)
#: Fields a line always has: the required ones and those with a non-None default (``security``).
_ALWAYS = frozenset(name for name, default in _DEFAULTS.items() if default is not None)
_POSITION = {name: index for index, name in enumerate(FIELDS)}
#: Key orders seen to be complete and in schema order (bounded: a few event shapes exist).
_COMPLETE_ORDERS: set[tuple[str, ...]] = set()
_MAX_ORDERS = 64


def _complete_order(keys: tuple[str, ...]) -> bool:
    """True (and remembered) when ``keys`` are known fields in schema order, no field twice,
    with every field of :data:`_ALWAYS`: then the line is the fields as given, Nones dropped."""
    positions = [_POSITION.get(name, -1) for name in keys]
    if -1 in positions or positions != sorted(set(positions)) or not set(keys) >= _ALWAYS:
        return False
    if len(_COMPLETE_ORDERS) < _MAX_ORDERS:
        _COMPLETE_ORDERS.add(keys)
    return True


#: Emits one event given as a field dict.
Emit = Callable[[Mapping[str, Any]], None]


def _rfc3339(moment: datetime) -> str:
    # pydantic's format: no fraction when microseconds are zero, "Z" for UTC.
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond:06d}Z" if moment.microsecond else "Z")


def audit_line(fields: Mapping[str, Any], *, now: datetime | None = None) -> str:
    """The JSON line of ``AuditEvent(time=now, **fields)``, without building the model.

    Args:
        fields: event fields by name (``component``, ``event``, ``decision``, ``reason`` are
            required; see :class:`bootstrap_token.AuditEvent`). Never a token or key: the schema
            has no field for one.
        now: the event time (default: now, UTC).

    Returns:
        The line, without a newline; what a terminal would act on or reorder (a U+202E from a
        pod's name, C1 controls) is escaped (:func:`bootstrap_token.audit.terminal_safe`).

    Raises:
        KeyError: an unknown field, or a required one missing.
    """
    moment = now or datetime.now(UTC)
    document: dict[str, Any] = {"time": moment if orjson is not None else _rfc3339(moment)}
    keys = tuple(fields)
    if keys in _COMPLETE_ORDERS or _complete_order(keys):
        # Already in schema order with every field that has a non-None default: the line is
        # the fields minus the None values (the webhook's own events take this path).
        for name, value in fields.items():
            if value is not None:
                document[name] = value
    else:
        if not fields.keys() <= _KNOWN:
            raise KeyError(f"not AuditEvent fields: {sorted(fields.keys() - _KNOWN)}")
        get = fields.get
        for name, default in _DEFAULT_ITEMS:
            value = get(name, default)
            if value is not None:
                if value is PydanticUndefined:
                    raise KeyError(f"AuditEvent field {name!r} is required")
                document[name] = value
    if orjson is not None:
        return terminal_safe(orjson.dumps(document, option=orjson.OPT_UTC_Z).decode("utf-8"))
    return terminal_safe(json.dumps(document, separators=(",", ":"), ensure_ascii=False))


def emitter(sink: AuditSink) -> Emit:
    """How to hand a field dict to ``sink``: the fast line for a :class:`BatchingAuditSink`,
    a validated :class:`~bootstrap_token.AuditEvent` for any other sink."""
    if isinstance(sink, BatchingAuditSink):
        return sink.emit_fields

    def emit(fields: Mapping[str, Any]) -> None:
        sink.emit(AuditEvent(**fields))

    return emit


class BatchingAuditSink(AuditSink):
    """Writes audit events as JSON lines to ``stream``, flushed once per event-loop iteration.

    Args:
        stream: a text stream, e.g. :data:`sys.stdout`.
        loop: the event loop to schedule flushes on; without one (or when it is not running)
            every event is written at once.
    """

    def __init__(self, stream: TextIO, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__()
        self._stream = stream
        self._loop = loop
        self._lines: list[str] = []
        self._scheduled = False

    def emit(self, event: AuditEvent) -> None:
        """Queue ``event``'s JSON line."""
        self._queue(event.to_json())

    def emit_fields(self, fields: Mapping[str, Any]) -> None:
        """Queue the line of an event given as fields (see :func:`audit_line`)."""
        self._queue(audit_line(fields))

    def _queue(self, line: str) -> None:
        self._lines.append(line)
        if self._loop is None or not self._loop.is_running():
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write and flush the buffered lines now (safe to call at any time)."""
        self._scheduled = False
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # closed or broken stdout: say so once per batch
            logger.exception("cannot write audit lines")
