"""Minting and verification of bootstrap tokens, including the classic JWT attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from bootstrap_token import (
    AlgorithmNotAllowed,
    BadSignature,
    BootstrapClaims,
    Expired,
    KeySet,
    LifetimeTooLong,
    MalformedToken,
    NotYetValid,
    PolicyViolation,
    SigningKey,
    TrustPolicy,
    UnknownKeyId,
    VerificationPolicy,
    WrongAudience,
    WrongIssuer,
    mint,
    new_jti,
    read_header,
    verify,
)

NOW = 1_796_000_000
KEY = SigningKey.generate()
KEYS = KeySet([KEY.public_key])
TRUST = TrustPolicy(namespaces=frozenset({"streamspace"}))
POLICY = VerificationPolicy(
    issuer="agent-bootstrap-webhook", audience="agent-approver", trust=TRUST
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> BootstrapClaims:
    base: dict[str, Any] = {
        "iss": "agent-bootstrap-webhook",
        "aud": "agent-approver",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
        "jti": new_jti(),
        "cluster": "prod",
        "namespace": "streamspace",
        "serviceAccount": "streamspace-agent",
        "pod": {"generateName": "streamspace-k8s-agent-7d9f8b6c5-"},
        "owner": {"kind": "ReplicaSet", "name": "streamspace-k8s-agent-7d9f8b6c5", "uid": "u-1"},
        "admissionUid": "6e397dab-317d-11e9-b50f-080027bbd2ff",
    }
    base.update(overrides)
    return BootstrapClaims.model_validate(base)


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    h = b64(json.dumps(header).encode())
    p = b64(json.dumps(payload).encode())
    return f"{h}.{p}.{b64(signature)}"


class TestMint:
    def test_header_is_eddsa_typed_with_thumbprint_kid(self) -> None:
        """The JOSE header names EdDSA, our explicit type and the key's RFC 7638 thumbprint."""
        token = mint(claims(), KEY, now=NOW)
        assert read_header(token) == {"alg": "EdDSA", "typ": "agent-bootstrap+jwt", "kid": KEY.kid}
        assert len(KEY.kid) == 43

    def test_round_trip_returns_the_claims(self) -> None:
        """A freshly minted token verifies and yields exactly the claims that were signed."""
        c = claims()
        assert verify(mint(c, KEY, now=NOW), KEYS, POLICY, now=NOW + 10) == c

    @pytest.mark.parametrize("ttl", [299, 86_401])
    def test_refuses_lifetime_outside_bounds(self, ttl: int) -> None:
        """The minting side never signs a token living under 5 minutes or over 24 hours."""
        with pytest.raises(ValueError, match="lifetime"):
            mint(claims(exp=NOW + ttl), KEY, now=NOW)

    def test_refuses_backdated_iat(self) -> None:
        """Claims issued at another time than now are refused."""
        with pytest.raises(ValueError, match="iat"):
            mint(claims(iat=NOW - 3600, nbf=NOW - 3600), KEY, now=NOW)

    def test_jti_is_128_random_bits(self) -> None:
        """Each jti is 22 base64url characters (128 bits) and they do not repeat."""
        jtis = {new_jti() for _ in range(1000)}
        assert len(jtis) == 1000
        assert all(len(j) == 22 and len(base64.urlsafe_b64decode(j + "==")) == 16 for j in jtis)


