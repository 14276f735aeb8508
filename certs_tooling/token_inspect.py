"""``certs-tooling token inspect``: decode a bootstrap token and verify it against a JWKS.

Verification is :func:`bootstrap_token.verify` itself (the approver's own code path), so this
tool can never disagree with the approver about a token. ``verify`` stops at the first failure
and raises a typed error with a ``reason`` code; this module turns that into one row per check:
rows before the failure ``PASS``, the failing row ``FAIL`` with the reason, rows after it
``SKIP`` (not reached). The rows follow ``verify``'s order:

| row        | what it checks                                         | reason on failure   |
|------------|--------------------------------------------------------|---------------------|
| structure  | compact JWS, base64url JSON header (RFC 7515 sec. 7.1) | malformed           |
| alg        | exactly ``EdDSA`` (RFC 8725 sec. 3.1)                  | bad_alg             |
| typ        | ``agent-bootstrap+jwt`` (RFC 8725 sec. 3.11)           | malformed           |
| kid        | names a key of the JWKS                                | unknown_kid         |
| signature  | payload/signature decode, Ed25519 verifies (RFC 8037)  | malformed / bad_signature |
| claims     | the claims set has the documented shape                | malformed           |
| iss        | the expected issuer (RFC 7519 sec. 4.1.1)              | wrong_issuer        |
| aud        | the expected audience (RFC 7519 sec. 4.1.3)            | wrong_audience      |
| lifetime   | ``exp - iat`` within the maximum                       | ttl_too_long        |
| nbf        | not before ``nbf`` - leeway (RFC 7519 sec. 4.1.5)      | not_yet_valid       |
| exp        | before ``exp`` + leeway (RFC 7519 sec. 4.1.4)          | expired             |

The header and claims shown are decoded without verification, for display; they are trusted
only when every row passes. Only public keys are involved: a JWKS carrying private members is
refused by :meth:`bootstrap_token.KeySet.from_jwks`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bootstrap_token import (
    TOKEN_TYPE,
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    KeySet,
    LifetimeTooLong,
    MalformedToken,
    NotYetValid,
    TokenError,
    UnknownKeyId,
    VerificationPolicy,
    WrongAudience,
    WrongIssuer,
    read_header,
    verify,
)
from bootstrap_token.jws import segment_object

CHECKS = (
    "structure",
    "alg",
    "typ",
    "kid",
    "signature",
    "claims",
    "iss",
    "aud",
    "lifetime",
    "nbf",
    "exp",
)

_ROW_OF_ERROR: dict[type[TokenError], str] = {
    AlgorithmNotAllowed: "alg",
    UnknownKeyId: "kid",
    BadSignature: "signature",
    WrongIssuer: "iss",
    WrongAudience: "aud",
    LifetimeTooLong: "lifetime",
    NotYetValid: "nbf",
    Expired: "exp",
}


class Status(StrEnum):
    PASS = "PASS"  # noqa: S105 - a check outcome, not a password
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Row:
    """One check: its name (one of :data:`CHECKS`), status and a one-line detail."""

    check: str
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class Report:
    """What :func:`inspect_token` found.

    Attributes:
        header: the JOSE header (unverified), None when it does not decode.
        claims: the claims set (unverified unless ``ok``), None when it does not decode.
        rows: one per entry of :data:`CHECKS`, in that order.
        reason: the ``reason`` code of the first failure, None when ``ok``.
    """

    header: dict[str, Any] | None
    claims: dict[str, Any] | None
    rows: list[Row]
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload as JSON, for display only; None when it does not decode to an object."""
    try:
        return segment_object(token, 1, max_bytes=64 * 1024)
    except ValueError:
        return None


def _failed_row(exc: TokenError, header: dict[str, Any] | None, claims_decode: bool) -> str:
    for error_type, row in _ROW_OF_ERROR.items():
        if isinstance(exc, error_type):
            return row
    assert isinstance(exc, MalformedToken)
    if header is None:
        return "structure"
    if header.get("typ") != TOKEN_TYPE:
        return "typ"
    # verify() raises MalformedToken after the kid check for an undecodable payload or
    # signature (before the signature is checked) or for a claims set of the wrong shape.
    return "claims" if claims_decode else "signature"


