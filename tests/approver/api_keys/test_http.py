"""The admin API routes for API keys, through a real aiohttp server on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from approver.api_keys import ApiKeyAdmin, ApiKeyAuthenticator, SecretFolderKeys, generate_key
from approver.http.api_keys import ADMIN_API_KEYS_PATH, add_routes
from approver.http.app_keys import AUDIT_KEY
from approver.http.errors import error_middleware
from tests.approver.helpers import Clock, RecordingSink

ADMIN_TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def authorize(request: web.Request) -> str:
    """A stand-in for the approver's bearer check: one token, actor 'alice'."""
    if request.headers.get("Authorization") != f"Bearer {ADMIN_TOKEN}":
        raise web.HTTPUnauthorized(
            text='{"error": "unauthorized"}', content_type="application/json"
        )
    return "alice"


@pytest.fixture
def folder(tmp_path: Path) -> SecretFolderKeys:
    path = tmp_path / "keys"
    path.mkdir()
    return SecretFolderKeys(path)


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    engine: AsyncEngine,
    audit: RecordingSink,
    clock: Clock,
    folder: SecretFolderKeys,
) -> TestClient[Any, Any]:
    # The approver's error boundary, as create_app mounts it (it audits refusals on AUDIT_KEY).
    app = web.Application(middlewares=[error_middleware(64 * 1024)])
    app[AUDIT_KEY] = audit
    admin = ApiKeyAdmin(engine=engine, audit=audit, clock=clock, folder=folder)
    add_routes(app, admin=admin, authorize=authorize)
    return await aiohttp_client(app)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
