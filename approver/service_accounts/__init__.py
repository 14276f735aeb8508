"""The service-account approval path (``approval_method=service_account``).

An agent pod presents a projected service-account token issued for the approver's audience
(``X-Agent-Service-Account-Token``, read from the projected volume file). The approver verifies
it in-cluster with a TokenReview or offline against the issuer's JWKS, requires it to be bound
to a pod, checks the ``namespace:serviceaccount`` allow-list and records the pod's name and UID.
Together with a bootstrap token it proves the presenter is the stamped pod
(:func:`check_pod_binding`).

Modules, types first: :mod:`.reasons`, :mod:`.claims`, :mod:`.allow`, :mod:`.settings`
<- :mod:`.binding` (pure) <- :mod:`.jwks`, :mod:`.offline`, :mod:`.tokenreview` (adapters)
<- :mod:`.reviewer` (the registrar's entry point).

Sources: Kubernetes documentation "Service account tokens" / "Managing Service Accounts"
(bound token claims, issuer discovery), API reference "TokenReview v1", RFC 7519, RFC 8725.
"""

from approver.service_accounts.binding import check_pod_binding
from approver.service_accounts.claims import (
    KubernetesClaim,
    ObjectRef,
    PodIdentity,
    ServiceAccountTokenClaims,
)
from approver.service_accounts.jwks import (
    IssuerKey,
    JwksCache,
    JwksError,
    JwksUnavailable,
    UrlSource,
    file_source,
    parse_jwks,
)
from approver.service_accounts.offline import OfflineVerifier
from approver.service_accounts.reasons import SaReason, SaTokenRefused
from approver.service_accounts.reviewer import (
    SERVICE_ACCOUNT_TOKEN_HEADER,
    ServiceAccountReviewer,
    TokenVerifier,
    build_reviewer,
    presented_service_account_token,
)
from approver.service_accounts.settings import ServiceAccountSettings
from approver.service_accounts.tokenreview import (
    KubernetesTokenReviewer,
    TokenReviewer,
    TokenReviewStatus,
    TokenReviewUnavailable,
    TokenReviewVerifier,
    interpret_review,
)

__all__ = [
    "SERVICE_ACCOUNT_TOKEN_HEADER",
    "IssuerKey",
    "JwksCache",
    "JwksError",
    "JwksUnavailable",
    "KubernetesClaim",
    "KubernetesTokenReviewer",
    "ObjectRef",
    "OfflineVerifier",
    "PodIdentity",
    "SaReason",
    "SaTokenRefused",
    "ServiceAccountReviewer",
    "ServiceAccountSettings",
    "ServiceAccountTokenClaims",
    "TokenReviewStatus",
    "TokenReviewUnavailable",
    "TokenReviewVerifier",
    "TokenReviewer",
    "TokenVerifier",
    "UrlSource",
    "build_reviewer",
    "check_pod_binding",
    "file_source",
    "interpret_review",
    "parse_jwks",
    "presented_service_account_token",
]
