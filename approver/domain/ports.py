"""The ports of the decision engine and of the registration use case: what they need from the
credential paths of decision steps 3 and 4 (:class:`CredentialVerifier`) and from extra checks of
step 2 (:class:`BootstrapCheck`). Protocols only; the implementations live at the edge
(:mod:`approver.verifiers`, :mod:`approver.api_keys`, :mod:`approver.service_accounts`), the
live pod's port in :mod:`approver.domain.binding` (:class:`~approver.domain.binding.PodSource`)
and the control plane's in :mod:`approver.domain.control_plane`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from approver.domain.credential_outcome import CredentialOutcome
from approver.domain.records import ApprovalMethod
from approver.domain.requests import RegistrationRequest
from bootstrap_token import BootstrapClaims

if TYPE_CHECKING:
    from approver.store import Transaction


class CredentialVerifier(Protocol):
    """Decision step 3 or 4. Implementations hold their keys and clients, loaded once."""

    @property
    def method(self) -> ApprovalMethod:
        """``API_KEY`` or ``SERVICE_ACCOUNT``: which step this verifier is."""
        ...

    async def verify(
        self, *, request: RegistrationRequest, headers: Mapping[str, str], now: float
    ) -> CredentialOutcome:
        """Check the request's credential of this verifier's kind, before the transaction.

        Args:
            request: the validated registration body.
            headers: the request headers (case-insensitive mapping).
            now: seconds since the epoch (the registrar's clock).

        Returns:
            ``not_applicable`` when the request presents no such credential or the path is
            disabled; else ``accepted`` or ``refused`` with a reason code. Never contains the
            credential.

        Raises:
            StoreUnavailable: only if the verifier reads the database and cannot (503).
        """
        ...

    async def claim(self, tx: Transaction, outcome: CredentialOutcome, *, now: float) -> str | None:
        """Claim what an approval by ``outcome`` consumes, in the approval's transaction.

        Called only for this verifier's ``accepted`` outcome, when the decision approves with
        it and is about to be written.

        Returns:
            None: go ahead. A reason code: do not approve; the agent goes pending with it.

        Raises:
            StoreUnavailable, StoreConflict: as any statement in the transaction.
        """
        ...


@dataclass(frozen=True, slots=True)
class CheckRefusal:
    """A :class:`BootstrapCheck`'s refusal: the reason code, and whether it is a 403 with a
    security audit event (True) or a pending reason (False)."""

    reason: str
    security: bool = False


class BootstrapCheck(Protocol):
    """An extra, pure check of step 2, run after the bootstrap token verified and bound."""

    def __call__(
        self,
        *,
        claims: BootstrapClaims,
        agent_pod_name: str | None,
        bound_pod_uid: str | None,
        outcomes: tuple[CredentialOutcome, ...],
    ) -> CheckRefusal | None:
        """None to let the token approve; else why not.

        Args:
            claims: the verified token's claims.
            agent_pod_name: the pod name derived from the agent.
            bound_pod_uid: the live pod's UID (Kubernetes access), when known.
            outcomes: every step-3/4 outcome of the request (``not_applicable`` ones too).
        """
        ...
