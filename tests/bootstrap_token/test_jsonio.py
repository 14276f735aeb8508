"""JSON in and out: orjson and the standard library agree on what the webhook reads and writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap_token import jsonio
from bootstrap_token.jsonio import InvalidJson
from tests.payloads import streamspace_agent_review

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
BAD = [
    b"",
    b"{",
    b"[1,]",
    b"\xff\xfe{}",
    b"\xef\xbb\xbf{}",
    b"NaN",
    b'{"a": Infinity}',
    b"{'a': 1}",
]


class TestBackends:
    @given(value=JSON_VALUES)
    def test_round_trip_both_ways(self, value: Any) -> None:
        """What one backend writes, the other reads back equal (compact UTF-8 JSON)."""
        assert jsonio._std_loads(jsonio.dumps(value)) == value
        assert jsonio.loads(jsonio._std_dumps(value)) == value

    def test_real_review(self) -> None:
        """The real review parses the same with both backends."""
        body = json.dumps(streamspace_agent_review(uid="u")).encode()
        assert jsonio.loads(body) == jsonio._std_loads(body) == json.loads(body)

    @pytest.mark.parametrize("data", BAD)
    def test_invalid_is_refused_by_both(self, data: bytes) -> None:
        """Not UTF-8, a BOM, NaN/Infinity or broken JSON: InvalidJson from either backend."""
        with pytest.raises(InvalidJson):
            jsonio.loads(data)
        with pytest.raises(InvalidJson):
            jsonio._std_loads(data)

    def test_deep_nesting_is_refused(self) -> None:
        """A document nested deeper than the parsers allow is invalid, not a crash."""
        data = b"[" * 100_000 + b"]" * 100_000
        with pytest.raises(InvalidJson):
            jsonio.loads(data)
        with pytest.raises(InvalidJson):
            jsonio._std_loads(data)

    def test_non_ascii_is_written_raw(self) -> None:
        """Both backends write UTF-8 as is (no \\u escapes), compactly."""
        assert jsonio.dumps({"k": "é"}) == jsonio._std_dumps({"k": "é"}) == '{"k":"é"}'.encode()
