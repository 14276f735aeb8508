"""Which credentials a registration request presents, read from its headers. Pure.

Headers (docs/design.md, "Approver: registration"):

* ``X-Agent-Bootstrap-Token: <jwt>``: the bootstrap token, as an agent that knows about it sends it.
* ``X-Agent-API-Key: <key or jwt>``: an unmodified StreamSpace agent sends ``AGENT_API_KEY`` here;
  with the webhook's ``injectEnv`` that variable holds the bootstrap token. A value shaped like a
  JWT (three dot-separated parts whose first part decodes to a JSON object, in any base64
  spelling: :func:`looks_like_jwt`) is taken as the bootstrap token, and verification refuses
  a spelling that is not canonical; any other value is an API key: the agent's own per-agent key
  (:mod:`approver.domain.agent_keys`) or a key for decision step 3 (:mod:`approver.verifiers`).
* ``X-Agent-Service-Account-Token: <jwt>``: a service-account token for decision step 4.

``X-Agent-Bootstrap-Token`` wins when both carry a token. Empty values count as absent: an env var
pointing at a missing annotation is empty, and that agent is simply unstamped.

Every presented value is hashed (SHA-256 hex): a registration remembers the hash of the
credential that created it (``credential_hash``), and a later request *proves* the registration
when one of its hashes equals it. No value is ever logged; a :func:`bootstrap_token.fingerprint`
stands for it in audit events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from approver.domain.records import ApprovalMethod
from bootstrap_token.audit import fingerprint_of_digest
from bootstrap_token.jws import lenient_segment_object

BOOTSTRAP_TOKEN_HEADER = "X-Agent-Bootstrap-Token"  # noqa: S105 - a header name, not a secret
API_KEY_HEADER = "X-Agent-API-Key"
SERVICE_ACCOUNT_TOKEN_HEADER = "X-Agent-Service-Account-Token"  # noqa: S105 - a header name
#: Upper bound on a header value we hash or parse (a stamped token is about 800 bytes).
MAX_CREDENTIAL_BYTES = 8192


@dataclass(frozen=True, slots=True)
class BootstrapCredential:
    """A presented bootstrap token. ``repr`` never shows the token.

    Attributes:
        token: the compact JWT as presented; only :func:`bootstrap_token.verify` reads it.
        header: the header that carried it.
        digest: SHA-256 hex of the token: the ``credential_hash`` of a registration.
        fingerprint: :func:`bootstrap_token.fingerprint` of the token, for audit events.
        kid: the *unverified* ``kid`` of its JOSE header when it is a string of 1..64
            characters, for records and audit events (trusted only once verification found
            it in the key set); None otherwise.
    """

    token: str = field(repr=False)
    header: str
    digest: str
    fingerprint: str
    kid: str | None = None

    @classmethod
    def of(
        cls, token: str, *, header: str, jose: Mapping[str, object] | None = None
    ) -> BootstrapCredential:
        """The credential ``token`` carried by ``header``; ``jose``: its JOSE header when the
        caller already read it with :func:`_jwt_header` (read here otherwise)."""
        if jose is None:
            jose = _jwt_header(token)
        kid = jose.get("kid") if jose is not None else None
        digest = sha256_hex(token)
        return cls(
            token=token,
            header=header,
            digest=digest,
            fingerprint=fingerprint_of_digest(digest),
            kid=kid if isinstance(kid, str) and 0 < len(kid) <= 64 else None,
        )


def sha256_hex(value: str) -> str:
    """SHA-256 hex of a credential's UTF-8 bytes."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _jwt_header(value: str) -> dict[str, object] | None:
    """The JOSE header of a JWS-like value in whatever spelling, or None when it is not one."""
    return lenient_segment_object(value, max_bytes=MAX_CREDENTIAL_BYTES)


def looks_like_jwt(value: str) -> bool:
    """True when ``value`` is three dot-separated parts and the first decodes to a JSON object
    as lenient decoders read it (RFC 7515 section 7.1, compact serialisation; padding, the
    standard alphabet, stray characters and an empty signature part allowed here). Says
    nothing about validity: a token in another spelling than canonical base64url, or whose
    header holds a non-string ``kid`` or a bad ``crit``, is still a token, and verification
    refuses it as malformed; it is never taken for an API key."""
    return _jwt_header(value) is not None


