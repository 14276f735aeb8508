"""Untrusted text rendered for audit messages (approver.audit.text): table and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approver.audit.text import MAX_AUDIT_VALUE, audit_value


class TestAuditValue:
    @pytest.mark.parametrize(
        ("value", "rendered"),
        [("streamspace", "streamspace"), ("", ""), ("a b=c ~!", "a b=c ~!"),
         ("\u202etxt.exe", "\\u202etxt.exe"), ("ns\x1b[2J", "ns\\x1b[2J"),
         ("a\nb\tc\rd", "a\\nb\\tc\\rd"), ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
         ("caf\u00e9", "caf\\xe9"), ("\U0001f600", "\\U0001f600"),
         ("a\\u202e", "a\\\\u202e"), ("\ud800", "\\ud800")],
    )  # fmt: skip
    def test_table(self, value: str, rendered: str) -> None:
        """Printable ASCII is kept; a backslash is doubled (so an escape cannot be forged);
        everything else is escaped the way ascii() writes it."""
        assert audit_value(value) == rendered

    def test_cut_with_a_marker(self) -> None:
        """A long value is cut to the limit, with the original length in the marker."""
        assert audit_value("a" * 128) == "a" * 128
        cut = audit_value("a" * 3000)
        assert cut == "a" * 113 + "...[3000 chars]"
        assert len(cut) == MAX_AUDIT_VALUE

    def test_never_cut_inside_an_escape(self) -> None:
        """The cut falls between two characters' renderings."""
        cut = audit_value("\u202e" * 40, limit=40)
        assert cut == "\\u202e" * 4 + "...[40 chars]"
        assert audit_value("ab\u202e", limit=32) == "ab\\u202e"

    def test_limit_too_small(self) -> None:
        """A limit that leaves no room for the marker is refused."""
        with pytest.raises(ValueError, match="at least 32"):
            audit_value("x", limit=31)

    @given(st.text(max_size=400), st.integers(min_value=32, max_value=300))
    def test_printable_ascii_and_bounded(self, value: str, limit: int) -> None:
        """Whatever the input, the rendering is printable ASCII of at most ``limit``
        characters, and a value that needs no escape and fits comes back unchanged."""
        rendered = audit_value(value, limit=limit)
        assert rendered.isascii()
        assert rendered.isprintable()
        assert len(rendered) <= limit
        if value.isascii() and value.isprintable() and "\\" not in value and len(value) <= limit:
            assert rendered == value

    @given(st.text(max_size=60))
    def test_short_renderings_are_reversible(self, value: str) -> None:
        """A rendering that fits (at most 10 characters per character) reads back as the
        value (Python's escape syntax)."""
        rendered = audit_value(value, limit=10 * 60)
        assert rendered.encode("ascii").decode("unicode_escape") == value
