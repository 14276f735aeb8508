"""JSON in and out of both services' HTTP layers: orjson when it is installed, the standard
library otherwise (one module, so the webhook and the approver parse alike).

Both backends read UTF-8 bytes and write compact UTF-8 bytes (no spaces, non-ASCII kept as is),
so the answers are the same JSON either way. orjson parses the real review about 2.5x faster
and serialises 10-20x faster than :mod:`json` (docs/webhook.md, "Where the time goes").

Exception tree::

    ValueError
    └── InvalidJson     not UTF-8, not JSON (``json.JSONDecodeError`` and
                        ``orjson.JSONDecodeError`` are both turned into it)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["BACKEND", "InvalidJson", "dumps", "loads"]


class InvalidJson(ValueError):
    """The bytes are not one UTF-8 JSON document."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 has no NaN or Infinity; orjson agrees


def _std_loads(data: bytes) -> Any:
    try:
        # Decode first: json.loads(bytes) would also guess UTF-16/32, which no API server sends.
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidJson("not a UTF-8 JSON document") from None


def _std_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_loads: Callable[[bytes], Any]
_dumps: Callable[[Any], bytes]
try:
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    BACKEND = "json"
    _loads, _dumps = _std_loads, _std_dumps
else:
    BACKEND = "orjson"

    def _orjson_loads(data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except (orjson.JSONDecodeError, RecursionError):
            raise InvalidJson("not a UTF-8 JSON document") from None

    _loads, _dumps = _orjson_loads, orjson.dumps


def loads(data: bytes) -> Any:
    """Parse one JSON document from UTF-8 ``data``.

    Raises:
        InvalidJson: not UTF-8, or not valid JSON (RFC 8259).
    """
    return _loads(data)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj`` (dicts, lists, str, int, bool, None).

    Raises:
        TypeError: ``obj`` holds something JSON cannot represent.
    """
    return _dumps(obj)
