"""The verifiers of decision steps 3 (API key) and 4 (service-account token), and their wiring
from settings: the concrete side of the ports in :mod:`approver.domain.ports`.

The registrar (:class:`approver.registration.Registrar`) holds the configured
:class:`~approver.domain.ports.CredentialVerifier` objects, in decision order, and per registration:

1. before its database transaction (a TokenReview is a network call), calls
   :meth:`~approver.domain.ports.CredentialVerifier.verify` of each with the validated body and the
   request headers;
   each answers one :class:`~approver.domain.credential_outcome.CredentialOutcome`:

   * ``not_applicable`` (no credential of its kind, or the path is disabled): the step is
     skipped;
   * ``accepted``: the agent is approved with ``outcome.approval_method``, unless an earlier step
     already decided, or the binding or the quota says otherwise;
   * ``refused`` with ``security=True``: 403 and a security audit event; with ``security=False``:
     the step gives a pending reason and the next step is tried;

2. inside the transaction that writes an approval decided by that verifier's outcome, calls
   :meth:`~approver.domain.ports.CredentialVerifier.claim` with the open
   :class:`~approver.store.Transaction`
   (``tx.connection`` is its SQLAlchemy ``AsyncConnection``): a verifier with a race-sensitive
   limit (an API key's ``maxAgents``) claims it there, and a refusal reason turns the approval
   into ``pending`` with that reason, in the same transaction, before anything is written.

The decision engine (:mod:`approver.domain.decision`) turns outcomes into decisions and checks the
binding itself: an accepted outcome naming a pod (``pod_name``) must name the pod the agent
speaks for (:func:`approver.domain.binding.bound_pod_name`), else ``binding_not_provable``; one
naming
a namespace is compared with ``metadata.podNamespace`` when sent. The record keeps
``credential_hash`` = SHA-256 of the credential the outcome is about (the API key or the
service-account token as presented), so the agent's retry with it is step 1.

Step 2 can take extra pure checks too (:class:`~approver.domain.ports.BootstrapCheck`, e.g. "the
service-account token
names the same pod as the bootstrap token"): each runs after the bootstrap token's own binding
checks, with the other outcomes at hand, and may refuse the token.

Built in: :class:`ApiKeyVerifier` (step 3, ``apiKeys``, :mod:`approver.api_keys`) and
:class:`ServiceAccountVerifier` (step 4, ``serviceAccountTokens``,
:mod:`approver.service_accounts`), returned by :func:`configured_verifiers` when enabled, and the
step-2 check :class:`ServiceAccountBinding` (:func:`configured_bootstrap_checks`). A disabled
path has no verifier: its step is skipped ("not configured"). Verifiers holding resources (a
JWKS HTTP session) are opened and closed with the application (:func:`open_verifiers`,
:func:`close_verifiers`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from approver.api_keys import ApiKeyAuthenticator, SecretFolderKeys, claim_approval
from approver.api_keys.format import presented_api_key
from approver.domain.binding import PodLookupError, PodSource
from approver.domain.credential_outcome import CredentialOutcome
from approver.domain.ports import BootstrapCheck, CheckRefusal, CredentialVerifier
from approver.domain.records import ApprovalMethod
from approver.domain.requests import RegistrationRequest
from approver.service_accounts import (
    SaReason,
    ServiceAccountReviewer,
    build_reviewer,
    check_pod_binding,
    presented_service_account_token,
)
from approver.service_accounts.live_pod import check_token_pod, needs_pod, pod_lookup_failed
from bootstrap_token import BootstrapClaims

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient
    from sqlalchemy.ext.asyncio import AsyncEngine

    from approver.config import ApproverSettings
    from approver.store import Transaction

log = logging.getLogger(__name__)


class ApiKeyVerifier:
    """Step 3: the API key in ``X-Agent-API-Key`` (:class:`~approver.api_keys.ApiKeyAuthenticator`).

    Args:
        authenticator: checks the presented key (database and/or Secret-folder keys).
    """

    def __init__(self, authenticator: ApiKeyAuthenticator) -> None:
        self._authenticator = authenticator

    @property
    def method(self) -> ApprovalMethod:
        return ApprovalMethod.API_KEY

    async def verify(
        self, *, request: RegistrationRequest, headers: Mapping[str, str], now: float
    ) -> CredentialOutcome:
        return await self._authenticator.authenticate(
            agent_id=request.agent_id,
            platform=request.platform,
            presented=presented_api_key(headers),
            now=now,
        )

    async def claim(self, tx: Transaction, outcome: CredentialOutcome, *, now: float) -> str | None:
        """One of the key's ``maxAgents`` slots, in the approval's transaction."""
        return await claim_approval(tx.connection, outcome, now=now)


class ServiceAccountVerifier:
    """Step 4: the projected token in ``X-Agent-Service-Account-Token``.

    Args:
        reviewer: :func:`approver.service_accounts.build_reviewer`'s reviewer; closed by
            :meth:`close`.
        pods: reads live pods (``kubernetes.enabled``), or None. With it, an accepted token
            must name a live pod with its pod UID (:mod:`approver.service_accounts.live_pod`:
            ``sa_pod_gone``, the gap offline verification leaves), and the pod's controller
            joins the outcome.
    """

    def __init__(self, reviewer: ServiceAccountReviewer, *, pods: PodSource | None = None) -> None:
        self._reviewer = reviewer
        self._pods = pods

    @property
    def method(self) -> ApprovalMethod:
        return ApprovalMethod.SERVICE_ACCOUNT

    async def verify(
        self, *, request: RegistrationRequest, headers: Mapping[str, str], now: float
    ) -> CredentialOutcome:
        outcome = await self._reviewer.review(
            token=presented_service_account_token(headers), now=now
        )
        where = needs_pod(outcome) if self._pods is not None else None
        if self._pods is None or where is None:
            return outcome
        try:
            pod = await self._pods.read(*where)
        except PodLookupError as exc:
            log.warning("pod %s/%s: %s", where[0], where[1], exc)
            return pod_lookup_failed(outcome, str(exc))
        return check_token_pod(outcome, pod)

    async def claim(self, tx: Transaction, outcome: CredentialOutcome, *, now: float) -> str | None:
        """Nothing to claim: a service-account token approves its own pod only."""
        return None

    async def close(self) -> None:
        """Release the reviewer's resources (the JWKS HTTP session). Idempotent."""
        await self._reviewer.close()


