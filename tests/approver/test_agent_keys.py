"""Per-agent API keys: format with checksum, hash, never confused with other values."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from approver.domain.agent_keys import KEY_LENGTH, PREFIX, is_agent_key, key_digest, new_agent_key


class TestAgentKeys:
    def test_format(self) -> None:
        """A new key has the aga_ prefix, a fixed length and a valid checksum."""
        key = new_agent_key()
        assert key.startswith(PREFIX)
        assert len(key) == KEY_LENGTH
        assert is_agent_key(key)

    def test_keys_differ(self) -> None:
        """Every key is new (256 random bits)."""
        assert len({new_agent_key() for _ in range(200)}) == 200

    def test_one_changed_character_fails_the_checksum(self) -> None:
        """A typo in the random part is caught without any lookup."""
        key = new_agent_key()
        position = len(PREFIX) + 5
        typo = key[:position] + ("A" if key[position] != "A" else "B") + key[position + 1 :]
        assert not is_agent_key(typo)

    def test_digest_is_sha256_hex(self) -> None:
        """The stored form is SHA-256 hex of the key."""
        key = new_agent_key()
        assert key_digest(key) == hashlib.sha256(key.encode()).hexdigest()

    @given(st.text(max_size=80))
    def test_arbitrary_text_is_no_key(self, value: str) -> None:
        """Random text is (practically) never taken for a key, and checking never raises."""
        assert is_agent_key(value) in (True, False)
        if not value.startswith(PREFIX):
            assert not is_agent_key(value)
