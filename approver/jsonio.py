"""JSON in and out of the HTTP layer: orjson when it is installed, the standard library otherwise.

Both read UTF-8 bytes and write compact UTF-8 bytes; orjson is several times faster on both
(the registration hot path parses one body and writes one answer). The webhook has its own copy
of this module: the two services never import each other (DESIGN, "Layout").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["BACKEND", "InvalidJson", "dumps", "loads"]


class InvalidJson(ValueError):
    """The bytes are not one UTF-8 JSON document."""


def _std_loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
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
    """Parse one JSON document from UTF-8 ``data``. Raises :class:`InvalidJson`."""
    return _loads(data)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj`` (dicts, lists, str, int, float, bool, None)."""
    return _dumps(obj)
