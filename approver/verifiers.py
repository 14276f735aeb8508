"""The slots for decision steps 3 (API key) and 4 (service-account token).

The registrar (:class:`approver.registration.Registrar`) holds the configured
:class:`CredentialVerifier` objects, in decision order, and per registration:

1. before its database transaction (a TokenReview is a network call), calls
   :meth:`CredentialVerifier.verify` of each with the validated body and the request headers;
   each answers one :class:`~approver.credential_outcome.CredentialOutcome`:

   * ``not_applicable`` (no credential of its kind, or the path is disabled): the step is
     skipped;
   * ``accepted``: the agent is approved with ``outcome.approval_method``, unless an earlier step
     already decided, or the binding or the quota says otherwise;
   * ``refused`` with ``security=True``: 403 and a security audit event; with ``security=False``:
     the step gives a pending reason and the next step is tried;

2. inside the transaction that writes an approval decided by that verifier's outcome, calls
   :meth:`CredentialVerifier.claim` with the open :class:`~approver.store.Transaction`
   (``tx.connection`` is its SQLAlchemy ``AsyncConnection``): a verifier with a race-sensitive
   limit (an API key's ``maxAgents``) claims it there, and a refusal reason turns the approval
   into ``pending`` with that reason, in the same transaction, before anything is written.

The decision engine (:mod:`approver.decision`) turns outcomes into decisions and checks the
binding itself: an accepted outcome naming a pod (``pod_name``) must name the pod the agent
speaks for (:func:`approver.binding.bound_pod_name`), else ``binding_not_provable``; one naming
a namespace is compared with ``metadata.podNamespace`` when sent. The record keeps
``credential_hash`` = SHA-256 of the credential the outcome is about (the API key or the
service-account token as presented), so the agent's retry with it is step 1.

Step 2 can take extra pure checks too (:class:`BootstrapCheck`, e.g. "the service-account token
names the same pod as the bootstrap token"): each runs after the bootstrap token's own binding
checks, with the other outcomes at hand, and may refuse the token.

Today no verifier is built in: :func:`configured_verifiers` returns an empty tuple, so steps 3
and 4 are skipped ("not configured"); issue 3 plugs ``approver.api_keys`` and
``approver.service_accounts`` in there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from approver.credential_outcome import CredentialOutcome
from approver.records import ApprovalMethod
from approver.wire import RegistrationRequest
from bootstrap_token import BootstrapClaims

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from approver.config import ApproverSettings
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


def configured_verifiers(
    settings: ApproverSettings, *, kube: ApiClient | None
) -> tuple[CredentialVerifier, ...]:
    """The step-3 and step-4 verifiers the settings enable, in decision order.

    Args:
        settings: the approver's settings.
        kube: the Kubernetes client (for TokenReview), when ``kubernetes.enabled``.

    Returns:
        Today an empty tuple: both steps are "not configured, skipped".
    """
    verifiers: list[CredentialVerifier] = []
    # Step 3 slot (issue 3): the API-key verifier of ``approver.api_keys``, when enabled.
    # Step 4 slot (issue 3): the TokenReview verifier of ``approver.service_accounts``, when
    # enabled; it gets ``kube``.
    return tuple(verifiers)


def configured_bootstrap_checks(settings: ApproverSettings) -> tuple[BootstrapCheck, ...]:
    """Extra step-2 checks the settings enable (issue 3: ``bootstrapBinding``). Today none."""
    return ()