def _pass_detail(
    check: str,
    header: dict[str, Any],
    claims: dict[str, Any] | None,
    policy: VerificationPolicy,
    now: int,
) -> str:
    c = claims or {}
    details = {
        "structure": "compact JWS with a JSON header",
        "alg": f"alg {header.get('alg')}",
        "typ": f"typ {header.get('typ')}",
        "kid": f"kid {header.get('kid')} is in the JWKS",
        "signature": "Ed25519 signature verifies",
        "claims": "claims set has the documented shape",
        "iss": f"iss {c.get('iss')!r}",
        "aud": f"aud {c.get('aud')!r}",
        "lifetime": f"exp - iat = {_ttl(c)}s <= {policy.max_ttl_seconds}s",
        "nbf": f"nbf {c.get('nbf')} <= now {now} + {policy.leeway_seconds}s leeway",
        "exp": f"now {now} < exp {c.get('exp')} + {policy.leeway_seconds}s leeway",
    }
    return details[check]


def _ttl(claims: dict[str, Any]) -> object:
    exp, iat = claims.get("exp"), claims.get("iat")
    return exp - iat if isinstance(exp, int) and isinstance(iat, int) else "?"


def inspect_token(token: str, key_set: KeySet, policy: VerificationPolicy, *, now: int) -> Report:
    """Verify ``token`` with :func:`bootstrap_token.verify` and report every check.

    Args:
        token: the compact JWT (surrounding whitespace is the caller's to strip).
        key_set: public verification keys (from the approver's JWKS).
        policy: issuer, audience, leeway and maximum lifetime to require (no trust policy).
        now: seconds since the epoch.

    Returns:
        A :class:`Report`; never raises for a bad token.
    """
    try:
        header: dict[str, Any] | None = read_header(token)
    except MalformedToken:
        header = None
    claims = _unverified_claims(token) if header is not None else None
    failure: TokenError | None = None
    try:
        verify(token, key_set, policy, now=now)
    except TokenError as exc:
        failure = exc
    failed = _failed_row(failure, header, claims is not None) if failure else None
    rows: list[Row] = []
    reached = True
    for check in CHECKS:
        if check == failed:
            assert failure is not None
            rows.append(Row(check, Status.FAIL, f"{failure.message} (reason {failure.reason})"))
            reached = False
        elif reached:
            assert header is not None
            rows.append(Row(check, Status.PASS, _pass_detail(check, header, claims, policy, now)))
        else:
            rows.append(
                Row(check, Status.SKIP, "not reached: verification stops at the first failure")
            )
    return Report(
        header=header,
        claims=claims,
        rows=rows,
        reason=failure.reason if failure is not None else None,
    )


def _when(value: object) -> str:
    if not isinstance(value, int):
        return ""
    return f"  # {datetime.fromtimestamp(value, UTC):%Y-%m-%dT%H:%M:%SZ}"


def render(report: Report) -> str:
    """The report as text: header, claims (times also as ISO 8601 UTC), one line per check,
    and the verdict with the first failure's reason code."""
    lines = ["header:"]
    if report.header is None:
        lines.append("  (does not decode)")
    else:
        lines += [f"  {k}: {json.dumps(v)}" for k, v in sorted(report.header.items())]
    lines.append("claims:" if report.ok else "claims (unverified):")
    if report.claims is None:
        lines.append("  (does not decode)")
    else:
        for key, value in report.claims.items():
            suffix = _when(value) if key in {"iat", "nbf", "exp"} else ""
            lines.append(f"  {key}: {json.dumps(value, sort_keys=True)}{suffix}")
    lines.append("checks:")
    width = max(len(c) for c in CHECKS)
    lines += [f"  {row.status:<4}  {row.check:<{width}}  {row.detail}" for row in report.rows]
    lines.append("result: valid" if report.ok else f"result: INVALID (reason {report.reason})")
    return "\n".join(lines) + "\n"
