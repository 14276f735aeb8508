"""In-cluster verification: ask the API server with a TokenReview (kubernetes-asyncio).

``POST /apis/authentication.k8s.io/v1/tokenreviews`` with ``spec.token`` and
``spec.audiences: [<approver audience>]`` (Kubernetes API reference, "TokenReview v1"); the
approver's service account needs ``create`` on ``tokenreviews`` (the ``system:auth-delegator``
ClusterRole grants it). The API server checks the signature, ``iss``, ``exp``/``nbf``, the
audience, and that the bound pod (secret, service account) still exists with the UID in the
token, so a deleted pod's token is refused at once. Answer shapes::

    status: {authenticated: true,
             user: {username: "system:serviceaccount:streamspace:streamspace-agent",
                    uid: "<service account uid>",
                    groups: ["system:serviceaccounts", "system:serviceaccounts:streamspace",
                             "system:authenticated"],
                    extra: {"authentication.kubernetes.io/pod-name": ["<pod>"],
                            "authentication.kubernetes.io/pod-uid": ["<uid>"],
                            "authentication.kubernetes.io/node-name": ["<node>"],   # 1.30+
                            "authentication.kubernetes.io/credential-id": ["JTI=<jti>"]}},
             audiences: ["agent-approver"]}
    status: {user: {}, error: "[invalid bearer token, token audiences [\\"https://kubernetes.default.svc\\"]
             is invalid for the target audiences [\\"agent-approver\\"], unknown]"}
    status: {user: {}, error: "[invalid bearer token, service account token has expired]"}
    status: {user: {}, error: "[invalid bearer token, service account token has been invalidated]"}

Interpretation (:func:`interpret_review`): ``authenticated`` must be true; ``status.audiences``
must contain the approver's audience (the API reference: a client that sets ``spec.audiences``
"should validate that a compatible audience identifier is returned in ``status.audiences``";
an empty list means the token is valid for the API server's own audience only); the user must
be a service account; the ``pod-name`` and ``pod-uid`` extras must each hold exactly one value.
The ``error`` text of a refusal is matched only to choose a more precise reason code
(``audience``, ``expired``, ``invalidated``/``not found``/``does not match``); any refusal is a
refusal.

After the API server authenticated the token, its (now known authentic) JWT payload is read for
``exp``, so the ``maxRemainingLifetimeSeconds`` bound applies in this mode too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import aiohttp
from kubernetes_asyncio.client import (
    ApiClient,
    AuthenticationV1Api,
    V1TokenReview,
    V1TokenReviewSpec,
)
from kubernetes_asyncio.client.exceptions import ApiException

from approver.service_accounts.claims import PodIdentity, parse_service_account_user
from approver.service_accounts.offline import MAX_TOKEN_BYTES, read_header
from approver.service_accounts.reasons import SaReason, SaTokenRefused
from bootstrap_token.jws import segment_json

log = logging.getLogger(__name__)

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"

#: Error texts of a pod-bound token whose pod (secret, service account) is gone or was replaced:
#: "service account token has been invalidated", 'pods "x" not found', "pod UID (...) does not
#: match the bound object's UID (...)" (``pkg/serviceaccount/claims.go``).
_GONE_MARKERS = ("invalidated", "not found", "does not match")


class TokenReviewUnavailable(Exception):
    """The TokenReview could not be made (API server unreachable, 4xx/5xx, timeout)."""


@dataclass(frozen=True, slots=True)
class TokenReviewStatus:
    """``status`` of a TokenReview answer, as plain data."""

    authenticated: bool
    audiences: tuple[str, ...] = ()
    error: str | None = None
    username: str | None = None
    uid: str | None = None
    groups: tuple[str, ...] = ()
    extra: Mapping[str, Sequence[str]] = field(default_factory=dict)


class TokenReviewer(Protocol):
    """Something that reviews a token: the API server, or a stand-in in tests."""

    async def review(self, token: str, *, audiences: Sequence[str]) -> TokenReviewStatus: ...


class KubernetesTokenReviewer:
    """Creates TokenReviews through kubernetes-asyncio's ``AuthenticationV1Api``.

    Args:
        api_client: a configured ``kubernetes_asyncio.client.ApiClient`` (in-cluster config in
            production); the caller owns and closes it.
        timeout_seconds: per-request timeout.
    """

    def __init__(self, api_client: ApiClient, *, timeout_seconds: float = 5.0) -> None:
        self._api = AuthenticationV1Api(api_client)
        self._timeout = timeout_seconds

    async def review(self, token: str, *, audiences: Sequence[str]) -> TokenReviewStatus:
        """One TokenReview.

        The answer is read raw (``_preload_content=False``): kubernetes-asyncio logs every
        preloaded response body at DEBUG (``kubernetes_asyncio.client.rest``), and a TokenReview
        answer echoes ``spec.token``, so the token would reach the log.

        Raises:
            TokenReviewUnavailable: the call failed (the message has the HTTP status or the
                error class, never the token).
        """
        body = V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=V1TokenReviewSpec(token=token, audiences=list(audiences)),
        )
        try:
            # With _preload_content=False the call returns the raw aiohttp response.
            response = cast(
                aiohttp.ClientResponse,
                await self._api.create_token_review(
                    body, _request_timeout=self._timeout, _preload_content=False
                ),
            )
            try:
                if not 200 <= response.status <= 299:
                    raise TokenReviewUnavailable(f"TokenReview answered HTTP {response.status}")
                raw = await response.read()
            finally:
                response.release()
        except ApiException as exc:
            raise TokenReviewUnavailable(f"TokenReview answered HTTP {exc.status}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TokenReviewUnavailable(f"TokenReview failed: {type(exc).__name__}") from None
        try:
            document = json.loads(raw)
        except ValueError:
            raise TokenReviewUnavailable("TokenReview answer is not JSON") from None
        return status_from_json(document)


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def status_from_json(review: object) -> TokenReviewStatus:
    """:class:`TokenReviewStatus` of a TokenReview JSON document (``authentication.k8s.io/v1``).

    Anything missing or of the wrong type counts as absent, so a malformed answer can only be
    a refusal (``authenticated`` defaults to false).
    """
    status = review.get("status") if isinstance(review, dict) else None
    if not isinstance(status, dict):
        return TokenReviewStatus(authenticated=False, error="TokenReview has no status")
    user = status.get("user")
    user = user if isinstance(user, dict) else {}
    raw_extra = user.get("extra")
    extra = (
        {str(k): _strings(v) for k, v in raw_extra.items()} if isinstance(raw_extra, dict) else {}
    )
    error = status.get("error")
    username = user.get("username")
    uid = user.get("uid")
    return TokenReviewStatus(
        authenticated=status.get("authenticated") is True,
        audiences=_strings(status.get("audiences")),
        error=error if isinstance(error, str) else None,
        username=username if isinstance(username, str) else None,
        uid=uid if isinstance(uid, str) else None,
        groups=_strings(user.get("groups")),
        extra=extra,
    )


def _single(extra: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = extra.get(key) or ()
    return values[0] if len(values) == 1 and values[0] else None


def interpret_review(status: TokenReviewStatus, *, audience: str) -> PodIdentity:
    """The identity a TokenReview vouches for, or the refusal (module docstring).

    Raises:
        SaTokenRefused: ``sa_token_audience_mismatch``, ``sa_token_expired``,
            ``sa_token_invalidated``, ``sa_token_unauthenticated``,
            ``sa_token_not_service_account``, ``sa_token_not_pod_bound``.
    """
    if not status.authenticated:
        error = (status.error or "").lower()
        if "audience" in error:
            raise SaTokenRefused(SaReason.AUDIENCE_MISMATCH, "TokenReview: wrong audience")
        if "expired" in error:
            raise SaTokenRefused(SaReason.EXPIRED, "TokenReview: token has expired")
        if any(marker in error for marker in _GONE_MARKERS):
            raise SaTokenRefused(
                SaReason.INVALIDATED, "TokenReview: the token's pod, secret or account is gone"
            )
        raise SaTokenRefused(SaReason.UNAUTHENTICATED, "TokenReview: not authenticated")
    if audience not in status.audiences:
        raise SaTokenRefused(
            SaReason.AUDIENCE_MISMATCH, "TokenReview did not confirm the approver's audience"
        )
    parsed = parse_service_account_user(status.username or "")
    if parsed is None:
        raise SaTokenRefused(
            SaReason.NOT_SERVICE_ACCOUNT, "TokenReview: the user is not a service account"
        )
    namespace, name = parsed
    pod_name = _single(status.extra, POD_NAME_EXTRA)
    pod_uid = _single(status.extra, POD_UID_EXTRA)
    if pod_name is None or pod_uid is None:
        raise SaTokenRefused(SaReason.NOT_POD_BOUND, "the token is not bound to a pod")
    return PodIdentity(
        namespace=namespace,
        service_account=name,
        service_account_uid=status.uid or None,
        pod_name=pod_name,
        pod_uid=pod_uid,
        node_name=_single(status.extra, NODE_NAME_EXTRA),
    )


def authentic_expiry(token: str) -> int:
    """``exp`` of a token the API server has just authenticated (so its payload is genuine).

    Raises:
        SaTokenRefused(sa_token_malformed): not a JWT with an integer ``exp``.
    """
    read_header(token)
    try:
        claims = segment_json(token, 1, max_bytes=MAX_TOKEN_BYTES)
    except ValueError:
        raise SaTokenRefused(SaReason.MALFORMED, "payload is not base64url JSON") from None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise SaTokenRefused(SaReason.MALFORMED, "the token has no integer exp")
    return exp


class TokenReviewVerifier:
    """Verifies service-account tokens with TokenReview (module docstring).

    Args:
        reviewer: the API server (:class:`KubernetesTokenReviewer`).
        audience: the approver's audience, sent as ``spec.audiences``.
        leeway_seconds: clock skew tolerated on the lifetime bound.
        max_remaining_lifetime_seconds: largest ``exp - now`` accepted.
    """

    def __init__(
        self,
        *,
        reviewer: TokenReviewer,
        audience: str,
        leeway_seconds: int = 60,
        max_remaining_lifetime_seconds: int = 3600,
    ) -> None:
        self._reviewer = reviewer
        self._audience = audience
        self._leeway = leeway_seconds
        self._max_remaining = max_remaining_lifetime_seconds

    async def verify(self, token: str, *, now: float) -> PodIdentity:
        """Review ``token`` and return who it proves.

        Raises:
            SaTokenRefused: ``sa_token_malformed`` (not a JWT: the API server is not asked),
                ``sa_token_review_unavailable``, or a reason of :func:`interpret_review`, or
                ``sa_token_lifetime_too_long``.
        """
        read_header(token)
        try:
            status = await self._reviewer.review(token, audiences=[self._audience])
        except TokenReviewUnavailable as exc:
            log.warning("%s", exc)
            raise SaTokenRefused(SaReason.REVIEW_UNAVAILABLE, str(exc)) from None
        identity = interpret_review(status, audience=self._audience)
        exp = authentic_expiry(token)
        if exp - now > self._max_remaining + self._leeway:
            raise SaTokenRefused(
                SaReason.LIFETIME_TOO_LONG,
                f"token valid for {int(exp - now)}s more, maximum {self._max_remaining}s",
            )
        return PodIdentity(
            namespace=identity.namespace,
            service_account=identity.service_account,
            service_account_uid=identity.service_account_uid,
            pod_name=identity.pod_name,
            pod_uid=identity.pod_uid,
            node_name=identity.node_name,
            expires_at=exp,
        )
