"""Which bootstrap token a registration presents, read from its headers."""

from __future__ import annotations

import hashlib

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from approver.domain.credentials import (
    API_KEY_HEADER,
    BOOTSTRAP_TOKEN_HEADER,
    SERVICE_ACCOUNT_TOKEN_HEADER,
    bootstrap_credential,
    looks_like_jwt,
    presented_credentials,
    sha256_hex,
)
from bootstrap_token import SigningKey, fingerprint
from tests.approver.helpers import alg_none, header_with, mint_token


@pytest.fixture(scope="module")
def token() -> str:
    return mint_token(SigningKey.generate())


class TestBootstrapCredential:
    def test_explicit_header(self, token: str) -> None:
        """X-Agent-Bootstrap-Token is the token, hashed with SHA-256 and fingerprinted."""
        credential = bootstrap_credential(CIMultiDict({BOOTSTRAP_TOKEN_HEADER: token}))
        assert credential is not None
        assert credential.token == token
        assert credential.header == BOOTSTRAP_TOKEN_HEADER
        assert credential.digest == hashlib.sha256(token.encode()).hexdigest()
        assert credential.fingerprint == fingerprint(token)

    def test_unmodified_streamspace_agent(self, token: str) -> None:
        """A JWT in X-Agent-API-Key (AGENT_API_KEY pointed at the annotation) is the token."""
        credential = bootstrap_credential(CIMultiDict({"x-agent-api-key": token}))
        assert credential is not None
        assert (credential.token, credential.header) == (token, API_KEY_HEADER)
        # The JOSE header read to recognise the token gives its kid (not read a second time).
        assert credential.kid == jwt.get_unverified_header(token)["kid"]
        assert credential.fingerprint == fingerprint(token)

    def test_explicit_header_wins(self, token: str) -> None:
        """With a token in both headers, X-Agent-Bootstrap-Token is the one presented."""
        other = mint_token(SigningKey.generate())
        headers = CIMultiDict({BOOTSTRAP_TOKEN_HEADER: token, API_KEY_HEADER: other})
        credential = bootstrap_credential(headers)
        assert credential is not None
        assert credential.token == token

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {API_KEY_HEADER: "sk_live_0123456789abcdef"},
            {API_KEY_HEADER: "a.b.c"},
            {API_KEY_HEADER: ""},
            {BOOTSTRAP_TOKEN_HEADER: "   "},
        ],
        ids=["none", "plain API key", "dotted but no JSON header", "empty key", "blank token"],
    )
    def test_no_token(self, headers: dict[str, str]) -> None:
        """Plain API keys, empty values and non-JWT dotted strings present no bootstrap token."""
        assert bootstrap_credential(CIMultiDict(headers)) is None

    def test_garbled_explicit_token_is_still_presented(self) -> None:
        """Anything in X-Agent-Bootstrap-Token is presented, so verification can refuse it."""
        credential = bootstrap_credential(CIMultiDict({BOOTSTRAP_TOKEN_HEADER: "garbage"}))
        assert credential is not None
        assert credential.token == "garbage"

    def test_repr_hides_the_token(self, token: str) -> None:
        """The credential's repr shows its fingerprint, never the token."""
        credential = bootstrap_credential(CIMultiDict({BOOTSTRAP_TOKEN_HEADER: token}))
        assert token not in repr(credential)
        assert fingerprint(token) in repr(credential)


class TestLooksLikeJwt:
    def test_real_token(self, token: str) -> None:
        """A minted token is JWT-shaped."""
        assert looks_like_jwt(token) is True

    def test_alg_none_is_recognised(self, token: str) -> None:
        """An unsigned token (empty third part) is recognised, so it is refused, not ignored."""
        assert looks_like_jwt(alg_none(token)) is True

    def test_invalid_header_member_is_recognised(self, token: str) -> None:
        """A JSON header PyJWT refuses (non-string kid) is still a token, refused later."""
        assert looks_like_jwt(header_with(token, kid=7)) is True

    @given(st.text(max_size=200))
    def test_never_raises(self, value: str) -> None:
        """Any header value is classified without raising."""
        assert looks_like_jwt(value) in (True, False)

    @given(st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True))
    def test_api_key_alphabet_without_dots_is_no_jwt(self, value: str) -> None:
        """A key without two dots is never taken for a token."""
        assert looks_like_jwt(value) is False


class TestPresented:
    def test_every_header_is_hashed(self, token: str) -> None:
        """Bootstrap token, API key and service-account token are each hashed; the bootstrap
        token is the primary credential of a new registration."""
        presented = presented_credentials(
            CIMultiDict(
                {
                    BOOTSTRAP_TOKEN_HEADER: token,
                    API_KEY_HEADER: "abk_some_api_key_0123",
                    SERVICE_ACCOUNT_TOKEN_HEADER: "sa.token.value",
                }
            )
        )
        assert presented.api_key == "abk_some_api_key_0123"
        assert presented.digests == {
            sha256_hex(token),
            sha256_hex("abk_some_api_key_0123"),
            sha256_hex("sa.token.value"),
        }
        assert presented.primary == sha256_hex(token)
        assert presented.primary_fingerprint == fingerprint(token)
        for secret in (token, "abk_some_api_key_0123", "sa.token.value"):
            assert secret not in repr(presented)

    def test_jwt_in_the_api_key_header_is_not_an_api_key(self, token: str) -> None:
        """StreamSpace's zero-change path: the token in X-Agent-API-Key is the bootstrap token,
        not also an API key."""
        presented = presented_credentials(CIMultiDict({API_KEY_HEADER: token}))
        assert presented.bootstrap is not None
        assert presented.api_key is None
        assert presented.digests == {sha256_hex(token)}

    def test_nothing_presented(self) -> None:
        """No credential: no digests, and proves only a registration made without one."""
        presented = presented_credentials(CIMultiDict({}))
        assert (presented.primary, presented.digests) == (None, frozenset())
        assert presented.proves(None) is True
        assert presented.proves("a" * 64) is False

    def test_unverified_kid_is_read_once(self, token: str) -> None:
        """The credential carries the header's kid (unverified), for records and events."""
        credential = bootstrap_credential(CIMultiDict({BOOTSTRAP_TOKEN_HEADER: token}))
        assert credential is not None
        assert credential.kid is not None
        assert len(credential.kid) == 43
