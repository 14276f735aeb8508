"""Admin bearer tokens: the file format and constant-time authentication."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approver.files.tokens import AdminTokens, AdminTokensError, bearer_token
from bootstrap_token import fingerprint

ALICE = "alice-0123456789abcdef"
BARE = "bare-token-fedcba9876543210"


class TestParse:
    def test_named_and_bare_tokens(self) -> None:
        """'name:token' records the name; a bare token records its fingerprint."""
        tokens = AdminTokens.parse(f"# admins\n\nalice:{ALICE}\n{BARE}\n")
        assert len(tokens) == 2
        assert tokens.authenticate(ALICE) == "alice"
        assert tokens.authenticate(BARE) == fingerprint(BARE)

    def test_unknown_token(self) -> None:
        """A token not in the file authenticates nobody."""
        tokens = AdminTokens.parse(f"alice:{ALICE}\n")
        assert tokens.authenticate(ALICE + "x") is None
        assert tokens.authenticate("") is None

    def test_empty_configuration_refuses_everyone(self) -> None:
        """With no tokens configured, no token authenticates."""
        assert AdminTokens().authenticate(ALICE) is None

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("short-token\n", "line 1: token shorter than 16"),
            ("# c\nalice:short\n", "line 2: token shorter than 16"),
            (f"bad name:{ALICE}\n", "line 1: name must"),
        ],
        ids=["short bare", "short named", "bad name"],
    )
    def test_invalid_lines(self, text: str, message: str) -> None:
        """Bad lines are refused by line number, never echoing the line."""
        with pytest.raises(AdminTokensError, match=message) as info:
            AdminTokens.parse(text)
        assert "short-token" not in str(info.value)
        assert ALICE not in str(info.value)

    def test_from_file(self, tmp_path: Path) -> None:
        """The tokens file is read from disk."""
        path = tmp_path / "tokens"
        path.write_text(f"ops@example.com:{ALICE}\n", encoding="utf-8")
        assert AdminTokens.from_file(path).authenticate(ALICE) == "ops@example.com"

    def test_missing_file(self, tmp_path: Path) -> None:
        """An unreadable file is an AdminTokensError."""
        with pytest.raises(AdminTokensError, match="cannot read"):
            AdminTokens.from_file(tmp_path / "missing")

    def test_repr_shows_no_digest(self) -> None:
        """The tokens' repr names actors only."""
        tokens = AdminTokens.parse(f"alice:{ALICE}\n")
        assert "digest" not in repr(tokens)
        assert "alice" in repr(tokens)


class TestBearer:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (f"Bearer {ALICE}", ALICE),
            (f"bearer {ALICE}", ALICE),
            (f"  Bearer   {ALICE}  ", ALICE),
            (f"Basic {ALICE}", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("", None),
            (None, None),
        ],
        ids=["bearer", "lowercase scheme", "spaces", "basic", "no token", "blank", "empty", "none"],
    )
    def test_parse(self, header: str | None, expected: str | None) -> None:
        """Only the Bearer scheme (any case) yields a token (RFC 6750 section 2.1)."""
        assert bearer_token(header) == expected

    @given(st.text(max_size=100))
    def test_never_raises(self, header: str) -> None:
        """Any Authorization value parses to a token or None."""
        result = bearer_token(header)
        assert result is None or (result and header.lower().lstrip().startswith("bearer"))
