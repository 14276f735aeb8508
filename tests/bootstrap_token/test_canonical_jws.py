"""The verifier's JWS parser (:class:`bootstrap_token.token.CanonicalJWS`) decodes a segment
only when PyJWT's own parser decodes it to the same bytes, and only in its canonical spelling;
PyJWT still calls the overridden method."""

from __future__ import annotations

import jwt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from bootstrap_token import mint
from bootstrap_token import token as token_module
from bootstrap_token.jws import b64url_encode
from bootstrap_token.token import CanonicalJWS
from tests.bootstrap_token.test_token import KEY, NOW, claims

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def stock(segment: bytes) -> bytes | None:
    try:
        return PyJWS._decode_base64url_segment(segment, "header")
    except jwt.DecodeError:
        return None


def ours(segment: bytes) -> bytes | None:
    try:
        return CanonicalJWS._decode_base64url_segment(segment, "header")
    except jwt.DecodeError:
        return None


segments = st.one_of(
    st.binary(max_size=40).map(lambda b: b64url_encode(b).encode()),
    st.text(alphabet=ALPHABET + "=+/ .\n", max_size=40).map(str.encode),
    st.binary(max_size=40),
)


@given(segments)
@example(b"")
@example(b"YQ==")
@example(b"YR")
@example(b"Y")
@example(b"YQ")
@example("é".encode())
def test_accepts_a_subset_of_pyjwt_with_the_same_bytes(segment: bytes) -> None:
    """Whatever ours decodes, PyJWT decodes to the same bytes; what it refuses beyond PyJWT's
    refusals is only a spelling with padding (never a canonical one)."""
    mine, theirs = ours(segment), stock(segment)
    if mine is not None:
        assert theirs == mine
        assert b64url_encode(mine).encode() == segment
    elif theirs is not None:
        assert segment.endswith(b"=")


@given(st.binary(max_size=64))
def test_every_canonical_segment_decodes(data: bytes) -> None:
    """The canonical spelling of any bytes decodes to them."""
    assert ours(b64url_encode(data).encode()) == data


def test_pyjwt_calls_the_override() -> None:
    """PyJWT tolerates a padded segment, the verifier's parser refuses it: proof that PyJWT's
    parsing still goes through the overridden method (a PyJWT that renamed it fails here)."""
    token = mint(claims(), KEY, now=NOW)
    header, payload, signature = token.split(".")
    padded = f"{header}{'=' * (-len(header) % 4)}.{payload}.{signature}"
    assert padded != token
    PyJWS().decode_complete(padded, options={"verify_signature": False})
    with pytest.raises(jwt.DecodeError, match="Invalid header padding"):
        token_module._JWS.decode_complete(padded, options={"verify_signature": False})
    decoded = token_module._JWS.decode_complete(token, options={"verify_signature": False})
    assert decoded == PyJWS().decode_complete(token, options={"verify_signature": False})
