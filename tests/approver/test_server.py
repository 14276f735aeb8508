"""The HTTP API with aiohttp's test client: registration answers, admin API, 503, health."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from approver.config import ApproverSettings
from approver.http.app import create_app
from approver.http.app_keys import AUDIT_KEY, STORE_KEY
from approver.http.common import UNMATCHED_ROUTE, authenticate
from approver.store import Store
from bootstrap_token import KeySet, SigningKey, fingerprint
from tests.approver.helpers import (
    AGENT_ID,
    NOW,
    SECOND_AGENT_ID,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
    settings,
    tamper,
)
from tests.approver.test_store import closed_port
from tests.payloads import streamspace_registration

REGISTER = "/api/v1/agents/register"
_CHARS = (
    "characters of ASCII letters, digits, '.', '_', '-' or ':', starting with a letter or a digit"
)
#: The rules as the 400 answers word them (a message equal to these echoes no value).
AGENT_ID_RULE = f"must be 1..253 {_CHARS}"
PLATFORM_RULE = f"platform: must be 1..64 {_CHARS}"
ADMIN = "/api/v1/admin/agents"
ALICE_TOKEN = "alice-admin-token-0123456789"
BARE_TOKEN = "bare-admin-token-9876543210"

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-tokens"
    path.write_text(f"# approver admins\nalice:{ALICE_TOKEN}\n{BARE_TOKEN}\n", encoding="utf-8")
    return path


@pytest.fixture
def approver_settings(jwks_file: Path, tokens_file: Path) -> ApproverSettings:
    return settings(jwks_file=jwks_file, admin_tokens_file=tokens_file, retry_after_seconds=7)


@pytest.fixture
def audit() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    approver_settings: ApproverSettings,
    key_set: KeySet,
    sqlite_store: Store,
    audit: RecordingSink,
    clock: Clock,
) -> Client:
    app = create_app(
        approver_settings, key_set=key_set, store=sqlite_store, clock=clock, audit=audit
    )
    return await aiohttp_client(app)


@pytest.fixture
def token(signing_key: SigningKey) -> str:
    return mint_token(signing_key)


def alice() -> dict[str, str]:
    return {"Authorization": f"Bearer {ALICE_TOKEN}"}


async def register(
    client: Client, agent_id: str = AGENT_ID, *, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"X-Agent-API-Key": token} if token else {}
    response = await client.post(REGISTER, json=registration_body(agent_id), headers=headers)
    return response.status, await response.json()


class TestRegister:
    async def test_approved(self, client: Client, token: str) -> None:
        """A valid token gets 200 with the fields StreamSpace's agent decodes at the top level."""
        status, body = await register(client, token=token)
        assert status == 200
        assert body["approvalStatus"] == "approved"
        assert (body["agentId"], body["platform"], body["status"]) == (
            AGENT_ID,
            "kubernetes",
            "active",
        )
        assert (body["approvalMethod"], body["reason"]) == ("namespace", "bootstrap_token_accepted")
        assert uuid.UUID(body["id"]).version == 4
        assert body["createdAt"] == "2025-11-30T02:00:00Z"
        assert datetime.fromisoformat(body["createdAt"]).timestamp() == NOW
        assert body["message"] == "agent approved"

    async def test_pending_without_token(self, client: Client) -> None:
        """No token gets 202 pending with the reason and the record's id."""
        status, body = await register(client)
        assert status == 202
        assert (body["approvalStatus"], body["reason"], body["status"]) == (
            "pending",
            "manual_approval_required",
            "pending",
        )
        assert body["approvalMethod"] is None
        assert body["agentId"] == AGENT_ID
        assert uuid.UUID(body["id"])

    async def test_tampered_token(self, client: Client, token: str) -> None:
        """A tampered token gets 403 with nothing but the verdict and its reason."""
        status, body = await register(client, token=tamper(token))
        assert status == 403
        assert body == {
            "approvalStatus": "rejected",
            "message": "agent registration rejected",
            "reason": "bad_signature",
        }

    async def test_copied_token(self, client: Client, token: str) -> None:
        """The same token on a second agent gets 403 token_reused."""
        assert (await register(client, token=token))[0] == 200
        status, body = await register(client, SECOND_AGENT_ID, token=token)
        assert (status, body["reason"]) == (403, "token_reused")

    async def test_retry_gets_a_new_key(self, client: Client, token: str) -> None:
        """A retry with the same token (the answer was lost) gets the same 200 and record id
        with a new API key."""
        first = await register(client, token=token)
        again = await register(client, token=token)
        first_key, again_key = first[1].pop("apiKey"), again[1].pop("apiKey")
        assert first_key.startswith("aga_")
        assert again_key.startswith("aga_")
        assert first_key != again_key
        assert again == first

    @pytest.mark.parametrize(
        ("body", "error", "mentions"),
        [
            (b"{not json", "invalid_json", "not JSON"),
            (b"", "invalid_json", "not JSON"),
            (b"[]", "invalid_request", "body"),
            (b'{"platform": "kubernetes"}', "invalid_request", "agentId"),
            (
                b'{"agentId": "' + b"a" * 254 + b'", "platform": "kubernetes"}',
                "invalid_agent_id",
                "agentId: must be 1..253 characters",
            ),
            (
                b'{"agentId": "", "platform": "kubernetes"}',
                "invalid_agent_id",
                "agentId: must be 1..253 characters",
            ),
            (b'{"agentId": "a", "platform": 7}', "invalid_request", "platform"),
        ],
        ids=[
            "broken json",
            "empty body",
            "array",
            "no agentId",
            "agentId too long",
            "empty agentId",
            "platform not a string",
        ],
    )
    async def test_malformed_body(
        self, client: Client, body: bytes, error: str, mentions: str
    ) -> None:
        """A body that is not StreamSpace's registration shape gets 400 naming the problem."""
        response = await client.post(
            REGISTER, data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        answer = await response.json()
        assert answer["error"] == error
        assert mentions in answer["message"]

    @pytest.mark.parametrize(
        "agent_id",
        [
            "k8s-prod-cluster-agent\x1b[31m-red",
            "agent\nforged-log-line",
            "agent\x00nul",
            "agent with space",
            "agent/../../admin",
            "agent%2e%2e",
            "..",
            "-leading-dash",
            "agent\u0430",  # Cyrillic a: a look-alike letter
            "a" * 254,
            "",
        ],
        ids=["escape", "newline", "nul", "space", "slash", "percent", "dot-dot", "leading dash",
             "non-ascii", "254 chars", "empty"],
    )  # fmt: skip
    async def test_agent_id_outside_the_rule(
        self, client: Client, audit: RecordingSink, agent_id: str
    ) -> None:
        """An agentId outside the rule gets 400 invalid_agent_id naming the field and the rule
        (never the value), no record, and an audit event."""
        response = await client.post(REGISTER, json=registration_body(agent_id))
        assert response.status == 400
        assert await response.json() == {
            "error": "invalid_agent_id",
            "message": f"agentId: {AGENT_ID_RULE}",
        }
        store = client.app[STORE_KEY]
        assert await store.list_agents() == []
        assert await store.list_audit() == []
        event = audit.events[-1]
        assert (event.event, event.decision, event.reason) == (
            "agent.register",
            "invalid",
            "invalid_agent_id",
        )
        assert event.agent_id is None
        assert event.message == f"POST /api/v1/agents/register: agentId: {AGENT_ID_RULE}"

    @pytest.mark.parametrize(
        "agent_id",
        [
            AGENT_ID,
            "k8s-prod-cluster-streamspace-k8s-agent-7d9f8b6c5-bb9n5",
            "prod-eu-1:streamspace-k8s-agent-7d9f8b6c5-bb9n5",
            "Agent_1.example",
            "a",
            "a" * 253,
        ],
    )
    async def test_agent_id_inside_the_rule(self, client: Client, agent_id: str) -> None:
        """Real StreamSpace ids and the documented characters are accepted up to 253."""
        status, body = await register(client, agent_id)
        assert (status, body["agentId"]) == (202, agent_id)

    @pytest.mark.parametrize(
        ("member", "value", "message"),
        [
            ("platform", "kube\x1b[0mrnetes", PLATFORM_RULE),
            ("platform", "k" * 65, PLATFORM_RULE),
            ("platform", "", PLATFORM_RULE),
        ],
        ids=["platform escape", "platform too long", "platform empty"],
    )  # fmt: skip
    async def test_labels_outside_the_rule(
        self, client: Client, audit: RecordingSink, member: str, value: str, message: str
    ) -> None:
        """platform takes the agent id's characters, bounded: 400 invalid_request, no record,
        an audit event."""
        body = {**registration_body(), member: value}
        response = await client.post(REGISTER, json=body)
        assert response.status == 400
        answer = await response.json()
        assert answer["error"] == "invalid_request"
        assert answer["message"] == message
        assert await client.app[STORE_KEY].list_agents() == []
        assert (audit.events[-1].decision, audit.events[-1].reason) == (
            "invalid",
            "invalid_request",
        )

    @pytest.mark.parametrize(
        ("member", "value", "stored"),
        [
            ("region", "eu\nwest", None),
            ("region", "r" * 129, None),
            ("region", 5, None),
            ("capacity", {"maxCpu": "lots"}, {"maxCpu": "lots"}),
            ("capacity", {"maxSessions": 100, "cpu": "64 cores", "gpu": {"count": 1}},
             {"maxSessions": 100, "cpu": "64 cores", "gpu": {"count": 1}}),
            ("capacity", [1, 2], None),
            ("metadata", [], {}),
            ("metadata", "x", {}),
        ],
        ids=["region newline", "region too long", "region number", "capacity old type changed",
             "capacity new member", "capacity array", "metadata array", "metadata string"],
    )  # fmt: skip
    async def test_members_only_stored_never_refused(
        self, client: Client, member: str, value: object, stored: object
    ) -> None:
        """A member the approver only stores is kept as sent when it fits (an object for
        capacity and metadata, a label for region) and dropped otherwise, never a 400: a 400
        is fatal to StreamSpace's agent (agents/k8s-agent/main.go, registerAgent)."""
        body = {**registration_body(), member: value}
        response = await client.post(REGISTER, json=body)
        assert response.status == 202
        [record] = await client.app[STORE_KEY].list_agents()
        assert getattr(record, member) == stored

    @pytest.mark.parametrize("key", ["AgentID", "agentid", "AGENTID", "Platform", "Metadata"])
    async def test_member_spelt_in_another_case(self, client: Client, key: str) -> None:
        """A member named like one StreamSpace reads but for case is refused (400): Go's JSON
        decoder would take it for that member, so the approver and StreamSpace would read two
        different bodies; nothing is written."""
        body = {**registration_body(), key: "k8s-prod-cluster-someone-else-x2x7q"}
        response = await client.post(REGISTER, json=body)
        assert response.status == 400
        answer = await response.json()
        assert answer["error"] == "invalid_request"
        assert "case" in answer["message"]
        assert await client.app[STORE_KEY].list_agents() == []

    async def test_streamspace_agent_request_byte_for_byte(self, client: Client) -> None:
        """StreamSpace's own agent's request (the fixture: body bytes and headers as sent by
        agents/k8s-agent/main.go registerAgent) is accepted, and its capacity stored as sent."""
        fixture = streamspace_registration()
        headers = {
            name: value
            for name, value in fixture["headers"].items()
            if name not in ("Host", "Content-Length", "X-Agent-Api-Key")
        }
        response = await client.post(
            REGISTER, data=str(fixture["body"]).encode("utf-8"), headers=headers
        )
        assert response.status == 202
        [record] = await client.app[STORE_KEY].list_agents()
        assert record.agent_id == "k8s-prod-cluster-streamspace-k8s-agent-7d9f8b6c5-bb9n5"
        assert record.capacity == {"maxSessions": 100, "cpu": "64 cores", "memory": "256Gi"}
        assert record.metadata == {"kubernetes": True, "namespace": "streamspace"}
        assert record.region == "default"

    async def test_malformed_body_is_audited(self, client: Client, audit: RecordingSink) -> None:
        """Every 400 of the registration endpoint writes an audit event (not stored)."""
        response = await client.post(
            REGISTER, data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        event = audit.events[-1]
        assert (event.event, event.decision, event.reason) == (
            "agent.register",
            "invalid",
            "invalid_json",
        )
        assert await client.app[STORE_KEY].list_audit() == []

    async def test_empty_region_is_still_accepted(self, client: Client) -> None:
        """An empty region (Go's omitempty would leave it out) is accepted as before."""
        response = await client.post(REGISTER, json={**registration_body(), "region": ""})
        assert response.status == 202

    async def test_unknown_members_are_ignored(self, client: Client) -> None:
        """Top-level members StreamSpace may add later are ignored; capacity is stored as sent,
        new members included."""
        body = {**registration_body(), "apiKey": "x", "future": {"field": 1}}
        body["capacity"] = {**body["capacity"], "maxGpu": 4}
        response = await client.post(REGISTER, json=body)
        assert response.status == 202
        stored = await client.app[STORE_KEY].get_agent(AGENT_ID)
        assert stored is not None
        assert stored.capacity == {"maxCpu": 100, "maxMemory": 128, "maxSessions": 100, "maxGpu": 4}

    async def test_not_json(self, client: Client) -> None:
        """A body sent as anything but application/json gets 415."""
        response = await client.post(
            REGISTER, data="agentId=x", headers={"Content-Type": "text/plain"}
        )
        assert response.status == 415
        assert (await response.json())["error"] == "unsupported_media_type"

    async def test_oversized_body(self, client: Client) -> None:
        """A body over 64 KiB is refused with 413 before it is parsed, answered in JSON like
        every other error."""
        body = registration_body(metadata={"padding": "x" * (64 * 1024)})
        response = await client.post(REGISTER, json=body)
        assert response.status == 413
        assert response.content_type == "application/json"
        assert await response.json() == {
            "error": "request_too_large",
            "message": "the request body is over 65536 bytes",
        }
        assert await client.app[STORE_KEY].list_agents() == []

    async def test_router_errors_are_json(self, client: Client) -> None:
        """An unknown path (404) and a wrong method (405, Allow kept) are JSON too."""
        missing = await client.get("/api/v1/nothing-here")
        assert (missing.status, await missing.json()) == (
            404,
            {"error": "not_found", "message": "Not Found"},
        )
        wrong = await client.get(REGISTER)
        assert (wrong.status, await wrong.json()) == (
            405,
            {"error": "method_not_allowed", "message": "Method Not Allowed"},
        )
        assert wrong.headers["Allow"] == "POST"


class TestAdmin:
    async def test_missing_bearer(self, client: Client, audit: RecordingSink) -> None:
        """No Authorization header gets 401 with a Bearer challenge."""
        response = await client.get(ADMIN)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="agent-bootstrap-approver"'
        assert await response.json() == {
            "error": "unauthorized",
            "message": "send Authorization: Bearer <token>",
        }
        assert (audit.events[-1].reason, audit.events[-1].security) == ("missing_bearer", False)

    async def test_wrong_bearer(self, client: Client, audit: RecordingSink) -> None:
        """A wrong token gets 401 invalid_token, and a security event without the token."""
        response = await client.post(
            f"{ADMIN}/{AGENT_ID}/approve", headers={"Authorization": "Bearer guessed-token-123456"}
        )
        assert response.status == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        assert await response.json() == {
            "error": "unauthorized",
            "message": "the bearer token is not one of the configured tokens",
        }
        event = audit.events[-1]
        assert (event.event, event.reason, event.security) == ("admin.auth", "bad_bearer", True)
        assert "guessed-token" not in event.to_json()

    async def test_a_flood_of_bad_bearers_is_a_few_lines(
        self, client: Client, audit: RecordingSink
    ) -> None:
        """admin.auth lines are sampled per reason and source (approver.audit.sampling): 30
        guesses from one address are one line now, not 30, and the 401s are unchanged."""
        for n in range(30):
            response = await client.post(
                f"{ADMIN}/{AGENT_ID}/approve", headers={"Authorization": f"Bearer guess-{n:04d}"}
            )
            assert response.status == 401
        lines = [e for e in audit.events if e.event == "admin.auth"]
        assert [(e.reason, e.security) for e in lines] == [("bad_bearer", True)]

    async def test_list(self, client: Client, token: str, clock: Clock) -> None:
        """Admins list every agent, or those of one status, oldest first."""
        await register(client, token=token)
        clock.now += 1
        await register(client, SECOND_AGENT_ID)
        everyone = await client.get(ADMIN, headers=alice())
        assert everyone.status == 200
        agents = (await everyone.json())["agents"]
        assert [(a["agentId"], a["status"]) for a in agents] == [
            (AGENT_ID, "active"),
            (SECOND_AGENT_ID, "pending"),
        ]
        assert "credentialHash" not in agents[0]
        assert agents[0]["podName"] == "streamspace-k8s-agent-7d9f8b6c5-x2x7q"
        pending = await client.get(ADMIN, params={"status": "pending"}, headers=alice())
        assert [a["agentId"] for a in (await pending.json())["agents"]] == [SECOND_AGENT_ID]

    @pytest.mark.parametrize(
        ("method", "suffix"),
        [("GET", ""), ("DELETE", ""), ("POST", "/approve"), ("POST", "/reject"),
         ("POST", "/revoke")],
    )  # fmt: skip
    async def test_path_agent_id_outside_the_rule(
        self, client: Client, audit: RecordingSink, method: str, suffix: str
    ) -> None:
        """An agent id in the admin path outside the rule (here a percent-encoded escape
        sequence, which aiohttp decodes) gets 400 invalid_agent_id before any lookup, audited
        with the admin as actor."""
        await register(client)
        response = await client.request(method, f"{ADMIN}/agent%1B%5B2J{suffix}", headers=alice())
        assert response.status == 400
        assert await response.json() == {
            "error": "invalid_agent_id",
            "message": f"path agentId: {AGENT_ID_RULE}",
        }
        event = audit.events[-1]
        assert (event.event, event.decision, event.reason, event.actor) == (
            "admin.request",
            "invalid",
            "invalid_agent_id",
            "alice",
        )
        assert "\x1b" not in event.to_json()
        assert "\\u001b" not in event.to_json()
        stored = await client.app[STORE_KEY].list_agents()
        assert [(a.agent_id, a.status.value) for a in stored] == [(AGENT_ID, "pending")]

    async def test_path_agent_id_needs_a_bearer_first(self, client: Client) -> None:
        """Without a bearer the answer is 401, whatever the agent id."""
        response = await client.post(f"{ADMIN}/agent%0A/approve")
        assert response.status == 401

    @pytest.mark.parametrize(
        ("method", "path", "route", "raw"),
        [("GET", f"{ADMIN}/%E2%80%AEtxt.exe", f"{ADMIN}/{{agent_id}}", "txt.exe"),
         ("POST", f"{ADMIN}/%1B%5B2J%1B%5D0;owned%07/approve", f"{ADMIN}/{{agent_id}}/approve",
          "owned"),
         ("DELETE", f"{ADMIN}/{'x' * 5000}", f"{ADMIN}/{{agent_id}}", "x" * 200),
         ("POST", "/api/v1/admin/api-keys/%E2%80%AEevil%0A/rotate",
          "/api/v1/admin/api-keys/{key_id}/rotate", "evil")],
    )  # fmt: skip
    async def test_denied_event_names_the_route_not_the_path(
        self, client: Client, audit: RecordingSink, method: str, path: str, route: str, raw: str
    ) -> None:
        """The admin.auth event of an unauthenticated request names the method and the route
        pattern: the caller's path (a U+202E override, escape sequences, 5,000 characters)
        never reaches the audit log."""
        for headers in ({}, {"Authorization": "Bearer guessed-token-123456"}):
            response = await client.request(method, path, headers=headers)
            assert response.status == 401
            event = audit.events[-1]
            assert (event.event, event.decision) == ("admin.auth", "denied")
            assert event.message == f"{method} {route}"
            assert event.message.isascii()
            assert event.message.isprintable()
            assert raw not in event.to_json()

    async def test_denied_event_without_a_route(
        self, aiohttp_client: ClientFactory, audit: RecordingSink
    ) -> None:
        """A bearer check before routing matched anything names a fixed placeholder."""

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            authenticate(request)
            return await handler(request)

        app = web.Application(middlewares=[guard])
        app[AUDIT_KEY] = audit
        client = await aiohttp_client(app)
        response = await client.get("/%E2%80%AE%1B%5B2J" + "y" * 3000)
        assert response.status == 401
        assert audit.events[-1].message == f"GET {UNMATCHED_ROUTE}"

    @pytest.mark.parametrize(
        ("params", "parameter"),
        [({"namespace": "\u202estreamspace"}, "namespace"),
         ({"namespace": "streamspace\x1b[2J"}, "namespace"),
         ({"namespace": "n" * 3000}, "namespace"), ({"namespace": "Streamspace"}, "namespace"),
         ({"namespace": "stream space"}, "namespace"), ({"namespace": ""}, "namespace"),
         ({"owner": "o" * 3000}, "owner"), ({"owner": ""}, "owner")],
    )  # fmt: skip
    async def test_list_filter_that_can_never_match(
        self, client: Client, audit: RecordingSink, params: dict[str, str], parameter: str
    ) -> None:
        """A namespace filter that is not a DNS-1123 label, or an owner filter that is empty
        or longer than a stored UID, gets 400 invalid_filter naming the parameter only."""
        response = await client.get(ADMIN, params=params, headers=alice())
        assert response.status == 400
        body = await response.json()
        assert body["error"] == "invalid_filter"
        assert body["message"].startswith(f"{parameter}: must be ")
        value = params[parameter]
        assert not value or value not in body["message"]
        event = audit.events[-1]
        assert (event.event, event.reason, event.actor) == (
            "admin.request",
            "invalid_filter",
            "alice",
        )
        assert event.message == f"GET {ADMIN}: {body['message']}"

    async def test_list_filters_in_the_stored_event_are_neutralised(
        self, client: Client, audit: RecordingSink
    ) -> None:
        """An owner filter with an escape sequence and a U+202E override (it could match a
        hand-written ownerReferences uid) is listed, and the stored admin.list message holds
        it escaped: printable ASCII only."""
        owner = "\x1b[2J\u202eevil\n"
        response = await client.get(
            ADMIN, params={"owner": owner, "namespace": "streamspace"}, headers=alice()
        )
        assert response.status == 200
        listing = await client.get("/api/v1/audit", params={"event": "admin.list"}, headers=alice())
        stored = (await listing.json())["events"][-1]["message"]
        assert stored == "namespace=streamspace owner_uid=\\x1b[2J\\u202eevil\\n count=0"
        assert stored.isascii()
        assert stored.isprintable()
        assert audit.events[-2].message == stored

    async def test_bulk_approve_values_in_the_stored_event_are_neutralised(
        self, client: Client
    ) -> None:
        """bulk-approve refuses a namespace that is not a DNS-1123 label, and its stored
        event renders the owner UID escaped."""
        refused = await client.post(
            f"{ADMIN}/bulk-approve",
            json={"ownerUid": "rs", "namespace": "\u202estreamspace"},
            headers=alice(),
        )
        assert refused.status == 400
        assert (await refused.json())["message"].startswith("namespace: must be a DNS-1123")
        response = await client.post(
            f"{ADMIN}/bulk-approve", json={"ownerUid": "rs\x1b[2J\u202e"}, headers=alice()
        )
        assert response.status == 200
        listing = await client.get(
            "/api/v1/audit", params={"event": "admin.bulk_approve"}, headers=alice()
        )
        stored = (await listing.json())["events"][-1]["message"]
        assert stored == "owner_uid=rs\\x1b[2J\\u202e namespace=any count=0"

    async def test_audit_filter_agent_id_outside_the_rule(self, client: Client) -> None:
        """The audit API's agentId filter follows the same rule."""
        response = await client.get("/api/v1/audit", params={"agentId": "x\ny"}, headers=alice())
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_agent_id"

    async def test_list_bad_status(self, client: Client) -> None:
        """An unknown status filter gets 400."""
        response = await client.get(ADMIN, params={"status": "approved"}, headers=alice())
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_status"

    async def test_approve_then_agent_retries(self, client: Client, audit: RecordingSink) -> None:
        """An admin approval (actor from 'name:token') makes the pending agent's retry get 200."""
        assert (await register(client))[0] == 202
        response = await client.post(f"{ADMIN}/{AGENT_ID}/approve", headers=alice())
        assert response.status == 200
        agent = (await response.json())["agent"]
        assert (agent["status"], agent["approvalMethod"], agent["approvedBy"]) == (
            "active",
            "manual",
            "alice",
        )
        assert (audit.events[-1].event, audit.events[-1].actor) == ("admin.approve", "alice")
        status, body = await register(client)
        assert (status, body["reason"], body["approvalMethod"]) == (
            200,
            "approved_by_admin",
            "manual",
        )

    async def test_reject_then_agent_retries(self, client: Client, token: str) -> None:
        """An admin reject (bare token: fingerprint as actor) makes the agent's retry get 403."""
        await register(client, token=token)
        response = await client.post(
            f"{ADMIN}/{AGENT_ID}/reject", headers={"Authorization": f"Bearer {BARE_TOKEN}"}
        )
        assert response.status == 200
        agent = (await response.json())["agent"]
        assert (agent["status"], agent["updatedBy"]) == ("rejected", fingerprint(BARE_TOKEN))
        assert agent["approvedBy"] == "bootstrap-token"  # approval facts are written once
        status, body = await register(client, token=token)
        assert (status, body["reason"]) == (403, "rejected_by_admin")

    async def test_unknown_agent(self, client: Client) -> None:
        """Approving or rejecting an unknown agent gets 404."""
        for action in ("approve", "reject"):
            response = await client.post(f"{ADMIN}/nobody/{action}", headers=alice())
            assert response.status == 404
            assert await response.json() == {
                "error": "agent_not_found",
                "message": "no agent has this agentId",
            }

    async def test_no_tokens_file_closes_the_admin_api(
        self, aiohttp_client: ClientFactory, jwks_file: Path, key_set: KeySet, sqlite_store: Store
    ) -> None:
        """Without adminTokensFile every admin request gets 401."""
        app = create_app(settings(jwks_file=jwks_file), key_set=key_set, store=sqlite_store)
        client = await aiohttp_client(app)
        response = await client.get(ADMIN, headers=alice())
        assert response.status == 401


class TestHealth:
    async def test_healthz(self, client: Client) -> None:
        """/healthz answers 200 while the process serves."""
        response = await client.get("/healthz")
        assert (response.status, await response.json()) == (200, {"status": "ok"})

    async def test_readyz(self, client: Client) -> None:
        """/readyz answers 200 when the database answers."""
        response = await client.get("/readyz")
        assert (response.status, await response.json()) == (200, {"status": "ready"})


#: Every route of the admin API (and the review a control plane calls with a review token):
#: method, path, JSON body.
ADMIN_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", ADMIN, None),
    ("GET", f"{ADMIN}/{AGENT_ID}", None),
    ("POST", f"{ADMIN}/{AGENT_ID}/approve", None),
    ("POST", f"{ADMIN}/{AGENT_ID}/reject", None),
    ("POST", f"{ADMIN}/{AGENT_ID}/revoke", None),
    ("DELETE", f"{ADMIN}/{AGENT_ID}", None),
    ("POST", f"{ADMIN}/bulk-approve", {"ownerUid": "0f6b1c8e-uid"}),
    ("GET", "/api/v1/audit", None),
    ("GET", "/api/v1/admin/audit", None),
    ("GET", "/api/v1/admin/api-keys", None),
    ("POST", "/api/v1/admin/api-keys", {"name": "ci-runners"}),
    ("POST", "/api/v1/admin/api-keys/k5v2q3l7m4n6p7r2/revoke", None),
    ("POST", "/api/v1/admin/api-keys/k5v2q3l7m4n6p7r2/rotate", None),
    ("POST", "/api/v1/agents/review", {"apiKey": "aga_" + "a" * 40}),
]


class TestErrorShape:
    """Every error of the admin API is ``{"error", "message"}`` as JSON (issue 17: the 401 was
    ``{"error": "unauthorized"}`` only, serialised differently), and every 503 says when to
    come back."""

    @staticmethod
    async def assert_error(response: Any, status: int, code: str) -> None:
        assert response.status == status, response.url.path
        assert response.content_type == "application/json"
        body = await response.json()
        assert set(body) == {"error", "message"}, (response.url.path, body)
        assert body["error"] == code
        assert body["message"]

    @pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
    async def test_401_on_every_route(
        self, client: Client, method: str, path: str, body: Any
    ) -> None:
        for headers in ({}, {"Authorization": "Bearer guessed-token-123456"}):
            response = await client.request(method, path, json=body, headers=headers)
            await self.assert_error(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")

    async def test_other_errors(self, client: Client) -> None:
        """404, 409, 400 and 415 of the agents' and the API keys' admin routes."""
        cases = [
            ("GET", f"{ADMIN}/nobody", None, 404, "agent_not_found"),
            ("POST", "/api/v1/admin/api-keys/k5v2q3l7m4n6p7r2/revoke", None, 404,
             "api_key_not_found"),
            ("POST", "/api/v1/admin/api-keys/not-an-id/rotate", None, 404, "api_key_not_found"),
            ("GET", f"{ADMIN}?status=gone", None, 400, "invalid_status"),
            ("POST", "/api/v1/admin/api-keys", {"name": ""}, 400, "invalid_request"),
        ]  # fmt: skip
        for method, path, body, status, code in cases:
            response = await client.request(method, path, json=body, headers=alice())
            await self.assert_error(response, status, code)
        for path in ("/api/v1/admin/api-keys", f"{ADMIN}/bulk-approve"):
            response = await client.post(path, data=b"x", headers=alice())
            await self.assert_error(response, 415, "unsupported_media_type")
            response = await client.post(
                path, data=b"{", headers={**alice(), "Content-Type": "application/json"}
            )
            await self.assert_error(response, 400, "invalid_json")

    @pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
    async def test_503_with_retry_after_on_every_route(
        self,
        aiohttp_client: ClientFactory,
        approver_settings: ApproverSettings,
        key_set: KeySet,
        method: str,
        path: str,
        body: Any,
    ) -> None:
        # A closed PostgreSQL port refuses at once (SQLite's file, unreachable, can hold a
        # request for the whole lock timeout on some routes).
        store = Store.open(f"postgresql+asyncpg://approver@127.0.0.1:{closed_port()}/approver")
        client = await aiohttp_client(create_app(approver_settings, key_set=key_set, store=store))
        response = await client.request(method, path, json=body, headers=alice())
        await self.assert_error(response, 503, "store_unavailable")
        assert response.headers["Retry-After"] == "7"


class TestDatabaseDown:
    async def test_sqlite_unreachable(
        self,
        aiohttp_client: ClientFactory,
        approver_settings: ApproverSettings,
        key_set: KeySet,
        token: str,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """With the SQLite file unreachable, admin and /readyz get 503 + Retry-After, and the
        registration 202 pending + Retry-After (StreamSpace's agent exits on a 503); the log
        line names the route pattern, not the path."""
        caplog.set_level(logging.WARNING)
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'approver.db'}")
        client = await aiohttp_client(create_app(approver_settings, key_set=key_set, store=store))
        registration = await client.post(
            REGISTER, json=registration_body(), headers={"X-Agent-API-Key": token}
        )
        assert registration.status == 202
        assert registration.headers["Retry-After"] == "7"
        assert await registration.json() == {
            "approvalStatus": "pending",
            "reason": "store_unavailable",
            "message": "the approver's database is unavailable; retry",
        }
        responses = [
            await client.get(ADMIN, headers=alice()),
            await client.post(f"{ADMIN}/{AGENT_ID}/approve", headers=alice()),
            await client.get("/readyz"),
        ]
        for response in responses:
            assert response.status == 503, response.url.path
            assert response.headers["Retry-After"] == "7"
            assert (await response.json())["error"] == "store_unavailable"
        assert f"POST {ADMIN}/{{agent_id}}/approve: " in caplog.text
        assert f"/{AGENT_ID}/approve" not in caplog.text
        assert "POST /api/v1/agents/register: " in caplog.text

    async def test_postgresql_port_closed(
        self,
        aiohttp_client: ClientFactory,
        approver_settings: ApproverSettings,
        key_set: KeySet,
        token: str,
    ) -> None:
        """With PostgreSQL refusing connections, registration gets 202 pending + Retry-After."""
        store = Store.open(
            f"postgresql+asyncpg://approver@127.0.0.1:{closed_port()}/agents", timeout_seconds=2
        )
        client = await aiohttp_client(create_app(approver_settings, key_set=key_set, store=store))
        status, body = await register(client, token=token)
        assert (status, body["approvalStatus"], body["reason"]) == (
            202,
            "pending",
            "store_unavailable",
        )


class TestSecretsStayOut:
    async def test_no_token_in_any_log(
        self, client: Client, token: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Across registrations and admin calls, no log line holds a token or an admin token."""
        caplog.set_level(logging.DEBUG)
        await register(client, token=token)
        await register(client, SECOND_AGENT_ID, token=token)
        await register(client, token=tamper(token))
        await client.get(ADMIN, headers=alice())
        await client.get(ADMIN, headers={"Authorization": "Bearer wrong-admin-token-000000"})
        assert "agent.register" in caplog.text
        for secret in (token, token.split(".")[2], ALICE_TOKEN, "wrong-admin-token"):
            assert secret not in caplog.text
