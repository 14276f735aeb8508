"""The reviewer (enabled, presented, allow-list), its settings, and the claims model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict
from pydantic import ValidationError

from approver.domain.credential_outcome import Verdict
from approver.service_accounts import (
    OfflineVerifier,
    SaReason,
    ServiceAccountReviewer,
    ServiceAccountSettings,
    ServiceAccountTokenClaims,
    build_reviewer,
    presented_service_account_token,
)
from approver.service_accounts.claims import parse_service_account_user
from tests.approver.helpers import NAMESPACE, NOW, POD_NAME, SERVICE_ACCOUNT
from tests.approver.service_accounts.conftest import JwksServer
from tests.approver.service_accounts.issuer import AUDIENCE, ISSUER, POD_UID, Issuer, jwks

PAIR = f"{NAMESPACE}:{SERVICE_ACCOUNT}"


def offline_settings(tmp_path: Path, issuer: Issuer, **overrides: Any) -> ServiceAccountSettings:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(issuer)))
    values: dict[str, Any] = {
        "enabled": True,
        "mode": "offline",
        "issuer": ISSUER,
        "jwksFile": path,
        "allow": [PAIR],
    }
    values.update(overrides)
    return ServiceAccountSettings.model_validate(values)


class TestReviewer:
    async def test_disabled(self, rsa_issuer: Issuer) -> None:
        """A disabled path looks at nothing."""
        reviewer = build_reviewer(ServiceAccountSettings())
        outcome = await reviewer.review(token=rsa_issuer.mint(), now=NOW)
        assert (outcome.verdict, outcome.reason) == (
            Verdict.NOT_APPLICABLE,
            "service_account_tokens_disabled",
        )

    async def test_not_presented(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """No token: not applicable."""
        reviewer = build_reviewer(offline_settings(tmp_path, rsa_issuer))
        outcome = await reviewer.review(token=None, now=NOW)
        assert (outcome.verdict, outcome.reason) == (
            Verdict.NOT_APPLICABLE,
            "no_service_account_token",
        )

    async def test_not_allowed(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """An authentic pod-bound token of an account not on the list: refused (pending), its
        identity kept (authenticated) for the bootstrap-token binding."""
        reviewer = build_reviewer(offline_settings(tmp_path, rsa_issuer, allow=[]))
        outcome = await reviewer.review(token=rsa_issuer.mint(), now=NOW)
        assert (outcome.verdict, outcome.reason, outcome.security) == (
            Verdict.REFUSED,
            "sa_not_allowed",
            False,
        )
        assert outcome.authenticated
        assert (outcome.pod_name, outcome.pod_uid) == (POD_NAME, POD_UID)

    async def test_other_account_not_allowed(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """Only the exact namespace:serviceaccount pair is allowed."""
        reviewer = build_reviewer(offline_settings(tmp_path, rsa_issuer))
        token = rsa_issuer.mint(service_account="default")
        assert (await reviewer.review(token=token, now=NOW)).reason == "sa_not_allowed"

    async def test_jwks_url_mode(self, jwks_server: JwksServer, rsa_issuer: Issuer) -> None:
        """Offline mode with jwksUrl fetches from the URL; close() ends the session."""
        settings = ServiceAccountSettings.model_validate(
            {
                "enabled": True,
                "mode": "offline",
                "issuer": ISSUER,
                "jwksUrl": jwks_server.url,
                "allow": [PAIR],
            }
        )
        reviewer = build_reviewer(settings)
        try:
            assert (await reviewer.review(token=rsa_issuer.mint(), now=NOW)).accepted
        finally:
            await reviewer.close()
        assert jwks_server.fetches == 1

    def test_tokenreview_needs_a_client(self) -> None:
        """tokenreview mode without a Kubernetes client is a configuration error."""
        with pytest.raises(ValueError, match="Kubernetes client"):
            build_reviewer(ServiceAccountSettings(enabled=True))

    def test_enabled_needs_a_verifier(self) -> None:
        """An enabled reviewer without a verifier is a programming error."""
        with pytest.raises(ValueError, match="verifier"):
            ServiceAccountReviewer(verifier=None, allow=frozenset())

    def test_offline_verifier_is_a_token_verifier(self, tmp_path: Path, rsa_issuer: Issuer) -> None:
        """build_reviewer builds the offline verifier from the settings."""
        reviewer = build_reviewer(offline_settings(tmp_path, rsa_issuer))
        assert isinstance(reviewer._verifier, OfflineVerifier)


class TestHeader:
    def test_read(self) -> None:
        """The token comes from X-Agent-Service-Account-Token, stripped; empty is absent."""
        assert (
            presented_service_account_token(
                CIMultiDict({"x-agent-service-account-token": " a.b.c\n"})
            )
            == "a.b.c"
        )
        assert presented_service_account_token(CIMultiDict({})) is None
        assert (
            presented_service_account_token(CIMultiDict({"X-Agent-Service-Account-Token": " "}))
            is None
        )


class TestSettings:
    def test_defaults(self) -> None:
        """Off by default; tokenreview; audience agent-approver; 1 h lifetime bound."""
        settings = ServiceAccountSettings()
        assert (settings.enabled, settings.mode, settings.audience) == (
            False,
            "tokenreview",
            "agent-approver",
        )
        assert settings.max_remaining_lifetime_seconds == 3600
        assert settings.bootstrap_binding == "ifPresent"

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"allow": ["no-colon"]}, "namespace:serviceaccount"),
            ({"allow": ["Upper:sa"]}, "namespace:serviceaccount"),
            ({"allow": ["ns:sa:extra"]}, "namespace:serviceaccount"),
            ({"issuer": ISSUER}, "only apply to mode 'offline'"),
            ({"enabled": True, "mode": "offline"}, "issuer is required"),
            (
                {"enabled": True, "mode": "offline", "issuer": ISSUER},
                "exactly one of jwksFile and jwksUrl",
            ),
            ({"jwksUrl": "http://jwks.example.com/x", "mode": "offline"}, "https"),
            ({"jwksUrl": "https://u:p@jwks.example.com/x", "mode": "offline"}, "credentials"),
            ({"jwksUrl": "ftp://x/y", "mode": "offline"}, "absolute https"),
            ({"maxRemainingLifetimeSeconds": 60}, "greater than or equal"),
            ({"mode": "webhook"}, "tokenreview"),
            ({"unknown": 1}, "Extra inputs"),
            ({"bootstrapBinding": "always"}, "ifPresent"),
            ({"bootstrapBinding": "required"}, "needs enabled"),
        ],
    )
    def test_invalid(self, values: dict[str, Any], message: str) -> None:
        """Inconsistent or malformed settings are refused with a message naming the field."""
        with pytest.raises(ValidationError, match=message):
            ServiceAccountSettings.model_validate(values)

    def test_loopback_http_url_allowed(self) -> None:
        """http:// is allowed for a loopback JWKS URL (tests, a local proxy)."""
        settings = ServiceAccountSettings.model_validate(
            {"mode": "offline", "jwksUrl": "http://127.0.0.1:8001/openid/v1/jwks"}
        )
        assert settings.jwks_url is not None


