"""Credential review for the control plane: is this per-agent API key valid, and whose is it?

Like Kubernetes' TokenReview (``authentication.k8s.io/v1``): a control plane that accepted an
agent's WebSocket asks the approver about the key the agent presented, instead of sharing the
approver's database. :meth:`CredentialReviewer.review` answers:

* ``authenticated: true`` when the key is a well-formed ``aga_`` key whose hash is an agent's
  and that agent is ``active`` (reason ``ok``);
* ``authenticated: false`` with reason ``malformed_key`` (not an agent key; no lookup),
  ``unknown_key`` (no agent has it: never issued, or replaced after a re-bind or a re-approval),
  or ``agent_not_active`` (the agent is pending, inactive or rejected: its id and status are
  still told, so the control plane can drop it).

Every review is an audit event (``agent.review``, the caller as actor, the key's fingerprint as
credential), stored in the chain. The key itself is never stored, logged or returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from approver.audit.events import emit_all, record_event
from approver.domain.agent_keys import is_agent_key, key_digest
from approver.domain.records import AgentRecord, AgentStatus
from approver.store import Store
from bootstrap_token import AuditSink, fingerprint

OK = "ok"
MALFORMED_KEY = "malformed_key"
UNKNOWN_KEY = "unknown_key"
AGENT_NOT_ACTIVE = "agent_not_active"
EVENT = "agent.review"


@dataclass(frozen=True, slots=True)
class ReviewResult:
    """The review's answer: ``authenticated``, the agent (when the key is one's) and why."""

    authenticated: bool
    agent: AgentRecord | None
    reason: str


class CredentialReviewer:
    """Reviews per-agent API keys.

    Args:
        store: the agent store.
        audit: where audit events go (after their commit).
        clock: seconds since the epoch.
    """

    def __init__(self, *, store: Store, audit: AuditSink, clock: Callable[[], float]) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    async def review(self, *, api_key: str, actor: str) -> ReviewResult:
        """Review ``api_key`` for ``actor`` (the authenticated caller).

        Raises:
            StoreUnavailable.
        """
        agent: AgentRecord | None = None
        if not is_agent_key(api_key):
            result = ReviewResult(False, None, MALFORMED_KEY)
        else:
            agent = await self._store.get_agent_by_key(key_digest(api_key))
            if agent is None:
                result = ReviewResult(False, None, UNKNOWN_KEY)
            elif agent.status is not AgentStatus.ACTIVE:
                result = ReviewResult(False, agent, AGENT_NOT_ACTIVE)
            else:
                result = ReviewResult(True, agent, OK)
        event = record_event(
            event=EVENT,
            decision="authenticated" if result.authenticated else "unauthenticated",
            reason=result.reason,
            at=datetime.fromtimestamp(self._clock(), UTC),
            actor=actor,
            record=agent,
            security=result.reason == UNKNOWN_KEY,
        )
        event = event.model_copy(update={"credential": fingerprint(api_key)})
        async with self._store.transaction() as tx:
            stored = await tx.append_audit(event)
        emit_all(self._audit, [stored])
        return result
