"""API key records and their lifecycle state. No I/O.

Lifecycle (``revoke_at`` is the moment revocation takes effect: now for an immediate revoke, now
plus the grace period for the old key of a rotation)::

    active ──revoke──────────────────────────────▶ revoked
       │                                              ▲
       └──rotate──▶ rotating (revoke_at in future) ───┘ (when revoke_at passes)
    active ──expires_at passes──▶ expired

Several keys may be active at once, so a rotation never needs downtime: the new key works at
once, the old one until its grace period ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from approver.api_keys.reasons import ApiKeyReason
from approver.api_keys.scope import ApiKeyScope


class KeySource(StrEnum):
    """Where a key comes from."""

    API = "api"  #: created through the admin API or the CLI; stored (hashed) in the database
    SECRET = "secret"  # noqa: S105 - a file of the mounted Secret folder (GitOps); not revocable via API


class KeyState(StrEnum):
    """A key's state at a given time."""

    ACTIVE = "active"  #: approves agents
    ROTATING = "rotating"  #: replaced, approves until ``revoke_at``
    REVOKED = "revoked"  #: ``revoke_at`` has passed
    EXPIRED = "expired"  #: ``expires_at`` has passed


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One API key (metadata and the secret's digest). Times are aware UTC datetimes.

    Attributes:
        key_id: the public id, 16 base32 characters (``abk_<key_id>_...``).
        name: a human label, 1..128 characters; several keys may share one (a rotation's old
            and new key do). For Secret-provisioned keys: the file name.
        secret_hash: SHA-256 hex of the secret part. Never rendered, never logged.
        scope: what the key may approve.
        source: ``api`` or ``secret``.
        created_at: creation time (Secret keys: the file's modification time).
        created_by: the administrator who created it (None for Secret keys).
        expires_at: when the key stops working by itself; None: never.
        revoke_at: when revocation takes (took) effect; None: not revoked.
        revoked_by: who revoked or rotated it.
        last_used_at: the last successful authentication (updated at most once a minute) or
            approval.
        approved_count: how many agents this key approved (the ``maxAgents`` counter).
        replaced_by: the key id of the key that replaced this one in a rotation.
    """

    key_id: str
    name: str
    secret_hash: str = field(repr=False)
    scope: ApiKeyScope
    source: KeySource
    created_at: datetime
    created_by: str | None = None
    expires_at: datetime | None = None
    revoke_at: datetime | None = None
    revoked_by: str | None = None
    last_used_at: datetime | None = None
    approved_count: int = 0
    replaced_by: str | None = None

    def state(self, at: datetime) -> KeyState:
        """The state at ``at`` (revocation wins over expiry)."""
        if self.revoke_at is not None:
            return KeyState.REVOKED if self.revoke_at <= at else KeyState.ROTATING
        if self.expires_at is not None and self.expires_at <= at:
            return KeyState.EXPIRED
        return KeyState.ACTIVE

    def unusable_reason(self, at: datetime) -> ApiKeyReason | None:
        """``api_key_revoked`` or ``api_key_expired`` when the key cannot approve at ``at``,
        else None (a rotating key still can, until ``revoke_at``)."""
        if self.revoke_at is not None and self.revoke_at <= at:
            return ApiKeyReason.REVOKED
        if self.expires_at is not None and self.expires_at <= at:
            return ApiKeyReason.EXPIRED
        return None

    @property
    def slots_left(self) -> int | None:
        """Approvals left under ``scope.maxAgents``; None: unlimited."""
        if self.scope.max_agents is None:
            return None
        return max(0, self.scope.max_agents - self.approved_count)
