"""The hot-path signer: byte for byte what ``bootstrap_token.mint`` makes, and it verifies."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap_token import (
    BootstrapClaims,
    KeySet,
    OwnerRef,
    PodRef,
    SigningKey,
    VerificationPolicy,
    mint,
    read_header,
    verify,
)
from tests.webhook.conftest import NOW
from webhook import signer as signer_module
from webhook.signer import TokenSigner, claims_json

# Printable ASCII, then anything JSON must escape or that orjson and json.dumps write differently:
# quotes, backslashes, control characters, DEL, non-ASCII, astral characters.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.sampled_from(['"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "€", "😀"]),
    ),
    min_size=1,
    max_size=40,
)


@st.composite
def claims_sets(draw: st.DrawFn) -> BootstrapClaims:
    named = draw(st.booleans())
    pod_name = draw(TEXT)
    owner = draw(st.none() | st.builds(OwnerRef, kind=TEXT, name=TEXT, uid=TEXT))
    ttl = draw(st.integers(min_value=300, max_value=86400))
    return BootstrapClaims(
        iss=draw(TEXT),
        aud=draw(TEXT),
        iat=NOW,
        nbf=NOW,
        exp=NOW + ttl,
        jti=draw(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=16, max_size=64)
        ),
        cluster=draw(TEXT),
        namespace=draw(TEXT.filter(lambda s: len(s) <= 63)),
        service_account=draw(TEXT),
        pod=PodRef(name=pod_name) if named else PodRef(generate_name=pod_name),
        owner=owner,
        admission_uid=draw(TEXT),
    )


class TestEquivalence:
    @settings(max_examples=150, deadline=None)
    @given(claims=claims_sets())
    def test_same_bytes_as_mint(self, claims: BootstrapClaims, signing_key: SigningKey) -> None:
        """For any claims set, the signer's token equals mint()'s, byte for byte."""
        signer = TokenSigner.for_key(signing_key)
        assert signer.sign(claims.to_payload()) == mint(claims, signing_key, now=NOW)

    @settings(max_examples=50, deadline=None)
    @given(claims=claims_sets())
    def test_same_bytes_without_orjson(self, claims: BootstrapClaims) -> None:
        """The standard-library path writes the same claims JSON as the orjson path."""
        with_orjson = claims_json(claims.to_payload())
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(signer_module, "orjson", None)
            assert claims_json(claims.to_payload()) == with_orjson

    @settings(max_examples=50, deadline=None)
    @given(claims=claims_sets())
    def test_backends_agree(self, claims: BootstrapClaims, signing_key: SigningKey) -> None:
        """libsodium (PyNaCl) and OpenSSL (cryptography) sign to the same bytes."""
        pytest.importorskip("nacl")
        openssl = TokenSigner.for_key(
            signing_key, backend=("cryptography", signing_key.private_key.sign)
        )
        fast = TokenSigner.for_key(signing_key)
        assert fast.backend == "pynacl"
        payload = claims.to_payload()
        assert fast.sign(payload) == openssl.sign(payload) == mint(claims, signing_key, now=NOW)

    def test_verifies(self, signing_key: SigningKey, key_set: KeySet) -> None:
        """A signed token passes bootstrap_token.verify with the key's JWKS."""
        claims = BootstrapClaims(
            iss="agent-bootstrap-webhook",
            aud="agent-approver",
            iat=NOW,
            nbf=NOW,
            exp=NOW + 3600,
            jti="0123456789abcdefghijkl",
            cluster="c",
            namespace="streamspace",
            service_account="streamspace-agent",
            pod=PodRef(generate_name="agent-"),
            admission_uid="uid",
        )
        token = TokenSigner.for_key(signing_key).sign(claims.to_payload())
        policy = VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver")
        assert verify(token, key_set, policy, now=NOW) == claims


class TestHeader:
    def test_header_is_sorted_and_names_the_kid(self, signing_key: SigningKey) -> None:
        """The header segment is PyJWT's: keys sorted, alg EdDSA, typ, the key's kid."""
        token = TokenSigner.for_key(signing_key).sign({"a": 1})
        segment = token.split(".")[0]
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        assert (
            raw
            == json.dumps(
                {"alg": "EdDSA", "kid": signing_key.kid, "typ": "agent-bootstrap+jwt"},
                separators=(",", ":"),
            ).encode()
        )
        assert read_header(token)["kid"] == signing_key.kid

    def test_repr_hides_the_key(self, signing_key: SigningKey) -> None:
        """Printing a signer shows the kid, never key material."""
        text = repr(TokenSigner.for_key(signing_key))
        assert signing_key.kid in text
        assert "PRIVATE" not in text
