"""In-cluster mode: TokenReview through kubernetes-asyncio, against the local API stand-in
(``tests/kube_api.py``), which answers with the API server's TokenReview shapes."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.service_accounts import (
    SaReason,
    SaTokenRefused,
    ServiceAccountSettings,
    TokenReviewStatus,
    build_reviewer,
    interpret_review,
)
from approver.service_accounts.tokenreview import status_from_json
from tests.approver.helpers import NAMESPACE, NOW, POD_NAME, SERVICE_ACCOUNT
from tests.approver.service_accounts.issuer import AUDIENCE, Issuer
from tests.kube_api import API_SERVER_AUDIENCE, KubeApi, api_client, make_pod

PAIR = f"{NAMESPACE}:{SERVICE_ACCOUNT}"
POD_EXTRAS = ("authentication.kubernetes.io/pod-name", "authentication.kubernetes.io/pod-uid")


@pytest.fixture
async def kube() -> AsyncIterator[KubeApi]:
    async with KubeApi() as server:
        yield server


@pytest.fixture
async def client(kube: KubeApi) -> AsyncIterator[ApiClient]:
    api = api_client(kube)
    try:
        yield api
    finally:
        await api.close()


def settings(**overrides: Any) -> ServiceAccountSettings:
    values: dict[str, Any] = {"enabled": True, "mode": "tokenreview", "allow": [PAIR]}
    values.update(overrides)
    return ServiceAccountSettings.model_validate(values)


async def review(
    client: ApiClient, token: str, *, now: float = NOW, **overrides: Any
) -> CredentialOutcome:
    return await build_reviewer(settings(**overrides), api_client=client).review(
        token=token, now=now
    )


def agent_pod(kube: KubeApi) -> dict[str, Any]:
    return kube.add_pod(make_pod(NAMESPACE, POD_NAME, service_account=SERVICE_ACCOUNT))


class TestTokenReview:
    async def test_authenticated(
        self, kube: KubeApi, client: ApiClient, rsa_issuer: Issuer
    ) -> None:
        """A pod-bound token for the approver's audience: accepted, pod name and UID recorded;
        the review asked for exactly the approver's audience."""
        pod = agent_pod(kube)
        token = rsa_issuer.mint()
        kube.add_token(
            token,
            audiences=(AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=pod,
        )
        outcome = await review(client, token)
        assert outcome.verdict is Verdict.ACCEPTED
        assert outcome.reason == "service_account_token_accepted"
        assert (outcome.namespace, outcome.service_account) == (NAMESPACE, SERVICE_ACCOUNT)
        assert (outcome.pod_name, outcome.pod_uid) == (POD_NAME, pod["metadata"]["uid"])
        assert outcome.service_account_uid
        [request] = [r for r in kube.requests if r.path.endswith("/tokenreviews")]
        assert request.body is not None
        assert request.body["spec"]["audiences"] == [AUDIENCE]
        assert request.body["kind"] == "TokenReview"

    async def test_unauthenticated(self, client: ApiClient, rsa_issuer: Issuer) -> None:
        """A token the API server does not know: sa_token_unauthenticated, security-relevant."""
        outcome = await review(client, rsa_issuer.mint())
        assert (outcome.verdict, outcome.reason, outcome.security) == (
            Verdict.REFUSED,
            "sa_token_unauthenticated",
            True,
        )
        assert not outcome.authenticated

    async def test_audience_mismatch(
        self, kube: KubeApi, client: ApiClient, rsa_issuer: Issuer
    ) -> None:
        """The pod's default API token (audience: the API server) is refused for our audience."""
        pod = agent_pod(kube)
        token = rsa_issuer.mint(audience=API_SERVER_AUDIENCE)
        kube.add_token(
            token,
            audiences=(API_SERVER_AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=pod,
        )
        outcome = await review(client, token)
        assert (outcome.reason, outcome.security) == ("sa_token_audience_mismatch", True)

    async def test_not_pod_bound(
        self, kube: KubeApi, client: ApiClient, rsa_issuer: Issuer
    ) -> None:
        """A token without pod extras (TokenRequest without a pod): sa_token_not_pod_bound."""
        token = rsa_issuer.mint(pod=None)
        kube.add_token(
            token, audiences=(AUDIENCE,), namespace=NAMESPACE, service_account=SERVICE_ACCOUNT
        )
        outcome = await review(client, token)
        assert (outcome.reason, outcome.security) == ("sa_token_not_pod_bound", False)

    async def test_service_account_not_allowed(
        self, kube: KubeApi, client: ApiClient, rsa_issuer: Issuer
    ) -> None:
        """An authentic token of an account off the allow-list: sa_not_allowed (pending)."""
        pod = kube.add_pod(make_pod("sandbox", "runner-1"))
        token = rsa_issuer.mint(
            namespace="sandbox", service_account="default", pod=("runner-1", "u")
        )
        kube.add_token(
            token, audiences=(AUDIENCE,), namespace="sandbox", service_account="default", pod=pod
        )
        outcome = await review(client, token)
        assert (outcome.reason, outcome.security, outcome.authenticated) == (
            "sa_not_allowed",
            False,
            True,
        )
        assert outcome.service_account_pair == "sandbox:default"

    @pytest.mark.parametrize("replace_pod", [False, True])
    async def test_deleted_pod(
        self, kube: KubeApi, client: ApiClient, rsa_issuer: Issuer, replace_pod: bool
    ) -> None:
        """Once its pod is gone (or replaced under the same name), the token is invalidated."""
        pod = agent_pod(kube)
        token = rsa_issuer.mint()
        kube.add_token(
            token,
            audiences=(AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=pod,
        )
        assert (await review(client, token)).accepted
        kube.delete_pod(NAMESPACE, POD_NAME)
        if replace_pod:
            agent_pod(kube)
        outcome = await review(client, token)
        assert (outcome.reason, outcome.security) == ("sa_token_invalidated", True)

    async def test_lifetime_bound_applies(
        self, kube: KubeApi, client: ApiClient, rsa_issuer: Issuer
    ) -> None:
        """A hand-minted token valid for two days is refused even though the API server
        authenticates it."""
        pod = agent_pod(kube)
        token = rsa_issuer.mint(ttl=2 * 86400)
        kube.add_token(
            token,
            audiences=(AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=pod,
        )
        outcome = await review(client, token)
        assert (outcome.reason, outcome.security) == ("sa_token_lifetime_too_long", True)
        assert (await review(client, token, maxRemainingLifetimeSeconds=3 * 86400)).accepted

    async def test_garbage_is_not_sent(self, kube: KubeApi, client: ApiClient) -> None:
        """A value that is not a JWT is refused as malformed without asking the API server."""
        outcome = await review(client, "definitely-not-a-token")
        assert outcome.reason == "sa_token_malformed"
        assert kube.requests == []

    async def test_api_server_refuses_the_approver(self, kube: KubeApi, rsa_issuer: Issuer) -> None:
        """The approver's own credential is refused (401): sa_token_review_unavailable."""
        config = Configuration(
            host=kube.url,
            api_key={"BearerToken": "wrong"},
            api_key_prefix={"BearerToken": "Bearer"},
        )
        async with ApiClient(configuration=config) as wrong:
            outcome = await review(wrong, rsa_issuer.mint())
        assert (outcome.reason, outcome.security) == ("sa_token_review_unavailable", False)

    async def test_api_server_unreachable(self, rsa_issuer: Issuer) -> None:
        """Nobody listens: sa_token_review_unavailable within the timeout."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = Configuration(host=f"http://127.0.0.1:{port}")
        async with ApiClient(configuration=config) as down:
            outcome = await review(down, rsa_issuer.mint(), reviewTimeoutSeconds=2)
        assert outcome.reason == "sa_token_review_unavailable"


def _status(**changes: Any) -> TokenReviewStatus:
    values: dict[str, Any] = {
        "authenticated": True,
        "audiences": (AUDIENCE,),
        "username": f"system:serviceaccount:{PAIR}",
        "uid": "sa-uid",
        "groups": ("system:serviceaccounts",),
        "extra": {POD_EXTRAS[0]: ["p"], POD_EXTRAS[1]: ["u"]},
    }
    values.update(changes)
    return TokenReviewStatus(**values)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (_status(), None),
        (_status(audiences=()), SaReason.AUDIENCE_MISMATCH),  # valid for the API server only
        (_status(audiences=("other",)), SaReason.AUDIENCE_MISMATCH),
        (_status(username="alice"), SaReason.NOT_SERVICE_ACCOUNT),
        (_status(extra={}), SaReason.NOT_POD_BOUND),
        (_status(extra={POD_EXTRAS[0]: ["p"], POD_EXTRAS[1]: []}), SaReason.NOT_POD_BOUND),
        (_status(extra={POD_EXTRAS[0]: ["p", "q"], POD_EXTRAS[1]: ["u"]}), SaReason.NOT_POD_BOUND),
        (
            _status(
                authenticated=False,
                error="[invalid bearer token, service account token has expired]",
            ),
            SaReason.EXPIRED,
        ),
        (
            _status(
                authenticated=False,
                error="[invalid bearer token, service account token has been invalidated]",
            ),
            SaReason.INVALIDATED,
        ),
        (_status(authenticated=False, error=None), SaReason.UNAUTHENTICATED),
    ],
)
def test_interpret_review(status: TokenReviewStatus, reason: SaReason | None) -> None:
    """Each TokenReview answer maps to its reason (None: accepted)."""
    if reason is None:
        assert interpret_review(status, audience=AUDIENCE).pod_uid == "u"
        return
    with pytest.raises(SaTokenRefused) as caught:
        interpret_review(status, audience=AUDIENCE)
    assert caught.value.reason is reason


async def test_token_never_logged(
    kube: KubeApi, client: ApiClient, rsa_issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG level (kubernetes-asyncio logs response bodies there, and a TokenReview answer
    echoes the token), no log record and no outcome contains the token."""
    pod = agent_pod(kube)
    good, unknown = rsa_issuer.mint(), rsa_issuer.mint(pod=None)
    kube.add_token(
        good, audiences=(AUDIENCE,), namespace=NAMESPACE, service_account=SERVICE_ACCOUNT, pod=pod
    )
    with caplog.at_level(logging.DEBUG):
        outcomes = [await review(client, good), await review(client, unknown)]
        kube.delete_pod(NAMESPACE, POD_NAME)
        outcomes.append(await review(client, good))
    assert [o.reason for o in outcomes] == [
        "service_account_token_accepted",
        "sa_token_unauthenticated",
        "sa_token_invalidated",
    ]
    texts = [f"{r.getMessage()} {r.args!r}" for r in caplog.records] + [repr(o) for o in outcomes]
    signature = good.split(".")[2]
    for text in texts:
        assert signature not in text
        assert unknown.split(".")[2] not in text


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"status": None},
        {"status": {"authenticated": "true", "user": {}}},
        {"status": {"authenticated": True, "user": "x", "audiences": "agent-approver"}},
        [],
    ],
)
def test_malformed_answers_are_refusals(document: Any) -> None:
    """A TokenReview answer of the wrong shape can only refuse."""
    status = status_from_json(document)
    with pytest.raises(SaTokenRefused):
        interpret_review(status, audience=AUDIENCE)
