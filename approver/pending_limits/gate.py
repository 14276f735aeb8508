"""The gate the registrar asks before a registration without a credential creates a pending
record (rules: :mod:`approver.domain.pending_limits`).

:meth:`PendingGate.check` runs inside the decision's transaction, after the decision is known
(only a creation is limited, and only the transaction can tell whether the agent is new): first
the rates (in memory), then, when they pass, the namespace bucket's count, after an advisory
lock on the bucket (PostgreSQL; SQLite serialises writers) so that two replicas cannot both
admit the last record. One registration is judged once (:class:`Admission`): a transaction run
again (a conflict, a shared transaction rolled back, the control plane's preview then the
write) reuses the verdict, so a retry never takes a second token. With a control plane the
verdict is reached in the read-only preview, before the control plane is asked anything, and
its count is not locked: concurrent registrations may then pass the cap by how many are in
flight at once.

Metric: ``agent_bootstrap_approver_pending_limited_total{limit="source"|"overall"|"namespace"}``,
on :attr:`PendingGate.registry` (the approver serves no metrics endpoint yet; the audit line of
each limited registration says the same).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

from approver.domain.decision import Decision, Facts
from approver.domain.pending_limits import (
    PendingLimited,
    PendingLimiter,
    PendingLimitPolicy,
    RateLimit,
    limited_creation,
    namespace_bucket,
    namespace_full,
)
from approver.domain.quota import lock_key
from approver.store.pending_rows import count_unbound_pending
from approver.store.transaction import Transaction

if TYPE_CHECKING:
    from approver.config import ApproverSettings

METRIC = "agent_bootstrap_approver_pending_limited"


@dataclass(slots=True)
class Admission:
    """One registration's verdict, once reached: ``decided``, and the refusal (None: admitted)."""

    decided: bool = False
    refusal: PendingLimited | None = None


class PendingGate:
    """The limits of one approver process.

    Args:
        policy: the rates, the cap, the tracked sources.
        known_namespaces: the namespaces a claim may name as its own bucket
            (``trust.namespaces``).
        clock: monotonic seconds (``time.monotonic``).
        registry: where the metric is registered (default: a registry of its own).
    """

    def __init__(
        self,
        policy: PendingLimitPolicy,
        *,
        known_namespaces: frozenset[str],
        clock: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.limiter = PendingLimiter(policy, clock=clock)
        self._known = known_namespaces
        self.registry = registry if registry is not None else CollectorRegistry()
        self.limited_total = Counter(
            METRIC,
            "Registrations without a credential answered 202 pending + Retry-After with nothing "
            "written, by the limit that refused them.",
            ["limit"],
            registry=self.registry,
        )

    async def check(
        self,
        tx: Transaction,
        facts: Facts,
        decision: Decision,
        admission: Admission,
        *,
        lock: bool,
    ) -> PendingLimited | None:
        """The refusal of a registration whose ``decision`` would create a pending record
        without a valid credential, or None (admitted, or not limited at all). ``lock``: take
        the bucket's advisory lock before counting (the writing transaction)."""
        if not limited_creation(decision, facts):
            return None
        if admission.decided:
            return admission.refusal
        policy = self.limiter.policy
        refusal = self.limiter.take(facts.source_address)
        if refusal is None and policy.max_per_namespace is not None:
            bucket = namespace_bucket(facts.request.metadata, self._known)
            if lock:
                await tx.lock_keys([lock_key("pending-namespace", bucket or "")])
            pending = await count_unbound_pending(tx, bucket=bucket, known=self._known)
            refusal = namespace_full(bucket, pending, policy.max_per_namespace)
        admission.decided = True
        admission.refusal = refusal
        if refusal is not None:
            self.limited_total.labels(refusal.limit.value).inc()
        return refusal


def pending_gate(
    settings: ApproverSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    registry: CollectorRegistry | None = None,
) -> PendingGate | None:
    """The gate ``pendingLimits`` describes, or None when it is disabled; its counter goes on
    ``registry`` (the approver's metrics) when given."""
    limits = settings.pending_limits
    if not limits.enabled:
        return None
    policy = PendingLimitPolicy(
        per_source=RateLimit(limits.per_source_per_second, limits.per_source_burst),
        overall=RateLimit(limits.overall_per_second, limits.overall_burst),
        max_per_namespace=limits.max_per_namespace,
        tracked_sources=limits.tracked_sources,
    )
    return PendingGate(
        policy, known_namespaces=settings.trust.namespaces, clock=clock, registry=registry
    )
