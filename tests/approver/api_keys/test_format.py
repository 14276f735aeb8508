"""The key format: generation, parsing, hashing, the constant-time compare, the header."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from approver.api_keys.format import (
    ID_LENGTH,
    KEY_LENGTH,
    KEY_PATTERN,
    SECRET_LENGTH,
    MalformedApiKey,
    generate_key,
    hash_secret,
    parse_api_key,
    presented_api_key,
    secret_matches,
)
from bootstrap_token import SigningKey
from tests.approver.helpers import mint_token


def _bits(b32: str) -> int:
    padded = b32.upper() + "=" * (-len(b32) % 8)
    return len(base64.b32decode(padded)) * 8


class TestGenerate:
    def test_shape_and_entropy(self) -> None:
        """A key is abk_<16 base32>_<52 base32>: an 80-bit id and a 256-bit secret."""
        generated = generate_key()
        match = KEY_PATTERN.fullmatch(generated.key)
        assert match is not None
        assert len(generated.key) == KEY_LENGTH == 73
        key_id, secret = match.groups()
        assert key_id == generated.key_id
        assert len(key_id) == ID_LENGTH
        assert _bits(key_id) == 80
        assert len(secret) == SECRET_LENGTH
        assert _bits(secret) >= 256
        assert generated.secret_hash == hashlib.sha256(secret.encode()).hexdigest()

    def test_keys_are_unique(self) -> None:
        """A thousand keys share neither an id nor a secret."""
        keys = [generate_key() for _ in range(1000)]
        assert len({k.key_id for k in keys}) == 1000
        assert len({k.key for k in keys}) == 1000

    def test_repr_hides_the_key(self) -> None:
        """repr() of a generated or parsed key shows neither the key nor the secret."""
        generated = generate_key()
        parsed = parse_api_key(generated.key)
        for text in (repr(generated), repr(parsed)):
            assert generated.key not in text
            assert parsed.secret not in text
            assert generated.secret_hash not in text


class TestParse:
    def test_round_trip(self) -> None:
        """Parsing a generated key gives its id and a secret hashing to its digest."""
        generated = generate_key()
        parsed = parse_api_key(generated.key)
        assert parsed.key_id == generated.key_id
        assert parsed.digest == generated.secret_hash == hash_secret(parsed.secret)

    @pytest.mark.parametrize(
        "mutate",
        [
            pytest.param(lambda k: k.replace("abk_", "abx_", 1), id="wrong-prefix"),
            pytest.param(lambda k: k.upper(), id="upper-case"),
            pytest.param(lambda k: k[:-1], id="short"),
            pytest.param(lambda k: k + "a", id="long"),
            pytest.param(lambda k: k[:20] + "-" + k[21:], id="bad-separator"),
            pytest.param(lambda k: k[:30] + "1" + k[31:], id="digit-1-not-base32"),
            pytest.param(lambda k: "", id="empty"),
            pytest.param(lambda k: "legacy-shared-streamspace-key", id="legacy-key"),
        ],
    )
    def test_malformed(self, mutate: Any) -> None:
        """Anything but the exact format is MalformedApiKey, whose message never quotes it."""
        value = mutate(generate_key().key)
        with pytest.raises(MalformedApiKey) as caught:
            parse_api_key(value)
        if value:
            assert value not in str(caught.value)

    @given(st.text(max_size=100))
    def test_arbitrary_text_only_raises_malformed(self, value: str) -> None:
        """Any text either parses or raises MalformedApiKey (never another error)."""
        try:
            parsed = parse_api_key(value)
        except MalformedApiKey:
            return
        assert value == f"abk_{parsed.key_id}_{parsed.secret}"


class TestConstantTimeCompare:
    def test_uses_hmac_compare_digest(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The secret check is hmac.compare_digest of SHA-256 digests, also for unknown ids."""
        calls: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def spy(a: Any, b: Any) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        generated = generate_key()
        secret = parse_api_key(generated.key).secret
        assert secret_matches(secret, generated.secret_hash) is True
        assert (
            secret_matches(secret[:-1] + ("a" if secret[-1] != "a" else "b"), generated.secret_hash)
            is False
        )
        assert secret_matches(secret, None) is False
        assert len(calls) == 3
        assert all(len(a) == len(b) == 32 for a, b in calls)
        assert calls[0][1] == bytes.fromhex(generated.secret_hash)


class TestHeader:
    def test_api_key_is_read(self) -> None:
        """A non-JWT value of X-Agent-API-Key is an API key (whitespace stripped)."""
        key = generate_key().key
        assert presented_api_key(CIMultiDict({"x-agent-api-key": f"  {key}\n"})) == key

    def test_jwt_is_a_bootstrap_token_not_a_key(self) -> None:
        """A JWT in X-Agent-API-Key is left to the bootstrap-token path."""
        token = mint_token(SigningKey.generate())
        assert presented_api_key(CIMultiDict({"X-Agent-API-Key": token})) is None

    @pytest.mark.parametrize("headers", [{}, {"X-Agent-API-Key": ""}, {"X-Agent-API-Key": "  "}])
    def test_absent_or_empty(self, headers: dict[str, str]) -> None:
        """No header, or an empty one, presents no key."""
        assert presented_api_key(CIMultiDict(headers)) is None

    def test_legacy_value_is_presented(self) -> None:
        """A value that is neither a JWT nor our format is still presented (then refused)."""
        assert presented_api_key(CIMultiDict({"X-Agent-API-Key": "s3cr3t"})) == "s3cr3t"