class TestClaims:
    def test_sub_must_match(self, rsa_issuer: Issuer) -> None:
        """sub must be system:serviceaccount:<kubernetes.io namespace>:<name>."""
        claims = rsa_issuer.claims(sub="system:serviceaccount:other:sa")
        with pytest.raises(ValidationError, match="sub"):
            ServiceAccountTokenClaims.model_validate(claims)

    def test_shape(self, rsa_issuer: Issuer) -> None:
        """The Kubernetes claim shape parses, node included."""
        claims = ServiceAccountTokenClaims.model_validate(rsa_issuer.claims())
        assert claims.kubernetes.pod is not None
        assert claims.kubernetes.pod.uid == POD_UID
        assert claims.aud == (AUDIENCE,)

    @pytest.mark.parametrize(
        ("username", "expected"),
        [
            ("system:serviceaccount:streamspace:agent", ("streamspace", "agent")),
            ("system:serviceaccount:streamspace", None),
            ("system:serviceaccount::agent", None),
            ("system:serviceaccount:a:b:c", None),
            ("alice", None),
            ("system:node:worker-1", None),
        ],
    )
    def test_service_account_user(self, username: str, expected: tuple[str, str] | None) -> None:
        """Only system:serviceaccount:<ns>:<name> is a service account."""
        assert parse_service_account_user(username) == expected


def test_reason_security_flags() -> None:
    """Honest refusals are not security-relevant; forged or misdirected ones are."""
    honest = {r for r in SaReason if not r.security}
    assert SaReason.EXPIRED in honest
    assert SaReason.NOT_ALLOWED in honest
    assert SaReason.BAD_SIGNATURE not in honest
    assert SaReason.POD_UID_MISMATCH not in honest
