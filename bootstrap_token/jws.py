"""Reading a compact JWS without verifying it: base64url segments and the JSON they hold.

For routing and display only, never for a trust decision (verification is
:func:`bootstrap_token.verify`, with PyJWT). One home for what several places needed: the
bootstrap token's header (:func:`bootstrap_token.read_header`), a service-account token's header
and payload, the approver's guess whether a credential is a token at all, ``certs-tooling token
inspect``, and the admin API's paging cursors.

References: RFC 7515 section 7.1 (compact serialisation), RFC 4648 section 5 (base64url; JWS
omits the padding, which is restored here).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """The bytes of an unpadded base64url segment.

    Raises:
        ValueError: not base64url (``binascii.Error`` is a ValueError).
    """
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def is_canonical_b64url(segment: str) -> bool:
    """True when ``segment`` is the one base64url spelling of its bytes: only the URL-safe
    alphabet, no padding, no length that leaves a lone character (``len % 4 == 1``), and zero
    unused trailing bits (RFC 4648 sections 3.5 and 5; RFC 7515 section 2). Python's decoder
    accepts much more (padding, ``+``/``/``, whitespace and other characters it skips, set
    trailing bits), so several strings decode to the same token: only this one is a token."""
    if _B64URL.fullmatch(segment) is None:
        return False
    # The last character of a partial group carries unused bits, which must be zero (RFC 4648
    # section 3.5): 4 of them after 2 characters, 2 after 3. Checked on the character itself,
    # without decoding (the same verdict as decoding and encoding again: tested).
    rest = len(segment) % 4
    if rest == 1:
        return False
    if rest == 2:
        return segment[-1] in _NO_LOW_4_BITS
    if rest == 3:
        return segment[-1] in _NO_LOW_2_BITS
    return True


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_NO_LOW_4_BITS = frozenset(c for i, c in enumerate(_ALPHABET) if i % 16 == 0)
_NO_LOW_2_BITS = frozenset(c for i, c in enumerate(_ALPHABET) if i % 4 == 0)


def canonical_compact(token: str) -> bool:
    """True when ``token`` is three dot-separated parts, each :func:`is_canonical_b64url`
    (RFC 7515 section 7.1, compact serialisation)."""
    parts = token.split(".")
    return len(parts) == 3 and all(is_canonical_b64url(part) for part in parts)


def lenient_segment_object(token: str, *, max_bytes: int) -> dict[str, Any] | None:
    """The JSON object the first segment of a JWS-like value holds when read the way lenient
    decoders read it (padding, the standard alphabet, characters outside it skipped), or None.
    For recognising a token in whatever spelling, never for trusting it."""
    if len(token) > max_bytes:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        value = json.loads(base64.b64decode(parts[0].translate(_TO_STANDARD) + "=="))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


_TO_STANDARD = str.maketrans("-_", "+/")


def segment_json(token: str, index: int, *, max_bytes: int) -> Any:
    """The JSON value of segment ``index`` (0 header, 1 payload) of a compact JWS.

    Raises:
        ValueError: longer than ``max_bytes``, not three dot-separated parts, or the segment is
            not base64url JSON.
    """
    if len(token) > max_bytes:
        raise ValueError(f"longer than {max_bytes} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not three dot-separated parts")
    try:
        return json.loads(b64url_decode(parts[index]))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"segment {index} is not base64url JSON") from exc


def segment_object(token: str, index: int, *, max_bytes: int) -> dict[str, Any]:
    """:func:`segment_json` that must be a JSON object. Raises ValueError otherwise."""
    value = segment_json(token, index, max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise ValueError(f"segment {index} is not a JSON object")
    return value
