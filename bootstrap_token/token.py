"""Mint and verify bootstrap tokens: JWS compact JWTs, EdDSA/Ed25519 only.

References: RFC 7515 (JWS), RFC 7519 (JWT), RFC 8037 (EdDSA in JOSE), RFC 8725 (JWT best
current practice: explicit ``typ``, exactly one accepted algorithm).

The clock is an argument (``now``, integer seconds since the epoch) so callers and tests
control it. Signing goes through PyJWT's JWS layer on :mod:`cryptography`; verification parses
with PyJWT once and checks the signature with PyJWT's ``EdDSA`` algorithm implemented on libsodium
(:mod:`bootstrap_token.sodium`: half the CPU, never more lenient); the claim checks are ours,
so each failure raises its own typed error (:mod:`bootstrap_token.errors`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jwt
from jwt.api_jws import PyJWS
from pydantic import ValidationError

from bootstrap_token.claims import MAX_TTL_SECONDS, MIN_TTL_SECONDS, BootstrapClaims
from bootstrap_token.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    LifetimeTooLong,
    MalformedToken,
    NotYetValid,
    PolicyViolation,
    UnknownKeyId,
    WrongAudience,
    WrongCluster,
    WrongIssuer,
)
from bootstrap_token.jws import b64url_decode, canonical_compact, is_canonical_b64url
from bootstrap_token.keys import KeySet, SigningKey
from bootstrap_token.policy import TrustPolicy
from bootstrap_token.sodium import SodiumEdDSA

ALGORITHM = "EdDSA"
TOKEN_TYPE = "agent-bootstrap+jwt"  # noqa: S105 - a JOSE "typ" value, not a secret
#: Upper bound on an encoded token; a stamped token is about 800 bytes.
MAX_TOKEN_BYTES = 8192


class CanonicalJWS(PyJWS):
    """PyJWT's JWS parser that decodes only canonical base64url segments (RFC 7515 section 2).

    PyJWT checks each segment character by character in Python, then decodes and encodes it
    again to compare (about 100 µs for a bootstrap token here, as much as libsodium's signature
    check). This parser makes the same check with a compiled regular expression and a test of
    the last character (:func:`bootstrap_token.jws.is_canonical_b64url`), and is stricter: it
    refuses the trailing ``=`` PyJWT tolerates, as :func:`verify` did already before parsing.
    Everything else (splitting, JSON, header checks, algorithms) is PyJWT's own. The overridden
    method is PyJWT's private ``_decode_base64url_segment`` (PyJWT 2.10 and later, pinned in
    ``requirements.lock``); tests/bootstrap_token/test_canonical_jws.py fails if PyJWT stops
    calling it, and checks that it accepts a subset of what PyJWT accepts, with the same bytes.
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        text = segment.decode("ascii") if segment.isascii() else None
        if text is None or not is_canonical_b64url(text):
            raise jwt.DecodeError(f"Invalid {name} padding")
        return b64url_decode(text)


#: The one JWS parser of this module: EdDSA only, its signature check in libsodium
#: (:mod:`bootstrap_token.sodium`; minting still signs with cryptography, :func:`mint`).
_JWS = CanonicalJWS(algorithms=[ALGORITHM])
_EDDSA = SodiumEdDSA()
_JWS.unregister_algorithm(ALGORITHM)
_JWS.register_algorithm(ALGORITHM, _EDDSA)


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    """What :func:`verify` requires besides a good signature.

    Attributes:
        issuer: required ``iss``.
        audience: required ``aud``.
        leeway_seconds: clock skew tolerated on ``exp`` and ``nbf`` (default 30 s).
        max_ttl_seconds: largest ``exp - iat`` accepted (default 24 h, the minting bound).
        trust: when set, the namespace and service account must be trusted by it *now*.
        clusters: when set, the ``cluster`` claim must be one of these; whether set or not, a
            key tied to a cluster (:meth:`KeySet.cluster_of`) signs for that cluster only.
    """

    issuer: str
    audience: str
    leeway_seconds: int = 30
    max_ttl_seconds: int = MAX_TTL_SECONDS
    trust: TrustPolicy | None = None
    clusters: frozenset[str] | None = None


def mint(claims: BootstrapClaims, signing_key: SigningKey, *, now: int) -> str:
    """Sign ``claims`` into a compact JWT with header ``{alg: EdDSA, typ, kid}``.

    Args:
        claims: the complete claims set (``iat``/``nbf``/``exp`` already chosen).
        signing_key: the active Ed25519 key; its RFC 7638 thumbprint becomes ``kid``.
        now: seconds since the epoch; ``iat`` must not lie more than 60 s away from it.

    Returns:
        ``header.payload.signature``, base64url, ASCII.

    Raises:
        ValueError: the claims would make a token outside the 5 min .. 24 h lifetime bounds or
            not issued now, which the webhook must never sign.
    """
    if not MIN_TTL_SECONDS <= claims.ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(
            f"token lifetime {claims.ttl_seconds}s outside {MIN_TTL_SECONDS}..{MAX_TTL_SECONDS}s"
        )
    if abs(claims.iat - now) > 60:
        raise ValueError("claims.iat is not the current time")
    return jwt.encode(
        claims.to_payload(),
        signing_key.private_key,
        algorithm=ALGORITHM,
        headers={"typ": TOKEN_TYPE, "kid": signing_key.kid},
    )


