"""Admin API bearer tokens: the tokens file, and constant-time authentication.

:class:`AdminTokens` is pure; :class:`TokenFile` re-reads the mounted file when it changes.

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

import asyncio
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap_token import fingerprint
from bootstrap_token.file_mode import mode_warning

log = logging.getLogger(__name__)

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


class TokenFile:
    """A tokens file that is re-read when it changes (a Kubernetes Secret volume is updated in
    place: its ``..data`` symlink is swapped).

    :meth:`current` checks the file's identity (inode, size, modification time, following
    symlinks) at most once per ``check_interval_seconds``; when it changed, the file is parsed
    again and the reload is logged at INFO with the names and the count, never a token:
    ``adminTokensFile (...) /path re-read: 2 token(s) (added bob; removed carol)`` (a bare
    token's name is its fingerprint). A change that does not parse (or a file that vanished)
    keeps the tokens in use and logs a warning naming the line, never its content, so a bad
    edit cannot lock every administrator out. :meth:`follow` looks in the background, so a
    change is seen (and logged) within a second, not at the next request.

    Each time the file is loaded, a mode open to other users than its owner (beyond what this
    process needs, :mod:`bootstrap_token.file_mode`) is a warning naming the setting, the path
    and the mode.

    Args:
        path: the file, or None (no tokens: every call refused).
        setting: how log lines name the setting, e.g. ``adminTokensFile (config file x.yaml)``.
        check_interval_seconds: how often to look at the file, in seconds (default 1).
        monotonic: the clock for that interval.

    Raises:
        AdminTokensError: the file cannot be read or parsed at start.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        setting: str = "adminTokensFile",
        check_interval_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._setting = setting
        self._interval = check_interval_seconds
        self._monotonic = monotonic
        self._checked = monotonic()
        self._signature = _signature(path) if path is not None else None
        self._tokens = AdminTokens.from_file(path) if path is not None else AdminTokens()
        self._warn_mode()

    @property
    def path(self) -> Path | None:
        return self._path

    def current(self) -> AdminTokens:
        """The tokens now (re-read first when the file changed)."""
        if self._path is None:
            return self._tokens
        now = self._monotonic()
        if now - self._checked < self._interval:
            return self._tokens
        self._checked = now
        signature = _signature(self._path)
        if signature == self._signature:
            return self._tokens
        self._signature = signature
        try:
            tokens = AdminTokens.from_file(self._path)
        except AdminTokensError as exc:
            log.warning(
                "%s %s changed but cannot be used (%s); keeping the %d token(s) in use",
                self._setting,
                self._path,
                exc,
                len(self._tokens),
            )
            return self._tokens
        log.info(
            "%s %s re-read: %d token(s)%s",
            self._setting,
            self._path,
            len(tokens),
            _changes(self._tokens, tokens),
        )
        self._tokens = tokens
        self._warn_mode()
        return self._tokens

    async def follow(self) -> None:
        """Look at the file every ``check_interval_seconds`` until cancelled, so a change is
        applied and logged when it happens (:meth:`current`). Returns at once without a file."""
        if self._path is None:
            return
        while True:
            await asyncio.sleep(self._interval)
            self.current()

    def _warn_mode(self) -> None:
        if self._path is None:
            return
        warning = mode_warning(self._setting, self._path)
        if warning is not None:
            log.warning("%s", warning)


def _changes(before: AdminTokens, after: AdminTokens) -> str:
    """`` (added a, b; removed c)``, `` (same names, tokens changed)`` or `` (unchanged)``:
    names only, in file order (a bare token is named by its fingerprint), never a token."""
    old = [e.actor for e in before.entries]
    new = [e.actor for e in after.entries]
    added = [name for name in new if name not in old]
    removed = [name for name in old if name not in new]
    parts = []
    if added:
        parts.append("added " + ", ".join(added))
    if removed:
        parts.append("removed " + ", ".join(removed))
    if parts:
        return f" ({'; '.join(parts)})"
    if before.entries != after.entries:
        return " (same names, tokens changed)"
    return " (unchanged)"


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
