"""Admin actions: list agents, approve, reject. Each writes one audit event. No HTTP.

An approve or reject is one transaction on the agent's row (locked on PostgreSQL), so it
serialises with a registration retry of the same agent: the retry either sees the decision or
runs before it, never half of it.

Transitions:

=========  =============================================  ==========================
action     from                                           to
=========  =============================================  ==========================
approve    pending, rejected, inactive                    active, approval_method
                                                          ``manual``, reason
                                                          ``approved_by_admin``
approve    active                                         unchanged (``already_active``)
reject     pending, active, inactive                      rejected, reason
                                                          ``rejected_by_admin``
reject     rejected                                       unchanged (``already_rejected``)
=========  =============================================  ==========================

``approved_by``/``approved_at`` record the actor and time of the last approve *or* reject.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from approver.decision import Reason
from approver.records import AgentRecord, AgentStatus, ApprovalMethod
from approver.store import Store, StoreUnavailable
from bootstrap_token import AuditEvent, AuditSink

ALREADY_ACTIVE = "already_active"
ALREADY_REJECTED = "already_rejected"
AGENT_NOT_FOUND = "agent_not_found"


class AdminService:
    """The admin API's actions, independent of HTTP.

    Args:
        store: the agent store.
        audit: where audit events go.
        clock: seconds since the epoch (``time.time``).
    """

    def __init__(self, *, store: Store, audit: AuditSink, clock: Callable[[], float]) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    async def list_agents(
        self, *, actor: str, status: AgentStatus | None = None
    ) -> list[AgentRecord]:
        """Records, oldest first, optionally only those with ``status``.

        Raises:
            StoreUnavailable.
        """
        agents = await self._store.list_agents(status=status)
        self._emit(
            event="admin.list",
            decision="listed",
            reason="ok",
            actor=actor,
            message=f"status={status.value if status else 'any'} count={len(agents)}",
        )
        return agents

    async def approve(self, *, agent_id: str, actor: str) -> AgentRecord | None:
        """Make the agent ``active`` with approval method ``manual`` (table above).

        Returns:
            The record after the action, or None when no agent has ``agent_id``.

        Raises:
            StoreUnavailable.
        """
        return await self._decide(
            agent_id=agent_id,
            actor=actor,
            event="admin.approve",
            target=AgentStatus.ACTIVE,
            unchanged_reason=ALREADY_ACTIVE,
        )

    async def reject(self, *, agent_id: str, actor: str) -> AgentRecord | None:
        """Make the agent ``rejected`` (table above); its registrations then get 403.

        Returns:
            The record after the action, or None when no agent has ``agent_id``.

        Raises:
            StoreUnavailable.
        """
        return await self._decide(
            agent_id=agent_id,
            actor=actor,
            event="admin.reject",
            target=AgentStatus.REJECTED,
            unchanged_reason=ALREADY_REJECTED,
        )

    async def _decide(
        self,
        *,
        agent_id: str,
        actor: str,
        event: str,
        target: AgentStatus,
        unchanged_reason: str,
    ) -> AgentRecord | None:
        at = datetime.fromtimestamp(self._clock(), UTC)
        try:
            async with self._store.transaction() as tx:
                current = await tx.get_agent(agent_id, lock=True)
                if current is None or current.status is target:
                    updated = None
                else:
                    updated = _transition(current, target=target, actor=actor, at=at)
                    await tx.update_agent(updated)
        except StoreUnavailable as exc:
            self._emit(
                event=event,
                decision="error",
                reason="store_unavailable",
                actor=actor,
                agent_id=agent_id,
                message=str(exc),
            )
            raise
        if current is None:
            self._emit(
                event=event,
                decision="not_found",
                reason=AGENT_NOT_FOUND,
                actor=actor,
                agent_id=agent_id,
            )
            return None
        result = updated or current
        self._emit(
            event=event,
            decision=result.status.value,
            reason=result.reason if updated else unchanged_reason,
            actor=actor,
            agent_id=agent_id,
            record=result,
            message=f"from={current.status.value}",
        )
        return result

    def _emit(
        self,
        *,
        event: str,
        decision: str,
        reason: str,
        actor: str,
        agent_id: str | None = None,
        record: AgentRecord | None = None,
        message: str | None = None,
    ) -> None:
        self._audit.emit(
            AuditEvent(
                component="approver",
                event=event,
                decision=decision,
                reason=reason,
                actor=actor,
                agent_id=agent_id,
                approval_method=(
                    record.approval_method.value if record and record.approval_method else None
                ),
                cluster=record.cluster if record else None,
                namespace=record.namespace if record else None,
                pod=record.pod_name if record else None,
                jti=record.jti if record else None,
                kid=record.kid if record else None,
                message=message,
            )
        )


def _transition(
    current: AgentRecord, *, target: AgentStatus, actor: str, at: datetime
) -> AgentRecord:
    if target is AgentStatus.ACTIVE:
        return replace(
            current,
            status=AgentStatus.ACTIVE,
            approval_method=ApprovalMethod.MANUAL,
            approved_by=actor,
            approved_at=at,
            reason=Reason.APPROVED_BY_ADMIN,
            updated_at=at,
        )
    return replace(
        current,
        status=AgentStatus.REJECTED,
        approval_method=None,
        approved_by=actor,
        approved_at=at,
        reason=Reason.REJECTED_BY_ADMIN,
        updated_at=at,
    )
