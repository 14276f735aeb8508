"""The contract between the webhook and the approver: claims, keys, EdDSA JWTs, trust policy.

Pure: no HTTP, no database. See docs/design.md, "The bootstrap token".
"""

from bootstrap_token.audit import AuditEvent, AuditSink, fingerprint
from bootstrap_token.claims import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    MIN_TTL_SECONDS,
    BootstrapClaims,
    OwnerRef,
    PodRef,
    new_jti,
)
from bootstrap_token.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    KeyLoadError,
    LifetimeTooLong,
    MalformedToken,
    NotYetValid,
    PolicyViolation,
    TokenError,
    UnknownKeyId,
    WrongAudience,
    WrongCluster,
    WrongIssuer,
)
from bootstrap_token.keys import KeySet, SigningKey, jwk_thumbprint, public_jwk
from bootstrap_token.policy import LabelSelector, LabelSelectorRequirement, TrustPolicy
from bootstrap_token.token import (
    ALGORITHM,
    TOKEN_TYPE,
    VerificationPolicy,
    mint,
    read_header,
    verify,
)

__all__ = [
    "ALGORITHM",
    "DEFAULT_TTL_SECONDS",
    "MAX_TTL_SECONDS",
    "MIN_TTL_SECONDS",
    "TOKEN_TYPE",
    "AlgorithmNotAllowed",
    "AuditEvent",
    "AuditSink",
    "BadSignature",
    "BootstrapClaims",
    "Expired",
    "KeyLoadError",
    "KeySet",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LifetimeTooLong",
    "MalformedToken",
    "NotYetValid",
    "OwnerRef",
    "PodRef",
    "PolicyViolation",
    "SigningKey",
    "TokenError",
    "TrustPolicy",
    "UnknownKeyId",
    "VerificationPolicy",
    "WrongAudience",
    "WrongCluster",
    "WrongIssuer",
    "fingerprint",
    "jwk_thumbprint",
    "mint",
    "new_jti",
    "public_jwk",
    "read_header",
    "verify",
]
