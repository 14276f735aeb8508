"""Issue 13, item 15: an offline-verified service-account token whose pod is gone approves
nothing where the approver can read pods. The signature of a projected token stays valid until
``exp`` after its pod is deleted; only the live pod read closes that gap
(approver.service_accounts.live_pod)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from approver.domain.binding import LivePod, PodLookupError
from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.records import ApprovalMethod
from approver.http.app import create_app
from approver.http.app_keys import STORE_KEY
from approver.service_accounts.live_pod import check_token_pod
from approver.store import Store
from approver.verifiers import ServiceAccountVerifier
from bootstrap_token import KeySet, OwnerRef
from tests.approver.helpers import (
    AGENT_ID,
    NAMESPACE,
    OWNER,
    POD_NAME,
    SERVICE_ACCOUNT,
    Clock,
    RecordingSink,
    registration_body,
    settings,
)
from tests.approver.service_accounts.issuer import ISSUER, POD_UID, Issuer, jwks
from tests.kube_api import KubeApi, api_client, make_pod

REGISTER = "/api/v1/agents/register"
SA_ISSUER = Issuer("RSA")
SA_TOKEN = SA_ISSUER.mint()
ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def kube() -> AsyncIterator[KubeApi]:
    async with KubeApi() as server:
        yield server


async def _client(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    jwks_file: Path,
    key_set: KeySet,
    store: Store,
    kube: KubeApi,
    *,
    pods: bool,
) -> Client:
    sa_jwks = tmp_path / "sa-jwks.json"
    sa_jwks.write_text(json.dumps(jwks(SA_ISSUER)), encoding="utf-8")
    approver_settings = settings(
        jwks_file=jwks_file,
        kubernetes={"enabled": pods},
        service_account_tokens={
            "enabled": True,
            "mode": "offline",
            "issuer": ISSUER,
            "jwksFile": sa_jwks,
            "allow": [f"{NAMESPACE}:{SERVICE_ACCOUNT}"],
        },
    )
    app = create_app(
        approver_settings,
        key_set=key_set,
        store=store,
        clock=Clock(),
        audit=RecordingSink(),
        kube=api_client(kube),
        background=False,
    )
    return await aiohttp_client(app)


async def _register(client: Client) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        REGISTER,
        json=registration_body(AGENT_ID),
        headers={"X-Agent-Service-Account-Token": SA_TOKEN},
    )
    return response.status, await response.json()


class TestOfflineTokenOfAGonePod:
    @pytest.mark.parametrize(
        ("pod", "expected"),
        [
            ("live", (200, "service_account_token_accepted")),
            ("deleted", (403, "sa_pod_gone")),
            ("replaced", (403, "sa_pod_gone")),
            ("terminating", (200, "service_account_token_accepted")),
        ],
    )
    async def test_the_token_must_name_a_live_pod(
        self,
        aiohttp_client: ClientFactory,
        tmp_path: Path,
        jwks_file: Path,
        key_set: KeySet,
        sqlite_store: Store,
        kube: KubeApi,
        pod: str,
        expected: tuple[int, str],
    ) -> None:
        if pod != "deleted":
            uid = POD_UID if pod != "replaced" else "0c7e3f52-5b41-4d8e-a1a4-5f0b2f9c0d11"
            kube.add_pod(make_pod(NAMESPACE, POD_NAME, uid=uid, owner=OWNER))
        if pod == "terminating":
            kube.terminate_pod(NAMESPACE, POD_NAME)
        client = await _client(
            aiohttp_client, tmp_path, jwks_file, key_set, sqlite_store, kube, pods=True
        )
        status, body = await _register(client)
        assert (status, body["reason"]) == expected
        record = await client.app[STORE_KEY].get_agent(AGENT_ID)
        if status == 200:
            assert record is not None
            assert (record.pod_name, record.pod_uid) == (POD_NAME, POD_UID)
        else:
            assert record is None  # a security refusal writes nothing
        assert not any(r.path.endswith("/tokenreviews") for r in kube.requests)  # offline

    async def test_without_pod_access_the_gap_is_the_documented_one(
        self,
        aiohttp_client: ClientFactory,
        tmp_path: Path,
        jwks_file: Path,
        key_set: KeySet,
        sqlite_store: Store,
        kube: KubeApi,
    ) -> None:
        """No kubernetes.enabled: nothing can see the pod, and the token approves until its
        exp (docs/api-keys-and-service-accounts.md, 'What offline mode cannot see')."""
        client = await _client(
            aiohttp_client, tmp_path, jwks_file, key_set, sqlite_store, kube, pods=False
        )
        status, body = await _register(client)
        assert (status, body["reason"]) == (200, "service_account_token_accepted")
        assert kube.requests == []


def _accepted() -> CredentialOutcome:
    return CredentialOutcome(
        verdict=Verdict.ACCEPTED,
        approval_method=ApprovalMethod.SERVICE_ACCOUNT,
        reason="service_account_token_accepted",
        authenticated=True,
        namespace=NAMESPACE,
        service_account=SERVICE_ACCOUNT,
        pod_name=POD_NAME,
        pod_uid=POD_UID,
    )


class _Reviewer:
    async def review(self, *, token: str | None, now: float) -> CredentialOutcome:
        return _accepted()

    async def close(self) -> None:
        return None


class _FailingPods:
    async def read(self, namespace: str, name: str) -> LivePod | None:
        raise PodLookupError("503 Service Unavailable")


class TestLivePodRules:
    async def test_lookup_failure_is_pending_not_a_refusal(self) -> None:
        verifier = ServiceAccountVerifier(_Reviewer(), pods=_FailingPods())  # type: ignore[arg-type]
        outcome = await verifier.verify(
            request=None,  # type: ignore[arg-type]
            headers={"X-Agent-Service-Account-Token": SA_TOKEN},
            now=0,
        )
        assert (outcome.verdict, outcome.reason, outcome.security) == (
            Verdict.REFUSED,
            "sa_pod_lookup_failed",
            False,
        )
        assert SA_TOKEN not in (outcome.message or "")

    def test_live_pod_gives_its_controller(self) -> None:
        owner = OwnerRef(kind="ReplicaSet", name=OWNER["name"], uid=OWNER["uid"])
        pod = LivePod(namespace=NAMESPACE, name=POD_NAME, uid=POD_UID, controller=owner)
        outcome = check_token_pod(_accepted(), pod)
        assert (outcome.verdict, outcome.controller) == (Verdict.ACCEPTED, owner)

    def test_refused_outcome_passes_through(self) -> None:
        refused = CredentialOutcome(
            verdict=Verdict.REFUSED,
            approval_method=ApprovalMethod.SERVICE_ACCOUNT,
            reason="sa_not_allowed",
        )
        assert check_token_pod(refused, None) is refused