@dataclass(frozen=True, slots=True)
class ServiceAccountBinding:
    """The step-2 check of ``serviceAccountTokens.bootstrapBinding``: a bootstrap token presented
    with a service-account token approves only when both name the same pod
    (:func:`approver.service_accounts.check_pod_binding`); with ``required``, only together with
    one. The refusal is a 403 with a security event when its reason says so
    (:attr:`approver.service_accounts.SaReason.security`: a forged token, or one naming another
    pod, i.e. a copied annotation), else a pending reason (expired, not pod-bound, missing)."""

    required: bool = False

    def __call__(
        self,
        *,
        claims: BootstrapClaims,
        agent_pod_name: str | None,
        bound_pod_uid: str | None,
        outcomes: tuple[CredentialOutcome, ...],
    ) -> CheckRefusal | None:
        sa = next(
            (o for o in outcomes if o.approval_method is ApprovalMethod.SERVICE_ACCOUNT), None
        )
        if sa is None:
            return CheckRefusal(SaReason.NOT_PRESENTED.value) if self.required else None
        reason = check_pod_binding(
            sa,
            claims=claims,
            agent_pod_name=agent_pod_name,
            bound_pod_uid=bound_pod_uid,
            required=self.required,
        )
        if reason is None:
            return None
        return CheckRefusal(reason.value, security=reason.security)


def api_key_folder(settings: ApproverSettings) -> SecretFolderKeys | None:
    """The Secret-folder keys of ``apiKeys.secretDir`` (read once now), or None."""
    directory = settings.api_keys.secret_dir
    if not settings.api_keys.enabled or directory is None:
        return None
    folder = SecretFolderKeys(directory, poll_seconds=settings.api_keys.secret_dir_poll_seconds)
    folder.load()
    return folder


def configured_verifiers(
    settings: ApproverSettings,
    *,
    kube: ApiClient | None,
    engine: AsyncEngine | None = None,
    folder: SecretFolderKeys | None = None,
    pods: PodSource | None = None,
) -> tuple[CredentialVerifier, ...]:
    """The step-3 and step-4 verifiers the settings enable, in decision order.

    Args:
        settings: the approver's settings.
        kube: the Kubernetes client (for TokenReview), when ``kubernetes.enabled``.
        engine: the approver's database (the ``api_keys`` table), for the API-key path.
        folder: the ``apiKeys.secretDir`` keys (:func:`api_key_folder`), when set.
        pods: reads live pods, when ``kubernetes.enabled``: a service-account token must then
            name a live pod (:class:`ServiceAccountVerifier`).

    Returns:
        :class:`ApiKeyVerifier` when ``apiKeys.enabled``, then :class:`ServiceAccountVerifier`
        when ``serviceAccountTokens.enabled``. The caller closes them
        (:func:`close_verifiers`).

    Raises:
        ValueError: ``serviceAccountTokens`` in mode ``tokenreview`` without ``kube``.
        ssl.SSLError, OSError: ``serviceAccountTokens.jwksCaFile`` cannot be loaded.
    """
    verifiers: list[CredentialVerifier] = []
    if settings.api_keys.enabled:
        verifiers.append(ApiKeyVerifier(ApiKeyAuthenticator(engine=engine, folder=folder)))
    if settings.service_account_tokens.enabled:
        verifiers.append(
            ServiceAccountVerifier(
                build_reviewer(settings.service_account_tokens, api_client=kube), pods=pods
            )
        )
    return tuple(verifiers)


async def close_verifiers(verifiers: Sequence[CredentialVerifier]) -> None:
    """Close the verifiers that hold resources (those with an async ``close()``)."""
    for verifier in verifiers:
        close = getattr(verifier, "close", None)
        if close is not None:
            await close()


def configured_bootstrap_checks(settings: ApproverSettings) -> tuple[BootstrapCheck, ...]:
    """Extra step-2 checks the settings enable: with ``serviceAccountTokens.enabled``, the
    :class:`ServiceAccountBinding` (``required`` when ``bootstrapBinding`` is ``required``)."""
    sa = settings.service_account_tokens
    if not sa.enabled:
        return ()
    return (ServiceAccountBinding(required=sa.bootstrap_binding == "required"),)


__all__ = [
    "ApiKeyVerifier",
    "BootstrapCheck",
    "CheckRefusal",
    "CredentialVerifier",
    "ServiceAccountBinding",
    "ServiceAccountVerifier",
    "api_key_folder",
    "close_verifiers",
    "configured_bootstrap_checks",
    "configured_verifiers",
]
