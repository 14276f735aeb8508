"""Offline verification of projected service-account tokens against the issuer's JWKS.

For an approver that must not (or cannot) call the API server: the token is checked like any
OIDC ID token (RFC 7519, RFC 8725), with the issuer's published keys (:mod:`.jwks`). Order,
security-relevant checks first:

1. shape: a compact JWS of at most 16 KiB with a JSON header (``sa_token_malformed``);
2. ``alg`` one of RS256/RS384/RS512/ES256/ES384/ES512, never ``none`` or HMAC
   (``sa_token_bad_alg``);
3. ``kid`` names a key of the JWKS, after at most one bounded refresh (``sa_token_unknown_kid``);
   no JWKS at all is ``sa_jwks_unavailable``;
4. ``alg`` is exactly the algorithm of that key (``sa_token_bad_alg``): the header never picks
   the algorithm (RFC 8725 section 3.1);
5. the signature (``sa_token_bad_signature``);
6. the claims' shape, ``sub`` equal to ``system:serviceaccount:<kubernetes.io namespace>:<name>``
   (``sa_token_malformed``);
7. ``iss`` (``sa_token_wrong_issuer``), ``aud`` contains the approver's audience
   (``sa_token_audience_mismatch``);
8. ``nbf`` and ``exp`` with leeway (``sa_token_not_yet_valid``, ``sa_token_expired``);
9. ``exp - now`` at most ``maxRemainingLifetimeSeconds`` plus leeway
   (``sa_token_lifetime_too_long``): a kubelet-projected token lives ``expirationSeconds``
   (default 3600, at least 600) and is refreshed at 80 % of that, so a token valid for much
   longer was minted by hand (``kubectl create token --duration``) and is worth more to a thief;
10. pod-bound: the ``kubernetes.io`` claim has ``pod`` (``sa_token_not_pod_bound``).

What offline mode cannot see: the API server invalidates a pod-bound token when its pod is
deleted (TokenReview then refuses it), but a signature stays valid until ``exp``. A token copied
out of a deleted pod therefore verifies offline until it expires (at most
``maxRemainingLifetimeSeconds``). With Kubernetes access the registrar closes that gap: it
reads the token's pod and refuses a token whose pod is gone (``sa_pod_gone``,
:mod:`.live_pod`), and the pod watch marks an approved agent ``inactive`` when the pod UID
recorded at approval is deleted.
"""

from __future__ import annotations

import json

import jwt
from jwt.api_jws import PyJWS
from pydantic import ValidationError

from approver.service_accounts.claims import PodIdentity, ServiceAccountTokenClaims
from approver.service_accounts.jwks import SUPPORTED_ALGORITHMS, JwksCache, JwksUnavailable
from approver.service_accounts.reasons import SaReason, SaTokenRefused
from bootstrap_token import MalformedToken
from bootstrap_token import read_header as read_jose_header

#: Largest token accepted, in bytes. A projected token is about 1 KiB.
MAX_TOKEN_BYTES = 16 * 1024

_JWS = {alg: PyJWS(algorithms=[alg]) for alg in SUPPORTED_ALGORITHMS}


def read_header(token: str) -> dict[str, object]:
    """The unverified JOSE header of a compact JWS.

    Raises:
        SaTokenRefused(sa_token_malformed): too long, not three parts, header not JSON.
    """
    try:
        return read_jose_header(token, max_bytes=MAX_TOKEN_BYTES)
    except MalformedToken as exc:
        raise SaTokenRefused(SaReason.MALFORMED, exc.message) from None


def parse_claims(payload: bytes) -> ServiceAccountTokenClaims:
    """Validate a claims set. Raises SaTokenRefused(sa_token_malformed) naming bad fields."""
    try:
        return ServiceAccountTokenClaims.model_validate(json.loads(payload))
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "claims" for e in exc.errors()})
        raise SaTokenRefused(
            SaReason.MALFORMED, f"claims invalid at: {', '.join(fields)}"
        ) from None
    except ValueError:
        raise SaTokenRefused(SaReason.MALFORMED, "claims are not a JSON object") from None


