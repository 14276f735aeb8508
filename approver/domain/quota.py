"""The optional auto-approval quota: at most N active auto-approved agents per namespace and per
controller owner. Pure; the store counts (:meth:`approver.store.Transaction.count_active_auto`).

Why: a trusted namespace that is compromised can create pods at will, and every one of them
would get a valid bootstrap token. The quota bounds what such a namespace (or one runaway
ReplicaSet) can add to the control plane without a human: beyond it, agents go ``pending`` with
reason ``quota_exceeded`` and an administrator decides (or a retry succeeds once others left).

Only *automatic* approvals are limited (``namespace``, ``api_key``, ``service_account``), and
only those that make an agent ``active`` now; manual approvals and an already active agent's
retries are not. Counts are taken in the decision's transaction after a lock per namespace and
per owner (PostgreSQL advisory transaction locks; SQLite serialises writers anyway), so two
replicas cannot both admit the N-th agent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """``autoApprove.maxActivePerNamespace`` / ``maxActivePerOwner``; None: unlimited."""

    per_namespace: int | None = None
    per_owner: int | None = None

    @property
    def enabled(self) -> bool:
        return self.per_namespace is not None or self.per_owner is not None


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """Active auto-approved agents now (not counting the one being decided); None: not
    counted (no limit, or the decision has no namespace/owner)."""

    namespace_active: int | None = None
    owner_active: int | None = None


def exceeded(usage: QuotaUsage, policy: QuotaPolicy) -> bool:
    """True when admitting one more agent would pass a limit."""
    checks = (
        (policy.per_namespace, usage.namespace_active),
        (policy.per_owner, usage.owner_active),
    )
    return any(limit is not None and used is not None and used >= limit for limit, used in checks)


def lock_key(kind: str, value: str) -> int:
    """A signed 64-bit key for ``pg_advisory_xact_lock``, stable across processes."""
    digest = hashlib.sha256(f"agent-bootstrap-quota:{kind}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