class TestVerifyRejects:
    def test_tampered_payload(self) -> None:
        """Changing one claim (namespace) after signing breaks the signature."""
        h, p, s = mint(claims(), KEY, now=NOW).split(".")
        payload = json.loads(base64.urlsafe_b64decode(p + "=="))
        payload["namespace"] = "kube-system"
        with pytest.raises(BadSignature) as err:
            verify(f"{h}.{b64(json.dumps(payload).encode())}.{s}", KEYS, POLICY, now=NOW)
        assert err.value.reason == "bad_signature"
        assert err.value.security_relevant

    def test_signature_from_another_key_with_our_kid(self) -> None:
        """A token signed by an attacker's key but naming our kid fails the signature check."""
        other = SigningKey.generate()
        token = mint(claims(), other, now=NOW)
        _, p, s = token.split(".")
        header = {"alg": "EdDSA", "typ": "agent-bootstrap+jwt", "kid": KEY.kid}
        with pytest.raises(BadSignature):
            verify(f"{b64(json.dumps(header).encode())}.{p}.{s}", KEYS, POLICY, now=NOW)

    def test_unknown_kid(self) -> None:
        """A key not in the verifier's key set is refused before any signature work."""
        token = mint(claims(), SigningKey.generate(), now=NOW)
        with pytest.raises(UnknownKeyId) as err:
            verify(token, KEYS, POLICY, now=NOW)
        assert err.value.reason == "unknown_kid"

    def test_alg_none(self) -> None:
        """An unsigned token (alg none, empty signature) is refused."""
        token = forge(
            {"alg": "none", "typ": "agent-bootstrap+jwt", "kid": KEY.kid}, claims().to_payload()
        )
        with pytest.raises(AlgorithmNotAllowed) as err:
            verify(token, KEYS, POLICY, now=NOW)
        assert err.value.reason == "bad_alg"

    def test_hmac_signed_with_the_public_key(self) -> None:
        """The key-confusion attack (HS256 keyed with our public key) is refused."""
        header = {"alg": "HS256", "typ": "agent-bootstrap+jwt", "kid": KEY.kid}
        signing_input = (
            f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims().to_payload()).encode())}"
        )
        mac = hmac.new(KEY.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(AlgorithmNotAllowed):
            verify(f"{signing_input}.{b64(mac)}", KEYS, POLICY, now=NOW)

    def test_hmac_signature_under_an_eddsa_header(self) -> None:
        """An HMAC tag presented as an EdDSA signature does not verify."""
        header = {"alg": "EdDSA", "typ": "agent-bootstrap+jwt", "kid": KEY.kid}
        signing_input = (
            f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims().to_payload()).encode())}"
        )
        mac = hmac.new(KEY.public_pem(), signing_input.encode(), hashlib.sha512).digest()
        with pytest.raises(BadSignature):
            verify(f"{signing_input}.{b64(mac)}", KEYS, POLICY, now=NOW)

    def test_expired(self) -> None:
        """A token is refused once exp plus the leeway has passed, and not a second before."""
        token = mint(claims(), KEY, now=NOW)
        assert verify(token, KEYS, POLICY, now=NOW + 3600 + 29).exp == NOW + 3600
        with pytest.raises(Expired) as err:
            verify(token, KEYS, POLICY, now=NOW + 3600 + 30)
        assert err.value.reason == "expired"
        assert not err.value.security_relevant

    def test_not_yet_valid(self) -> None:
        """A token whose nbf lies beyond the leeway in the future is refused."""
        token = mint(claims(nbf=NOW + 600), KEY, now=NOW)
        with pytest.raises(NotYetValid):
            verify(token, KEYS, POLICY, now=NOW)
        assert verify(token, KEYS, POLICY, now=NOW + 571).nbf == NOW + 600

    def test_wrong_audience(self) -> None:
        """A token minted for another audience is refused."""
        token = mint(claims(aud="someone-else"), KEY, now=NOW)
        with pytest.raises(WrongAudience) as err:
            verify(token, KEYS, POLICY, now=NOW)
        assert err.value.reason == "wrong_audience"

    def test_wrong_issuer(self) -> None:
        """A token from another issuer is refused."""
        with pytest.raises(WrongIssuer):
            verify(mint(claims(iss="other"), KEY, now=NOW), KEYS, POLICY, now=NOW)

    def test_lifetime_longer_than_the_verifier_allows(self) -> None:
        """A verifier with a shorter maximum lifetime refuses longer-lived tokens."""
        strict = VerificationPolicy(
            issuer=POLICY.issuer, audience=POLICY.audience, max_ttl_seconds=1800
        )
        with pytest.raises(LifetimeTooLong):
            verify(mint(claims(), KEY, now=NOW), KEYS, strict, now=NOW)

    def test_untrusted_namespace_now(self) -> None:
        """An authentic token from a namespace the policy no longer trusts is refused."""
        token = mint(claims(namespace="team-b"), KEY, now=NOW)
        with pytest.raises(PolicyViolation) as err:
            verify(token, KEYS, POLICY, now=NOW)
        assert err.value.reason == "namespace_not_trusted"
        assert not err.value.security_relevant

    def test_service_account_not_on_allow_list(self) -> None:
        """With an allow-list, another service account of a trusted namespace is refused."""
        trust = TrustPolicy(
            namespaces=frozenset({"streamspace"}),
            service_accounts=frozenset({"streamspace:streamspace-agent"}),
        )
        policy = VerificationPolicy(issuer=POLICY.issuer, audience=POLICY.audience, trust=trust)
        with pytest.raises(PolicyViolation) as err:
            verify(mint(claims(serviceAccount="default"), KEY, now=NOW), KEYS, policy, now=NOW)
        assert err.value.reason == "service_account_not_allowed"

    @pytest.mark.parametrize(
        "token",
        ["", "abc", "a.b", "a.b.c.d", "!!!.???.***", "x" * 9000],
    )
    def test_garbage(self, token: str) -> None:
        """Anything that is not a compact JWS is malformed, never an exception of another kind."""
        with pytest.raises(MalformedToken):
            verify(token, KEYS, POLICY, now=NOW)

    def test_wrong_typ(self) -> None:
        """A JWT of another type (e.g. a service-account token) is not a bootstrap token."""
        import jwt

        token = jwt.encode(
            claims().to_payload(),
            KEY.private_key,
            algorithm="EdDSA",
            headers={"kid": KEY.kid, "typ": "JWT"},
        )
        with pytest.raises(MalformedToken, match="type"):
            verify(token, KEYS, POLICY, now=NOW)

    def test_claims_of_the_wrong_shape(self) -> None:
        """A correctly signed payload missing claims is malformed, naming the fields only."""
        import jwt

        token = jwt.encode(
            {"iss": "agent-bootstrap-webhook"},
            KEY.private_key,
            algorithm="EdDSA",
            headers={"kid": KEY.kid, "typ": "agent-bootstrap+jwt"},
        )
        with pytest.raises(MalformedToken) as err:
            verify(token, KEYS, POLICY, now=NOW)
        assert "namespace" in err.value.message
        assert token not in err.value.message


class TestHeaderShapes:
    @pytest.mark.parametrize(
        "header",
        [
            {"alg": "EdDSA", "typ": "agent-bootstrap+jwt", "kid": 7},
            {"alg": "EdDSA", "typ": "agent-bootstrap+jwt", "kid": KEY.kid, "crit": "exp"},
            ["not", "an", "object"],
        ],
    )
    def test_odd_headers_are_malformed(self, header: Any) -> None:
        """Header shapes PyJWT itself objects to still surface as MalformedToken."""
        token = (
            forge(header, claims().to_payload(), b"sig")
            if isinstance(header, dict)
            else (f"{b64(json.dumps(header).encode())}.{b64(b'{}')}.{b64(b'sig')}")
        )
        with pytest.raises(MalformedToken):
            verify(token, KEYS, POLICY, now=NOW)
