"""Admin API bearer tokens: the tokens file, and constant-time authentication. Pure.

File format (``adminTokensFile``), one token per line::

    # comments and blank lines are ignored
    alice:3q2+7w...          # "name:token": the actor is recorded as "alice"
    Xk9v...                  # a bare token: the actor is its fingerprint, "sha256:<12 hex>"

A line containing ``:`` is always ``name:token`` (split at the first colon); names are
1..64 characters of ``A-Z a-z 0-9 . _ @ -``. Tokens must be at least 16 characters: a bearer
token is a password an attacker may guess offline against nothing but this API.

Only SHA-256 digests of the tokens are kept after loading. A presented token is hashed and
compared with :func:`hmac.compare_digest` against *every* configured digest, so neither the
position of a match nor the length of a token shows in the timing (RFC 6750 section 5.3
recommends against leaking token validity; the hash makes lengths uniform).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap_token import fingerprint

MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


class AdminTokensError(ValueError):
    """The tokens file cannot be used. The message names the line, never its content."""


@dataclass(frozen=True, slots=True)
class _Entry:
    actor: str
    digest: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AdminTokens:
    """The configured admin tokens (digests only). Empty: every admin request is refused."""

    entries: tuple[_Entry, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AdminTokens:
        """Parse the file format above.

        Raises:
            AdminTokensError: a bad name or a token shorter than 16 characters (line number given).
        """
        entries: list[_Entry] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, token = line.partition(":")
            if sep:
                if _NAME.fullmatch(name) is None:
                    raise AdminTokensError(
                        f"line {number}: name must be 1..64 of A-Z a-z 0-9 . _ @ -"
                    )
                token = token.strip()
            else:
                token, name = name, ""
            if len(token) < MIN_TOKEN_LENGTH:
                raise AdminTokensError(
                    f"line {number}: token shorter than {MIN_TOKEN_LENGTH} characters"
                )
            entries.append(_Entry(actor=name or fingerprint(token), digest=_digest(token)))
        return cls(tuple(entries))

    @classmethod
    def from_file(cls, path: Path) -> AdminTokens:
        """Read and :meth:`parse` ``path``. Raises AdminTokensError (unreadable file too)."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AdminTokensError(f"cannot read {path}: {type(exc).__name__}") from None
        return cls.parse(text)

    def __len__(self) -> int:
        return len(self.entries)

    def authenticate(self, presented: str) -> str | None:
        """The actor name of ``presented``, or None when it is no configured token.

        Every configured digest is compared (no early exit), in constant time each.
        """
        digest = _digest(presented)
        actor: str | None = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest) and actor is None:
                actor = entry.actor
        return actor


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None (RFC 6750 section 2.1;
    the scheme is case-insensitive, RFC 7235 section 2.1)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
