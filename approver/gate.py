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

With ``agentCertificates.enabled`` a client certificate presented in the handshake (chain,
validity and ``clientAuth`` already verified by TLS against the trusted agent CAs) must also name
this agent and be one of its live certificates (:meth:`approver.agent_certificates.
AgentCertificates.check_certificate`), and with ``requireAtGate`` a request without one is
refused (401 ``client_certificate_required``). The key is checked either way: the control plane
authenticates it upstream, so the certificate is a second factor the approver checks, not a
replacement of the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from approver.domain.credentials import sha256_hex
from approver.domain.records import AgentRecord, AgentStatus, ControlPlaneState
from approver.store import Store

if TYPE_CHECKING:
    from approver.agent_certificates import AgentCertificates

#: ``error`` codes of the gate's refusals.
MISSING_API_KEY = "missing_api_key"
INVALID_API_KEY = "invalid_api_key"
NOT_ACTIVE = "agent_not_active"
CERTIFICATE_REQUIRED = "client_certificate_required"


def require_active(record: AgentRecord, *, control_plane: bool) -> None:
    """Refuse an agent that is not ``active`` (and, with ``control_plane``, approved there):
    the gate's rule, shared with certificate issuance (approver.agent_certificates).

    Raises:
        GateRefusal: 403 ``agent_not_active``, with the record's status and reason.
    """
    if record.status is not AgentStatus.ACTIVE:
        raise GateRefusal(403, NOT_ACTIVE, f"the agent is {record.status.value}: {record.reason}")
    if control_plane and record.control_plane is not ControlPlaneState.APPROVED:
        raise GateRefusal(403, NOT_ACTIVE, "the agent is not approved in the control plane yet")


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
    """An authorized request: the agent's record, the SHA-256 hex of the key it used, and
    the serial (hex) of the client certificate it presented, if any."""

    record: AgentRecord
    key_digest: str
    serial: str | None = None


class AgentGate:
    """Authorizes agent traffic against the store (module docstring).

    Args:
        store: the agent store.
        certificates: agent certificates (``agentCertificates.enabled``), or None.
        require_certificate: refuse requests without a client certificate (``requireAtGate``).
    """

    def __init__(
        self,
        *,
        store: Store,
        certificates: AgentCertificates | None = None,
        require_certificate: bool = False,
    ) -> None:
        self._store = store
        self._certificates = certificates
        self._require_certificate = require_certificate

    async def authorize(
        self,
        *,
        agent_id: str,
        api_key: str | None,
        certificate: x509.Certificate | None = None,
    ) -> GatePass:
        """Check one request.

        Args:
            agent_id: the agent id the request is for (already checked for its characters).
            api_key: the ``X-Agent-API-Key`` value, or None.
            certificate: the client certificate of the handshake (chain-verified by TLS), or
                None.

        Raises:
            GateRefusal: 401 without a key (or without a certificate when one is required);
                403 for a key that is not this agent's current one, a certificate that does not
                name this agent or is not live, or an agent that is not active and approved in
                the control plane.
            StoreUnavailable: the database could not be read.
        """
        serial: str | None = None
        if certificate is not None and self._certificates is not None:
            serial = (
                await self._certificates.check_certificate(
                    agent_id=agent_id, certificate=certificate
                )
            ).serial
        elif self._require_certificate:
            raise GateRefusal(
                401,
                CERTIFICATE_REQUIRED,
                "this gate requires the agent's client certificate (POST "
                "/api/v1/agents/{agentId}/certificate issues one)",
            )
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
        require_active(record, control_plane=True)
        return GatePass(record=record, key_digest=digest, serial=serial)

    async def still_authorized(
        self, agent_id: str, key_digest: str, serial: str | None = None
    ) -> bool:
        """True while the agent is active, approved there, ``key_digest`` is its key, and the
        certificate ``serial`` it connected with (if any) is still live.

        Raises:
            StoreUnavailable.
        """
        record = await self._store.get_agent(agent_id)
        authorized = (
            record is not None
            and record.status is AgentStatus.ACTIVE
            and record.control_plane is ControlPlaneState.APPROVED
            and record.api_key_hash == key_digest
        )
        if authorized and serial is not None and self._certificates is not None:
            authorized = await self._certificates.is_live(agent_id=agent_id, serial=serial)
        return authorized