class TestRoutes:
    async def test_create_shows_the_key_once(
        self, client: TestClient[Any, Any], engine: AsyncEngine, clock: Clock
    ) -> None:
        """POST creates (201, no-store) and returns the key; the key then approves."""
        body = {
            "name": "docker-hosts-eu",
            "scope": {"platforms": ["docker"], "agentIdPattern": "docker-eu-*", "maxAgents": 3},
            "expiresInSeconds": 86400,
        }
        response = await client.post(ADMIN_API_KEYS_PATH, json=body, headers=AUTH)
        assert response.status == 201
        assert response.headers["Cache-Control"] == "no-store"
        created = await response.json()
        key = created["key"]
        meta = created["apiKey"]
        assert key.startswith(meta["prefix"])
        assert meta["state"] == "active"
        assert meta["source"] == "api"
        assert meta["scope"] == body["scope"]
        assert meta["createdBy"] == "alice"
        assert meta["expiresAt"] == "2025-12-01T02:00:00Z"
        outcome = await ApiKeyAuthenticator(engine=engine).authenticate(
            agent_id="docker-eu-1", platform="docker", presented=key, now=clock.now
        )
        assert outcome.accepted

    async def test_list_never_shows_secrets(
        self, client: TestClient[Any, Any], folder: SecretFolderKeys
    ) -> None:
        """GET lists database and Secret keys with metadata only."""
        provisioned = generate_key()
        (folder.directory / "gitops").write_text(provisioned.key)
        created = await (
            await client.post(ADMIN_API_KEYS_PATH, json={"name": "k"}, headers=AUTH)
        ).json()
        response = await client.get(ADMIN_API_KEYS_PATH, headers=AUTH)
        assert response.status == 200
        text = await response.text()
        assert created["key"] not in text
        assert created["key"].split("_")[2] not in text
        assert provisioned.key.split("_")[2] not in text
        listed = (await response.json())["apiKeys"]
        assert [(k["name"], k["source"]) for k in listed] == [("k", "api"), ("gitops", "secret")]
        assert all("key" not in k and "secretHash" not in k for k in listed)

    async def test_revoke(self, client: TestClient[Any, Any], folder: SecretFolderKeys) -> None:
        """POST .../revoke: 200 then changed=false; 404 unknown; 409 for a Secret key."""
        created = await (
            await client.post(ADMIN_API_KEYS_PATH, json={"name": "k"}, headers=AUTH)
        ).json()
        path = f"{ADMIN_API_KEYS_PATH}/{created['apiKey']['id']}/revoke"
        first = await client.post(path, headers=AUTH)
        assert first.status == 200
        assert (await first.json())["apiKey"]["state"] == "revoked"
        again = await (await client.post(path, headers=AUTH)).json()
        assert again["changed"] is False
        unknown = await client.post(
            f"{ADMIN_API_KEYS_PATH}/{generate_key().key_id}/revoke", headers=AUTH
        )
        assert unknown.status == 404
        assert (await unknown.json())["error"] == "api_key_not_found"
        bad_id = await client.post(f"{ADMIN_API_KEYS_PATH}/NOT-AN-ID/revoke", headers=AUTH)
        assert bad_id.status == 404
        provisioned = generate_key()
        (folder.directory / "gitops").write_text(provisioned.key)
        folder.load()
        managed = await client.post(
            f"{ADMIN_API_KEYS_PATH}/{provisioned.key_id}/revoke", headers=AUTH
        )
        assert managed.status == 409
        assert (await managed.json())["error"] == "api_key_not_managed"

    async def test_rotate(self, client: TestClient[Any, Any]) -> None:
        """POST .../rotate: 201 with the new key (no-store) and the old key, now rotating."""
        created = await (
            await client.post(ADMIN_API_KEYS_PATH, json={"name": "k"}, headers=AUTH)
        ).json()
        path = f"{ADMIN_API_KEYS_PATH}/{created['apiKey']['id']}/rotate"
        response = await client.post(path, json={"graceSeconds": 600}, headers=AUTH)
        assert response.status == 201
        assert response.headers["Cache-Control"] == "no-store"
        rotated = await response.json()
        assert rotated["key"] != created["key"]
        assert rotated["replaced"]["state"] == "rotating"
        assert rotated["replaced"]["replacedBy"] == rotated["apiKey"]["id"]
        assert rotated["replaced"]["revokeAt"] == "2025-11-30T02:10:00Z"
        without_body = await client.post(
            f"{ADMIN_API_KEYS_PATH}/{rotated['apiKey']['id']}/rotate", headers=AUTH
        )
        assert without_body.status == 201
        twice = await client.post(path, headers=AUTH)
        assert twice.status == 409
        assert (await twice.json())["error"] == "api_key_already_rotated"

    @pytest.mark.parametrize(
        ("body", "status", "error"),
        [
            ({}, 400, "invalid_request"),
            ({"name": ""}, 400, "invalid_request"),
            ({"name": "k", "scope": {"maxAgents": 0}}, 400, "invalid_request"),
            ({"name": "k", "expiresAt": "2020-01-01T00:00:00Z"}, 400, "invalid_request"),
            ({"name": "k", "expiresAt": "2030-01-01T00:00:00"}, 400, "invalid_request"),
            (
                {"name": "k", "expiresAt": "2030-01-01T00:00:00Z", "expiresInSeconds": 600},
                400,
                "invalid_request",
            ),
            ({"name": "k", "secret": "mine"}, 400, "invalid_request"),
        ],
    )
    async def test_bad_create_bodies(
        self, client: TestClient[Any, Any], body: dict[str, Any], status: int, error: str
    ) -> None:
        """Invalid bodies are 400 with a code; nothing is created."""
        response = await client.post(ADMIN_API_KEYS_PATH, json=body, headers=AUTH)
        assert response.status == status
        assert (await response.json())["error"] == error
        listed = await (await client.get(ADMIN_API_KEYS_PATH, headers=AUTH)).json()
        assert listed["apiKeys"] == []

    async def test_not_json(self, client: TestClient[Any, Any]) -> None:
        """A non-JSON body is 415; broken JSON is 400."""
        response = await client.post(ADMIN_API_KEYS_PATH, data="name=k", headers=AUTH)
        assert response.status == 415
        broken = await client.post(
            ADMIN_API_KEYS_PATH,
            data="{",
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert broken.status == 400

    @pytest.mark.parametrize(
        ("method", "suffix"),
        [
            ("POST", ""),
            ("GET", ""),
            ("POST", "/aaaaaaaaaaaaaaaa/revoke"),
            ("POST", "/aaaaaaaaaaaaaaaa/rotate"),
        ],
    )
    async def test_every_route_needs_the_admin(
        self, client: TestClient[Any, Any], audit: RecordingSink, method: str, suffix: str
    ) -> None:
        """Without the bearer token every route answers 401 and nothing happens."""
        response = await client.request(method, ADMIN_API_KEYS_PATH + suffix, json={"name": "k"})
        assert response.status == 401
        assert audit.events == []
