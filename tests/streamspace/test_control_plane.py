"""The control-plane stand-in behaves as StreamSpace's API server (c4fc035) does.

Each test names the Go function whose behaviour it checks.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import jwt
import pytest

from tests.streamspace.conftest import (
    ADMIN,
    BOOTSTRAP_KEY,
    VIEWER,
    ControlPlaneFactory,
    FakeClock,
    login,
    wait_until,
)
from tests.streamspace.control_plane import StreamSpaceControlPlane

HEX64 = re.compile(r"[0-9a-f]{64}\Z")
OTHER_KEY = "c1" * 32


def registration(agent_id: str, **overrides: Any) -> dict[str, Any]:
    """An ``AgentRegistrationRequest`` like StreamSpace's agent sends."""
    body: dict[str, Any] = {
        "agentId": agent_id,
        "platform": "kubernetes",
        "region": "default",
        "capacity": {"maxSessions": 100, "cpu": "64 cores", "memory": "256Gi"},
        "metadata": {"kubernetes": True, "namespace": "streamspace"},
    }
    body.update(overrides)
    return body


async def register(
    http: aiohttp.ClientSession,
    cp: StreamSpaceControlPlane,
    key: str | None,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[int, Any]:
    """``POST /api/v1/agents/register``; (status, JSON or text)."""
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["X-Agent-API-Key"] = key
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(
        cp.url + "/api/v1/agents/register" + query, data=data, headers=all_headers
    ) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def admin_call(
    http: aiohttp.ClientSession,
    cp: StreamSpaceControlPlane,
    token: str | None,
    method: str,
    path: str,
) -> tuple[int, Any]:
    """An admin route with ``Authorization: Bearer <token>``; (status, JSON or text)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.request(method, cp.url + path, headers=headers) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def approve(
    http: aiohttp.ClientSession, cp: StreamSpaceControlPlane, token: str, agent_id: str
) -> str:
    """``POST /api/v1/admin/agents/:agent_id/approve``; the key."""
    status, body = await admin_call(
        http, cp, token, "POST", f"/api/v1/admin/agents/{agent_id}/approve"
    )
    assert status == 200, body
    key: str = body["apiKey"]
    return key


async def ws_status(
    http: aiohttp.ClientSession,
    cp: StreamSpaceControlPlane,
    agent_id: str,
    key: str | None,
) -> int:
    """Dial ``/api/v1/agents/connect?agent_id=``; 101 (then closed) or the refusal's status."""
    headers = {"X-Agent-API-Key": key} if key is not None else {}
    try:
        ws = await http.ws_connect(
            cp.ws_url + f"/api/v1/agents/connect?agent_id={agent_id}", headers=headers
        )
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


# --- RegisterAgent with the shared key ----------------------------------------------------------


async def test_shared_key_creates_pending_row_answered_202(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``RequireAuth``: an unknown agent id with AGENT_BOOTSTRAP_KEY is bootstrap auth;
    ``RegisterAgent`` inserts it ``offline``/``pending`` and answers 202 with the agent of the
    ``RETURNING`` columns (``approvalStatus`` "" there), keys of gin.H sorted."""
    cp = control_plane
    status, body = await register(http, cp, BOOTSTRAP_KEY, registration("agent-one"))
    assert status == 202
    assert list(body) == ["agent", "approvalStatus", "message"]
    assert body["approvalStatus"] == "pending"
    assert body["message"] == (
        "Agent registration request received. Waiting for administrator approval. "
        "Please retry registration periodically."
    )
    agent = body["agent"]
    assert list(agent) == [
        "id", "agentId", "platform", "region", "status", "capacity", "lastHeartbeat",
        "metadata", "approvalStatus", "createdAt", "updatedAt",
    ]  # fmt: skip
    assert agent["status"] == "offline"
    assert agent["approvalStatus"] == ""
    assert agent["capacity"] == {"maxSessions": 100, "cpu": "64 cores", "memory": "256Gi"}
    assert agent["metadata"] == {"kubernetes": True, "namespace": "streamspace"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", agent["createdAt"])
    row = cp.agent_rows()[0]
    assert (row["approval_status"], row["status"], row["has_api_key"]) == (
        "pending",
        "offline",
        False,
    )
    assert cp.requests[-1].auth_method == "bootstrap_key"


async def test_shared_key_re_registration_answers_by_approval_state(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``RegisterAgent`` with bootstrap auth on an existing row: the row is set ``online``;
    202 while pending, 200 ``approved`` (no key in the answer) once approved with a key hash,
    403 with ``approvalStatus: rejected`` once rejected."""
    cp = control_plane
    token = await login(http, cp)
    for agent_id in ("agent-ok", "agent-no"):
        assert (await register(http, cp, BOOTSTRAP_KEY, registration(agent_id)))[0] == 202
    status, body = await register(http, cp, BOOTSTRAP_KEY, registration("agent-ok"))
    assert status == 202
    assert body["agent"]["status"] == "online"

    await approve(http, cp, token, "agent-ok")
    status, body = await register(http, cp, BOOTSTRAP_KEY, registration("agent-ok"))
    assert status == 200
    assert body["approvalStatus"] == "approved"
    assert body["message"] == "Agent approved. Use your configured API key for subsequent requests."
    assert "apiKey" not in body

    status, _ = await admin_call(http, cp, token, "POST", "/api/v1/admin/agents/agent-no/reject")
    assert status == 200
    status, body = await register(http, cp, BOOTSTRAP_KEY, registration("agent-no"))
    assert status == 403
    assert body["approvalStatus"] == "rejected"
    assert body["message"] == "Agent registration has been rejected by administrator."


async def test_shared_key_opens_websocket_for_any_existing_agent(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``RequireAuth`` takes the shared key for a row without a key *and* for a row whose key
    does not match, so it is a master key on ``/connect`` too; ``HandleAgentConnection`` only
    wants the row to exist (approval is not checked); no row: 404."""
    cp = control_plane
    token = await login(http, cp)
    for agent_id in ("approved-agent", "pending-agent"):
        await register(http, cp, BOOTSTRAP_KEY, registration(agent_id))
    await approve(http, cp, token, "approved-agent")
    assert await ws_status(http, cp, "approved-agent", BOOTSTRAP_KEY) == 101
    assert await ws_status(http, cp, "pending-agent", BOOTSTRAP_KEY) == 101
    assert await ws_status(http, cp, "never-registered", BOOTSTRAP_KEY) == 404
    connects = [r for r in cp.requests if r.path == "/api/v1/agents/connect"]
    assert [(r.status, r.auth_method) for r in connects] == [
        (101, "bootstrap_key"),
        (101, "bootstrap_key"),
        (404, "bootstrap_key"),
    ]


async def test_query_agent_id_is_authenticated_but_body_agent_id_is_written(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``RequireAuth`` reads ``?agent_id=`` before the body; ``RegisterAgent`` writes the
    body's ``agentId``: an agent's own key registers (creates, here) another agent id."""
    cp = control_plane
    token = await login(http, cp)
    await register(http, cp, BOOTSTRAP_KEY, registration("owner-agent"))
    key = await approve(http, cp, token, "owner-agent")
    status, body = await register(
        http, cp, key, registration("someone-else"), query="?agent_id=owner-agent"
    )
    assert status == 201
    assert body["agentId"] == "someone-else"
    assert cp.requests[-1].auth_method == "agent_api_key"


# --- Approve, keys, reject, delete ---------------------------------------------------------------


async def test_approve_only_from_pending_and_key_authenticates(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``ApproveAgent``: ``WHERE approval_status = 'pending'`` (404 ``Agent not found or not in
    pending status`` otherwise, unknown ids too); a fresh 64-hex key whose bcrypt hash is stored,
    ``approved_by`` the admin's user id. The key then passes ``RequireAuth`` as
    ``agent_api_key``: ``RegisterAgent`` answers the bare agent JSON (200) and ``/connect``
    upgrades; ``api_key_last_used_at`` is set."""
    cp = control_plane
    token = await login(http, cp)
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-a"))
    status, body = await admin_call(http, cp, token, "POST", "/api/v1/admin/agents/agent-a/approve")
    assert status == 200
    assert list(body) == ["agentId", "apiKey", "message", "warning"]
    assert body["message"] == "Agent approved successfully"
    key = body["apiKey"]
    assert HEX64.match(key)
    row = cp.agent_rows()[0]
    assert row["approval_status"] == "approved"
    assert row["approved_by"] == cp.user_id("admin")
    assert row["has_api_key"]
    assert row["api_key_last_used_at"] is None

    for agent_id in ("agent-a", "nobody"):
        status, body = await admin_call(
            http, cp, token, "POST", f"/api/v1/admin/agents/{agent_id}/approve"
        )
        assert (status, body) == (404, {"error": "Agent not found or not in pending status"})

    status, body = await register(http, cp, key, registration("agent-a"))
    assert status == 200
    assert body["agentId"] == "agent-a"
    assert body["approvalStatus"] == ""  # RETURNING does not select approval_status
    assert "agent" not in body
    assert cp.requests[-1].auth_method == "agent_api_key"
    assert cp.agent_rows()[0]["api_key_last_used_at"] is not None
    assert await ws_status(http, cp, "agent-a", key) == 101
    status, body = await register(http, cp, OTHER_KEY, registration("agent-a"))
    assert (status, body) == (403, {"error": "Invalid API key"})


async def test_rotate_key_invalidates_the_old_key_at_once(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``RotateAPIKey``: any existing row whatever its approval status; the old key fails at
    once (403), the new one works; ``rotated`` says whether a key existed. ``GenerateAPIKey``
    works on a pending row too (no ``rotated`` member)."""
    cp = control_plane
    token = await login(http, cp)
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-r"))
    old = await approve(http, cp, token, "agent-r")
    status, body = await admin_call(
        http, cp, token, "POST", "/api/v1/admin/agents/agent-r/rotate-key"
    )
    assert status == 200
    assert body["rotated"] is True
    assert body["message"] == "API key rotated successfully - old key is now invalid"
    assert body["usage"] == {"header": "X-Agent-API-Key", "value": body["apiKey"]}
    new = body["apiKey"]
    assert (await register(http, cp, old, registration("agent-r")))[0] == 403
    assert (await register(http, cp, new, registration("agent-r")))[0] == 200
    assert await ws_status(http, cp, "agent-r", old) == 403

    await register(http, cp, BOOTSTRAP_KEY, registration("agent-p"))
    status, body = await admin_call(
        http, cp, token, "POST", "/api/v1/admin/agents/agent-p/rotate-key"
    )
    assert (status, body["rotated"], body["message"]) == (
        200,
        False,
        "API key generated successfully",
    )
    status, body = await admin_call(
        http, cp, token, "POST", "/api/v1/admin/agents/agent-p/generate-key"
    )
    assert status == 200
    assert "rotated" not in body
    assert cp.agent_row("agent-p") == cp.agent_row("agent-p")  # still a row
    assert cp.agent_row("agent-p")["approval_status"] == "pending"  # type: ignore[index]
    status, body = await admin_call(http, cp, token, "POST", "/api/v1/admin/agents/nope/rotate-key")
    assert (status, body) == (404, {"agentId": "nope", "error": "Agent not found"})


async def test_reject_only_from_pending(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``RejectAgent``: pending rows only (404 otherwise); a rejected row cannot be approved
    (``ApproveAgent`` is pending-only too)."""
    cp = control_plane
    token = await login(http, cp)
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-x"))
    status, body = await admin_call(http, cp, token, "POST", "/api/v1/admin/agents/agent-x/reject")
    assert (status, body) == (200, {"agentId": "agent-x", "message": "Agent rejected"})
    row = cp.agent_row("agent-x")
    assert row is not None
    assert (row["approval_status"], row["approved_by"]) == ("rejected", cp.user_id("admin"))
    for action in ("reject", "approve"):
        status, body = await admin_call(
            http, cp, token, "POST", f"/api/v1/admin/agents/agent-x/{action}"
        )
        assert (status, body) == (404, {"error": "Agent not found or not in pending status"})


async def test_delete_then_register_again(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``DeregisterAgent``: 200 then 404 when absent; ``GetAgent`` 404; the shared key then
    registers the id afresh as pending."""
    cp = control_plane
    token = await login(http, cp)
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-d"))
    await approve(http, cp, token, "agent-d")
    path = "/api/v1/admin/agents/agent-d"
    status, body = await admin_call(http, cp, token, "DELETE", path)
    assert (status, body) == (
        200,
        {"agentId": "agent-d", "message": "Agent deregistered successfully"},
    )
    assert await admin_call(http, cp, token, "DELETE", path) == (
        404,
        {"agentId": "agent-d", "error": "Agent not found"},
    )
    assert (await admin_call(http, cp, token, "GET", path))[0] == 404
    status, body = await register(http, cp, BOOTSTRAP_KEY, registration("agent-d"))
    assert (status, body["approvalStatus"]) == (202, "pending")


async def test_list_and_get(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """``ListAgents``: newest first, ``platform``/``status``/``region`` filters, approval
    columns selected; ``GetAgent`` does not select them (``approvalStatus`` "")."""
    cp = control_plane
    token = await login(http, cp)
    await register(http, cp, BOOTSTRAP_KEY, registration("old", region="eu"))
    clock.advance(1)
    await register(http, cp, BOOTSTRAP_KEY, registration("new", platform="docker"))
    await approve(http, cp, token, "new")
    status, body = await admin_call(http, cp, token, "GET", "/api/v1/admin/agents")
    assert status == 200
    assert body["total"] == 2
    assert [a["agentId"] for a in body["agents"]] == ["new", "old"]
    newest = body["agents"][0]
    assert (newest["approvalStatus"], newest["approvedBy"]) == ("approved", cp.user_id("admin"))
    assert "approvedAt" in newest
    status, body = await admin_call(http, cp, token, "GET", "/api/v1/admin/agents?region=eu")
    assert [a["agentId"] for a in body["agents"]] == ["old"]
    status, body = await admin_call(http, cp, token, "GET", "/api/v1/admin/agents?platform=vm")
    assert body == {"agents": [], "total": 0}
    status, body = await admin_call(http, cp, token, "GET", "/api/v1/admin/agents/new")
    assert status == 200
    assert body["approvalStatus"] == ""
    assert "approvedBy" not in body


# --- validation and RequireAuth ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            registration("agent-v", platform="mainframe"),
            {
                "details": "Key: 'AgentRegistrationRequest.Platform' Error:Field validation for "
                "'Platform' failed on the 'oneof' tag",
                "error": "Invalid request format",
            },
        ),
        (
            {"agentId": "agent-v"},
            {
                "details": "Key: 'AgentRegistrationRequest.Platform' Error:Field validation for "
                "'Platform' failed on the 'required' tag",
                "error": "Invalid request format",
            },
        ),
        (
            registration("ab"),
            {"error": "Validation failed", "fields": {"agentid": "Must be at least 3 characters"}},
        ),
        (
            registration("a" * 101),
            {
                "error": "Validation failed",
                "fields": {"agentid": "Must be at most 100 characters"},
            },
        ),
        (
            registration("agent-v", region="x" * 51),
            {"error": "Validation failed", "fields": {"region": "Must be at most 50 characters"}},
        ),
        (
            registration("agent-v", capacity="lots"),
            {
                "details": "json: cannot unmarshal string into Go struct field "
                "AgentRegistrationRequest.capacity of type models.AgentCapacity",
                "error": "Invalid request format",
            },
        ),
    ],
)
async def test_registration_validation_400(
    control_plane: StreamSpaceControlPlane,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    """``validator.BindAndValidate`` on ``AgentRegistrationRequest``: gin's ``binding`` tags
    (required, oneof) and decoding errors are ``Invalid request format`` with the error text;
    the ``validate`` tags (min/max) are ``Validation failed`` with ``fields``. No row is
    written."""
    assert await register(http, control_plane, BOOTSTRAP_KEY, body) == (400, expected)
    assert control_plane.agent_rows() == []


async def test_registration_empty_body_is_eof(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``BindAndValidate``: an empty body (agent id from the query for ``RequireAuth``) is
    ``json.Decoder``'s ``EOF``."""
    assert await register(http, control_plane, BOOTSTRAP_KEY, b"", query="?agent_id=agent-e") == (
        400,
        {"details": "EOF", "error": "Invalid request format"},
    )


async def test_require_auth_refusals(
    control_plane_factory: ControlPlaneFactory, http: aiohttp.ClientSession
) -> None:
    """``RequireAuth``: no key 401; a key that is not 64 hex characters 401 (before any
    lookup); no agent id anywhere 400; an unknown id without the shared key 404; with no
    AGENT_BOOTSTRAP_KEY configured the shared key is just an unknown key."""
    cp = await control_plane_factory()
    body = registration("agent-z")
    assert await register(http, cp, None, body) == (
        401,
        {
            "details": "Either client certificate (mTLS) or X-Agent-API-Key header is required",
            "error": "Missing authentication",
        },
    )
    assert await register(http, cp, "short", body) == (
        401,
        {"details": "API key must be 64 characters (got 5)", "error": "Invalid API key format"},
    )
    assert await register(http, cp, "zz" * 32, body) == (
        401,
        {
            "details": "API key must contain only hexadecimal characters",
            "error": "Invalid API key format",
        },
    )
    assert await register(http, cp, BOOTSTRAP_KEY, {"platform": "kubernetes"}) == (
        400,
        {"details": "agent_id must be provided", "error": "Missing agent_id"},
    )
    status, answer = await register(http, cp, OTHER_KEY, body)
    assert (status, answer["error"]) == (404, "Agent not found")
    unset = await control_plane_factory(bootstrap_key="")
    status, answer = await register(http, unset, BOOTSTRAP_KEY, body)
    assert (status, answer["agentId"]) == (404, "agent-z")


async def test_heartbeat_route(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``UpdateHeartbeat``: ``status`` must be online or draining (400 otherwise); the row of
    the path's agent id gets the status and ``last_heartbeat``."""
    cp = control_plane
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-h"))
    url = cp.url + "/api/v1/agents/agent-h/heartbeat"
    headers = {"X-Agent-API-Key": BOOTSTRAP_KEY}
    async with http.post(url, json={"status": "draining"}, headers=headers) as response:
        assert response.status == 200
        body = await response.json()
    assert list(body) == ["agentId", "lastHeartbeat", "message", "status"]
    assert cp.agent_row("agent-h")["status"] == "draining"  # type: ignore[index]
    async with http.post(url, json={"status": "busy"}, headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "Invalid request format"


# --- admin authentication ------------------------------------------------------------------------


async def test_admin_routes_need_an_admin_token(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``auth.Middleware``: 401 without ``Authorization``, 401 for another scheme, 401 for a
    bad token; ``RequireRole("admin")``: 403 for the token of a ``user``."""
    cp = control_plane
    path = "/api/v1/admin/agents"
    assert await admin_call(http, cp, None, "GET", path) == (
        401,
        {"error": "Authorization header required"},
    )
    async with http.get(cp.url + path, headers={"Authorization": "Basic abc"}) as response:
        assert response.status == 401
        assert await response.json() == {
            "error": "Invalid authorization header format. Use: Bearer <token>"
        }
    status, body = await admin_call(http, cp, "not.a.token", "GET", path)
    assert (status, body["error"]) == (401, "Invalid or expired token")
    viewer = await login(http, cp, VIEWER)
    assert await admin_call(http, cp, viewer, "GET", path) == (
        403,
        {"error": "Insufficient permissions"},
    )


async def test_login(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """``Login``: 200 ``{token, expiresAt, user}``; the token is HS256 with ``Claims``
    (``user_id``, ``role``, default org, ``iss`` streamspace-api, 24 h); a wrong password 401
    ``Invalid credentials``; a body without password 400 ``Invalid request body``."""
    cp = control_plane
    url = cp.url + "/api/v1/auth/login"
    async with http.post(url, json={"username": "admin", "password": "admin-password"}) as r:
        assert r.status == 200
        body = await r.json()
    assert list(body) == ["token", "expiresAt", "user"]
    assert list(body["user"]) == [
        "id", "orgId", "username", "email", "fullName", "role", "provider", "active",
        "createdAt", "updatedAt",
    ]  # fmt: skip
    claims = jwt.decode(
        body["token"], cp.config.jwt_secret, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert list(claims)[:9] == [
        "user_id", "org_id", "org_name", "k8s_namespace", "username", "email", "role",
        "org_role", "iss",
    ]  # fmt: skip
    assert (claims["user_id"], claims["role"], claims["iss"]) == (
        cp.user_id("admin"),
        "admin",
        "streamspace-api",
    )
    assert claims["exp"] - claims["iat"] == 24 * 3600
    async with http.post(url, json={"username": "admin", "password": "wrong"}) as r:
        assert (r.status, await r.json()) == (401, {"error": "Invalid credentials"})
    async with http.post(url, json={"username": "admin"}) as r:
        assert (r.status, await r.json()) == (400, {"error": "Invalid request body"})
    async with http.post(url, json={"username": "admin", "password": "admin-password"}) as r:
        assert "lastLogin" in (await r.json())["user"]  # the previous login


async def test_expired_token_and_disabled_user(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """``ValidateToken`` refuses a token once ``exp`` is reached (401 with the parser's
    message); ``auth.Middleware`` answers 403 for a disabled user's valid token, while
    ``VerifyPassword`` makes a disabled user's login a plain 401 ``Invalid credentials``."""
    cp = control_plane
    token = await login(http, cp)
    assert (await admin_call(http, cp, token, "GET", "/api/v1/admin/agents"))[0] == 200
    clock.advance(24 * 3600)
    assert await admin_call(http, cp, token, "GET", "/api/v1/admin/agents") == (
        401,
        {
            "error": "Invalid or expired token",
            "message": "failed to parse token: token has invalid claims: token is expired",
        },
    )
    fresh = await login(http, cp)
    cp.set_user_active("admin", False)
    assert await admin_call(http, cp, fresh, "GET", "/api/v1/admin/agents") == (
        403,
        {"error": "User account is disabled"},
    )
    async with http.post(
        cp.url + "/api/v1/auth/login", json={"username": ADMIN.username, "password": ADMIN.password}
    ) as r:
        assert (r.status, await r.json()) == (401, {"error": "Invalid credentials"})


# --- rate limit and ClientIP ---------------------------------------------------------------------


async def test_rate_limit_per_client_ip(
    control_plane_factory: ControlPlaneFactory, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """``agentRateLimit`` + ``RateLimiter.CheckLimit``: ``rpm`` requests a minute per gin
    ``ClientIP`` on the agent routes (refused ones included up to the limit, since the limiter
    runs before ``RequireAuth``); the next is 429 with ``retryAfter`` 60; each
    ``X-Forwarded-For`` client has its own window; the window slides."""
    cp = await control_plane_factory(clock=clock, rate_limit_rpm=3)
    body = registration("agent-rl")
    first = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
    for _ in range(3):
        assert (await register(http, cp, None, body, headers=first))[0] == 401
    assert await register(http, cp, BOOTSTRAP_KEY, body, headers=first) == (
        429,
        {
            "details": "Too many requests. Please try again later.",
            "error": "Rate limit exceeded",
            "retryAfter": 60,
        },
    )
    assert await ws_status(http, cp, "agent-rl", BOOTSTRAP_KEY) == 404  # peer 127.0.0.1: own bucket
    second = {"X-Forwarded-For": "203.0.113.8"}
    assert (await register(http, cp, BOOTSTRAP_KEY, body, headers=second))[0] == 202
    assert {r.client_ip for r in cp.requests} == {"203.0.113.7", "203.0.113.8", "127.0.0.1"}
    clock.advance(59.9)
    assert (await register(http, cp, BOOTSTRAP_KEY, body, headers=first))[0] == 429
    clock.advance(0.2)
    assert (await register(http, cp, BOOTSTRAP_KEY, body, headers=first))[0] == 202
    token = await login(http, cp)  # admin routes are not rate limited
    for _ in range(5):
        assert (await admin_call(http, cp, token, "GET", "/api/v1/admin/agents"))[0] == 200


async def test_client_ip_falls_back_when_forwarded_for_is_not_all_addresses(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """gin ``validateHeader``: one unparsable ``X-Forwarded-For`` item voids the header, then
    ``X-Real-IP``, then the peer address."""
    cp = control_plane
    body = registration("agent-ip")
    await register(http, cp, None, body, headers={"X-Forwarded-For": "unknown, 10.0.0.1"})
    await register(
        http, cp, None, body, headers={"X-Forwarded-For": "bad", "X-Real-IP": "192.0.2.1"}
    )
    await register(http, cp, None, body, headers={"X-Forwarded-For": " 2001:db8::1 , 10.0.0.1"})
    assert [r.client_ip for r in cp.requests] == ["127.0.0.1", "192.0.2.1", "2001:db8::1"]


# --- outage --------------------------------------------------------------------------------------


async def test_stop_listening_refuses_and_resume_keeps_state(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """An outage: connection refused while stopped (open sockets cut), the rows kept; the
    same port serves again after ``resume``."""
    cp = control_plane
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-o"))
    ws = await http.ws_connect(
        cp.ws_url + "/api/v1/agents/connect?agent_id=agent-o",
        headers={"X-Agent-API-Key": BOOTSTRAP_KEY},
    )
    await cp.wait_connected("agent-o")
    port = cp.port
    await cp.stop_listening()
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert cp.connected_agents() == set()
    assert cp.agent_row("agent-o")["status"] == "online"  # type: ignore[index]
    with pytest.raises(aiohttp.ClientConnectorError):
        await register(http, cp, BOOTSTRAP_KEY, registration("agent-o"))
    await cp.resume()
    assert cp.port == port
    status, body = await register(http, cp, BOOTSTRAP_KEY, registration("agent-o"))
    assert (status, body["approvalStatus"]) == (202, "pending")


async def test_latency_is_added(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``latency_seconds`` delays every answer (a slow control plane)."""
    control_plane.latency_seconds = 0.3
    loop = asyncio.get_running_loop()
    started = loop.time()
    await register(http, control_plane, BOOTSTRAP_KEY, registration("agent-slow"))
    assert loop.time() - started >= 0.3


# --- the agent WebSocket -------------------------------------------------------------------------


async def test_websocket_heartbeats_and_hub_status(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``HandleAgentConnection`` + ``AgentHub.handleRegister``: the row goes ``online``;
    ``handleHeartbeat`` stores the capacity; ``handleUnregister`` on close sets ``offline``."""
    cp = control_plane
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-w"))
    ws = await http.ws_connect(
        cp.ws_url + "/api/v1/agents/connect?agent_id=agent-w",
        headers={"X-Agent-API-Key": BOOTSTRAP_KEY},
    )
    await cp.wait_connected("agent-w")
    assert cp.agent_row("agent-w")["status"] == "online"  # type: ignore[index]
    heartbeat = {
        "payload": {
            "activeSessions": 0,
            "capacity": {"cpu": "8", "maxSessions": 5, "memory": "1Gi"},
            "status": "online",
        },
        "timestamp": "2025-12-04T17:43:59.123456789Z",
        "type": "heartbeat",
    }
    await ws.send_str(json.dumps(heartbeat))
    assert await cp.received_messages("agent-w") == [heartbeat]
    await wait_until(lambda: cp.agent_row("agent-w")["capacity"]["maxSessions"] == 5)  # type: ignore[index]
    assert cp.agent_row("agent-w")["capacity"] == {  # type: ignore[index]
        "maxSessions": 5,
        "cpu": "8",
        "memory": "1Gi",
    }
    await ws.close()
    await wait_until(lambda: cp.agent_row("agent-w")["status"] == "offline")  # type: ignore[index]
    assert cp.connected_agents() == set()


async def test_websocket_refusals(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``/connect``: an agent id only in a JSON body passes ``RequireAuth`` but
    ``HandleAgentConnection`` wants the query parameter (400); gin's query check refuses an id
    with ``--`` (400 before anything else); a plain GET is gorilla's 400 ``Bad Request``."""
    cp = control_plane
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-q"))
    url = cp.url + "/api/v1/agents/connect"
    headers = {"X-Agent-API-Key": BOOTSTRAP_KEY}
    async with http.get(url, data=b'{"agentId":"agent-q"}', headers=headers) as response:
        assert (response.status, await response.json()) == (
            400,
            {"details": "agent_id query parameter is required", "error": "Missing agent_id"},
        )
    async with http.get(url + "?agent_id=a--b", headers=headers) as response:
        assert (response.status, await response.json()) == (
            400,
            {
                "error": "Invalid query parameter",
                "message": "Parameter 'agent_id': potential SQL injection detected",
            },
        )
    async with http.get(url + "?agent_id=agent-q", headers=headers) as response:
        assert (response.status, await response.text()) == (400, "Bad Request\n")


async def test_drop_connection_and_second_connection(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """``drop_connection`` closes the agent's socket as ``handleUnregister`` does (row
    ``offline``). A second connection of the same id closes the first (``handleRegister``);
    the first's read pump then unregisters *by agent id*, closing the second too."""
    cp = control_plane
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-2"))
    url = cp.ws_url + "/api/v1/agents/connect?agent_id=agent-2"
    headers = {"X-Agent-API-Key": BOOTSTRAP_KEY}
    ws = await http.ws_connect(url, headers=headers)
    await cp.wait_connected("agent-2")
    await cp.drop_connection("agent-2")
    assert (await ws.receive(timeout=5)).type in (
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    )
    assert cp.agent_row("agent-2")["status"] == "offline"  # type: ignore[index]

    first = await http.ws_connect(url, headers=headers)
    await cp.wait_connected("agent-2")
    second = await http.ws_connect(url, headers=headers)
    for ws in (first, second):
        assert (await ws.receive(timeout=5)).type in (
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        )
    await wait_until(lambda: cp.connected_agents() == set())
    assert cp.agent_row("agent-2")["status"] == "offline"  # type: ignore[index]


async def test_pong_wait_and_ping_period(
    control_plane_factory: ControlPlaneFactory, http: aiohttp.ClientSession
) -> None:
    """``readPump``/``writePump``: the server pings every ``pingPeriod``; a client that
    answers (pongs) stays connected past ``pongWait``, one that does not is dropped."""
    cp = await control_plane_factory(pong_wait=0.4, ping_period=0.1)
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-p"))
    url = cp.ws_url + "/api/v1/agents/connect?agent_id=agent-p"
    headers = {"X-Agent-API-Key": BOOTSTRAP_KEY}
    answering = await http.ws_connect(url, headers=headers, autoping=True)
    reader = asyncio.create_task(answering.receive())  # reading makes aiohttp answer pings
    await asyncio.sleep(1.0)
    assert cp.connected_agents() == {"agent-p"}
    await answering.close()
    await reader
    await wait_until(lambda: cp.connected_agents() == set())

    silent = await http.ws_connect(url, headers=headers, autoping=False)
    await cp.wait_connected("agent-p")
    await wait_until(lambda: cp.connected_agents() == set(), timeout=2.0)
    assert cp.agent_row("agent-p")["status"] == "offline"  # type: ignore[index]
    await silent.close()


async def test_stale_connection_check(
    control_plane_factory: ControlPlaneFactory, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """``checkStaleConnections``: no heartbeat message for more than 45 s unregisters the
    agent (pings do not count); a heartbeat renews ``LastPing``."""
    cp = await control_plane_factory(clock=clock, stale_check_interval=0.05)
    await register(http, cp, BOOTSTRAP_KEY, registration("agent-s"))
    ws = await http.ws_connect(
        cp.ws_url + "/api/v1/agents/connect?agent_id=agent-s",
        headers={"X-Agent-API-Key": BOOTSTRAP_KEY},
    )
    await cp.wait_connected("agent-s")
    clock.advance(40)
    await ws.send_str(
        json.dumps({"type": "heartbeat", "timestamp": "2025-12-04T00:00:00Z", "payload": {}})
    )
    await cp.received_messages("agent-s")
    clock.advance(40)
    await asyncio.sleep(0.2)
    assert cp.connected_agents() == {"agent-s"}
    clock.advance(6)
    await wait_until(lambda: cp.connected_agents() == set())
    await ws.close()


# --- gin plumbing --------------------------------------------------------------------------------


async def test_gin_plumbing(
    control_plane: StreamSpaceControlPlane, http: aiohttp.ClientSession
) -> None:
    """gin: an unknown route is ``404 page not found`` (text; empty when the client accepts
    gzip, as the gzip middleware has closed its stream first); a trailing slash is redirected
    (``RedirectTrailingSlash``); agent answers are gzip-compressed for a client that accepts it
    (``GzipWithExclusions``), login answers are not; GETs get ``Cache-Control: public,
    max-age=300`` (``cache.CacheControl``)."""
    cp = control_plane
    async with http.get(cp.url + "/api/v1/nothing") as response:
        assert (response.status, await response.text()) == (404, "")
    async with http.get(
        cp.url + "/api/v1/nothing", headers={"Accept-Encoding": "identity"}
    ) as response:
        assert (response.status, await response.text()) == (404, "404 page not found")
    token = await login(http, cp)
    async with http.get(
        cp.url + "/api/v1/admin/agents/",
        headers={"Authorization": f"Bearer {token}"},
        allow_redirects=False,
    ) as response:
        assert (response.status, response.headers["Location"]) == (301, "/api/v1/admin/agents")
    async with http.post(
        cp.url + "/api/v1/agents/register",
        json=registration("agent-g"),
        headers={"X-Agent-API-Key": BOOTSTRAP_KEY, "Accept-Encoding": "gzip"},
    ) as response:
        assert response.status == 202
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Cache-Control"] == "no-store, no-cache, must-revalidate"
    async with http.post(
        cp.url + "/api/v1/auth/login",
        json={"username": "admin", "password": "admin-password"},
        headers={"Accept-Encoding": "gzip"},
    ) as response:
        assert "Content-Encoding" not in response.headers
    async with http.get(
        cp.url + "/api/v1/admin/agents", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.headers["Cache-Control"] == "public, max-age=300"
