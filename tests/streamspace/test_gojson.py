"""The Go ``encoding/json``/``time`` imitation the stand-ins rely on (facts of Go 1.24)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.streamspace.gojson import (
    GoJSONError,
    GoMap,
    Struct,
    decode_first,
    decode_struct,
    go_atoi,
    go_float,
    go_parse_duration_ns,
    go_time,
    marshal,
    unmarshal,
)
from tests.streamspace.models import CAPACITY, REGISTRATION


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-0.0, "-0"),
        (0.5, "0.5"),
        (1e16, "10000000000000000"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (123456789.125, "123456789.125"),
    ],
)
def test_float(value: float, text: str) -> None:
    """``floatEncoder``: shortest digits, 'f' in [1e-6, 1e21), else 'e' with e-07 -> e-7."""
    assert go_float(value) == text


def test_marshal_struct_order_map_sorting_and_escaping() -> None:
    """``json.Marshal``: struct fields in order, map keys sorted, ``<>&`` escaped, UTF-8 kept;
    ``time.Time`` as RFC 3339 with trimmed fraction."""
    when = datetime(2025, 12, 4, 17, 43, 59, 120000, tzinfo=UTC)
    body = {"z": GoMap(b=1, a="<é&>"), "a": when, "n": None, "l": [True, 2.5]}
    assert (
        marshal(body)
        == (
            '{"z":{"a":"\\u003cé\\u0026\\u003e","b":1},"a":"2025-12-04T17:43:59.12Z",'
            '"n":null,"l":[true,2.5]}'
        ).encode()
    )
    assert go_time(when.replace(microsecond=0)) == "2025-12-04T17:43:59Z"
    plus_two = when.astimezone(timezone(timedelta(hours=2)))
    assert go_time(plus_two) == "2025-12-04T19:43:59.12+02:00"


def test_decode_matches_keys_like_go() -> None:
    """Struct decoding: case-insensitive keys, the last matching key wins, ``null`` leaves the
    field, unknown keys ignored, numbers into ``interface{}`` become float64."""
    value = unmarshal(
        b'{"AGENTID":"a","agentId":"b","platform":null,"x":1,'
        b'"metadata":{"n":1,"m":{"k":[1,"s"]}},"capacity":{"MaxSessions":3}}'
    )
    decoded = decode_struct(value, REGISTRATION)
    assert decoded["agentId"] == "b"
    assert "platform" not in decoded
    assert decoded["metadata"] == {"n": 1.0, "m": {"k": [1.0, "s"]}}
    assert isinstance(decoded["metadata"], GoMap)
    assert decoded["capacity"] == {"maxSessions": 3}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b'{"agentId":5}',
            "json: cannot unmarshal number into Go struct field "
            "AgentRegistrationRequest.agentId of type string",
        ),
        (
            b'{"capacity":{"maxSessions":1.5}}',
            "json: cannot unmarshal number 1.5 into Go struct field "
            "AgentCapacity.capacity.maxSessions of type int",
        ),
        (
            b"[]",
            "json: cannot unmarshal array into Go value of type models.AgentRegistrationRequest",
        ),
    ],
)
def test_decode_type_errors(data: bytes, message: str) -> None:
    """``UnmarshalTypeError`` texts."""
    with pytest.raises(GoJSONError) as caught:
        decode_struct(unmarshal(data), REGISTRATION)
    assert str(caught.value) == message


def test_decoder_reads_the_first_value_only() -> None:
    """``json.Decoder.Decode``: the first value, trailing bytes ignored; nothing is ``EOF``;
    ``json.Unmarshal`` wants one value only."""
    assert decode_first(b' {"a":1} trailing') == {"a": "1"}
    with pytest.raises(GoJSONError, match=r"^EOF$"):
        decode_first(b"  ")
    with pytest.raises(GoJSONError):
        unmarshal(b'{"a":1} x')
    time_struct = Struct("T", "main.T", {"at": "time"})
    with pytest.raises(GoJSONError, match="parsing time"):
        decode_struct(unmarshal(b'{"at":"yesterday"}'), time_struct)
    assert decode_struct(unmarshal(b"null"), CAPACITY) == {}


def test_atoi_and_parse_duration() -> None:
    """``strconv.Atoi`` and ``time.ParseDuration`` as ``getEnvIntOrDefault`` uses them."""
    assert [go_atoi(t) for t in ("100", "+5", "-3", " 1", "1_0", "")] == [
        100,
        5,
        -3,
        None,
        None,
        None,
    ]
    assert go_parse_duration_ns("30s") == 30 * 10**9
    assert go_parse_duration_ns("1m30s") == 90 * 10**9
    assert go_parse_duration_ns("1.5h") == 5400 * 10**9
    assert go_parse_duration_ns("0") == 0
    assert go_parse_duration_ns("100") is None
    assert go_parse_duration_ns("-2ms") == -2 * 10**6
