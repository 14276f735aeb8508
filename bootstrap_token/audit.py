"""The audit event schema shared by the webhook and the approver (docs/design.md, "Audit").

One event per decision, emitted as one JSON line on the ``agent_bootstrap.audit`` logger; the
approver also stores it. Events carry a ``jti``, a ``kid`` or a :func:`fingerprint` of a
credential, never a token, an API key or key material: the model has no field that could hold
one, and ``extra="forbid"`` keeps it that way.

Lines are read in terminals and log viewers, and some fields come from a pod (its name or
``generateName``, its service account): JSON escapes the C0 control characters, and
:func:`terminal_safe` escapes the rest of what a terminal acts on or reorders, in the same
``\\uXXXX`` form (the line decodes to the same values).
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AUDIT_LOGGER = "agent_bootstrap.audit"

#: What a terminal or a log viewer acts on or reorders beyond the C0 controls JSON escapes
#: anyway: DEL and the C1 controls (U+007F..U+009F; U+009B is a CSI), the bidirectional
#: formatting characters (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069: a U+202E
#: override shows ``exe.txt`` for ``txt.exe``) and the line and paragraph separators (U+2028,
#: U+2029).
TERMINAL_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def terminal_safe(line: str) -> str:
    """``line`` (a JSON document) with every :data:`TERMINAL_UNSAFE` character written as a
    JSON ``\\uXXXX`` escape. Such characters can only stand inside JSON strings, so the result
    is valid JSON that decodes to the same values; ``line`` itself when it holds none."""
    if TERMINAL_UNSAFE.search(line) is None:
        return line
    return TERMINAL_UNSAFE.sub(_escape, line)


Component = Literal["webhook", "approver", "certs-tooling"]


def fingerprint(secret: str | bytes) -> str:
    """A safe handle for a credential in logs: ``sha256:`` + the first 12 hex digits."""
    data = secret.encode("utf-8") if isinstance(secret, str) else secret
    return fingerprint_of_digest(hashlib.sha256(data).hexdigest())


def fingerprint_of_digest(sha256_hex: str) -> str:
    """:func:`fingerprint` of a credential whose SHA-256 hex digest is already at hand."""
    return "sha256:" + sha256_hex[:12]


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
        """The JSON line: unset fields omitted, :func:`terminal_safe`."""
        return terminal_safe(self.model_dump_json(exclude_none=True))


class AuditSink:
    """Writes events as JSON lines to the ``agent_bootstrap.audit`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def emit(self, event: AuditEvent) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.info(event.to_json())
