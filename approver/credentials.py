"""Which credential a registration request presents, read from its headers. Pure.

Headers (DESIGN, "Approver: registration"):

* ``X-Agent-Bootstrap-Token: <jwt>``: the bootstrap token, as an agent that knows about it sends it.
* ``X-Agent-API-Key: <key or jwt>``: an unmodified StreamSpace agent sends ``AGENT_API_KEY`` here;
  with the webhook's ``injectEnv`` that variable holds the bootstrap token. A value shaped like a
  JWT (three dot-separated base64url parts whose first part decodes to a JSON object) is taken as
  the bootstrap token; any other value is an API key, ignored for now (API keys are a later issue)
  and never logged.

``X-Agent-Bootstrap-Token`` wins when both carry a token. Empty values count as absent: an env var
pointing at a missing annotation is empty, and that agent is simply unstamped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bootstrap_token import fingerprint

BOOTSTRAP_TOKEN_HEADER = "X-Agent-Bootstrap-Token"  # noqa: S105 - a header name, not a secret
API_KEY_HEADER = "X-Agent-API-Key"

# header.payload.signature; the signature part may be empty (an "alg": "none" token), which must
# still be recognised as a token so that it is refused (403 bad_alg) rather than ignored.
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class BootstrapCredential:
    """A presented bootstrap token. ``repr`` never shows the token.

    Attributes:
        token: the compact JWT as presented; only :func:`bootstrap_token.verify` reads it.
        header: the header that carried it.
        digest: SHA-256 hex of the token: the ``credential_hash`` of a registration.
        fingerprint: :func:`bootstrap_token.fingerprint` of the token, for audit events.
    """

    token: str = field(repr=False)
    header: str
    digest: str
    fingerprint: str

    @classmethod
    def of(cls, token: str, *, header: str) -> BootstrapCredential:
        return cls(
            token=token,
            header=header,
            digest=hashlib.sha256(token.encode("utf-8")).hexdigest(),
            fingerprint=fingerprint(token),
        )


def looks_like_jwt(value: str) -> bool:
    """True when ``value`` is three dot-separated base64url parts and the first decodes to a
    JSON object (RFC 7515 section 7.1, compact serialisation). Says nothing about validity."""
    if _JWT_SHAPE.fullmatch(value) is None:
        return False
    head = value.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError alike
        return False
    # Only the shape matters here: whatever the header holds (a non-string "kid", a bad
    # "crit"), it is a token, and verification refuses it as malformed.
    return isinstance(decoded, dict)


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
    if api_key and looks_like_jwt(api_key):
        return BootstrapCredential.of(api_key, header=API_KEY_HEADER)
    return None
