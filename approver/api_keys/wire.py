"""JSON shapes of the API-key admin API (requests validated with pydantic; answers built here).

A key's metadata, as listed and as returned with every action (never the secret, never its
hash)::

    {"id": "k5v2q3l7m4n6p7r2", "name": "docker-hosts-eu",
     "prefix": "abk_k5v2q3l7m4n6p7r2_",      # what the key string starts with
     "source": "api" | "secret",             # secret: provisioned from the mounted Secret
     "state": "active" | "rotating" | "revoked" | "expired",
     "scope": {"platforms": ["docker"], "agentIdPattern": "docker-eu-*", "maxAgents": 20},
     "approvedCount": 3,
     "createdAt": "2025-11-30T02:00:00Z", "createdBy": "alice",
     "expiresAt": null, "revokeAt": null, "revokedBy": null,
     "lastUsedAt": "2025-11-30T02:05:00Z", "replacedBy": null}
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from approver.api_keys.format import PREFIX
from approver.api_keys.records import ApiKeyRecord
from approver.api_keys.scope import ApiKeyScope

#: Longest lifetime a key can be given, in seconds: 10 years.
MAX_LIFETIME_SECONDS = 10 * 366 * 24 * 60 * 60


def rfc3339(value: datetime | None) -> str | None:
    """UTC with a ``Z`` suffix (what Go's ``time.Time`` decodes), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def key_json(record: ApiKeyRecord, *, at: datetime) -> dict[str, Any]:
    """A key's metadata (shape above), its ``state`` evaluated at ``at``."""
    return {
        "id": record.key_id,
        "name": record.name,
        "prefix": f"{PREFIX}{record.key_id}_",
        "source": record.source.value,
        "state": record.state(at).value,
        "scope": record.scope.to_json(),
        "approvedCount": record.approved_count,
        "createdAt": rfc3339(record.created_at),
        "createdBy": record.created_by,
        "expiresAt": rfc3339(record.expires_at),
        "revokeAt": rfc3339(record.revoke_at),
        "revokedBy": record.revoked_by,
        "lastUsedAt": rfc3339(record.last_used_at),
        "replacedBy": record.replaced_by,
    }


class _Wire(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )


class _Expiry(_Wire):
    expires_at: AwareDatetime | None = Field(
        default=None, alias="expiresAt", description="RFC 3339 time the key stops working."
    )
    expires_in_seconds: int | None = Field(
        default=None,
        alias="expiresInSeconds",
        ge=60,
        le=MAX_LIFETIME_SECONDS,
        description="Lifetime from now, in seconds (60 .. 10 years).",
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_at is not None and self.expires_in_seconds is not None:
            raise ValueError("give at most one of expiresAt and expiresInSeconds")
        return self

    def expiry(self, now: datetime) -> datetime | None:
        """The absolute expiry, or None."""
        if self.expires_in_seconds is not None:
            return now + timedelta(seconds=self.expires_in_seconds)
        return self.expires_at


class CreateKeyRequest(_Expiry):
    """``POST /api/v1/admin/api-keys`` body::

    {"name": "docker-hosts-eu", "scope": {...}, "expiresAt": "...Z" | "expiresInSeconds": 7776000}
    """

    name: str = Field(min_length=1, max_length=128)
    scope: ApiKeyScope = Field(default_factory=ApiKeyScope)


class RotateKeyRequest(_Expiry):
    """``POST /api/v1/admin/api-keys/{id}/rotate`` body (all optional)::

    {"graceSeconds": 86400, "expiresAt" | "expiresInSeconds": ...}
    """

    grace_seconds: int | None = Field(
        default=None,
        alias="graceSeconds",
        ge=0,
        description="How long the old key keeps working, in seconds. Default: the configured "
        "rotation grace (24 h).",
    )
