"""The control-plane port: what the approver needs from the control plane its agents work in.

An approval only counts where the agent works. The approver decides; the control plane
(StreamSpace first) keeps its own agent records, hands agents the keys it accepts, and runs
their WebSocket. A :class:`ControlPlane` adapter makes the approver's decisions take effect
there through the control plane's own API, with no change to its code:

* :meth:`ControlPlane.admit`: the agent shows up *pending* in the control plane's own list, so
  its administrators see it (StreamSpace: a registration with its shared bootstrap key);
* :meth:`ControlPlane.grant`: the agent is approved there and gets a fresh key the control plane
  accepts (StreamSpace: approve, or rotate-key when it is approved already: never a second
  approve); the approver keeps only the key's SHA-256;
* :meth:`ControlPlane.approve`, :meth:`ControlPlane.reject`, :meth:`ControlPlane.remove`: an
  administrator's decision in the approver, and a deleted pod, reflected there;
* :meth:`ControlPlane.snapshot`: the control plane's own list, read for its administrators'
  decisions (never by registering, which would mark an agent online);
* :attr:`ControlPlane.upstream`: where the agent gate (:mod:`approver.gate`) forwards an approved
  agent's later traffic (StreamSpace: the WebSocket ``/api/v1/agents/connect``).

Errors (the registration use case maps each to an answer the agent's code handles)::

    ControlPlaneError
     +-- ControlPlaneUnavailable   down, slow, rate-limited past the budget, misconfigured:
     |                             202 pending + Retry-After, nothing written
     +-- ControlPlaneRefused       it would never accept this registration (its validation):
     |                             400, as the control plane itself would answer
     +-- ControlPlaneRejected      its administrator rejected the agent, or removed an approved
                                   one: 403 rejected, recorded
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from approver.domain.records import ControlPlaneState

__all__ = [
    "AgentIntent",
    "ControlPlane",
    "ControlPlaneAgent",
    "ControlPlaneError",
    "ControlPlaneRefused",
    "ControlPlaneRejected",
    "ControlPlaneState",
    "ControlPlaneUnavailable",
    "Grant",
    "Upstream",
]


class ControlPlaneError(Exception):
    """Base of the control plane's errors. Messages never hold a key or a token."""


class ControlPlaneUnavailable(ControlPlaneError):
    """The control plane could not be reached or did not answer in time.

    Attributes:
        retry_after: seconds the control plane asked to wait (a 429's ``retryAfter``), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ControlPlaneRefused(ControlPlaneError):
    """The control plane refuses this registration for good (its request validation).

    Attributes:
        status: the HTTP status to answer the agent with (400).
        code: a reason code for the answer and the audit event.
    """

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ControlPlaneRejected(ControlPlaneError):
    """The control plane's administrator decided against this agent.

    Attributes:
        reason: ``rejected_in_control_plane`` (rejected while pending) or
            ``removed_in_control_plane`` (an approved agent's record was deleted there).
        decided_by: who decided, as the control plane names them (StreamSpace: a user id).
    """

    def __init__(self, message: str, *, reason: str, decided_by: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.decided_by = decided_by


@dataclass(frozen=True, slots=True)
class AgentIntent:
    """The agent as the control plane must see it.

    Attributes:
        agent_id: the agent's id (already checked by :mod:`approver.domain.identifiers`).
        body: the registration body the control plane receives: the members it reads, as the
            agent sent them (:func:`approver.domain.requests.forwarded_body`); a body rebuilt from
            the
            record when the sync loop acts without a request.
        client_ip: the agent's address as the approver saw it (forwarded as
            ``X-Forwarded-For``, so the control plane's per-client limits apply per agent as
            before), None when unknown.
    """

    agent_id: str
    body: bytes = field(repr=False)
    client_ip: str | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """A key the control plane accepts from this one agent, just made.

    Attributes:
        credential: the key, shown to the agent once; the approver stores its SHA-256 only.
        rotated: True when it replaced an existing key (the old one stopped working at once).
    """

    credential: str = field(repr=False)
    rotated: bool = False


@dataclass(frozen=True, slots=True)
class ControlPlaneAgent:
    """One agent of the control plane's own list.

    Attributes:
        agent_id: its id.
        state: ``pending``, ``approved`` or ``rejected`` there.
        decided_by: who approved or rejected it there (None while pending).
        decided_at: when (timezone-aware), or None.
        online: True when the control plane says the agent is connected.
    """

    agent_id: str
    state: ControlPlaneState
    decided_by: str | None = None
    decided_at: datetime | None = None
    online: bool = False


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where the agent gate forwards an approved agent's traffic.

    Attributes:
        base_url: ``http(s)://host:port`` of the control plane's agent API.
        paths: the agent paths the gate serves and forwards (``{agent_id}`` a path segment).
        ssl: the TLS client context for an https ``base_url`` (None: default trust).
    """

    base_url: str
    paths: tuple[str, ...]
    ssl: ssl.SSLContext | None = None


class ControlPlane(Protocol):
    """A control plane's adapter (module docstring). Implementations retry within their own
    time budget and raise :class:`ControlPlaneUnavailable` past it; every method is safe to
    call again (idempotent in effect)."""

    name: str
    upstream: Upstream
    #: Most seconds one operation may take, retries included.
    budget_seconds: float

    def refusal(self, body: Mapping[str, object]) -> str | None:
        """Why the control plane would refuse this registration body (its validation), or
        None. Checked before anything is written, so a body the control plane refuses never
        leaves a record behind."""
        ...

    async def admit(
        self, agent: AgentIntent, *, deadline: float | None = None
    ) -> ControlPlaneState:
        """Make the agent known there as pending, unless it is known already. Returns its
        state there afterwards (``pending``, or the decision its administrators made).

        ``deadline`` (``time.monotonic`` seconds, for this and :meth:`grant`): finish by then
        at the latest, whatever the budget left (a registration's own deadline)."""
        ...

    async def grant(
        self,
        agent: AgentIntent,
        *,
        known: ControlPlaneState | None,
        deadline: float | None = None,
    ) -> Grant:
        """Approve the agent there if it is not approved yet, and return a fresh key.

        Args:
            agent: the agent.
            known: its state there as the approver last recorded it (a hint; the adapter
                finds out when it is stale).

        Raises:
            ControlPlaneRejected: its administrator rejected it, or deleted it while approved.
            ControlPlaneRefused, ControlPlaneUnavailable: see the module docstring.
        """
        ...

    async def approve(self, agent: AgentIntent) -> ControlPlaneState:
        """Approve the agent there (an administrator approved it in the approver); no key is
        kept: the agent gets one from :meth:`grant` at its next registration."""
        ...

    async def reject(self, agent_id: str) -> ControlPlaneState:
        """Reject a pending agent there, or remove an approved one (its key stops working)."""
        ...

    async def remove(self, agent_id: str) -> None:
        """Deregister the agent there (its pod is gone, or it was revoked). Absent is done."""
        ...

    async def snapshot(self) -> Mapping[str, ControlPlaneAgent]:
        """The control plane's own list of agents, by agent id."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
