"""Keep request bytes out of aiohttp's own error log lines.

When a client sends a request aiohttp cannot parse (a header line over 8 KiB, a space before a
header's colon, a bad request line), aiohttp logs ``Error handling request`` at ERROR on its
``aiohttp.server`` logger with the parser's exception, and that exception's text quotes the raw
bytes: a bootstrap token, an API key, an admin bearer token. :class:`RequestBytesFilter` turns
such a record into one WARNING line naming the exception's class, never its text, without the
traceback. Both services install it (:func:`install`) at start.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

#: aiohttp's logger for request handling errors.
SERVER_LOGGER = "aiohttp.server"


class RequestBytesFilter(logging.Filter):
    """Rewrites records carrying an HTTP parsing exception (module docstring); lets every
    other record through unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "refused a malformed HTTP request (%s; content withheld)"
            record.args = (type(exc).__name__,)
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
        return True


def install() -> None:
    """Attach :class:`RequestBytesFilter` to aiohttp's server logger (idempotent)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, RequestBytesFilter) for f in logger.filters):
        logger.addFilter(RequestBytesFilter())
