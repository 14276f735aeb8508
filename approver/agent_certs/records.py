"""One issued agent certificate, as the approver keeps it (a row of ``agent_certificates``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class IssuedWith(StrEnum):
    """The credential that authorized an issuance."""

    API_KEY = "api_key"  #: the agent's current per-agent key (first certificate)
    CERTIFICATE = "certificate"  #: a live certificate of the same agent (a renewal)


class RevokedReason(StrEnum):
    """Why a certificate stopped counting before its notAfter."""

    REVOKED = "revoked"  #: an administrator revoked it
    SUPERSEDED = "superseded"  #: the agent was issued newer ones (``maxLivePerAgent``)
    AGENT_INACTIVE = "agent_inactive"  #: its agent left ``active`` (pod deleted, revoked, ...)
    AGENT_DELETED = "agent_deleted"  #: an administrator deleted its agent
    AGENT_REBOUND = "agent_rebound"  #: an active agent was bound to a new credential or pod


@dataclass(frozen=True, slots=True)
class CertificateRow:
    """One issued certificate. ``serial`` is lowercase hex without leading zeros; times are
    aware UTC datetimes; ``sha256`` is over the certificate's DER, ``issuer_sha256`` over the
    issuing CA certificate's DER."""

    serial: str
    agent_id: str
    sha256: str
    issued_at: datetime
    not_before: datetime
    not_after: datetime
    issued_with: IssuedWith
    issuer_sha256: str
    revoked_at: datetime | None = None
    revoked_reason: RevokedReason | None = None
    revoked_by: str | None = None

    def live(self, now: datetime) -> bool:
        """Not revoked and inside its validity at ``now``."""
        return self.revoked_at is None and self.not_before <= now < self.not_after


def serial_hex(serial: int) -> str:
    """The ``serial`` column's spelling of a serial number."""
    return format(serial, "x")
