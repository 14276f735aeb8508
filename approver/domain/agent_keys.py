"""Per-agent API keys: made on approval, shown once, stored as a hash. Pure.

Format: ``aga_`` + 43 characters of base64url (256 random bits from :mod:`secrets`) + 6
characters of base62 CRC-32 of the random part, e.g. ``aga_Xk9v...q3ZfG0``. The fixed prefix
and length let secret scanners (GitHub's, gitleaks) recognise a leaked key, and the checksum
lets them, and :func:`is_agent_key`, tell a key from a look-alike without any lookup (the
scheme of GitHub's ``ghp_`` tokens).

Only :func:`key_digest` (SHA-256 hex) is stored. A key is 256 random bits, so an unsalted fast
hash is the right tool: nothing about it can be guessed offline, and the lookup by digest is an
indexed equality (no per-row KDF). Comparisons happen in the database by digest; the plain key
is never stored, logged or put into an audit event (a :func:`bootstrap_token.fingerprint`
is).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import zlib

PREFIX = "aga_"
_RANDOM_CHARS = 43  # 32 bytes, base64url without padding
_CHECK_CHARS = 6  # base62 of a 32-bit CRC
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHAPE = re.compile(rf"{PREFIX}[A-Za-z0-9_-]{{{_RANDOM_CHARS}}}[0-9A-Za-z]{{{_CHECK_CHARS}}}")
#: Length of every agent key.
KEY_LENGTH = len(PREFIX) + _RANDOM_CHARS + _CHECK_CHARS


def _base62(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, rest = divmod(value, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), _CHECK_CHARS)


def new_agent_key() -> str:
    """A fresh key (format above)."""
    random_part = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    return PREFIX + random_part + _checksum(random_part)


def is_agent_key(value: str) -> bool:
    """True when ``value`` has the format above with a correct checksum. Says nothing about
    whether the key was issued."""
    if len(value) != KEY_LENGTH or _SHAPE.fullmatch(value) is None:
        return False
    random_part = value[len(PREFIX) : len(PREFIX) + _RANDOM_CHARS]
    return secrets.compare_digest(value[-_CHECK_CHARS:], _checksum(random_part))


def key_digest(key: str) -> str:
    """SHA-256 hex of a key: what ``agents.api_key_hash`` holds."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
