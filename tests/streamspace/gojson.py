"""Go's ``encoding/json`` and ``time`` as StreamSpace's Go code sees them, for the stand-ins.

Facts (Go 1.24, the version in StreamSpace's ``api/go.mod`` and ``agents/k8s-agent/go.mod``):

* ``json.Marshal`` writes struct fields in declaration order and map keys sorted; strings are
  UTF-8 with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped (``\\u003c`` ...); float64 uses the
  shortest representation, ``'f'`` notation between 1e-6 and 1e21, else ``'e'`` with a one-digit
  exponent cleaned up (``1e-07`` becomes ``1e-7``). Here a :class:`GoMap` is a Go map (sorted on
  output) and a plain ``dict`` a Go struct (order kept).
* ``time.Time`` marshals as RFC 3339 with nanoseconds, trailing zeros trimmed, ``Z`` for UTC;
  it unmarshals only from that form.
* Decoding into a struct matches object keys to fields exactly or case-insensitively, the last
  matching key wins, ``null`` leaves a field as it is, unknown keys are ignored, and a value of
  the wrong type is an ``UnmarshalTypeError`` (decoding goes on, the first error is returned).
  ``json.Decoder.Decode`` (gin's ``ShouldBindJSON``, the agent's answer parsing) reads the first
  value and ignores what follows; ``json.Unmarshal`` wants exactly one value.

Error texts mirror Go's for type errors and ``EOF``; syntax errors say ``invalid character``
like Go does, but their exact wording past that is approximate.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any


class GoMap(dict[str, Any]):
    """A Go map (``gin.H``, ``map[string]interface{}``): its keys are sorted when marshalled."""


class GoObject(dict[str, Any]):
    """A decoded JSON object that remembers its members in document order (``pairs``)."""

    pairs: list[tuple[str, Any]]

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


class GoNumber(str):
    """A JSON number literal as written (Go decodes it by the target's type)."""


class GoJSONError(ValueError):
    """A decoding error, with Go's message."""


# --- Marshal -------------------------------------------------------------------------------------

_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def _string(value: str) -> str:
    encoded = json.dumps(value, ensure_ascii=False)
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], encoded)


def go_float(value: float) -> str:
    """``encoding/json``'s float64 text (``floatEncoder``)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value!r}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(value)  # shortest digits, 'e' notation with at least two exponent digits
        mantissa, _, exponent = text.partition("e")
        sign = exponent[0]
        digits = exponent[1:].lstrip("0") or "0"
        if len(digits) == 1 and exponent[1:].startswith("0"):
            return f"{mantissa}e{sign}{digits}"
        return f"{mantissa}e{sign}{exponent[1:]}"
    text = format(Decimal(repr(value)).normalize(), "f")
    return text


def go_time(value: datetime) -> str:
    """``time.Time.MarshalJSON``: RFC 3339 with nanoseconds, trailing zeros trimmed."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset() or timedelta(0)
    if offset == timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(go_float(value))
    elif isinstance(value, datetime):
        out.append(_string(go_time(value)))
    elif isinstance(value, Mapping):
        items = sorted(value.items()) if isinstance(value, GoMap) else list(value.items())
        out.append("{")
        for index, (key, item) in enumerate(items):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, Sequence):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot marshal {type(value).__name__}")


def marshal(value: Any) -> bytes:
    """``json.Marshal``: a :class:`GoMap` is a map (sorted keys), any other mapping a struct."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode()


# --- Time parsing --------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})\Z"
)


def parse_go_time(text: str) -> datetime:
    """``time.Time.UnmarshalJSON`` (RFC 3339); raises :class:`GoJSONError` like Go's parser."""
    match = _RFC3339.match(text)
    if match is None:
        raise GoJSONError(f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "").ljust(6, "0")[:6]
    zone = match.group(8)
    if zone == "Z":
        tz: timezone = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=tz)
    except ValueError as exc:
        raise GoJSONError(f'parsing time "{text}": {exc}') from exc


