"""Admin actions: list, read, approve, reject, revoke, delete, bulk-approve the pending agents
of one controller owner or of one Deployment, read the audit chain. Each call is one audit
event stored with the change it made, in its transaction, with the administrator as ``actor``.
No HTTP.

Actions and the lifecycle events they are (:mod:`approver.domain.lifecycle`):

=============  ================  ==========================  ===================================
action         event             from                        result
=============  ================  ==========================  ===================================
approve        admin_approve     pending, inactive,          active; ``approved_by_admin``
                                 rejected
approve        (none)            active                      unchanged, ``already_active``
reject         admin_reject      pending, active, inactive   rejected; ``rejected_by_admin``
reject         (none)            rejected                    unchanged, ``already_rejected``
revoke         admin_revoke      active                      inactive; ``revoked_by_admin``
revoke         (none)            inactive                    unchanged, ``already_inactive``
revoke         (refused)         pending, rejected           409 ``transition_not_allowed``
delete         admin_delete      any                         the row is gone (its audit events
                                                             and burnt ``jti`` stay)
bulk-approve   admin_approve     pending agents of one       active, each with its own event
               (each)            controller owner (UID) or
                                 Deployment (UID, or name
                                 and namespace), owner
                                 proven
=============  ================  ==========================  ===================================

Bulk approval selects only records whose owner was recorded from verified evidence
(``owner_evidence`` set: a verified credential bound the agent's pod, see
:mod:`approver.domain.decision`, "Owner"). A registration that proved nothing never has an
owner, so an agent id naming a pod of the workload is not enough to be approved with it.

Approve, reject and revoke lock the agent's row (PostgreSQL), so they serialise with a
registration retry of the same agent: the retry sees the action or runs before it, never half of
it. Reading actions (list, get, audit) store an event too: the audit log says who looked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from approver.agent_certs.records import RevokedReason
from approver.agent_certs.repository import revoke_agent
from approver.audit.chain import ChainedEvent
from approver.audit.events import emit_all, record_event
from approver.audit.text import audit_value
from approver.domain.decision import Reason
from approver.domain.lifecycle import LifecycleEvent, TransitionNotAllowed, allowed
from approver.domain.records import AgentRecord, AgentStatus
from approver.store import AgentFilter, AuditFilter, Store, StoreUnavailable, Transaction
from approver.transitions import write_transition
from bootstrap_token import AuditEvent, AuditSink

ALREADY_ACTIVE = "already_active"
ALREADY_REJECTED = "already_rejected"
ALREADY_INACTIVE = "already_inactive"
AGENT_NOT_FOUND = "agent_not_found"
DELETED_BY_ADMIN = "deleted_by_admin"
TRANSITION_NOT_ALLOWED = "transition_not_allowed"

#: Largest page of a list.
MAX_PAGE = 500

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Action:
    event: LifecycleEvent
    audit_event: str
    target: AgentStatus
    reason: str
    unchanged: str


_APPROVE = _Action(
    LifecycleEvent.ADMIN_APPROVE,
    "admin.approve",
    AgentStatus.ACTIVE,
    Reason.APPROVED_BY_ADMIN,
    ALREADY_ACTIVE,
)
_REJECT = _Action(
    LifecycleEvent.ADMIN_REJECT,
    "admin.reject",
    AgentStatus.REJECTED,
    Reason.REJECTED_BY_ADMIN,
    ALREADY_REJECTED,
)
_REVOKE = _Action(
    LifecycleEvent.ADMIN_REVOKE,
    "admin.revoke",
    AgentStatus.INACTIVE,
    Reason.REVOKED_BY_ADMIN,
    ALREADY_INACTIVE,
)


class AdminService:
    """The admin API's actions, independent of HTTP.

    Args:
        store: the agent store.
        audit: where audit events go (after their commit).
        clock: seconds since the epoch (``time.time``).
        on_approved: told of each agent an administrator took from pending to active (after
            the commit), for the time-to-approval metric.
    """

    def __init__(
        self,
        *,
        store: Store,
        audit: AuditSink,
        clock: Callable[[], float],
        on_approved: Callable[[AgentRecord], None] | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self._on_approved = on_approved

    def _approved(self, records: list[AgentRecord]) -> None:
        """Tell ``on_approved`` (the metrics) of agents this service took from pending to
        active, after the commit; its failure never affects the answer."""
        if self._on_approved is None:
            return
        for record in records:
            try:
                self._on_approved(record)
            except Exception:
                log.exception("on_approved failed")

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _record_read(self, event: AuditEvent) -> None:
        async with self._store.transaction() as tx:
            stored = await tx.append_audit(event)
        emit_all(self._audit, [stored])

    async def list_agents(
        self,
        *,
        actor: str,
        status: AgentStatus | None = None,
        where: AgentFilter | None = None,
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int = MAX_PAGE,
    ) -> list[AgentRecord]:
        """Records, oldest first, matching ``where``, after the keyset cursor ``after``.

        Raises:
            StoreUnavailable.
        """
        where = where or AgentFilter(status=status)
        if status is not None:
            where = replace(where, status=status)
        agents = await self._store.list_agents(
            where=where,
            after=after,
            limit=min(limit, MAX_PAGE),
        )
        await self._record_read(
            record_event(
                event="admin.list",
                decision="listed",
                reason="ok",
                at=self._now(),
                actor=actor,
                message=f"{_describe(where)} count={len(agents)}",
            )
        )
        return agents

    async def get_agent(self, *, agent_id: str, actor: str) -> AgentRecord | None:
        """One record, or None. Raises StoreUnavailable."""
        record = await self._store.get_agent(agent_id)
        await self._record_read(
            record_event(
                event="admin.get",
                decision="read" if record else "not_found",
                reason="ok" if record else AGENT_NOT_FOUND,
                at=self._now(),
                actor=actor,
                agent_id=agent_id,
                record=record,
            )
        )
        return record

    async def approve(self, *, agent_id: str, actor: str) -> AgentRecord | None:
        """Make the agent ``active``; its next registration with the credential that created it
        gets its per-agent API key (table above).

        Returns:
            The record after the action, or None when no agent has ``agent_id``.

        Raises:
            StoreUnavailable.
        """
        return await self._act(_APPROVE, agent_id=agent_id, actor=actor)

    async def reject(self, *, agent_id: str, actor: str) -> AgentRecord | None:
        """Make the agent ``rejected`` (table above); its registrations then get 403.

        Raises:
            StoreUnavailable.
        """
        return await self._act(_REJECT, agent_id=agent_id, actor=actor)

    async def revoke(self, *, agent_id: str, actor: str) -> AgentRecord | None:
        """Make an ``active`` agent ``inactive`` (table above); its key stops authenticating.

        Raises:
            TransitionNotAllowed: the agent is pending or rejected.
            StoreUnavailable.
        """
        return await self._act(_REVOKE, agent_id=agent_id, actor=actor)

    async def delete(self, *, agent_id: str, actor: str) -> AgentRecord | None:
        """Delete the agent's row; returns it as it was, or None when there was none.

        Raises:
            StoreUnavailable.
        """
        at = self._now()
        async with self._store.transaction() as tx:
            current = await tx.get_agent(agent_id, lock=True)
            revoked: list[str] = []
            if current is not None:
                await tx.delete_agent(current)
                # Its certificates must not count for a later record of the same agent id.
                revoked = await revoke_agent(
                    tx.connection, agent_id, at=at, reason=RevokedReason.AGENT_DELETED, by=actor
                )
            stored = await tx.append_audit(
                record_event(
                    event="admin.delete",
                    decision="deleted" if current else "not_found",
                    reason=DELETED_BY_ADMIN if current else AGENT_NOT_FOUND,
                    at=at,
                    actor=actor,
                    agent_id=agent_id,
                    record=current,
                    message=(
                        f"from={current.status.value}"
                        + (f" certificates_revoked={len(revoked)}" if revoked else "")
                        if current
                        else None
                    ),
                )
            )
        emit_all(self._audit, [stored])
        return current

    async def bulk_approve(
        self,
        *,
        actor: str,
        owner_uid: str | None = None,
        namespace: str | None = None,
        deployment_uid: str | None = None,
        deployment_name: str | None = None,
    ) -> list[AgentRecord]:
        """Approve every ``pending`` agent of one workload whose owner was recorded from
        verified evidence (module docstring): the controller owner with ``owner_uid``, or the
        Deployment with ``deployment_uid``, or the Deployment named ``deployment_name`` in
        ``namespace``; and, when given, in ``namespace``. One transaction, one audit event per
        agent plus one for the call.

        Returns:
            The approved records (empty when none was pending).

        Raises:
            ValueError: not exactly one of ``owner_uid``, ``deployment_uid``,
                ``deployment_name``; or ``deployment_name`` without ``namespace``.
            StoreUnavailable.
        """
        selectors = [owner_uid, deployment_uid, deployment_name]
        if sum(v is not None for v in selectors) != 1:
            raise ValueError("give exactly one of owner_uid, deployment_uid, deployment_name")
        if deployment_name is not None and namespace is None:
            raise ValueError("a Deployment name needs its namespace")
        at = self._now()
        async with self._store.transaction() as tx:
            pending = await tx.select_agents(
                statuses=(AgentStatus.PENDING,),
                owner_uid=owner_uid,
                deployment_uid=deployment_uid,
                deployment_name=deployment_name,
                proven_owner_only=True,
                namespace=namespace,
                lock=True,
            )
            approved = []
            events: list[AuditEvent] = []
            for record in pending:
                changed, stored = await write_transition(
                    tx,
                    record,
                    _APPROVE.event,
                    audit_event=_APPROVE.audit_event,
                    at=at,
                    actor=actor,
                    reason=_APPROVE.reason,
                    message=f"from={record.status.value}; bulk",
                )
                approved.append(changed)
                events.append(stored)
            events.append(
                await tx.append_audit(
                    record_event(
                        event="admin.bulk_approve",
                        decision="approved",
                        reason=Reason.APPROVED_BY_ADMIN,
                        at=at,
                        actor=actor,
                        message=f"{_selector(owner_uid, deployment_uid, deployment_name)} "
                        f"namespace={audit_value(namespace or 'any')} count={len(approved)}",
                    )
                )
            )
        emit_all(self._audit, events)
        self._approved(approved)
        return approved

    async def list_audit(
        self,
        *,
        actor: str,
        where: AuditFilter | None = None,
        after: int | None = None,
        before: int | None = None,
        descending: bool = False,
        limit: int = MAX_PAGE,
    ) -> list[ChainedEvent]:
        """Stored audit events (see :meth:`Store.list_audit`); the read is audited too.

        Raises:
            StoreUnavailable.
        """
        events = await self._store.list_audit(
            where=where,
            after=after,
            before=before,
            descending=descending,
            limit=min(limit, MAX_PAGE),
        )
        await self._record_read(
            record_event(
                event="admin.audit_list",
                decision="listed",
                reason="ok",
                at=self._now(),
                actor=actor,
                message=f"count={len(events)}",
            )
        )
        return events

    async def _act(self, action: _Action, *, agent_id: str, actor: str) -> AgentRecord | None:
        at = self._now()
        try:
            async with self._store.transaction() as tx:
                current = await tx.get_agent(agent_id, lock=True)
                result, stored = await self._transition(tx, action, current, agent_id, actor, at)
        except StoreUnavailable as exc:
            self._audit.emit(
                record_event(
                    event=action.audit_event,
                    decision="error",
                    reason="store_unavailable",
                    at=at,
                    actor=actor,
                    agent_id=agent_id,
                    message=str(exc),
                )
            )
            raise
        emit_all(self._audit, [stored])
        if isinstance(result, TransitionNotAllowed):
            raise result
        if (
            action is _APPROVE
            and result is not None
            and current is not None
            and current.status is AgentStatus.PENDING
        ):
            self._approved([result])
        return result

    async def _transition(
        self,
        tx: Transaction,
        action: _Action,
        current: AgentRecord | None,
        agent_id: str,
        actor: str,
        at: datetime,
    ) -> tuple[AgentRecord | TransitionNotAllowed | None, AuditEvent]:
        if current is None:
            event = record_event(
                event=action.audit_event,
                decision="not_found",
                reason=AGENT_NOT_FOUND,
                at=at,
                actor=actor,
                agent_id=agent_id,
            )
            return None, await tx.append_audit(event)
        if current.status is action.target:
            event = record_event(
                event=action.audit_event,
                decision=current.status.value,
                reason=action.unchanged,
                at=at,
                actor=actor,
                record=current,
                message=f"from={current.status.value}",
            )
            return current, await tx.append_audit(event)
        if not allowed(action.event, current):
            refused = TransitionNotAllowed(action.event, current.status)
            event = record_event(
                event=action.audit_event,
                decision="refused",
                reason=TRANSITION_NOT_ALLOWED,
                at=at,
                actor=actor,
                record=current,
                message=str(refused),
            )
            return refused, await tx.append_audit(event)
        return await write_transition(
            tx,
            current,
            action.event,
            audit_event=action.audit_event,
            at=at,
            actor=actor,
            reason=action.reason,
        )


def _selector(
    owner_uid: str | None, deployment_uid: str | None, deployment_name: str | None
) -> str:
    """The workload a bulk approval named, for its ``admin.bulk_approve`` message."""
    if owner_uid is not None:
        return f"owner_uid={audit_value(owner_uid)}"
    if deployment_uid is not None:
        return f"deployment_uid={audit_value(deployment_uid)}"
    return f"deployment={audit_value(deployment_name or '')}"


def _describe(where: AgentFilter) -> str:
    """The filters of a listing for its ``admin.list`` message, each value rendered by
    :func:`approver.audit.text.audit_value` (they come from the request)."""
    parts: Sequence[tuple[str, object]] = (
        ("status", where.status.value if where.status else None),
        ("namespace", where.namespace),
        ("method", where.approval_method.value if where.approval_method else None),
        ("owner_uid", where.owner_uid),
        ("deployment_uid", where.deployment_uid),
        ("deployment", where.deployment_name),
        ("expired", where.expired),
    )
    return " ".join(f"{k}={audit_value(str(v))}" for k, v in parts if v is not None) or "all"
