"""The service-account approval path: the registrar's entry point.

::

    reviewer = build_reviewer(settings.service_account_tokens, api_client=api_client)
    outcome = await reviewer.review(token=presented_service_account_token(headers), now=now)

:meth:`ServiceAccountReviewer.review` verifies the token (TokenReview or offline JWKS, see
:mod:`.tokenreview` and :mod:`.offline`), requires a pod-bound token, then checks the
``namespace:serviceaccount`` allow-list, and answers one :class:`CredentialOutcome` with
``approval_method=service_account``, the pod's name and UID (to record on the agent), and a
reason code (:mod:`.reasons`). It never raises for a bad token, and the token never appears in
the outcome, a log line or an exception.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import aiohttp
from kubernetes_asyncio.client import ApiClient

from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.records import ApprovalMethod
from approver.service_accounts.allow import allows
from approver.service_accounts.claims import PodIdentity
from approver.service_accounts.jwks import JwksCache, UrlSource, file_source
from approver.service_accounts.offline import OfflineVerifier
from approver.service_accounts.reasons import SaReason, SaTokenRefused
from approver.service_accounts.settings import ServiceAccountSettings
from approver.service_accounts.tokenreview import KubernetesTokenReviewer, TokenReviewVerifier
from bootstrap_token import fingerprint

SERVICE_ACCOUNT_TOKEN_HEADER = "X-Agent-Service-Account-Token"  # noqa: S105 - a header name


def presented_service_account_token(headers: Mapping[str, str]) -> str | None:
    """The token in ``X-Agent-Service-Account-Token`` (whitespace stripped), or None when absent
    or empty. ``headers`` must be case-insensitive (aiohttp's ``request.headers``)."""
    value = headers.get(SERVICE_ACCOUNT_TOKEN_HEADER, "").strip()
    return value or None


class TokenVerifier(Protocol):
    """Verifies a service-account token: :class:`OfflineVerifier`, :class:`TokenReviewVerifier`."""

    async def verify(self, token: str, *, now: float) -> PodIdentity: ...


def _outcome(
    verdict: Verdict,
    reason: SaReason,
    *,
    credential: str | None = None,
    identity: PodIdentity | None = None,
    message: str | None = None,
) -> CredentialOutcome:
    return CredentialOutcome(
        verdict=verdict,
        approval_method=ApprovalMethod.SERVICE_ACCOUNT,
        reason=reason.value,
        security=verdict is Verdict.REFUSED and reason.security,
        authenticated=identity is not None,
        message=message,
        credential=credential,
        namespace=identity.namespace if identity else None,
        service_account=identity.service_account if identity else None,
        service_account_uid=identity.service_account_uid if identity else None,
        pod_name=identity.pod_name if identity else None,
        pod_uid=identity.pod_uid if identity else None,
        node_name=identity.node_name if identity else None,
    )


class ServiceAccountReviewer:
    """Checks service-account tokens presented at registration.

    Args:
        verifier: the verification strategy (None only when disabled).
        allow: ``namespace:serviceaccount`` pairs that approve on their own.
        enabled: ``serviceAccountTokens.enabled``.
        on_close: coroutines run by :meth:`close` (closing a JWKS HTTP session).
    """

    def __init__(
        self,
        *,
        verifier: TokenVerifier | None,
        allow: frozenset[str],
        enabled: bool = True,
        on_close: tuple[Callable[[], Awaitable[None]], ...] = (),
    ) -> None:
        if enabled and verifier is None:
            raise ValueError("an enabled reviewer needs a verifier")
        self._verifier = verifier
        self._allow = allow
        self._enabled = enabled
        self._on_close = on_close

    @property
    def enabled(self) -> bool:
        return self._enabled

    async def review(self, *, token: str | None, now: float) -> CredentialOutcome:
        """Check one token.

        Args:
            token: from :func:`presented_service_account_token`, or None.
            now: seconds since the epoch.

        Returns:
            ``not_applicable`` (disabled / no token), ``refused`` with a reason (table in
            :mod:`.reasons`; ``authenticated`` True for ``sa_not_allowed``, whose identity fields
            are then facts usable by :func:`check_pod_binding`), or ``accepted`` with the pod's
            namespace, service account, name and UID.
        """
        if not self._enabled:
            return _outcome(Verdict.NOT_APPLICABLE, SaReason.DISABLED)
        if not token:
            return _outcome(Verdict.NOT_APPLICABLE, SaReason.NOT_PRESENTED)
        assert self._verifier is not None
        credential = fingerprint(token)
        try:
            identity = await self._verifier.verify(token, now=now)
        except SaTokenRefused as exc:
            return _outcome(Verdict.REFUSED, exc.reason, credential=credential, message=exc.message)
        if not identity.pod_bound:
            return _outcome(
                Verdict.REFUSED,
                SaReason.NOT_POD_BOUND,
                credential=credential,
                message="the token is not bound to a pod",
            )
        if not allows(
            self._allow, namespace=identity.namespace, service_account=identity.service_account
        ):
            return _outcome(
                Verdict.REFUSED,
                SaReason.NOT_ALLOWED,
                credential=credential,
                identity=identity,
                message=f"{identity.pair} is not on serviceAccountTokens.allow",
            )
        return _outcome(
            Verdict.ACCEPTED, SaReason.ACCEPTED, credential=credential, identity=identity
        )

    async def close(self) -> None:
        """Release what the verifier holds (the JWKS HTTP session). Idempotent."""
        hooks, self._on_close = self._on_close, ()
        for hook in hooks:
            await hook()


def build_reviewer(
    settings: ServiceAccountSettings,
    *,
    api_client: ApiClient | None = None,
    session: aiohttp.ClientSession | None = None,
) -> ServiceAccountReviewer:
    """The reviewer the settings describe.

    Args:
        settings: ``serviceAccountTokens``.
        api_client: tokenreview mode: a kubernetes-asyncio ``ApiClient`` (the caller owns it).
        session: offline mode with ``jwksUrl``: an aiohttp session to fetch with (default: the
            reviewer opens one and :meth:`ServiceAccountReviewer.close` closes it).

    Raises:
        ValueError: tokenreview mode without ``api_client``.
        ssl.SSLError, OSError: ``jwksCaFile`` cannot be loaded.
    """
    if not settings.enabled:
        return ServiceAccountReviewer(verifier=None, allow=settings.allow, enabled=False)
    if settings.mode == "tokenreview":
        if api_client is None:
            raise ValueError("serviceAccountTokens.mode 'tokenreview' needs a Kubernetes client")
        verifier: TokenVerifier = TokenReviewVerifier(
            reviewer=KubernetesTokenReviewer(
                api_client, timeout_seconds=settings.review_timeout_seconds
            ),
            audience=settings.audience,
            leeway_seconds=settings.leeway_seconds,
            max_remaining_lifetime_seconds=settings.max_remaining_lifetime_seconds,
        )
        return ServiceAccountReviewer(verifier=verifier, allow=settings.allow)
    assert settings.issuer is not None
    on_close: tuple[Callable[[], Awaitable[None]], ...] = ()
    if settings.jwks_file is not None:
        fetch = file_source(settings.jwks_file)
        source = str(settings.jwks_file)
    else:
        assert settings.jwks_url is not None
        context = None
        if settings.jwks_ca_file is not None:
            context = ssl.create_default_context(cafile=str(settings.jwks_ca_file))
        url_source = UrlSource(settings.jwks_url, session=session, ssl_context=context)
        fetch, source, on_close = url_source, settings.jwks_url, (url_source.close,)
    jwks = JwksCache(
        fetch,
        source=source,
        refresh_seconds=settings.jwks_refresh_seconds,
        min_refresh_interval_seconds=settings.jwks_min_refresh_interval_seconds,
    )
    verifier = OfflineVerifier(
        jwks=jwks,
        issuer=settings.issuer,
        audience=settings.audience,
        leeway_seconds=settings.leeway_seconds,
        max_remaining_lifetime_seconds=settings.max_remaining_lifetime_seconds,
    )
    return ServiceAccountReviewer(verifier=verifier, allow=settings.allow, on_close=on_close)
