"""The agent gate: an approved agent's later traffic reaches the control plane only with the
key bound to its agent id, while it is active. No HTTP (that is :mod:`approver.http.gate`).

Why a gate: StreamSpace's shared ``AGENT_BOOTSTRAP_KEY`` is a master key. Its middleware
accepts it for *any* agent id on every agent route, the WebSocket ``/api/v1/agents/connect``
included, and its connect handler never checks approval
(``api/internal/middleware/agent_auth.go`` ``RequireAuth``,
``api/internal/handlers/agent_websocket.go`` ``HandleAgentConnection``, commit ``c4fc035``).
So agents reach StreamSpace only through the approver (a NetworkPolicy keeps them from going
around it, docs/streamspace.md), and the approver lets through exactly:

* the key the control plane issued *to this agent* through the approver (only its SHA-256 is
  kept), presented for that agent's own id (``?agent_id`` or the path), and
* only while the agent's record is ``active`` and the control plane has it approved.

Anything else is refused before the control plane sees it: no key (401), the shared key, a
bootstrap token, another agent's key, a replaced key (403 ``invalid_api_key``), an agent that is
pending, inactive (its pod is gone), revoked or rejected (403 with the record's reason). Open
connections are checked again every ``controlPlane.gateRecheckSeconds`` and closed once their
key no longer authorizes them (:meth:`AgentGate.still_authorized`).
"""

from __future__ import annotations

from dataclasses import dataclass

from approver.domain.credentials import sha256_hex
from approver.domain.records import AgentRecord, AgentStatus, ControlPlaneState
from approver.store import Store

#: ``error`` codes of the gate's refusals.
MISSING_API_KEY = "missing_api_key"
INVALID_API_KEY = "invalid_api_key"
NOT_ACTIVE = "agent_not_active"


class GateRefusal(Exception):
    """The request may not pass. ``status`` (401/403), ``code`` and a human ``message``; the
    message never holds the presented value."""

    def __init__(self, status: int, code: str, message: str, *, security: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.security = security


@dataclass(frozen=True, slots=True)
class GatePass:
    """An authorized request: the agent's record and the SHA-256 hex of the key it used."""

    record: AgentRecord
    key_digest: str


class AgentGate:
    """Authorizes agent traffic against the store (module docstring).

    Args:
        store: the agent store.
    """

    def __init__(self, *, store: Store) -> None:
        self._store = store

    async def authorize(self, *, agent_id: str, api_key: str | None) -> GatePass:
        """Check one request.

        Args:
            agent_id: the agent id the request is for (already checked for its characters).
            api_key: the ``X-Agent-API-Key`` value, or None.

        Raises:
            GateRefusal: 401 without a key; 403 for a key that is not this agent's current
                one, or an agent that is not active and approved in the control plane.
            StoreUnavailable: the database could not be read.
        """
        if not api_key:
            raise GateRefusal(401, MISSING_API_KEY, "X-Agent-API-Key header is required")
        digest = sha256_hex(api_key)
        record = await self._store.get_agent_by_key(digest)
        if record is None or record.agent_id != agent_id:
            raise GateRefusal(
                403,
                INVALID_API_KEY,
                "the key is not this agent's current key (register to get one)",
                security=True,
            )
        if record.status is not AgentStatus.ACTIVE:
            raise GateRefusal(
                403, NOT_ACTIVE, f"the agent is {record.status.value}: {record.reason}"
            )
        if record.control_plane is not ControlPlaneState.APPROVED:
            raise GateRefusal(403, NOT_ACTIVE, "the agent is not approved in the control plane yet")
        return GatePass(record=record, key_digest=digest)

    async def still_authorized(self, agent_id: str, key_digest: str) -> bool:
        """True while the agent is active, approved there, and ``key_digest`` is its key.

        Raises:
            StoreUnavailable.
        """
        record = await self._store.get_agent(agent_id)
        return (
            record is not None
            and record.status is AgentStatus.ACTIVE
            and record.control_plane is ControlPlaneState.APPROVED
            and record.api_key_hash == key_digest
        )
