"""``pendingLimits`` settings (mounted into the approver's settings as ``pendingLimits``).

YAML (camelCase; environment ``AGENT_BOOTSTRAP_APPROVER_PENDING_LIMITS__PER_SOURCE_BURST=20``
etc.)::

    pendingLimits:
      enabled: true
      perSourcePerSecond: 1        # new pending records per source address, per second
      perSourceBurst: 10           # ... at once
      overallPerSecond: 20         # from all addresses together, per second
      overallBurst: 100            # ... at once
      maxPerNamespace: 1000        # pending records without a credential per namespace bucket
      trackedSources: 10000        # source addresses remembered (least recently seen go first)

They bound only registrations that would *create* a pending record without a valid credential
for the agent (:mod:`approver.domain.pending_limits`); an agent holding one is never limited.

Why these defaults: StreamSpace's agent registers once, then every 30 s while pending, and each
agent pod has an address of its own, so 10 at once and one a second per address is far above
what an honest address sends (StreamSpace itself allows 60 registrations a minute per client).
20 a second and 100 at once overall is a fleet of unstamped agents arriving together, taking a
few seconds longer (each waits for its next retry), while a flood adds at most 72,000 rows an
hour, about 2 % of what one approver process can write, and never more than the cap. 1,000
pending per namespace is more than an administrator reviews by hand; the total stays at most
1,000 x (trusted namespaces + 1).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PendingLimitSettings(BaseModel):
    """``pendingLimits``: how fast, and how many, pending records registrations without a
    credential may create."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    enabled: bool = Field(
        default=True,
        description="Default true. False: registrations without a credential create pending "
        "records as fast and as many as they come (the behaviour before these limits).",
    )
    per_source_per_second: float = Field(
        default=1.0,
        alias="perSourcePerSecond",
        gt=0,
        le=10_000,
        description="New pending records per second one source address may create without a "
        "credential. Default 1.",
    )
    per_source_burst: int = Field(
        default=10,
        alias="perSourceBurst",
        ge=1,
        le=100_000,
        description="... and at once (the bucket's size). Default 10.",
    )
    overall_per_second: float = Field(
        default=20.0,
        alias="overallPerSecond",
        gt=0,
        le=100_000,
        description="New pending records per second all addresses together may create without "
        "a credential. Default 20.",
    )
    overall_burst: int = Field(
        default=100,
        alias="overallBurst",
        ge=1,
        le=1_000_000,
        description="... and at once. Default 100.",
    )
    max_per_namespace: int | None = Field(
        default=1000,
        alias="maxPerNamespace",
        ge=1,
        le=10_000_000,
        description="Most pending records without a credential per namespace they claim "
        "(metadata.podNamespace, else metadata.namespace) when trust.namespaces lists it, and "
        "for all other claims together; beyond it a registration waits (202, "
        "pending_namespace_full) until an administrator acts. null: no cap. Default 1000.",
    )
    tracked_sources: int = Field(
        default=10_000,
        alias="trackedSources",
        ge=1,
        le=1_000_000,
        description="Source addresses whose rate is tracked at once; the least recently seen "
        "is forgotten first (as if its bucket were full again). Default 10000.",
    )
