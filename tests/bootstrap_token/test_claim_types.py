"""Every claim the verifier reads has exactly its JSON type (issue 13, item 1), and a token has
exactly one spelling (item 2).

RFC 7519 section 2 makes the time claims NumericDates (JSON numbers); the tokens the webhook
mints carry integers, so the verifier takes exactly a JSON integer there, strings where strings
are, objects for ``pod`` and ``owner``: no boolean, no numeric string, no float, no ``NaN``.
A lax model converted ``"1796003600"`` or ``true`` into a time and the approver burnt the
``jti`` of such a token; now verification refuses it as malformed before any policy check.
The tokens here are signed with the real key, so only the claims' types can refuse them.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bootstrap_token import (
    BootstrapClaims,
    KeySet,
    MalformedToken,
    SigningKey,
    VerificationPolicy,
    mint,
    verify,
)
from bootstrap_token.jws import b64url_encode, canonical_compact, is_canonical_b64url

NOW = 1_796_000_000
KEY = SigningKey.generate()
KEYS = KeySet([KEY.public_key])
POLICY = VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver")
HEADER = {"alg": "EdDSA", "typ": "agent-bootstrap+jwt", "kid": KEY.kid}


def valid_claims() -> dict[str, Any]:
    return {
        "iss": "agent-bootstrap-webhook",
        "aud": "agent-approver",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
        "jti": "Xk3P9vQ2rT7yU1wE5aS8dF",
        "cluster": "prod",
        "namespace": "streamspace",
        "serviceAccount": "streamspace-agent",
        "pod": {"generateName": "streamspace-k8s-agent-7d9f8b6c5-"},
        "owner": {"kind": "ReplicaSet", "name": "streamspace-k8s-agent-7d9f8b6c5", "uid": "u-1"},
        "admissionUid": "6e397dab-317d-11e9-b50f-080027bbd2ff",
    }


def signed(payload_text: str, header: dict[str, Any] = HEADER) -> str:
    """A token whose payload segment is exactly ``payload_text``, signed with the real key."""
    signing_input = ".".join(
        (b64url_encode(json.dumps(header).encode()), b64url_encode(payload_text.encode()))
    )
    signature = KEY.private_key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    claims = valid_claims()
    target = claims
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return claims


#: Every claim the verifier reads, with its one JSON type.
INTEGER, STRING, OBJECT = "integer", "string", "object"
CLAIMS: list[tuple[tuple[str, ...], str]] = [
    (("iat",), INTEGER),
    (("nbf",), INTEGER),
    (("exp",), INTEGER),
    (("iss",), STRING),
    (("aud",), STRING),
    (("jti",), STRING),
    (("cluster",), STRING),
    (("namespace",), STRING),
    (("serviceAccount",), STRING),
    (("admissionUid",), STRING),
    (("pod",), OBJECT),
    (("pod", "generateName"), STRING),
    (("owner",), OBJECT),
    (("owner", "kind"), STRING),
    (("owner", "name"), STRING),
    (("owner", "uid"), STRING),
]

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24),
    st.from_regex(r"\A-?[0-9]{1,12}(\.[0-9]{1,3})?\Z"),  # numeric strings
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return STRING
    if isinstance(value, dict):
        return OBJECT
    return "null" if value is None else "array"


class TestVerifierTakesExactTypes:
    @settings(max_examples=400, deadline=None)
    @given(claim=st.sampled_from(CLAIMS), value=JSON_VALUES)
    def test_a_claim_of_another_json_type_is_malformed(
        self, claim: tuple[tuple[str, ...], str], value: Any
    ) -> None:
        """A value of any other JSON type in any claim: malformed, whatever the value."""
        path, expected = claim
        if json_type(value) == expected:
            return  # the right type: other tests cover its values
        token = signed(json.dumps(with_value(path, value)))
        with pytest.raises(MalformedToken, match="claims set invalid at"):
            verify(token, KEYS, POLICY, now=NOW)

    @pytest.mark.parametrize(
        "value",
        ["1796003600", True, 1796003600.0, 1796003600.5, "1.7960036e9", None, [NOW + 3600]],
        ids=[
            "numeric-string",
            "true",
            "integral-float",
            "fraction",
            "exponent-string",
            "null",
            "array",
        ],
    )
    def test_the_inputs_a_lax_model_converted(self, value: Any) -> None:
        """The values a lax model turned into ``exp`` (pinned, not left to chance)."""
        with pytest.raises(MalformedToken, match="exp"):
            verify(signed(json.dumps(with_value(("exp",), value))), KEYS, POLICY, now=NOW)

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
    def test_non_finite_numbers_are_not_json(self, literal: str) -> None:
        """Python's JSON reader takes ``NaN``/``Infinity``; a claims set holding one is not
        JSON (RFC 8259 section 6)."""
        text = json.dumps(valid_claims()).replace(f'"exp": {NOW + 3600}', f'"exp": {literal}')
        assert literal in text
        with pytest.raises(MalformedToken):
            verify(signed(text), KEYS, POLICY, now=NOW)

    @pytest.mark.parametrize("time", [-1, 253_402_300_800, 10**30])
    def test_times_outside_what_can_be_stored(self, time: int) -> None:
        """A time before the epoch or past year 9999 is malformed (it would overflow a
        ``datetime`` where the approver records the token's use)."""
        claims = with_value(("exp",), time)
        claims["iat"] = claims["nbf"] = min(time, NOW)
        with pytest.raises(MalformedToken, match="exp"):
            verify(signed(json.dumps(claims)), KEYS, POLICY, now=NOW)

    def test_duplicate_claim_names_are_malformed(self) -> None:
        """Two ``exp`` members: readers that keep the first and the last would disagree
        (RFC 7519 section 4 lets a parser refuse them; we do)."""
        text = json.dumps(valid_claims())[:-1] + f', "exp": {NOW + 7200}}}'
        with pytest.raises(MalformedToken):
            verify(signed(text), KEYS, POLICY, now=NOW)

    def test_the_valid_claims_verify(self) -> None:
        """The baseline every case above changes one thing of."""
        claims = verify(signed(json.dumps(valid_claims())), KEYS, POLICY, now=NOW)
        assert (claims.exp, claims.namespace) == (NOW + 3600, "streamspace")


class TestMintingTakesExactTypes:
    @settings(max_examples=200, deadline=None)
    @given(claim=st.sampled_from(CLAIMS), value=JSON_VALUES)
    def test_claims_of_another_type_cannot_be_minted(
        self, claim: tuple[tuple[str, ...], str], value: Any
    ) -> None:
        """The model :func:`bootstrap_token.mint` signs refuses the same values, so no token
        of ours can carry one."""
        path, expected = claim
        if json_type(value) == expected:
            return
        if path == ("owner",) and value is None:
            # In Python ``owner=None`` spells "no owner": the token is minted without the claim.
            minted = BootstrapClaims.model_validate(with_value(path, value))
            assert "owner" not in minted.to_payload()
            return
        with pytest.raises(ValidationError):
            BootstrapClaims.model_validate(with_value(path, value))

    def test_a_minted_token_has_exactly_the_types(self) -> None:
        """What mint signs is read back with the same JSON types."""
        token = mint(BootstrapClaims.model_validate(valid_claims()), KEY, now=NOW)
        payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert {name: json_type(value) for name, value in payload.items()} == {
            name: json_type(value) for name, value in valid_claims().items()
        }


def respellings(token: str) -> dict[str, str]:
    """Other spellings of ``token`` that lenient base64 decoders (Python's, PyJWT's) read as
    the same bytes."""
    header, payload, signature = token.split(".")
    # The signature is 64 bytes: 86 characters, the last carrying 4 unused (zero) bits.
    last = signature[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    flipped = signature[:-1] + alphabet[alphabet.index(last) | 1]
    assert flipped != signature
    return {
        "padded-signature": f"{header}.{payload}.{signature}==",
        "padded-header": f"{header}{'=' * (-len(header) % 4) or '=='}.{payload}.{signature}",
        "standard-alphabet": ".".join(
            part.replace("-", "+").replace("_", "/") for part in (header, payload, signature)
        ),
        "trailing-bits-set": f"{header}.{payload}.{flipped}",
        "space-inside": f"{header}.{payload[:10]} {payload[10:]}.{signature}",
        "junk-character": f"{header}.{payload}.{signature[:20]}!{signature[20:]}",
    }


class TestOneSpelling:
    def test_canonical_segments(self) -> None:
        """What counts as the one base64url spelling of some bytes."""
        assert is_canonical_b64url(b64url_encode(b"\xff\xfe\xfd\xfc"))
        assert not is_canonical_b64url("_-8=")  # padding
        assert not is_canonical_b64url("+/8")  # standard alphabet
        assert not is_canonical_b64url("AB")  # unused bits set: "AA" is the spelling of b"\0"
        assert not is_canonical_b64url("AAAAA")  # a lone sixth character is no byte

    def test_every_respelling_is_malformed(self) -> None:
        """Each respelling of a valid token is refused as malformed; the token itself
        verifies (the respellings decode to the same bytes under a lenient reader)."""
        token = mint(BootstrapClaims.model_validate(valid_claims()), KEY, now=NOW)
        assert canonical_compact(token)
        verify(token, KEYS, POLICY, now=NOW)
        spellings = respellings(token)
        if "-" not in token and "_" not in token:  # pragma: no cover - depends on the key
            spellings.pop("standard-alphabet")
        for name, spelling in spellings.items():
            assert spelling != token, name
            assert not canonical_compact(spelling), name
            with pytest.raises(MalformedToken, match="canonical"):
                verify(spelling, KEYS, POLICY, now=NOW)
