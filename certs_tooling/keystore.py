"""The signing-key store's state and its transitions. Pure: no I/O, the clock is an argument.

Life of a key::

    keys add          keys activate KID           keys activate OTHER      keys retire KID
    ───────► pending ───────────────────► active ───────────────────► inactive ─────────► retired
                │                                                        │  ▲
                └──────────────── keys retire (never signed) ────────────┼──┘ keys activate KID
                                                                         (roll back)

* ``pending``: published in the JWKS, not signing yet, so every approver learns the key before
  any token carries its ``kid``.
* ``active``: the one key the webhook signs with (``signing.key``). Exactly one, once initialised.
* ``inactive``: no longer signs, still published: tokens it signed may still be valid.
* ``retired``: removed from the JWKS; its private key is deleted; the record stays for audit.

Published keys (the JWKS) = pending + active + inactive. A token signed at ``t`` is valid until
at most ``t + max TTL`` (``exp - iat`` is bounded by
:data:`bootstrap_token.MAX_TTL_SECONDS`, and the verifier refuses longer lifetimes) plus the
verifier's ``exp`` leeway. So an inactive key may be retired once
``deactivated_at + max_token_ttl + leeway`` has passed (:func:`retirement_blocker`).

Error tree::

    KeyStoreError
    ├── UnknownKey          no key with that kid (or an ambiguous kid prefix)
    ├── InvalidTransition   e.g. activating a retired key, adding a kid twice
    └── RetireRefused       the key is active, or tokens it signed may still be valid
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from bootstrap_token import MAX_TTL_SECONDS
from certs_tooling.errors import CertsToolingError
from certs_tooling.layout import KID_PATTERN

#: Default for ``--max-token-ttl``: the minting bound, so no token can outlive it.
DEFAULT_MAX_TOKEN_TTL_SECONDS = MAX_TTL_SECONDS
#: Default for ``--leeway``: the verifier's 30 s ``exp`` leeway plus time for the webhook to
#: pick up the new ``signing.key`` after activation (a Secret volume refresh takes up to the
#: kubelet sync period, about a minute, plus its cache TTL).
DEFAULT_LEEWAY_SECONDS = 300
#: Shortest kid prefix the CLI resolves.
MIN_KID_PREFIX = 6


def _starting(count: int) -> str:
    return (
        "no key starts" if count == 0 else "1 key starts" if count == 1 else f"{count} keys start"
    )


class KeyStoreError(CertsToolingError):
    """Base class: a key-store operation was refused."""


class UnknownKey(KeyStoreError):
    """No key has that kid, or a prefix matches several keys."""


class InvalidTransition(KeyStoreError):
    """The key is not in a state that allows this operation."""


class RetireRefused(KeyStoreError):
    """The key is active, or tokens it signed may still be valid until ``valid_until``."""

    def __init__(self, message: str, *, valid_until: datetime | None) -> None:
        super().__init__(message)
        self.valid_until = valid_until


class KeyStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    INACTIVE = "inactive"
    RETIRED = "retired"


PUBLISHED = frozenset({KeyStatus.PENDING, KeyStatus.ACTIVE, KeyStatus.INACTIVE})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KeyRecord(_Model):
    """One signing key's history. Times are timezone-aware UTC; no key material here."""

    kid: str = Field(pattern=KID_PATTERN.pattern, description="RFC 7638 thumbprint")
    state: KeyStatus
    created_at: AwareDatetime
    activated_at: AwareDatetime | None = Field(
        default=None, description="last time the key became active"
    )
    deactivated_at: AwareDatetime | None = Field(
        default=None, description="last time the key stopped being active"
    )
    retired_at: AwareDatetime | None = None

    @property
    def published(self) -> bool:
        """True when the key belongs in the JWKS."""
        return self.state in PUBLISHED


