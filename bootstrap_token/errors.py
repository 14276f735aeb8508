"""Typed errors of the bootstrap-token contract.

Every error carries a stable, documented ``reason`` code (snake_case) that the approver
records in its answer and audit event, and a human message that never contains the token,
a key or any other secret.

Exception tree::

    TokenError                      reason          security-relevant
    ├── MalformedToken              malformed       yes  (not a compact JWS / bad JSON / bad claims)
    ├── AlgorithmNotAllowed         bad_alg         yes  (header alg is not exactly "EdDSA")
    ├── UnknownKeyId                unknown_kid     yes  (kid not in the verifier's key set)
    ├── BadSignature                bad_signature   yes  (Ed25519 signature does not verify)
    ├── WrongIssuer                 wrong_issuer    yes  (iss differs from the configured issuer)
    ├── WrongAudience               wrong_audience  yes  (aud does not contain the configured one)
    ├── WrongCluster                wrong_cluster   yes  (cluster not accepted, or not its key's)
    ├── Expired                     expired         no   (now >= exp + leeway)
    ├── NotYetValid                 not_yet_valid   no   (now < nbf - leeway)
    ├── LifetimeTooLong             ttl_too_long    yes  (exp - iat beyond the allowed maximum)
    └── PolicyViolation             untrusted       no   (namespace/SA not trusted now)

``security_relevant`` marks the failures that mean someone forged, altered or misdirected a
token (as opposed to an honest token that simply aged out or lost its trust): the approver
answers those with 403 and a security audit event, the others with 202 pending.
"""

from __future__ import annotations


class TokenError(Exception):
    """Base class: a bootstrap token was not accepted."""

    reason: str = "invalid_token"
    security_relevant: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedToken(TokenError):
    """Not a compact JWS with a JSON header and a claims set of the documented shape."""

    reason = "malformed"


class AlgorithmNotAllowed(TokenError):
    """The header's ``alg`` is not ``EdDSA`` (``none``, HS256, RS256, ... are all refused)."""

    reason = "bad_alg"


class UnknownKeyId(TokenError):
    """The header's ``kid`` names no key of the verifier's key set (or is missing)."""

    reason = "unknown_kid"


class BadSignature(TokenError):
    """The Ed25519 signature does not verify with the key named by ``kid``."""

    reason = "bad_signature"


class WrongIssuer(TokenError):
    """``iss`` is not the configured issuer (RFC 7519 section 4.1.1)."""

    reason = "wrong_issuer"


class WrongAudience(TokenError):
    """``aud`` does not name the configured audience (RFC 7519 section 4.1.3)."""

    reason = "wrong_audience"


class WrongCluster(TokenError):
    """The ``cluster`` claim names a cluster the verifier does not accept, or not the one the
    signing key is tied to (a token minted by another cluster's webhook)."""

    reason = "wrong_cluster"


class Expired(TokenError):
    """``exp`` has passed, leeway included (RFC 7519 section 4.1.4).

    Attributes:
        claims: the token's claims, *authentic* (every check before ``exp`` passed: signature,
            ``kid``, ``iss``, ``aud``, lifetime, ``nbf``), for a caller that may still use an
            expired token for one thing: an agent re-presenting the token it is already bound
            to (``approver``'s credential re-issue). Typed loosely here to keep this module
            free of the claims model; :func:`bootstrap_token.verify` sets a
            :class:`~bootstrap_token.BootstrapClaims`.
    """

    reason = "expired"
    security_relevant = False

    def __init__(self, message: str, *, claims: object = None) -> None:
        super().__init__(message)
        self.claims = claims


class NotYetValid(TokenError):
    """``nbf`` lies in the future, leeway included (RFC 7519 section 4.1.5)."""

    reason = "not_yet_valid"
    security_relevant = False


class LifetimeTooLong(TokenError):
    """``exp - iat`` exceeds the verifier's maximum token lifetime."""

    reason = "ttl_too_long"


class PolicyViolation(TokenError):
    """The token is authentic but its namespace or service account is not trusted now."""

    reason = "untrusted"
    security_relevant = False


class KeyLoadError(ValueError):
    """A PEM key or JWKS document could not be loaded (wrong type, corrupt, not Ed25519)."""
