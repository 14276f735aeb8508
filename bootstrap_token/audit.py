"""The audit event schema shared by the webhook and the approver (docs/design.md, "Audit").

One event per decision, emitted as one JSON line on the ``agent_bootstrap.audit`` logger; the
approver also stores it. Events carry a ``jti``, a ``kid`` or a :func:`fingerprint` of a
credential, never a token, an API key or key material: the model has no field that could hold
one, and ``extra="forbid"`` keeps it that way.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AUDIT_LOGGER = "agent_bootstrap.audit"

Component = Literal["webhook", "approver", "certs-tooling"]


def fingerprint(secret: str | bytes) -> str:
    """A safe handle for a credential in logs: ``sha256:`` + the first 12 hex digits."""
    data = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


class AuditEvent(BaseModel):
    """One audit record. Optional fields are omitted from the JSON line when unset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    component: Component
    event: str = Field(description="What happened, e.g. 'admission.review', 'agent.register'.")
    decision: str = Field(description="Outcome, e.g. 'stamped', 'approved', 'pending'.")
    reason: str = Field(description="Stable snake_case reason code.")
    security: bool = Field(default=False, description="True for events a SOC should page on.")
    actor: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    pod: str | None = Field(default=None, description="Pod name, or generateName prefix.")
    service_account: str | None = None
    jti: str | None = None
    kid: str | None = None
    admission_uid: str | None = None
    agent_id: str | None = None
    approval_method: str | None = None
    credential: str | None = Field(default=None, description="fingerprint() of a credential.")
    dry_run: bool | None = None
    message: str | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class AuditSink:
    """Writes events as JSON lines to the ``agent_bootstrap.audit`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def emit(self, event: AuditEvent) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.info(event.to_json())