class KeyStoreState(_Model):
    """The whole ``keys/state.json`` document."""

    version: Literal[1] = 1
    keys: tuple[KeyRecord, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        kids = [k.kid for k in self.keys]
        if len(kids) != len(set(kids)):
            raise ValueError("a kid appears twice")
        if sum(k.state is KeyStatus.ACTIVE for k in self.keys) > 1:
            raise ValueError("more than one active key")
        return self

    @property
    def active(self) -> KeyRecord | None:
        """The active key, or None (only before the first activation)."""
        return next((k for k in self.keys if k.state is KeyStatus.ACTIVE), None)

    @property
    def published(self) -> list[KeyRecord]:
        """Keys that belong in the JWKS (pending, active, inactive)."""
        return [k for k in self.keys if k.published]

    def get(self, kid: str) -> KeyRecord:
        """The record of ``kid``, or of the one kid starting with it (at least 6 characters).

        Raises:
            UnknownKey: no match, a prefix shorter than 6 characters, or an ambiguous prefix.
        """
        for record in self.keys:
            if record.kid == kid:
                return record
        matches = [k for k in self.keys if k.kid.startswith(kid)]
        if len(kid) < MIN_KID_PREFIX:
            raise UnknownKey(
                f"kid prefix {kid!r} is too short: give the kid or its first {MIN_KID_PREFIX} "
                f"characters or more ({_starting(len(matches))} with it; `keys list` shows them)"
            )
        if not matches:
            raise UnknownKey(f"no key {kid!r} (`keys list` shows the kids)")
        if len(matches) > 1:
            raise UnknownKey(
                f"kid prefix {kid!r} is ambiguous: {len(matches)} keys start with it; give "
                "more characters"
            )
        return matches[0]

    def _replace(self, *records: KeyRecord) -> KeyStoreState:
        by_kid = {r.kid: r for r in records}
        return KeyStoreState(
            keys=tuple(by_kid.pop(k.kid, k) for k in self.keys) + tuple(by_kid.values())
        )


def add_key(state: KeyStoreState, kid: str, *, now: datetime) -> KeyStoreState:
    """Record a new ``pending`` key, or an ``active`` one when the store has no active key yet
    (the first key, as ``init`` makes it).

    Raises:
        InvalidTransition: ``kid`` is already recorded.
    """
    if any(k.kid == kid for k in state.keys):
        raise InvalidTransition(f"key {kid} is already in the store")
    if state.active is None:
        record = KeyRecord(kid=kid, state=KeyStatus.ACTIVE, created_at=now, activated_at=now)
    else:
        record = KeyRecord(kid=kid, state=KeyStatus.PENDING, created_at=now)
    return state._replace(record)


def activate_key(state: KeyStoreState, kid: str, *, now: datetime) -> KeyStoreState:
    """Make ``kid`` (pending or inactive) the one active key; the previous active key becomes
    ``inactive`` with ``deactivated_at = now``. Activating the active key changes nothing.

    Raises:
        UnknownKey: see :meth:`KeyStoreState.get`.
        InvalidTransition: the key is retired (its private key is gone).
    """
    record = state.get(kid)
    if record.state is KeyStatus.ACTIVE:
        return state
    if record.state is KeyStatus.RETIRED:
        raise InvalidTransition(f"key {record.kid} is retired; add a new key instead")
    changed = [
        record.model_copy(
            update={"state": KeyStatus.ACTIVE, "activated_at": now, "deactivated_at": None}
        )
    ]
    previous = state.active
    if previous is not None:
        changed.append(
            previous.model_copy(update={"state": KeyStatus.INACTIVE, "deactivated_at": now})
        )
    return state._replace(*changed)


def tokens_valid_until(record: KeyRecord, *, max_token_ttl: int, leeway: int) -> datetime | None:
    """The last instant a token signed by ``record``'s key may still be accepted.

    ``deactivated_at + max_token_ttl + leeway`` (seconds) for a key that signed and stopped;
    None for a key that never signed (pending, or retired before activation).

    Raises:
        InvalidTransition: the key is active (its tokens have no bound yet).
    """
    if record.state is KeyStatus.ACTIVE:
        raise InvalidTransition(f"key {record.kid} is active")
    if record.deactivated_at is None:
        return None
    return record.deactivated_at + timedelta(seconds=max_token_ttl + leeway)


def retirement_blocker(
    record: KeyRecord, *, now: datetime, max_token_ttl: int, leeway: int
) -> RetireRefused | None:
    """Why ``record``'s key must not be retired at ``now``, or None when it may be.

    The rule: a key leaves the JWKS only when no token it signed can still be valid, i.e.
    ``now >= deactivated_at + max_token_ttl + leeway``. The active key may never be retired.
    """
    if record.state is KeyStatus.ACTIVE:
        return RetireRefused(
            f"key {record.kid} is active; activate another key first", valid_until=None
        )
    until = tokens_valid_until(record, max_token_ttl=max_token_ttl, leeway=leeway)
    if until is not None and now < until:
        return RetireRefused(
            f"tokens signed by key {record.kid} may be valid until "
            f"{until.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} (deactivated_at + {max_token_ttl}s max "
            f"token TTL + {leeway}s leeway)",
            valid_until=until,
        )
    return None


def retire_key(
    state: KeyStoreState,
    kid: str,
    *,
    now: datetime,
    max_token_ttl: int = DEFAULT_MAX_TOKEN_TTL_SECONDS,
    leeway: int = DEFAULT_LEEWAY_SECONDS,
    force: bool = False,
) -> KeyStoreState:
    """Mark ``kid`` retired (out of the JWKS), by the rule of :func:`retirement_blocker`.

    ``force`` overrides the validity window (e.g. a compromised key), never the active rule:
    retiring the active key would leave the webhook signing tokens no approver accepts.

    Raises:
        UnknownKey: see :meth:`KeyStoreState.get`.
        InvalidTransition: the key is already retired.
        RetireRefused: the key is active, or (without ``force``) its tokens may still be valid.
    """
    record = state.get(kid)
    if record.state is KeyStatus.RETIRED:
        raise InvalidTransition(f"key {record.kid} is already retired")
    blocker = retirement_blocker(record, now=now, max_token_ttl=max_token_ttl, leeway=leeway)
    if blocker is not None and (record.state is KeyStatus.ACTIVE or not force):
        raise blocker
    return state._replace(record.model_copy(update={"state": KeyStatus.RETIRED, "retired_at": now}))