def bootstrap_credential(headers: Mapping[str, str]) -> BootstrapCredential | None:
    """The bootstrap token a request presents, or None.

    Args:
        headers: the request headers; lookups use the exact names above, so pass a
            case-insensitive mapping (aiohttp's ``request.headers`` is one).

    Returns:
        ``X-Agent-Bootstrap-Token`` if non-empty (whatever its shape: a garbled value there is
        a malformed token, refused by verification); else ``X-Agent-API-Key`` if it looks like
        a JWT; else None.
    """
    explicit = headers.get(BOOTSTRAP_TOKEN_HEADER, "").strip()
    if explicit:
        return BootstrapCredential.of(explicit, header=BOOTSTRAP_TOKEN_HEADER)
    api_key = headers.get(API_KEY_HEADER, "").strip()
    jose = _jwt_header(api_key) if api_key else None
    if jose is not None:
        return BootstrapCredential.of(api_key, header=API_KEY_HEADER, jose=jose)
    return None


@dataclass(frozen=True, slots=True)
class Presented:
    """Every credential a registration request presents. ``repr`` never shows a value.

    Attributes:
        bootstrap: the bootstrap token, if any (:func:`bootstrap_credential`).
        api_key: ``X-Agent-API-Key`` when it is not a JWT: the agent's own key or a step-3 key.
        service_account_token: ``X-Agent-Service-Account-Token``.
        digests: SHA-256 hex of each presented value; a request proves a registration when
            one of them is its ``credential_hash`` (or its per-agent key's hash).
        primary: the digest a new registration records as its ``credential_hash`` unless a
            later step approves with another credential: the bootstrap token's, else the API
            key's, else the service-account token's; None when nothing was presented.
        primary_fingerprint: :func:`bootstrap_token.fingerprint` of that credential.
        api_key_digest, service_account_digest: SHA-256 hex of those two, when presented.
    """

    bootstrap: BootstrapCredential | None = None
    api_key: str | None = field(default=None, repr=False)
    service_account_token: str | None = field(default=None, repr=False)
    digests: frozenset[str] = frozenset()
    primary: str | None = None
    primary_fingerprint: str | None = None
    api_key_digest: str | None = None
    service_account_digest: str | None = None

    def digest_for(self, method: ApprovalMethod) -> str | None:
        """The digest of the credential a step-3/4 outcome of ``method`` is about."""
        if method is ApprovalMethod.API_KEY:
            return self.api_key_digest
        if method is ApprovalMethod.SERVICE_ACCOUNT:
            return self.service_account_digest
        return None

    def proves(self, credential_hash: str | None) -> bool:
        """True when this request presents the credential hashed as ``credential_hash``, or,
        for ``None``, presents nothing at all (a registration made without any credential)."""
        if credential_hash is None:
            return not self.digests
        return credential_hash in self.digests


def _value(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name, "").strip()
    if not value or len(value) > MAX_CREDENTIAL_BYTES:
        return None
    return value


def presented_credentials(headers: Mapping[str, str]) -> Presented:
    """Read every credential header (case-insensitive mapping, e.g. aiohttp's headers).

    Values longer than 8 KiB are ignored (no credential of ours is that long).
    """
    bootstrap = bootstrap_credential(headers)
    raw_key = _value(headers, API_KEY_HEADER)
    api_key = raw_key
    if raw_key is not None and (
        (bootstrap is not None and bootstrap.token == raw_key) or looks_like_jwt(raw_key)
    ):
        api_key = None  # the bootstrap token, or a second token beside the explicit one
    sa_token = _value(headers, SERVICE_ACCOUNT_TOKEN_HEADER)
    ordered: list[tuple[str, str]] = []
    if bootstrap is not None:
        ordered.append((bootstrap.digest, bootstrap.fingerprint))
    key_digest = sha256_hex(api_key) if api_key is not None else None
    sa_digest = sha256_hex(sa_token) if sa_token is not None else None
    for value, digest in ((api_key, key_digest), (sa_token, sa_digest)):
        if value is not None and digest is not None:
            ordered.append((digest, fingerprint_of_digest(digest)))
    return Presented(
        api_key_digest=key_digest,
        service_account_digest=sa_digest,
        bootstrap=bootstrap,
        api_key=api_key,
        service_account_token=sa_token,
        digests=frozenset(d for d, _ in ordered),
        primary=ordered[0][0] if ordered else None,
        primary_fingerprint=ordered[0][1] if ordered else None,
    )
