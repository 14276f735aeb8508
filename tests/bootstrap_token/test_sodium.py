"""The libsodium-backed EdDSA verifier accepts and refuses exactly the tokens PyJWT's own
(cryptography/OpenSSL) verifier does, and the decode-free canonical base64url check gives the
verdict of decoding and encoding again."""

from __future__ import annotations

import random

import jwt
import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from bootstrap_token import BadSignature, SigningKey, TokenError, mint, verify
from bootstrap_token import token as token_module
from bootstrap_token.jws import b64url_decode, b64url_encode, is_canonical_b64url
from bootstrap_token.sodium import SodiumEdDSA
from tests.bootstrap_token.test_token import KEY, KEYS, NOW, POLICY, b64, claims

#: PyJWT's stock JWS with its cryptography-backed EdDSA: the reference verifier.
REFERENCE = PyJWS(algorithms=["EdDSA"])
#: Order of the Ed25519 group (RFC 8032 section 5.1).
L = 2**252 + 27742317777372353535851937790883648493


def reference_accepts(token: str) -> bool:
    try:
        REFERENCE.decode(token, KEY.public_key, algorithms=["EdDSA"])
    except jwt.InvalidTokenError:
        return False
    return True


def product_accepts(token: str) -> bool:
    try:
        verify(token, KEYS, POLICY, now=NOW + 10)
    except TokenError:
        return False
    return True


def with_signature(token: str, signature: bytes) -> str:
    return f"{token.rsplit('.', 1)[0]}.{b64(signature)}"


def signature_of(token: str) -> bytes:
    return b64url_decode(token.rsplit(".", 1)[1])


def test_the_product_verifies_with_libsodium() -> None:
    """The approver's parser runs EdDSA through SodiumEdDSA, not PyJWT's default."""
    assert isinstance(token_module._JWS.get_algorithm_by_name("EdDSA"), SodiumEdDSA)


def test_valid_tokens_are_accepted_by_both() -> None:
    for _ in range(50):
        token = mint(claims(), KEY, now=NOW)
        assert reference_accepts(token)
        assert product_accepts(token)


def test_every_single_bit_flip_of_the_signature_is_refused_by_both() -> None:
    """All 512 one-bit changes of a valid signature: neither verifier accepts one."""
    token = mint(claims(), KEY, now=NOW)
    signature = signature_of(token)
    for bit in range(len(signature) * 8):
        forged = bytearray(signature)
        forged[bit // 8] ^= 1 << (bit % 8)
        bad = with_signature(token, bytes(forged))
        assert not reference_accepts(bad)
        with pytest.raises(BadSignature):
            verify(bad, KEYS, POLICY, now=NOW + 10)


def test_changed_signed_bytes_are_refused_by_both() -> None:
    """A claim or header byte changed under a kept signature (re-encoded canonically)."""
    token = mint(claims(), KEY, now=NOW)
    header, payload, signature = token.split(".")
    rng = random.Random(7)
    for _ in range(200):
        part = rng.choice((0, 1))
        raw = bytearray(b64url_decode((header, payload)[part]))
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        parts = [header, payload]
        parts[part] = b64url_encode(bytes(raw))
        bad = f"{parts[0]}.{parts[1]}.{signature}"
        assert reference_accepts(bad) is False
        assert product_accepts(bad) is False


def test_another_keys_signature_and_malformed_signatures_are_refused_by_both() -> None:
    token = mint(claims(), KEY, now=NOW)
    other = mint(claims(), SigningKey.generate(), now=NOW)
    good = signature_of(token)
    s = int.from_bytes(good[32:], "little")
    candidates = [
        with_signature(token, signature_of(other)),  # another key signed these bytes' twin
        with_signature(token, good[:63]),  # short
        with_signature(token, good + b"\0"),  # long
        with_signature(token, b""),  # none
        with_signature(token, b"\0" * 64),  # all zero: R the identity (small order)
        # S + L: the same scalar, not canonical (RFC 8032 section 5.1.7 requires S < L)
        with_signature(token, good[:32] + (s + L).to_bytes(32, "little")),
        # R of order 2 ((0, -1)) with S = 0
        with_signature(token, (2**255 - 20).to_bytes(32, "little") + b"\0" * 32),
    ]
    for bad in candidates:
        assert reference_accepts(bad) is False
        assert product_accepts(bad) is False


def test_prepare_key_takes_ed25519_keys_only() -> None:
    algorithm = SodiumEdDSA()
    prepared = algorithm.prepare_key(KEY.public_key)
    assert isinstance(prepared, nacl.signing.VerifyKey)
    assert algorithm.prepare_key(KEY.public_key) is prepared  # converted once
    assert algorithm.prepare_key(prepared) is prepared
    with pytest.raises(jwt.exceptions.InvalidKeyError):
        algorithm.prepare_key(generate_private_key(SECP256R1()).public_key())
    with pytest.raises(jwt.exceptions.InvalidKeyError):
        algorithm.prepare_key(b"\0" * 32)
    with pytest.raises(NotImplementedError):
        algorithm.sign(b"m", prepared)


def _decoded_again(segment: str) -> bool:
    """The previous check: base64url alphabet, no lone character, and decoding then encoding
    gives the segment back."""
    if any(
        c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in segment
    ):
        return False
    if len(segment) % 4 == 1:
        return False
    return b64url_encode(b64url_decode(segment)) == segment


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="AQgwBCab01-_+/=. \n\u00e9", max_size=11))
def test_canonical_check_without_decoding_agrees(segment: str) -> None:
    assert is_canonical_b64url(segment) is _decoded_again(segment)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40))
def test_every_encoding_is_canonical(data: bytes) -> None:
    assert is_canonical_b64url(b64url_encode(data))
