"""Offline verification of projected service-account tokens against the issuer's JWKS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approver.service_accounts import (
    JwksCache,
    OfflineVerifier,
    SaReason,
    SaTokenRefused,
    ServiceAccountReviewer,
    file_source,
)
from tests.approver.helpers import NAMESPACE, NOW, POD_NAME, SERVICE_ACCOUNT
from tests.approver.service_accounts.issuer import (
    AUDIENCE,
    ISSUER,
    NODE,
    POD_UID,
    SA_UID,
    Issuer,
    jwks,
)

ALLOW = frozenset({f"{NAMESPACE}:{SERVICE_ACCOUNT}"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verifier_for(tmp_path: Path, *issuers: Issuer, **options: Any) -> OfflineVerifier:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(*issuers)))
    return OfflineVerifier(
        jwks=JwksCache(file_source(path), source=str(path)),
        issuer=ISSUER,
        audience=AUDIENCE,
        **options,
    )


async def refusal(verifier: OfflineVerifier, token: str, *, now: float = NOW) -> SaReason:
    with pytest.raises(SaTokenRefused) as caught:
        await verifier.verify(token, now=now)
    assert token not in caught.value.message
    return caught.value.reason


class TestAccepted:
    @pytest.mark.parametrize("kind", ["RSA", "EC"])
    async def test_kubernetes_token(
        self, tmp_path: Path, rsa_issuer: Issuer, ec_issuer: Issuer, kind: str
    ) -> None:
        """A kubelet-projected token (RS256 or ES256) yields the pod, SA and node it names."""
        issuer = rsa_issuer if kind == "RSA" else ec_issuer
        verifier = verifier_for(tmp_path, rsa_issuer, ec_issuer)
        identity = await verifier.verify(issuer.mint(), now=NOW + 10)
        assert identity.namespace == NAMESPACE
        assert identity.service_account == SERVICE_ACCOUNT
        assert identity.service_account_uid == SA_UID
        assert (identity.pod_name, identity.pod_uid) == (POD_NAME, POD_UID)
        assert identity.node_name == NODE
        assert identity.expires_at == NOW + 3600

    async def test_reviewer_outcome(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """Through the reviewer: accepted, approval method service_account, pod recorded."""
        reviewer = ServiceAccountReviewer(verifier=verifier_for(tmp_path, rsa_issuer), allow=ALLOW)
        token = rsa_issuer.mint()
        outcome = await reviewer.review(token=token, now=NOW)
        assert outcome.accepted
        assert outcome.approval_method.value == "service_account"
        assert outcome.reason == "service_account_token_accepted"
        assert (outcome.pod_name, outcome.pod_uid) == (POD_NAME, POD_UID)
        assert outcome.service_account_pair == f"{NAMESPACE}:{SERVICE_ACCOUNT}"
        assert token not in repr(outcome)

    async def test_unknown_claims_are_ignored(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """Claims a newer API server adds do not break verification."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        token = rsa_issuer.mint(**{"future-claim": {"x": 1}})
        assert (await verifier.verify(token, now=NOW)).pod_uid == POD_UID

    async def test_single_string_audience(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """``aud`` may be one string (RFC 7519 section 4.1.3)."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        token = rsa_issuer.mint(aud=AUDIENCE)
        assert (await verifier.verify(token, now=NOW)).pod_name == POD_NAME


class TestRefused:
    @pytest.mark.parametrize(
        ("claims", "now", "reason"),
        [
            ({}, NOW + 3600 + 60, SaReason.EXPIRED),
            ({}, NOW + 3600 + 59, None),  # inside the leeway
            ({"nbf": NOW + 120}, NOW, SaReason.NOT_YET_VALID),
            ({"iss": "https://evil.example"}, NOW, SaReason.WRONG_ISSUER),
            ({"audience": "https://kubernetes.default.svc"}, NOW, SaReason.AUDIENCE_MISMATCH),
            ({"audience": ["other", "another"]}, NOW, SaReason.AUDIENCE_MISMATCH),
            ({"ttl": 7200}, NOW, SaReason.LIFETIME_TOO_LONG),
            ({"ttl": 365 * 86400}, NOW, SaReason.LIFETIME_TOO_LONG),
            ({"ttl": 3600 + 60}, NOW, None),  # within maximum + leeway
            ({"ttl": 7200}, NOW + 3600, None),  # remaining lifetime counts, not the total
            ({"pod": None}, NOW, SaReason.NOT_POD_BOUND),
            ({"sub": "system:serviceaccount:kube-system:default"}, NOW, SaReason.MALFORMED),
            ({"exp": "tomorrow"}, NOW, SaReason.MALFORMED),
        ],
    )
    async def test_claims(
        self,
        tmp_path: Path,
        rsa_issuer: Issuer,
        claims: dict[str, Any],
        now: int,
        reason: SaReason | None,
    ) -> None:
        """Each claim check refuses with its own reason code (None: accepted)."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        token = rsa_issuer.mint(**claims)
        if reason is None:
            assert (await verifier.verify(token, now=now)).pod_uid == POD_UID
        else:
            assert await refusal(verifier, token, now=now) is reason

    async def test_algorithm_none(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """``alg: none`` with no signature is refused as sa_token_bad_alg."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        _, payload, _ = rsa_issuer.mint().split(".")
        header = _b64(json.dumps({"alg": "none", "kid": rsa_issuer.kid}).encode())
        assert await refusal(verifier, f"{header}.{payload}.") is SaReason.BAD_ALG

    async def test_hmac_with_the_public_key(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """The classic confusion: HS256 'signed' with the public key as secret is refused."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        header = _b64(json.dumps({"alg": "HS256", "kid": rsa_issuer.kid}).encode())
        payload = _b64(json.dumps(rsa_issuer.claims()).encode())
        secret = json.dumps(rsa_issuer.jwk()).encode()
        mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        assert await refusal(verifier, f"{header}.{payload}.{_b64(mac)}") is SaReason.BAD_ALG

    async def test_algorithm_must_be_the_keys(
        self, tmp_path: Path, rsa_issuer: Issuer, ec_issuer: Issuer
    ) -> None:
        """An ES256 header naming the RSA key's kid is refused: the key fixes the algorithm."""
        verifier = verifier_for(tmp_path, rsa_issuer, ec_issuer)
        token = jwt.encode(
            ec_issuer.claims(),
            ec_issuer.private_key,
            algorithm="ES256",
            headers={"kid": rsa_issuer.kid},
        )
        assert await refusal(verifier, token) is SaReason.BAD_ALG

    async def test_rs512_header_for_an_rs256_key(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """RS512 signed by the right RSA key is still refused: its JWK says RS256."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        token = jwt.encode(
            rsa_issuer.claims(),
            rsa_issuer.private_key,
            algorithm="RS512",
            headers={"kid": rsa_issuer.kid},
        )
        assert await refusal(verifier, token) is SaReason.BAD_ALG

    async def test_tampered_claims(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """A token whose namespace was edited keeps its signature and fails it."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        header, payload, signature = rsa_issuer.mint().split(".")
        claims = json.loads(_unb64(payload))
        claims["kubernetes.io"]["namespace"] = "kube-system"
        forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
        assert await refusal(verifier, forged) is SaReason.BAD_SIGNATURE

    async def test_signed_by_another_key_with_our_kid(
        self, tmp_path: Path, rsa_issuer: Issuer, rsa_issuer_next: Issuer
    ) -> None:
        """A token signed by a key not in the JWKS but naming a kid that is: bad signature."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        token = rsa_issuer_next.mint(headers={"kid": rsa_issuer.kid})
        assert await refusal(verifier, token) is SaReason.BAD_SIGNATURE

    @pytest.mark.parametrize("kid", ["not-in-the-jwks", "", "absent"])
    async def test_unknown_kid(self, tmp_path: Path, rsa_issuer: Issuer, kid: str) -> None:
        """A kid missing from the JWKS (or no kid at all) is sa_token_unknown_kid."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        token = rsa_issuer.mint(headers={"kid": kid})
        if kid == "absent":
            header, payload, signature = token.split(".")
            fields = json.loads(_unb64(header))
            del fields["kid"]
            token = ".".join([_b64(json.dumps(fields).encode()), payload, signature])
        assert await refusal(verifier, token) is SaReason.UNKNOWN_KID

    async def test_non_string_kid(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """A header whose kid is not a string is malformed."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        _, payload, signature = rsa_issuer.mint().split(".")
        fields = {"alg": "RS256", "kid": 7}
        token = ".".join([_b64(json.dumps(fields).encode()), payload, signature])
        assert await refusal(verifier, token) is SaReason.MALFORMED

    @pytest.mark.parametrize(
        "token",
        [
            "not-a-jwt",
            "a.b",
            "!!!.###.$$$",
            "e30.e30.",  # {}.{}. : no alg
            "x" * 20000 + ".a.b",
        ],
    )
    async def test_malformed(self, tmp_path: Path, rsa_issuer: Issuer, token: str) -> None:
        """Garbage is sa_token_malformed or sa_token_bad_alg, never an exception."""
        verifier = verifier_for(tmp_path, rsa_issuer)
        assert await refusal(verifier, token) in (SaReason.MALFORMED, SaReason.BAD_ALG)

    async def test_jwks_missing(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """No JWKS could be read at all: sa_jwks_unavailable (not security-relevant)."""
        verifier = OfflineVerifier(
            jwks=JwksCache(file_source(tmp_path / "absent.json"), source="absent"),
            issuer=ISSUER,
            audience=AUDIENCE,
        )
        reason = await refusal(verifier, rsa_issuer.mint())
        assert reason is SaReason.JWKS_UNAVAILABLE
        assert not reason.security

    async def test_reviewer_refusals_carry_reason_and_security(
        self, tmp_path: Path, rsa_issuer: Issuer
    ) -> None:
        """Through the reviewer: refused outcomes with reason, security flag, no identity."""
        reviewer = ServiceAccountReviewer(verifier=verifier_for(tmp_path, rsa_issuer), allow=ALLOW)
        expired = await reviewer.review(token=rsa_issuer.mint(), now=NOW + 7200)
        assert (expired.reason, expired.security, expired.authenticated) == (
            "sa_token_expired",
            False,
            False,
        )
        forged = await reviewer.review(token=rsa_issuer.mint(iss="https://evil"), now=NOW)
        assert (forged.reason, forged.security) == ("sa_token_wrong_issuer", True)
        assert forged.pod_uid is None


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_", max_size=80),
            min_size=3,
            max_size=3,
        ).map(".".join),
    )
)
def test_any_string_is_refused_with_a_reason(
    tmp_path_factory: pytest.TempPathFactory, token: str
) -> None:
    """Whatever string is presented, verification refuses it with a reason code (no other
    exception escapes)."""
    issuer = _HYPOTHESIS_ISSUER
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks(issuer)))
    verifier = OfflineVerifier(
        jwks=JwksCache(file_source(path), source="test"), issuer=ISSUER, audience=AUDIENCE
    )
    with pytest.raises(SaTokenRefused) as caught:
        asyncio.run(verifier.verify(token, now=NOW))
    assert isinstance(caught.value.reason, SaReason)


_HYPOTHESIS_ISSUER = Issuer("EC")