class OfflineVerifier:
    """Verifies service-account tokens with the issuer's JWKS (module docstring).

    Args:
        jwks: the issuer's keys.
        issuer: the required ``iss`` (the API server's ``--service-account-issuer``, e.g.
            ``https://kubernetes.default.svc.cluster.local``).
        audience: the approver's audience; ``aud`` must contain it.
        leeway_seconds: clock skew tolerated on ``nbf``, ``exp`` and the lifetime bound.
        max_remaining_lifetime_seconds: largest ``exp - now`` accepted.
    """

    def __init__(
        self,
        *,
        jwks: JwksCache,
        issuer: str,
        audience: str,
        leeway_seconds: int = 60,
        max_remaining_lifetime_seconds: int = 3600,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._max_remaining = max_remaining_lifetime_seconds

    @property
    def jwks(self) -> JwksCache:
        return self._jwks

    async def verify(self, token: str, *, now: float) -> PodIdentity:
        """Verify ``token`` and return who it proves.

        Args:
            token: the compact JWT from ``X-Agent-Service-Account-Token``.
            now: seconds since the epoch.

        Returns:
            The identity; ``pod_name``/``pod_uid`` always set (pod binding is required).

        Raises:
            SaTokenRefused: with the reason of the first failed check (module docstring).
        """
        header = read_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
            raise SaTokenRefused(SaReason.BAD_ALG, f"algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise SaTokenRefused(SaReason.UNKNOWN_KID, "the token names no kid")
        try:
            key = await self._jwks.key(kid, now=now)
        except JwksUnavailable as exc:
            raise SaTokenRefused(SaReason.JWKS_UNAVAILABLE, str(exc)) from None
        if key is None:
            raise SaTokenRefused(SaReason.UNKNOWN_KID, "kid names no key of the issuer's JWKS")
        if alg != key.algorithm:
            raise SaTokenRefused(
                SaReason.BAD_ALG, f"algorithm {alg} does not match the key's {key.algorithm}"
            )
        try:
            payload = _JWS[alg].decode(token, key.key, algorithms=[key.algorithm])
        except jwt.InvalidSignatureError:
            raise SaTokenRefused(SaReason.BAD_SIGNATURE, "signature does not verify") from None
        except jwt.InvalidTokenError:
            raise SaTokenRefused(SaReason.MALFORMED, "payload or signature is invalid") from None
        claims = parse_claims(payload)
        if claims.iss != self._issuer:
            raise SaTokenRefused(SaReason.WRONG_ISSUER, "issuer is not the configured one")
        if self._audience not in claims.aud:
            raise SaTokenRefused(SaReason.AUDIENCE_MISMATCH, "audience is not this approver")
        if claims.nbf is not None and now < claims.nbf - self._leeway:
            raise SaTokenRefused(SaReason.NOT_YET_VALID, "token is not valid yet (nbf)")
        if now >= claims.exp + self._leeway:
            raise SaTokenRefused(SaReason.EXPIRED, "token has expired (exp)")
        if claims.exp - now > self._max_remaining + self._leeway:
            raise SaTokenRefused(
                SaReason.LIFETIME_TOO_LONG,
                f"token valid for {int(claims.exp - now)}s more, maximum {self._max_remaining}s",
            )
        k8s = claims.kubernetes
        if k8s.pod is None:
            raise SaTokenRefused(SaReason.NOT_POD_BOUND, "the token is not bound to a pod")
        return PodIdentity(
            namespace=k8s.namespace,
            service_account=k8s.serviceaccount.name,
            service_account_uid=k8s.serviceaccount.uid,
            pod_name=k8s.pod.name,
            pod_uid=k8s.pod.uid,
            node_name=k8s.node.name if k8s.node else None,
            expires_at=claims.exp,
        )
