"""Reason codes of the service-account path (stable, snake_case).

=================================  ========  ========  =============================================
reason                             verdict   security  meaning
=================================  ========  ========  =============================================
service_account_token_accepted     accepted  no        authentic, pod-bound, allowed
service_account_tokens_disabled    n/a       no        ``serviceAccountTokens.enabled`` is false
no_service_account_token           n/a       no        no ``X-Agent-Service-Account-Token``
sa_token_malformed                 refused   yes       not a compact JWS, or claims of the wrong
                                                       shape (``sub`` not matching
                                                       ``kubernetes.io``, no ``exp``)
sa_token_bad_alg                   refused   yes       offline: ``alg`` is not the algorithm of
                                                       the key named by ``kid`` (``none``, HS256)
sa_token_unknown_kid               refused   yes       offline: ``kid`` not in the issuer's JWKS
                                                       (after one bounded refresh)
sa_token_bad_signature             refused   yes       offline: signature does not verify
sa_token_wrong_issuer              refused   yes       offline: ``iss`` is not ``issuer``
sa_token_audience_mismatch         refused   yes       ``aud`` does not name the approver
                                                       (offline), or TokenReview says so
sa_token_expired                   refused   no        ``exp`` passed (leeway included)
sa_token_not_yet_valid             refused   no        ``nbf`` in the future (leeway included)
sa_token_lifetime_too_long         refused   yes       ``exp - now`` beyond
                                                       ``maxRemainingLifetimeSeconds``
sa_token_unauthenticated           refused   yes       TokenReview: ``authenticated`` false
sa_token_invalidated               refused   yes       TokenReview: the bound pod (or secret,
                                                       or service account) no longer exists
sa_token_not_service_account       refused   yes       TokenReview: the user is not
                                                       ``system:serviceaccount:<ns>:<name>``
sa_token_not_pod_bound             refused   no        no pod binding (TokenReview extras
                                                       ``authentication.kubernetes.io/pod-name``
                                                       and ``pod-uid``, or the ``kubernetes.io``
                                                       ``pod`` claim offline)
sa_not_allowed                     refused   no        ``namespace:serviceaccount`` not in
                                                       ``serviceAccountTokens.allow``
sa_token_review_unavailable        refused   no        TokenReview call failed (API server down,
                                                       forbidden, timeout): try again later
sa_jwks_unavailable                refused   no        offline: no JWKS could be loaded yet
sa_pod_namespace_mismatch          refused   yes       binding: SA token's namespace differs from
                                                       the bootstrap token's
sa_service_account_mismatch        refused   yes       binding: SA token's service account differs
                                                       from the bootstrap token's
sa_pod_name_mismatch               refused   yes       binding: the bootstrap token's ``pod`` claim
                                                       (or the agent's pod name) does not admit the
                                                       SA token's pod
sa_pod_uid_mismatch                refused   yes       binding: the SA token's pod UID differs from
                                                       the pod UID bound to the bootstrap token
sa_pod_gone                        refused   yes       Kubernetes access: no live pod has the
                                                       token's pod name and UID (deleted or
                                                       replaced; :mod:`.live_pod`)
sa_pod_lookup_failed               refused   no        Kubernetes access: the token's pod could
                                                       not be read now: try again later
=================================  ========  ========  =============================================
"""

from __future__ import annotations

from enum import StrEnum


class SaReason(StrEnum):
    """The service-account path's reason codes (table above)."""

    ACCEPTED = "service_account_token_accepted"
    DISABLED = "service_account_tokens_disabled"
    NOT_PRESENTED = "no_service_account_token"
    MALFORMED = "sa_token_malformed"
    BAD_ALG = "sa_token_bad_alg"
    UNKNOWN_KID = "sa_token_unknown_kid"
    BAD_SIGNATURE = "sa_token_bad_signature"
    WRONG_ISSUER = "sa_token_wrong_issuer"
    AUDIENCE_MISMATCH = "sa_token_audience_mismatch"
    EXPIRED = "sa_token_expired"
    NOT_YET_VALID = "sa_token_not_yet_valid"
    LIFETIME_TOO_LONG = "sa_token_lifetime_too_long"
    UNAUTHENTICATED = "sa_token_unauthenticated"
    INVALIDATED = "sa_token_invalidated"
    NOT_SERVICE_ACCOUNT = "sa_token_not_service_account"
    NOT_POD_BOUND = "sa_token_not_pod_bound"
    NOT_ALLOWED = "sa_not_allowed"
    REVIEW_UNAVAILABLE = "sa_token_review_unavailable"
    JWKS_UNAVAILABLE = "sa_jwks_unavailable"
    POD_NAMESPACE_MISMATCH = "sa_pod_namespace_mismatch"
    SERVICE_ACCOUNT_MISMATCH = "sa_service_account_mismatch"
    POD_NAME_MISMATCH = "sa_pod_name_mismatch"
    POD_UID_MISMATCH = "sa_pod_uid_mismatch"
    POD_GONE = "sa_pod_gone"
    POD_LOOKUP_FAILED = "sa_pod_lookup_failed"

    @property
    def security(self) -> bool:
        """True for refusals that mean a forged, replayed or misdirected token."""
        return self not in _HONEST


_HONEST = frozenset(
    {
        SaReason.ACCEPTED,
        SaReason.DISABLED,
        SaReason.NOT_PRESENTED,
        SaReason.EXPIRED,
        SaReason.NOT_YET_VALID,
        SaReason.NOT_POD_BOUND,
        SaReason.NOT_ALLOWED,
        SaReason.REVIEW_UNAVAILABLE,
        SaReason.JWKS_UNAVAILABLE,
        SaReason.POD_LOOKUP_FAILED,
    }
)


class SaTokenRefused(Exception):
    """A service-account token was not accepted: ``reason`` and a message without the token."""

    def __init__(self, reason: SaReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