# --- Decoding ------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise GoJSONError(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(
    object_pairs_hook=GoObject,
    parse_int=GoNumber,
    parse_float=GoNumber,
    parse_constant=_reject_constant,
)
_WS = " \t\n\r"


def _syntax_error(data: str, exc: json.JSONDecodeError) -> GoJSONError:
    if exc.pos >= len(data.rstrip(_WS)):
        return GoJSONError("unexpected EOF")
    return GoJSONError(f"invalid character '{data[exc.pos]}' looking for beginning of value")


def _text(data: bytes | str) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def decode_first(data: bytes | str) -> Any:
    """``json.NewDecoder(r).Decode``: the first JSON value; ``EOF`` when there is none."""
    text = _text(data)
    start = len(text) - len(text.lstrip(_WS))
    if start == len(text):
        raise GoJSONError("EOF")
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise _syntax_error(text, exc) from None
    return value


def unmarshal(data: bytes | str) -> Any:
    """``json.Unmarshal``: exactly one JSON value (white space around it allowed)."""
    text = _text(data)
    if not text.strip(_WS):
        raise GoJSONError("unexpected end of JSON input")
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise _syntax_error(text, exc) from None
    rest = text[end:].lstrip(_WS)
    if rest:
        raise GoJSONError(f"invalid character '{rest[0]}' after top-level value")
    return value


def _kind_of(value: Any) -> str:
    if isinstance(value, GoObject):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, GoNumber):
        return "number"
    if isinstance(value, bool):
        return "bool"
    return "string"


@dataclass(frozen=True)
class Struct:
    """A Go struct as ``encoding/json`` decodes it.

    ``fields`` maps each JSON name to its kind: ``"string"``, ``"int"``, ``"bool"``, ``"time"``,
    ``"any"`` (``interface{}``), ``"map"`` (``map[string]interface{}``), ``"raw"``
    (``json.RawMessage``: the parsed value, ``null`` included), or a nested
    :class:`Struct` (a struct or a pointer to one: ``null`` leaves it nil).
    """

    go_name: str  # e.g. "AgentRegistrationRequest"
    go_type: str  # e.g. "models.AgentRegistrationRequest"
    fields: Mapping[str, Kind]
    type_names: Mapping[str, str] = field(default_factory=dict)  # JSON name -> Go type for errors


Kind = str | Struct

_GO_TYPES = {
    "string": "string",
    "int": "int",
    "bool": "bool",
    "time": "time.Time",
    "map": "map[string]interface {}",
}


def to_go_value(value: Any) -> Any:
    """A decoded ``interface{}``: objects become :class:`GoMap`, numbers float64."""
    if isinstance(value, GoObject):
        return GoMap((key, to_go_value(item)) for key, item in value.items())
    if isinstance(value, list):
        return [to_go_value(item) for item in value]
    if isinstance(value, GoNumber):
        number = float(value)
        if math.isinf(number):
            raise GoJSONError(
                f"json: cannot unmarshal number {value} into Go value of type float64"
            )
        return number
    return value


_INT64 = re.compile(r"-?(0|[1-9]\d*)\Z")


