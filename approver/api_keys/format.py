"""The API key format: generation, parsing, hashing and the constant-time check. Pure.

A key is ``abk_<id>_<secret>``, all lower case, 73 characters::

    abk_                     "agent bootstrap key": a fixed prefix a secret scanner can match
    <id>                     16 characters: 80 random bits, RFC 4648 base32 (a-z, 2-7), no padding
    _
    <secret>                 52 characters: 256 random bits, RFC 4648 base32, no padding

Scanner pattern: ``\\babk_[a-z2-7]{16}_[a-z2-7]{52}\\b``. The base32 alphabet has no ``_``, so
the two separators are unambiguous, and the key survives copy-paste, shells, YAML and HTTP
headers without quoting.

* The **id** is public: it is the database primary key, shown in lists, logs and audit events, so
  a key can be named without revealing it. 80 random bits make ids unguessable enough that a
  lookup by id is not an oracle worth having, and collision-free in practice.
* The **secret** is stored only as its SHA-256 digest. A slow password hash (bcrypt, scrypt,
  Argon2) exists to make guessing *low-entropy* secrets expensive after a database leak; a
  256-bit uniformly random secret cannot be guessed at any hash speed (2^255 tries on average),
  so a fast hash loses nothing and keeps every registration cheap. (OWASP Password Storage
  Cheat Sheet; NIST SP 800-63B section 5.1.1.2 applies slow hashing to memorized secrets only.)
* The comparison of the presented secret's digest with the stored one is
  :func:`hmac.compare_digest`, so its timing does not depend on how many leading bytes match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from approver.domain.credentials import looks_like_jwt

PREFIX = "abk_"
API_KEY_HEADER = "X-Agent-API-Key"
ID_BYTES = 10  #: 80 bits
SECRET_BYTES = 32  #: 256 bits
ID_LENGTH = 16  #: base32 characters of ID_BYTES
SECRET_LENGTH = 52  #: base32 characters of SECRET_BYTES
KEY_LENGTH = len(PREFIX) + ID_LENGTH + 1 + SECRET_LENGTH  #: 73

#: What a secret scanner (or :func:`parse_api_key`) recognises as a key.
KEY_PATTERN = re.compile(rf"abk_([a-z2-7]{{{ID_LENGTH}}})_([a-z2-7]{{{SECRET_LENGTH}}})")
ID_PATTERN = re.compile(rf"[a-z2-7]{{{ID_LENGTH}}}")

#: The digest compared when a presented id names no key, so an unknown id costs the same
#: hash-and-compare as a known one.
_DUMMY_DIGEST = hashlib.sha256(b"no such api key").digest()


class MalformedApiKey(ValueError):
    """The value is not ``abk_<16 base32>_<52 base32>``. The message never repeats the value."""


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A key split into its public id and its secret. ``repr`` never shows the secret."""

    key_id: str
    secret: str = field(repr=False)

    @property
    def digest(self) -> str:
        """SHA-256 hex of the secret: what the database stores."""
        return hash_secret(self.secret)


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A freshly generated key: the full string (shown once), its id and its secret's digest."""

    key: str = field(repr=False)
    key_id: str
    secret_hash: str = field(repr=False)


def new_key_id() -> str:
    """A fresh key id: 80 random bits from :mod:`secrets`, 16 base32 characters."""
    return _b32(secrets.token_bytes(ID_BYTES))


def generate_key() -> GeneratedKey:
    """A new random key ``abk_<id>_<secret>`` (id 80 bits, secret 256 bits, from the OS CSPRNG).

    Returns:
        The key string, its id, and the SHA-256 hex digest of its secret.
    """
    key_id = new_key_id()
    secret = _b32(secrets.token_bytes(SECRET_BYTES))
    return GeneratedKey(
        key=f"{PREFIX}{key_id}_{secret}", key_id=key_id, secret_hash=hash_secret(secret)
    )


def parse_api_key(value: str) -> ParsedKey:
    """Split a presented key into id and secret.

    Args:
        value: the key as presented, surrounding whitespace already stripped.

    Raises:
        MalformedApiKey: not exactly ``abk_<16 base32>_<52 base32>`` (lower case).
    """
    if len(value) != KEY_LENGTH:
        raise MalformedApiKey(f"an API key is {KEY_LENGTH} characters, got {len(value)}")
    match = KEY_PATTERN.fullmatch(value)
    if match is None:
        raise MalformedApiKey("not of the form abk_<16 base32>_<52 base32>")
    return ParsedKey(key_id=match.group(1), secret=match.group(2))


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest (64 characters) of a key's secret part (see the module docstring for
    why no slow hash is needed)."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """True when ``secret`` hashes to ``stored_hash``, compared in constant time.

    Args:
        secret: the presented secret part.
        stored_hash: the stored SHA-256 hex digest, or None when the id names no key (a dummy
            digest is compared instead, so both cases cost the same and return False).
    """
    presented = hashlib.sha256(secret.encode("ascii")).digest()
    expected = bytes.fromhex(stored_hash) if stored_hash is not None else _DUMMY_DIGEST
    return hmac.compare_digest(presented, expected) and stored_hash is not None


def presented_api_key(headers: Mapping[str, str]) -> str | None:
    """The API key a registration request presents, or None.

    StreamSpace's unmodified agent sends ``AGENT_API_KEY`` in ``X-Agent-API-Key``. A value there
    shaped like a JWT is a bootstrap token (:func:`approver.domain.credentials.bootstrap_credential`
    reads it); anything else non-empty is an API key, well-formed or not (a malformed one is
    refused with ``api_key_malformed``, not ignored).

    Args:
        headers: a case-insensitive mapping (aiohttp's ``request.headers``).
    """
    value = headers.get(API_KEY_HEADER, "").strip()
    if not value or looks_like_jwt(value):
        return None
    return value