def _check_compact(token: str, *, max_bytes: int) -> None:
    """Raise :class:`MalformedToken` unless ``token`` is a compact JWS of at most ``max_bytes``
    whose three parts are canonical base64url.

    Another spelling of a token (padding, the standard alphabet, skipped characters, set
    trailing bits) decodes to the same bytes under lenient decoders, PyJWT's too: only the
    canonical one is a token (RFC 7515 section 2, base64url without padding)."""
    if not isinstance(token, str) or len(token) > max_bytes or token.count(".") != 2:
        raise MalformedToken("not a compact JWS (three base64url parts)")
    if not canonical_compact(token):
        raise MalformedToken("not canonical base64url (RFC 7515 section 2)")


def read_header(token: str, *, max_bytes: int = MAX_TOKEN_BYTES) -> dict[str, object]:
    """The unverified JOSE header, for routing and display only (never for trust decisions).
    Shared by every JWT the approver reads (bootstrap and service-account tokens).

    Args:
        token: a compact JWS.
        max_bytes: the longest token accepted (default 8 KiB, a bootstrap token's bound).

    Raises:
        MalformedToken: too long, not three canonical base64url parts with a JSON object
            header, or a header member PyJWT refuses (a non-string ``kid``, a bad ``crit``).
    """
    _check_compact(token, max_bytes=max_bytes)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        # DecodeError (not base64url JSON) and the header checks PyJWT makes itself
        # (a non-string kid, a bad crit list) all mean the same to us: malformed.
        raise MalformedToken("JOSE header is not a valid JWS header") from None
    return dict(header)


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object whose member names are unique (RFC 7519 section 4: a parser must refuse
    duplicate claim names or keep the last; we refuse, so no two readers can disagree)."""
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member name")
    return members


def _no_constant(name: str) -> object:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259 section 6)."""
    raise ValueError(f"{name} is not JSON")


def verify(token: str, key_set: KeySet, policy: VerificationPolicy, *, now: int) -> BootstrapClaims:
    """Verify a bootstrap token and return its claims.

    Checks, in this order (security-relevant failures first): structure (three canonical
    base64url parts, RFC 7515 section 2) and ``typ`` (RFC 8725 section 3.11); ``alg`` is
    exactly ``EdDSA`` (RFC 8725 section 3.1: never from the header's choice); ``kid`` names a
    key of ``key_set``; the Ed25519 signature; the claims set's shape (unique member names,
    every claim of exactly its JSON type: :class:`BootstrapClaims`); ``iss``; ``aud``;
    lifetime bound; ``nbf`` and ``exp`` with leeway (RFC 7519 sections 4.1.4-4.1.5); the
    trust policy.

    Raises:
        MalformedToken, AlgorithmNotAllowed, UnknownKeyId, BadSignature, WrongIssuer,
        WrongAudience, LifetimeTooLong, NotYetValid, Expired, PolicyViolation
        (all :class:`~bootstrap_token.errors.TokenError`, with a ``reason`` code).
    """
    _check_compact(token, max_bytes=MAX_TOKEN_BYTES)
    try:
        # Parsed once, by PyJWT, with its header checks (a non-string kid, a bad crit); the
        # signature is checked right below, before anything of the token is used.
        decoded = _JWS.decode_complete(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise MalformedToken("JOSE header is not a valid JWS header") from None
    header = decoded["header"]
    if header.get("alg") != ALGORITHM:
        raise AlgorithmNotAllowed(f"algorithm {header.get('alg')!r} is not allowed, only EdDSA")
    if header.get("typ") != TOKEN_TYPE:
        raise MalformedToken(f"token type must be {TOKEN_TYPE!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in key_set:
        raise UnknownKeyId("kid names no key of the verification key set")
    signing_input = token[: token.rindex(".")].encode("ascii")
    if not _EDDSA.verify(signing_input, _EDDSA.prepare_key(key_set[kid]), decoded["signature"]):
        raise BadSignature("signature does not verify")
    payload = decoded["payload"]
    try:
        raw = json.loads(payload, object_pairs_hook=_unique_members, parse_constant=_no_constant)
        claims = BootstrapClaims.model_validate(raw, context={"wire": True})
    except (ValueError, ValidationError) as exc:
        fields = (
            sorted({".".join(str(p) for p in e["loc"]) or "claims" for e in exc.errors()})
            if isinstance(exc, ValidationError)
            else ["claims"]
        )
        raise MalformedToken(f"claims set invalid at: {', '.join(fields)}") from None
    if claims.iss != policy.issuer:
        raise WrongIssuer("issuer is not the configured one")
    if claims.aud != policy.audience:
        raise WrongAudience("audience is not this approver")
    if policy.clusters is not None and claims.cluster not in policy.clusters:
        raise WrongCluster("cluster is not one this verifier accepts")
    tied = key_set.cluster_of(kid)
    if tied is not None and claims.cluster != tied:
        raise WrongCluster("cluster is not the one its signing key is tied to")
    if claims.ttl_seconds > policy.max_ttl_seconds:
        raise LifetimeTooLong(
            f"lifetime {claims.ttl_seconds}s exceeds the maximum {policy.max_ttl_seconds}s"
        )
    if now < claims.nbf - policy.leeway_seconds:
        raise NotYetValid("token is not valid yet (nbf)")
    if now >= claims.exp + policy.leeway_seconds:
        raise Expired("token has expired (exp)", claims=claims)
    if policy.trust is not None:
        reason = policy.trust.untrusted_reason(claims.namespace, claims.service_account)
        if reason is not None:
            err = PolicyViolation(f"{reason.replace('_', ' ')} by the approver's policy")
            err.reason = reason
            raise err
    return claims