class _Decoding:
    def __init__(self) -> None:
        self.first_error: str | None = None

    def error(self, value: str, struct: Struct, path: str, type_name: str) -> None:
        if self.first_error is None:
            self.first_error = (
                f"json: cannot unmarshal {value} into Go struct field "
                f"{struct.go_name}.{path} of type {type_name}"
            )

    def convert(self, value: Any, kind: Kind, struct: Struct, path: str, type_name: str) -> Any:
        """Returns the decoded value, or ``_SKIP`` when the field keeps its previous value."""
        if kind == "raw":  # json.RawMessage: any value, null included, kept as parsed
            return value
        if value is None:
            return _SKIP
        found = _kind_of(value)
        if isinstance(kind, Struct):
            if found != "object":
                self.error(found, struct, path, type_name)
                return _SKIP
            return self.struct(value, kind, path)
        if kind == "any":
            try:
                return to_go_value(value)
            except GoJSONError:
                self.error(f"number {value}", struct, path, "float64")
                return _SKIP
        if kind == "map":
            if found != "object":
                self.error(found, struct, path, type_name)
                return _SKIP
            return to_go_value(value)
        if kind == "string":
            if found != "string":
                self.error(found, struct, path, type_name)
                return _SKIP
            return value
        if kind == "bool":
            if found != "bool":
                self.error(found, struct, path, type_name)
                return _SKIP
            return value
        if kind == "int":
            if found != "number":
                self.error(found, struct, path, type_name)
                return _SKIP
            if not _INT64.match(value) or not -(2**63) <= int(value) < 2**63:
                self.error(f"number {value}", struct, path, type_name)
                return _SKIP
            return int(value)
        if kind == "time":
            if found != "string":
                # time.Time implements Unmarshaler: Go reports the raw parse failure.
                if self.first_error is None:
                    self.first_error = "Time.UnmarshalJSON: input is not a JSON string"
                return _SKIP
            try:
                return parse_go_time(value)
            except GoJSONError as exc:
                if self.first_error is None:
                    self.first_error = str(exc)
                return _SKIP
        raise AssertionError(kind)

    def struct(self, obj: GoObject, spec: Struct, prefix: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        folded = {name.casefold(): name for name in spec.fields}
        for key, value in obj.pairs:
            name = key if key in spec.fields else folded.get(key.casefold())
            if name is None:
                continue
            kind = spec.fields[name]
            path = f"{prefix}.{name}" if prefix else name
            inner = kind if isinstance(kind, Struct) else None
            type_name = spec.type_names.get(
                name, inner.go_type if inner is not None else _GO_TYPES.get(str(kind), "")
            )
            decoded = self.convert(value, kind, spec, path, type_name)
            if decoded is not _SKIP:
                result[name] = decoded
        return result


_SKIP: Any = object()


def decode_struct(value: Any, spec: Struct) -> dict[str, Any]:
    """Decode a parsed JSON value into ``spec`` as ``encoding/json`` does.

    Returns the fields that were set (absent and ``null`` ones are left out). Raises
    :class:`GoJSONError` with Go's message for the first type error, or when the value is not
    an object (``null`` gives an empty result, as Go leaves the struct untouched).
    """
    if value is None:
        return {}
    kind = _kind_of(value)
    if kind != "object":
        raise GoJSONError(f"json: cannot unmarshal {kind} into Go value of type {spec.go_type}")
    decoding = _Decoding()
    result = decoding.struct(value, spec, "")
    if decoding.first_error is not None:
        raise GoJSONError(decoding.first_error)
    return result


# --- Go's strconv.Atoi and time.ParseDuration (the agent's getEnvIntOrDefault) -------------------

_ATOI = re.compile(r"[+-]?\d+\Z")
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def go_atoi(text: str) -> int | None:
    """``strconv.Atoi``: optional sign and decimal digits only, within int64; else None."""
    if not _ATOI.match(text):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def go_parse_duration_ns(text: str) -> int | None:
    """``time.ParseDuration`` in nanoseconds (``"30s"``, ``"1m30s"``, ``"1.5h"``, ``"0"``)."""
    rest = text
    negative = False
    if rest[:1] in ("+", "-"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        return None
    total = Decimal(0)
    while rest:
        match = _DURATION_PART.match(rest)
        if match is None or (not match.group(1) and not match.group(2)):
            return None
        whole, frac, unit = match.group(1) or "0", match.group(2) or "", match.group(3)
        total += Decimal(f"{whole}.{frac or '0'}") * _UNITS[unit]
        rest = rest[match.end() :]
    nanos = int(total)
    if nanos > 2**63 - 1:
        return None
    return -nanos if negative else nanos
