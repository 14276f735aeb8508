"""Steps 3 and 4 wired into the real application: API keys (created through the admin API) in
``X-Agent-API-Key``, and service-account tokens in ``X-Agent-Service-Account-Token`` checked
by TokenReview against the local Kubernetes API stand-in, alone and together with a bootstrap
token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from approver.config import ApproverSettings, ConfigError
from approver.http.app import create_app
from approver.http.app_keys import STORE_KEY
from approver.store import Store
from approver.verifiers import (
    ApiKeyVerifier,
    ServiceAccountBinding,
    ServiceAccountVerifier,
    close_verifiers,
    configured_bootstrap_checks,
    configured_verifiers,
)
from bootstrap_token import KeySet, SigningKey
from tests.approver.helpers import (
    AGENT_ID,
    ANNOTATION,
    NAMESPACE,
    OWNER,
    POD_NAME,
    SECOND_POD_NAME,
    SERVICE_ACCOUNT,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
    settings,
)
from tests.approver.service_accounts.issuer import Issuer
from tests.kube_api import KubeApi, api_client, make_pod

REGISTER = "/api/v1/agents/register"
API_KEYS = "/api/v1/admin/api-keys"
ADMIN_TOKEN = "alice-admin-token-0123456789"
SA_AUDIENCE = "agent-approver"
_ISSUER = Issuer("RSA")
# Projected tokens as the kubelet mints them (the stand-in's TokenReview decides, by token).
SA_TOKEN = _ISSUER.mint()
OTHER_SA_TOKEN = _ISSUER.mint(pod=(SECOND_POD_NAME, "another-pod-uid"))
UNKNOWN_SA_TOKEN = _ISSUER.mint(jti="never-registered")
DOCKER_AGENT = "docker-host-eu-1"

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-tokens"
    path.write_text(f"alice:{ADMIN_TOKEN}\n", encoding="utf-8")
    return path


@pytest.fixture
async def kube() -> AsyncIterator[KubeApi]:
    async with KubeApi() as server:
        yield server


async def register(
    client: Client,
    agent_id: str = AGENT_ID,
    *,
    api_key: str | None = None,
    sa_token: str | None = None,
    platform: str = "kubernetes",
) -> tuple[int, dict[str, Any]]:
    headers = {}
    if api_key is not None:
        headers["X-Agent-API-Key"] = api_key
    if sa_token is not None:
        headers["X-Agent-Service-Account-Token"] = sa_token
    body = registration_body(agent_id)
    body["platform"] = platform
    response = await client.post(REGISTER, json=body, headers=headers)
    return response.status, await response.json()


async def create_key(client: Client, **body: Any) -> dict[str, Any]:
    response = await client.post(API_KEYS, json={"name": "docker-hosts", **body}, headers=admin())
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


# --- API keys ---------------------------------------------------------------------------------


def api_key_settings(jwks_file: Path, tokens_file: Path, *, enabled: bool) -> ApproverSettings:
    return settings(
        jwks_file=jwks_file, admin_tokens_file=tokens_file, api_keys={"enabled": enabled}
    )


async def api_key_client(
    aiohttp_client: ClientFactory,
    approver_settings: ApproverSettings,
    key_set: KeySet,
    store: Store,
) -> Client:
    app = create_app(
        approver_settings,
        key_set=key_set,
        store=store,
        clock=Clock(),
        audit=RecordingSink(),
        background=False,
    )
    return await aiohttp_client(app)


class TestApiKeys:
    async def test_valid_key_approves(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        tokens_file: Path,
        key_set: KeySet,
        store: Store,
    ) -> None:
        """A key created through the admin API approves an agent outside the cluster, with
        approvalMethod api_key; its maxAgents slot is claimed (SQLite and PostgreSQL)."""
        client = await api_key_client(
            aiohttp_client,
            api_key_settings(jwks_file, tokens_file, enabled=True),
            key_set,
            store,
        )
        created = await create_key(client, scope={"maxAgents": 1})
        status, body = await register(
            client, DOCKER_AGENT, api_key=created["key"], platform="docker"
        )
        assert status == 200, body
        assert (body["approvalStatus"], body["approvalMethod"]) == ("approved", "api_key")
        record = await client.app[STORE_KEY].get_agent(DOCKER_AGENT)
        assert record is not None
        assert record.approval_method is not None
        assert record.approval_method.value == "api_key"
        listed = await (await client.get(API_KEYS, headers=admin())).json()
        assert listed["apiKeys"][0]["approvedCount"] == 1
        status, body = await register(
            client, DOCKER_AGENT + "-2", api_key=created["key"], platform="docker"
        )
        assert (status, body["reason"]) == (202, "api_key_max_agents_reached")

    async def test_revoked_and_unknown_keys(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        tokens_file: Path,
        key_set: KeySet,
        sqlite_store: Store,
    ) -> None:
        """A revoked key and a key whose id names nothing are security refusals: 403, no
        record; a malformed key waits for an administrator."""
        client = await api_key_client(
            aiohttp_client,
            api_key_settings(jwks_file, tokens_file, enabled=True),
            key_set,
            sqlite_store,
        )
        created = await create_key(client)
        response = await client.post(
            f"{API_KEYS}/{created['apiKey']['id']}/revoke", headers=admin()
        )
        assert response.status == 200
        # Each key change is in the audit hash chain with it (not only emitted).
        stored = [c.event for c in await sqlite_store.list_audit(limit=10)]
        assert [(e.event, e.actor) for e in stored] == [
            ("api_key.create", "alice"),
            ("api_key.revoke", "alice"),
        ]
        assert created["key"] not in "".join(e.model_dump_json() for e in stored)
        status, body = await register(client, DOCKER_AGENT, api_key=created["key"])
        assert (status, body["reason"]) == (403, "api_key_revoked")
        unknown = "abk_" + "z" * 16 + "_" + created["key"].rsplit("_", 1)[1]
        status, body = await register(client, DOCKER_AGENT, api_key=unknown)
        assert status == 403
        assert body["reason"] in ("api_key_unknown", "api_key_malformed")
        assert await client.app[STORE_KEY].get_agent(DOCKER_AGENT) is None
        status, body = await register(client, DOCKER_AGENT, api_key="legacy-shared-key")
        assert (status, body["reason"]) == (202, "api_key_malformed")

    async def test_admin_routes_need_the_admin_token(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        tokens_file: Path,
        key_set: KeySet,
        sqlite_store: Store,
    ) -> None:
        client = await api_key_client(
            aiohttp_client,
            api_key_settings(jwks_file, tokens_file, enabled=True),
            key_set,
            sqlite_store,
        )
        response = await client.get(API_KEYS)
        assert response.status == 401
        response = await client.post(
            API_KEYS, json={"name": "x"}, headers={"Authorization": "Bearer nope"}
        )
        assert response.status == 401

    async def test_disabled_path_stays_pending(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        tokens_file: Path,
        key_set: KeySet,
        sqlite_store: Store,
    ) -> None:
        """apiKeys.enabled false: a key, even a valid one, is not looked at: pending as before."""
        client = await api_key_client(
            aiohttp_client,
            api_key_settings(jwks_file, tokens_file, enabled=False),
            key_set,
            sqlite_store,
        )
        created = await create_key(client)
        status, body = await register(client, DOCKER_AGENT, api_key=created["key"])
        assert (status, body["approvalStatus"]) == (202, "pending")
        assert body.get("approvalMethod") is None


# --- service-account tokens -------------------------------------------------------------------


def sa_settings(jwks_file: Path, *, pods: bool = True, **sa: Any) -> ApproverSettings:
    return settings(
        jwks_file=jwks_file,
        kubernetes={"enabled": pods},
        service_account_tokens={"enabled": True, "audience": SA_AUDIENCE, **sa},
    )


def stamped(token: str, name: str = POD_NAME) -> dict[str, Any]:
    return make_pod(
        NAMESPACE,
        name,
        annotations={ANNOTATION: token},
        owner=OWNER,
        generate_name=name[:-5],
    )


async def sa_client(
    aiohttp_client: ClientFactory,
    approver_settings: ApproverSettings,
    key_set: KeySet,
    store: Store,
    kube: KubeApi,
) -> Client:
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


class TestServiceAccountTokens:
    @pytest.mark.parametrize("pods", [True, False], ids=["pod-access", "tokenreview-only"])
    async def test_valid_token_approves_and_records_the_pod(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        key_set: KeySet,
        sqlite_store: Store,
        kube: KubeApi,
        pods: bool,
    ) -> None:
        """A pod-bound token of an allowed service account approves with service_account; the
        pod's name and UID are recorded (with or without kubernetes.enabled)."""
        pod = kube.add_pod(make_pod(NAMESPACE, POD_NAME))
        kube.add_token(
            SA_TOKEN,
            audiences=(SA_AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=pod,
        )
        client = await sa_client(
            aiohttp_client,
            sa_settings(jwks_file, pods=pods, allow=[f"{NAMESPACE}:{SERVICE_ACCOUNT}"]),
            key_set,
            sqlite_store,
            kube,
        )
        status, body = await register(client, sa_token=SA_TOKEN)
        assert status == 200, body
        assert body["approvalMethod"] == "service_account"
        record = await client.app[STORE_KEY].get_agent(AGENT_ID)
        assert record is not None
        assert (record.pod_name, record.pod_uid) == (POD_NAME, pod["metadata"]["uid"])
        assert any(r.path.endswith("/tokenreviews") for r in kube.requests)

    async def test_not_allowed_and_unauthenticated(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        key_set: KeySet,
        sqlite_store: Store,
        kube: KubeApi,
    ) -> None:
        """Not on the allow-list: pending sa_not_allowed; a token the API server does not
        know: 403 sa_token_unauthenticated."""
        pod = kube.add_pod(make_pod(NAMESPACE, POD_NAME))
        kube.add_token(
            SA_TOKEN,
            audiences=(SA_AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=pod,
        )
        client = await sa_client(
            aiohttp_client, sa_settings(jwks_file), key_set, sqlite_store, kube
        )
        status, body = await register(client, sa_token=SA_TOKEN)
        assert (status, body["reason"]) == (202, "sa_not_allowed")
        status, body = await register(client, sa_token=UNKNOWN_SA_TOKEN)
        assert (status, body["reason"]) == (403, "sa_token_unauthenticated")

    async def test_with_the_bootstrap_token_of_the_same_pod(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        key_set: KeySet,
        signing_key: SigningKey,
        sqlite_store: Store,
        kube: KubeApi,
    ) -> None:
        """Both tokens name the same pod (bootstrapBinding required): the bootstrap token
        approves."""
        token = mint_token(signing_key)
        pod = kube.add_pod(stamped(token))
        kube.add_token(
            SA_TOKEN,
            audiences=(SA_AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=pod,
        )
        client = await sa_client(
            aiohttp_client,
            sa_settings(jwks_file, bootstrap_binding="required"),
            key_set,
            sqlite_store,
            kube,
        )
        status, body = await register(client, api_key=token, sa_token=SA_TOKEN)
        assert status == 200, body
        assert body["approvalMethod"] == "namespace"

    @pytest.mark.parametrize("other", ["name", "uid"])
    async def test_with_the_bootstrap_token_of_another_pod(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        key_set: KeySet,
        signing_key: SigningKey,
        sqlite_store: Store,
        kube: KubeApi,
        other: str,
    ) -> None:
        """The service-account token is another pod's (another name, or the same name with
        another UID): 403 with the mismatch, nothing recorded."""
        token = mint_token(signing_key)
        kube.add_pod(stamped(token))
        if other == "name":
            sa_pod = kube.add_pod(make_pod(NAMESPACE, SECOND_POD_NAME))
        else:
            sa_pod = make_pod(NAMESPACE, POD_NAME)  # same name, a UID of its own
        kube.add_token(
            OTHER_SA_TOKEN,
            audiences=(SA_AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=sa_pod,
            check_pod=False,
        )
        client = await sa_client(
            aiohttp_client, sa_settings(jwks_file), key_set, sqlite_store, kube
        )
        status, body = await register(client, api_key=token, sa_token=OTHER_SA_TOKEN)
        expected = "sa_pod_name_mismatch" if other == "name" else "sa_pod_uid_mismatch"
        assert (status, body["reason"]) == (403, expected)
        assert await client.app[STORE_KEY].get_agent(AGENT_ID) is None

    async def test_required_binding_without_a_service_account_token(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        key_set: KeySet,
        signing_key: SigningKey,
        sqlite_store: Store,
        kube: KubeApi,
    ) -> None:
        """bootstrapBinding required: the bootstrap token alone waits."""
        token = mint_token(signing_key)
        kube.add_pod(stamped(token))
        client = await sa_client(
            aiohttp_client,
            sa_settings(jwks_file, bootstrap_binding="required"),
            key_set,
            sqlite_store,
            kube,
        )
        status, body = await register(client, api_key=token)
        assert (status, body["reason"]) == (202, "no_service_account_token")

    async def test_disabled_path_stays_pending(
        self,
        aiohttp_client: ClientFactory,
        jwks_file: Path,
        key_set: KeySet,
        sqlite_store: Store,
        kube: KubeApi,
    ) -> None:
        """serviceAccountTokens disabled: the header is not looked at, no TokenReview."""
        pod = kube.add_pod(make_pod(NAMESPACE, POD_NAME))
        kube.add_token(
            SA_TOKEN,
            audiences=(SA_AUDIENCE,),
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            pod=pod,
        )
        approver_settings = settings(jwks_file=jwks_file, kubernetes={"enabled": True})
        client = await sa_client(aiohttp_client, approver_settings, key_set, sqlite_store, kube)
        status, body = await register(client, sa_token=SA_TOKEN)
        assert (status, body["approvalStatus"]) == (202, "pending")
        assert not any(r.path.endswith("/tokenreviews") for r in kube.requests)


# --- configuration ----------------------------------------------------------------------------


class TestConfigured:
    def test_nothing_by_default(self, jwks_file: Path) -> None:
        approver_settings = settings(jwks_file=jwks_file)
        assert configured_verifiers(approver_settings, kube=None) == ()
        assert configured_bootstrap_checks(approver_settings) == ()

    async def test_both_in_decision_order(self, jwks_file: Path, kube: KubeApi) -> None:
        approver_settings = settings(
            jwks_file=jwks_file,
            kubernetes={"enabled": True},
            api_keys={"enabled": True},
            service_account_tokens={"enabled": True, "bootstrapBinding": "required"},
        )
        client = api_client(kube)
        try:
            verifiers = configured_verifiers(approver_settings, kube=client)
            assert [type(v) for v in verifiers] == [ApiKeyVerifier, ServiceAccountVerifier]
            await close_verifiers(verifiers)
        finally:
            await client.close()
        assert configured_bootstrap_checks(approver_settings) == (
            ServiceAccountBinding(required=True),
        )

    async def test_tokenreview_needs_a_kubernetes_client(
        self, jwks_file: Path, key_set: KeySet, tmp_path: Path
    ) -> None:
        """TokenReview without the pod watch still needs a client (not the pod binding)."""
        approver_settings = settings(jwks_file=jwks_file, service_account_tokens={"enabled": True})
        assert approver_settings.uses_kubernetes_api
        assert not approver_settings.kubernetes.enabled
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
        try:
            with pytest.raises(ConfigError, match="serviceAccountTokens"):
                create_app(approver_settings, key_set=key_set, store=store)
        finally:
            await store.close()
