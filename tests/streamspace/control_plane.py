"""A stand-in for StreamSpace's API server (the control plane), for integration tests.

StreamSpace (Go) cannot run here, so this aiohttp server reproduces what its *unmodified* code at
streamspace-dev/streamspace @ c4fc035 does on the routes an agent and its administrator use. Facts
carry over, code does not: each behaviour names the Go file and function it follows.

Routes (``api/cmd/main.go`` ``setupRoutes``):

==========================================================  =======================================
``POST /api/v1/auth/login``                                 ``auth.AuthHandler.Login`` (no auth)
``GET /api/v1/admin/agents``                                ``AgentHandler.ListAgents``
``GET /api/v1/admin/agents/:agent_id``                      ``AgentHandler.GetAgent``
``DELETE /api/v1/admin/agents/:agent_id``                   ``AgentHandler.DeregisterAgent``
``POST /api/v1/admin/agents/:agent_id/generate-key``        ``AgentHandler.GenerateAPIKey``
``POST /api/v1/admin/agents/:agent_id/rotate-key``          ``AgentHandler.RotateAPIKey``
``POST /api/v1/admin/agents/:agent_id/approve``             ``AgentHandler.ApproveAgent``
``POST /api/v1/admin/agents/:agent_id/reject``              ``AgentHandler.RejectAgent``
``POST /api/v1/agents/register``                            ``AgentHandler.RegisterAgent``
``POST /api/v1/agents/:agent_id/heartbeat``                 ``AgentHandler.UpdateHeartbeat``
``GET /api/v1/agents/connect`` (WebSocket)                  ``AgentWebSocketHandler``
==========================================================  =======================================

Admin routes run ``auth.Middleware`` (login JWT), ``CSRFProtection`` (passed by any ``Bearer``
request) and ``RequireRole("admin")``; agent routes and the WebSocket run ``agentRateLimit`` then
``AgentAuth.RequireAuth``. Before any of them, the global middleware of ``main.go`` runs:
``AllowedHTTPMethods``, CORS (``OPTIONS`` answered 204), ``InputValidator.Middleware``,
``RequestSizeLimiter(10 MB)``, gzip (``GzipWithExclusions``) and ``cache.CacheControl``. An
unknown route is gin's ``404 page not found`` (an *empty* body for a client that accepts gzip: the
gzip middleware closes its stream before gin writes the text); a path that only differs by a
trailing slash is redirected (gin's ``RedirectTrailingSlash``).

Not reproduced: ``SendCommand`` and the other admin routes, sessions, the request-ID, security
header, audit and timeout middlewares (``latency_seconds`` never turns into gin's 408), Redis
(off by default), and ``AGENT_CA_CERT_FILE`` set-up (pass an ``ssl_context`` that requests client
certificates to exercise ``RequireAuth``'s mTLS branch).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.streamspace.agent_hub import (
    MAX_MESSAGE_SIZE,
    PONG_WAIT,
    STALE_AFTER,
    STALE_CHECK_INTERVAL,
    AgentHub,
    AgentTable,
)
from tests.streamspace.control_plane_auth import (
    BCRYPT_COST,
    MIN_JWT_SECRET_LENGTH,
    AdminRefusal,
    AgentAuth,
    AuthRefusal,
    JWTManager,
    User,
    UserRecord,
    admin_auth,
    bcrypt_compare,
    bcrypt_hash,
    generate_api_key,
    require_agent_auth,
)
from tests.streamspace.gin_http import (
    cache_control,
    client_ip,
    invalid_input,
    method_not_allowed,
    should_gzip,
)
from tests.streamspace.gojson import GoMap, marshal
from tests.streamspace.models import (
    HEARTBEAT_SHAPE,
    LOGIN_SHAPE,
    REGISTRATION_SHAPE,
    AgentRow,
    BindError,
    agent_json,
    bind_and_validate,
    should_bind_json,
    stored_capacity,
)
from tests.streamspace.rate_limit import (
    WINDOW_SECONDS,
    RateLimiter,
    agent_rate_limit_key,
    rate_limited_body,
)

__all__ = [
    "ControlPlaneConfig",
    "RequestRecord",
    "StreamSpaceControlPlane",
    "User",
]

#: ``RequestSizeLimiter(10 * 1024 * 1024)`` in ``main.go``.
MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class ControlPlaneConfig:
    """The API server's settings (environment variables of ``api/cmd/main.go``).

    ``bootstrap_key``: ``AGENT_BOOTSTRAP_KEY`` ("" = unset), read by ``RequireAuth``; it only
    works if it is itself 64 hex characters (``ValidateAPIKeyFormat`` runs first).
    ``jwt_secret``: ``JWT_SECRET``; ``main.go`` refuses to start below 32 characters.
    ``users``: local accounts (``users`` table), passwords bcrypt-hashed at start.
    ``bcrypt_cost``: ``agent_apikey.go`` ``BcryptCost`` (12); tests pass 4 to make it cheap.
    ``rate_limit_enabled``/``rate_limit_rpm``: ``RATE_LIMIT_ENABLED``/
    ``RATE_LIMIT_REQUESTS_PER_MINUTE``. ``token_ttl_seconds``: ``JWTConfig.TokenDuration``.
    """

    bootstrap_key: str
    jwt_secret: str = "test-jwt-secret-for-the-streamspace-stand-in"
    users: tuple[User, ...] = ()
    bcrypt_cost: int = BCRYPT_COST
    rate_limit_enabled: bool = True
    rate_limit_rpm: int = 60
    token_ttl_seconds: int = 24 * 3600


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it: ``client_ip`` is gin's ``ClientIP``, ``auth_method``
    what ``RequireAuth`` set (``bootstrap_key``, ``agent_api_key``, ``mtls``) or None, and
    ``status`` the answer's (101 for an accepted WebSocket)."""

    method: str
    path: str
    client_ip: str
    auth_method: str | None
    status: int


@dataclass
class _Ctx:
    request: web.Request
    client_ip: str
    gzip: bool = False
    auth_method: str | None = None
    recorded: bool = False


Handler = Callable[[web.Request, _Ctx, dict[str, str]], Awaitable[web.StreamResponse]]


class StreamSpaceControlPlane:
    """StreamSpace's API server on the agent and admin routes (module docstring).

    Args:
        config: the server's settings.
        ssl_context: serve HTTPS/WSS with it (``TLS_CERT_FILE``/``TLS_KEY_FILE``).
        clock: wall clock for timestamps, JWT expiry and the rate-limit window.
        pong_wait: ``agent_websocket.go`` ``pongWait`` (60 s): the socket's read deadline,
            renewed only by a pong or a ping from the agent.
        ping_period: ``pingPeriod`` (``pongWait * 9 / 10``): the server's pings.
        stale_after, stale_check_interval: ``AgentHub.checkStaleConnections`` (45 s without a
            heartbeat message, checked every 10 s) on ``clock`` time.
    """

    def __init__(
        self,
        config: ControlPlaneConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
        pong_wait: float = PONG_WAIT,
        ping_period: float | None = None,
        stale_after: float = STALE_AFTER,
        stale_check_interval: float = STALE_CHECK_INTERVAL,
    ) -> None:
        if len(config.jwt_secret.encode()) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(
                "SECURITY ERROR: JWT_SECRET must be at least 32 characters long for security"
            )
        self.config = config
        self._ssl = ssl_context
        self._clock = clock
        self.latency_seconds: float = 0.0
        self.requests: list[RequestRecord] = []
        self._table = AgentTable()
        self._lock = self._table.lock
        self._agents = self._table.rows
        self._users: dict[str, UserRecord] = {}
        self._jwt = JWTManager(config.jwt_secret, float(config.token_ttl_seconds))
        self._limiter = RateLimiter()
        self._hub = AgentHub(
            self._table,
            clock,
            pong_wait=pong_wait,
            ping_period=ping_period,
            stale_after=stale_after,
            stale_check_interval=stale_check_interval,
        )
        #: JSON object messages received over each agent's WebSockets (heartbeats).
        self.messages = self._hub.messages
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._host = "127.0.0.1"
        self._port = 0
        admin, agent = self._admin, self._agent_route
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/api/v1/auth/login", self._login),
            ("GET", "/api/v1/admin/agents", admin(self._list_agents)),
            ("GET", "/api/v1/admin/agents/:agent_id", admin(self._get_agent)),
            ("DELETE", "/api/v1/admin/agents/:agent_id", admin(self._deregister_agent)),
            ("POST", "/api/v1/admin/agents/:agent_id/generate-key", admin(self._generate_key)),
            ("POST", "/api/v1/admin/agents/:agent_id/rotate-key", admin(self._rotate_key)),
            ("POST", "/api/v1/admin/agents/:agent_id/approve", admin(self._approve_agent)),
            ("POST", "/api/v1/admin/agents/:agent_id/reject", admin(self._reject_agent)),
            ("POST", "/api/v1/agents/register", agent(self._register)),
            ("POST", "/api/v1/agents/:agent_id/heartbeat", agent(self._heartbeat)),
            ("GET", "/api/v1/agents/connect", agent(self._connect)),
        ]
        self._routes = [(m, tuple(path.split("/")[1:]), h) for m, path, h in routes]

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Hash the users' passwords and listen (port 0: a free port)."""
        now = self._now()
        for user in self.config.users:
            record = await asyncio.to_thread(
                UserRecord.create, user, cost=self.config.bcrypt_cost, now=now
            )
            self._users[record.id] = record
        app = web.Application(client_max_size=MAX_BODY + 1)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # srv.IdleTimeout is 120 s in main.go.
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, keepalive_timeout=120.0
        )
        await self._runner.setup()
        self._host = host
        await self._listen(port)
        self._hub.start()

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        assert self._runner.server is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._runner.server, self._host, port, ssl=self._ssl, reuse_address=True
        )
        sockets = self._listener.sockets
        self._port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop everything (connections closed, the in-memory state dropped)."""
        await self._hub.stop()
        if self._listener is not None:
            await self._drop_everything()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def stop_listening(self) -> None:
        """An outage: the listening socket and every open connection (WebSockets too) are
        closed, so clients get *connection refused* until :meth:`resume`.

        The database (agents, users) is kept, as a restarted API server finds it. The hub loses
        its connections *without* its unregister UPDATE (a process that is gone writes nothing),
        so rows keep the status they had. Rate-limit windows are kept.
        """
        self._hub.down = True
        await self._drop_everything()

    async def _drop_everything(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._hub.close_all()
        if self._runner is not None and self._runner.server is not None:
            for handler in self._runner.server.connections:
                transport = handler.transport
                if transport is not None:
                    transport.abort()
        await self._hub.wait_idle()
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None

    async def resume(self) -> None:
        """Listen again on the same port, with the state kept."""
        await self._listen(self._port)
        self._hub.down = False

    @property
    def url(self) -> str:
        """Base URL: ``http://127.0.0.1:PORT`` (``https://`` with an SSL context)."""
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    @property
    def ws_url(self) -> str:
        """What an agent's ``CONTROL_PLANE_URL`` is: ``ws://`` or ``wss://`` host and port."""
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The listening port."""
        return self._port

    # --- introspection ---------------------------------------------------------------------------

    def agent_rows(self) -> list[dict[str, Any]]:
        """Copies of the ``agents`` rows (SQL column names; the hash only as ``has_api_key``)."""
        return [row.as_dict() for row in self._agents.values()]

    def agent_row(self, agent_id: str) -> dict[str, Any] | None:
        """One row (see :meth:`agent_rows`), or None."""
        row = self._agents.get(agent_id)
        return row.as_dict() if row is not None else None

    def connected_agents(self) -> set[str]:
        """Agent ids with an open WebSocket in the hub (``AgentHub.GetConnectedAgents``)."""
        return self._hub.connected()

    def user_id(self, username: str) -> str:
        """The id of a configured user (what ``approved_by`` records)."""
        for record in self._users.values():
            if record.username == username:
                return record.id
        raise KeyError(username)

    def set_user_active(self, username: str, active: bool) -> None:
        """Enable or disable a user (``users.active``) after start."""
        self._users[self.user_id(username)].active = active

    async def drop_connection(self, agent_id: str) -> None:
        """Close that agent's WebSocket from the server side, the way the hub does it
        (``AgentHub.handleUnregister``, e.g. from ``checkStaleConnections``): the connection is
        closed at once and the row set ``offline``."""
        if agent_id not in self._hub.connected():
            raise KeyError(f"agent {agent_id!r} has no WebSocket open")
        await self._hub.unregister(agent_id)

    async def received_messages(
        self,
        agent_id: str,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - a test helper's own deadline
    ) -> list[dict[str, Any]]:
        """The JSON messages received over ``agent_id``'s WebSockets, once there are at least
        ``count`` of them (``TimeoutError`` after ``timeout`` seconds)."""
        return await self._hub.received_messages(agent_id, count=count, timeout=timeout)

    async def wait_connected(
        self,
        agent_id: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - a test helper's own deadline
    ) -> None:
        """Wait until ``agent_id`` has a WebSocket in the hub."""
        async with asyncio.timeout(timeout):
            while agent_id not in self._hub.connected():  # noqa: ASYNC110 - polling a set
                await asyncio.sleep(0.01)

    # --- plumbing --------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    def _json(self, ctx: _Ctx, status: int, body: Any) -> web.Response:
        response = web.Response(
            status=status, body=marshal(body), content_type="application/json", charset="utf-8"
        )
        return self._finish(ctx, response)

    def _finish(self, ctx: _Ctx, response: web.Response) -> web.Response:
        if ctx.gzip:
            response.enable_compression(web.ContentCoding.gzip)
            response.headers["Vary"] = "Accept-Encoding"
        return response

    def _record(self, ctx: _Ctx, status: int) -> None:
        request = ctx.request
        self.requests.append(
            RequestRecord(request.method, request.path, ctx.client_ip, ctx.auth_method, status)
        )
        ctx.recorded = True

    def _match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        parts = tuple(path.split("/")[1:]) if path.startswith("/") else ()
        for route_method, pattern, handler in self._routes:
            if route_method != method or len(pattern) != len(parts):
                continue
            params: dict[str, str] = {}
            for expected, part in zip(pattern, parts, strict=True):
                if expected.startswith(":"):
                    if not part:
                        break
                    params[expected[1:]] = part
                elif expected != part:
                    break
            else:
                return handler, params
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        peer_ip = str(peer[0]) if peer else ""
        ctx = _Ctx(request, client_ip(request.headers, peer_ip))
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)
        response = await self._pipeline(request, ctx)
        if not ctx.recorded:
            self._record(ctx, response.status)
        return response

    def _trailing_slash_redirect(self, request: web.Request) -> web.Response | None:
        """gin's ``RedirectTrailingSlash`` (``engine.handleHTTPRequest``, before any
        middleware): 301 for GET, 307 otherwise, to the path with/without its last slash."""
        method, path = request.method, request.path
        other = path[:-1] if path.endswith("/") else path + "/"
        if self._match(method, other) is None:
            return None
        location = other + (f"?{request.query_string}" if request.query_string else "")
        status = 301 if method == "GET" else 307
        response = web.Response(status=status, headers={"Location": location})
        if method in ("GET", "HEAD"):  # http.Redirect's little HTML body
            text = "Moved Permanently" if status == 301 else "Temporary Redirect"
            response.content_type = "text/html"
            response.charset = "utf-8"
            response.text = f'<a href="{location}">{text}</a>.\n\n'
        return response

    async def _pipeline(self, request: web.Request, ctx: _Ctx) -> web.StreamResponse:
        method, path = request.method, request.path
        matched = self._match(method, path)
        if matched is None and path != "/":
            redirect = self._trailing_slash_redirect(request)
            if redirect is not None:
                return redirect
        refused = method_not_allowed(method)
        if refused is not None:
            not_allowed = self._json(ctx, 405, refused)
            not_allowed.headers["Allow"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD"
            return not_allowed
        if method == "OPTIONS":  # corsMiddleware
            return web.Response(status=204)
        refused = invalid_input(path, request.query.items())
        if refused is not None:
            return self._json(ctx, 400, refused)
        if (
            method not in ("GET", "HEAD", "OPTIONS")
            and request.content_length is not None
            and request.content_length > MAX_BODY
        ):
            return self._json(
                ctx,
                413,
                GoMap(
                    error="Request entity too large",
                    message="Request body exceeds maximum allowed size",
                    max_size_mb=float(MAX_BODY) / (1024 * 1024),
                ),
            )
        ctx.gzip = should_gzip(path, request.headers)
        response: web.StreamResponse
        if matched is None:
            # engine.serveError: the chain runs first; with gzip on, gzipWriter.Close has
            # written an empty gzip stream, so gin's text is never written.
            text = "" if ctx.gzip else "404 page not found"
            response = self._finish(
                ctx, web.Response(status=404, text=text, content_type="text/plain")
            )
        else:
            handler, params = matched
            try:
                response = await handler(request, ctx, params)
            except web.HTTPRequestEntityTooLarge:
                response = self._json(
                    ctx,
                    400,
                    GoMap(error="Invalid request format", details="http: request too large"),
                )
        if response.status != 101 and not response.prepared:
            response.headers["Cache-Control"] = cache_control(method, path)
        return response

    # --- admin routes ----------------------------------------------------------------------------

    def _admin(
        self, handler: Callable[[_Ctx, dict[str, str], dict[str, Any]], Awaitable[web.Response]]
    ) -> Handler:
        """``protected.Use(authMiddleware)``, ``protected.Use(CSRFProtection())``, then
        ``admin.Use(adminMiddleware)``."""

        async def run(request: web.Request, ctx: _Ctx, params: dict[str, str]) -> web.Response:
            outcome = admin_auth(
                headers=request.headers,
                query=request.query,
                cookies=request.cookies,
                path=request.path,
                jwt_manager=self._jwt,
                users_by_id=self._users,
                now=self._clock(),
            )
            if isinstance(outcome, AdminRefusal):
                if outcome.body is None:
                    return self._finish(ctx, web.Response(status=outcome.status))
                return self._json(ctx, outcome.status, outcome.body)
            return await handler(ctx, params, outcome)

        return run

    async def _list_agents(
        self, ctx: _Ctx, params: dict[str, str], claims: dict[str, Any]
    ) -> web.Response:
        """``ListAgents``: ``platform``/``status``/``region`` filters, ``ORDER BY created_at
        DESC``, approval columns selected; ``{"agents": [...], "total": n}``."""
        query = ctx.request.query
        filters = {name: query.get(name, "") for name in ("platform", "status", "region")}
        async with self._lock:
            rows = [
                (index, row)
                for index, row in enumerate(self._agents.values())
                if (not filters["platform"] or row.platform == filters["platform"])
                and (not filters["status"] or row.status == filters["status"])
                and (not filters["region"] or row.region == filters["region"])
            ]
            rows.sort(key=lambda item: (item[1].created_at, item[0]), reverse=True)
            agents = [agent_json(row, with_approval=True) for _, row in rows]
        return self._json(ctx, 200, GoMap(agents=agents, total=len(agents)))

    async def _get_agent(
        self, ctx: _Ctx, params: dict[str, str], claims: dict[str, Any]
    ) -> web.Response:
        """``GetAgent``: the row *without* its approval columns (``approvalStatus`` "")."""
        agent_id = params["agent_id"]
        async with self._lock:
            row = self._agents.get(agent_id)
            body = agent_json(row, with_approval=False) if row is not None else None
        if body is None:
            return self._json(ctx, 404, GoMap(error="Agent not found", agentId=agent_id))
        return self._json(ctx, 200, body)

    async def _deregister_agent(
        self, ctx: _Ctx, params: dict[str, str], claims: dict[str, Any]
    ) -> web.Response:
        """``DeregisterAgent``: ``DELETE FROM agents``; 404 when no row went. An open WebSocket
        of that agent stays open (the hub is not told)."""
        agent_id = params["agent_id"]
        async with self._lock:
            row = self._agents.pop(agent_id, None)
        if row is None:
            return self._json(ctx, 404, GoMap(error="Agent not found", agentId=agent_id))
        return self._json(
            ctx, 200, GoMap(message="Agent deregistered successfully", agentId=agent_id)
        )

    async def _new_key(self) -> tuple[str, bytes, datetime]:
        """``GenerateAPIKeyWithMetadata``: key, bcrypt hash (``BcryptCost``), creation time."""
        key = generate_api_key()
        key_hash = await bcrypt_hash(key, self.config.bcrypt_cost)
        return key, key_hash, self._now()

    async def _generate_key(
        self, ctx: _Ctx, params: dict[str, str], claims: dict[str, Any]
    ) -> web.Response:
        """``GenerateAPIKey``: any existing row, whatever its approval status; the old key (if
        any) stops working at once."""
        return await self._store_new_key(ctx, params["agent_id"], rotate=False)

    async def _rotate_key(
        self, ctx: _Ctx, params: dict[str, str], claims: dict[str, Any]
    ) -> web.Response:
        """``RotateAPIKey``: as ``GenerateAPIKey``, plus ``rotated`` (whether a key existed)."""
        return await self._store_new_key(ctx, params["agent_id"], rotate=True)

    async def _store_new_key(self, ctx: _Ctx, agent_id: str, *, rotate: bool) -> web.Response:
        async with self._lock:
            row = self._agents.get(agent_id)
            had_key = row is not None and bool(row.api_key_hash)
        if row is None:
            return self._json(ctx, 404, GoMap(error="Agent not found", agentId=agent_id))
        key, key_hash, created = await self._new_key()
        async with self._lock:
            row = self._agents.get(agent_id)
            if row is not None:  # UPDATE ... WHERE agent_id: no error when the row went
                row.api_key_hash = key_hash
                row.api_key_created_at = created
                row.updated_at = created
        body = GoMap(
            message="API key generated successfully",
            agentId=agent_id,
            apiKey=key,
            warning="SAVE THIS KEY NOW - it will not be shown again",
            usage=GoMap(header="X-Agent-API-Key", value=key),
            createdAt=created,
        )
        if rotate:
            body["rotated"] = had_key
            if had_key:
                body["message"] = "API key rotated successfully - old key is now invalid"
        return self._json(ctx, 200, body)

    async def _approve_agent(
        self, ctx: _Ctx, params: dict[str, str], claims: dict[str, Any]
    ) -> web.Response:
        """``ApproveAgent``: a fresh key is made first, then ``UPDATE ... WHERE agent_id = $4
        AND approval_status = 'pending'``; no row changed: 404 ``Agent not found or not in
        pending status``. ``approved_by`` is the admin's user id from the token."""
        agent_id = params["agent_id"]
        user_id = str(claims.get("user_id", ""))
        key, key_hash, now = await self._new_key()
        async with self._lock:
            row = self._agents.get(agent_id)
            if row is None or row.approval_status != "pending":
                row = None
            else:
                row.approval_status = "approved"
                row.approved_at = now
                row.approved_by = user_id
                row.api_key_hash = key_hash
                row.api_key_created_at = now
                row.updated_at = now
        if row is None:
            return self._json(ctx, 404, GoMap(error="Agent not found or not in pending status"))
        return self._json(
            ctx,
            200,
            GoMap(
                message="Agent approved successfully",
                agentId=agent_id,
                apiKey=key,
                warning="Provide this API key to the agent - it will not be shown again",
            ),
        )

    async def _reject_agent(
        self, ctx: _Ctx, params: dict[str, str], claims: dict[str, Any]
    ) -> web.Response:
        """``RejectAgent``: pending rows only (404 otherwise); ``approved_at``/``approved_by``
        record the rejection too; the key hash is left as it was."""
        agent_id = params["agent_id"]
        user_id = str(claims.get("user_id", ""))
        now = self._now()
        async with self._lock:
            row = self._agents.get(agent_id)
            if row is None or row.approval_status != "pending":
                row = None
            else:
                row.approval_status = "rejected"
                row.approved_at = now
                row.approved_by = user_id
                row.updated_at = now
        if row is None:
            return self._json(ctx, 404, GoMap(error="Agent not found or not in pending status"))
        return self._json(ctx, 200, GoMap(message="Agent rejected", agentId=agent_id))

    # --- login -----------------------------------------------------------------------------------

    async def _login(
        self, request: web.Request, ctx: _Ctx, params: dict[str, str]
    ) -> web.StreamResponse:
        """``AuthHandler.Login``: ``{"token", "expiresAt", "user"}``.

        ``UserDB.VerifyPassword`` refuses unknown users, non-local users, *disabled* users and
        wrong passwords alike, so each is 401 ``Invalid credentials``: ``Login``'s own 403
        ``Account is disabled`` is never reached for a local account.
        """
        body = await request.read()
        try:
            decoded = should_bind_json(body, LOGIN_SHAPE)
        except BindError:
            return self._json(ctx, 400, GoMap(error="Invalid request body"))
        user = next((u for u in self._users.values() if u.username == decoded["username"]), None)
        if (
            user is None
            or user.provider != "local"
            or not user.active
            or not await bcrypt_compare(decoded["password"], user.password_hash)
        ):
            return self._json(ctx, 401, GoMap(error="Invalid credentials"))
        snapshot = user.login_json(user.last_login)
        now = self._clock()
        user.last_login = user.updated_at = self._now()  # UpdateLastLogin
        token = self._jwt.generate(user, now)
        expires_at = datetime.fromtimestamp(now + self._jwt.token_duration, tz=UTC)
        return self._json(ctx, 200, {"token": token, "expiresAt": expires_at, "user": snapshot})

    # --- agent routes ----------------------------------------------------------------------------

    def _agent_route(
        self,
        handler: Callable[[web.Request, _Ctx, dict[str, str], AgentAuth, bytes], Awaitable[Any]],
    ) -> Handler:
        """``agentRoutes.Use(agentRateLimit(...))``, then
        ``agentRoutes.Use(agentAuth.RequireAuth())``."""

        async def run(
            request: web.Request, ctx: _Ctx, params: dict[str, str]
        ) -> web.StreamResponse:
            if self.config.rate_limit_enabled and not self._limiter.check_limit(
                agent_rate_limit_key(ctx.client_ip),
                self.config.rate_limit_rpm,
                WINDOW_SECONDS,
                self._clock(),
            ):
                return self._json(ctx, 429, rate_limited_body())
            body = await request.read()
            outcome = await require_agent_auth(
                api_key=request.headers.get("X-Agent-API-Key", ""),
                query_agent_id=request.query.get("agent_id", ""),
                path_agent_id=params.get("agent_id", ""),
                body=body,
                client_cert_cn=self._client_cert_cn(request),
                bootstrap_key=self.config.bootstrap_key,
                lookup=self._lookup_key,
            )
            if isinstance(outcome, AuthRefusal):
                return self._json(ctx, outcome.status, outcome.body)
            ctx.auth_method = outcome.method
            if outcome.method == "agent_api_key":
                async with self._lock:
                    row = self._agents.get(outcome.agent_id)
                    if row is not None:
                        row.api_key_last_used_at = row.updated_at = self._now()
            response: web.StreamResponse = await handler(request, ctx, params, outcome, body)
            return response

        return run

    @staticmethod
    def _client_cert_cn(request: web.Request) -> str | None:
        """The verified client certificate's CN ("" without one), or None: no certificate."""
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for name, value in rdn:
                if name == "commonName":
                    return str(value)
        return ""

    async def _lookup_key(self, agent_id: str) -> tuple[bool, bytes | None]:
        async with self._lock:
            row = self._agents.get(agent_id)
            return (row is not None, row.api_key_hash if row is not None else None)

    async def _register(
        self,
        request: web.Request,
        ctx: _Ctx,
        params: dict[str, str],
        auth: AgentAuth,
        body: bytes,
    ) -> web.Response:
        """``RegisterAgent``.

        The body's ``agentId`` is the row written, whatever id ``RequireAuth`` authenticated
        (it reads ``?agent_id=`` first). A new row: ``status`` ``offline``, ``approval_status``
        ``pending``, 201; an existing one: platform/region/capacity/metadata replaced, ``status``
        ``online``, 200. Then, for bootstrap auth: 200 when approved *and* a key hash exists
        (no key in the answer), 202 pending, else 403 ``rejected``; otherwise the agent JSON
        of the ``RETURNING`` columns (``approvalStatus`` "").
        """
        decoded, problem = bind_and_validate(body, REGISTRATION_SHAPE)
        if decoded is None:
            return self._json(ctx, 400, problem)
        agent_id = decoded["agentId"]
        capacity = stored_capacity(decoded.get("capacity"))
        metadata = decoded.get("metadata")
        now = self._now()
        async with self._lock:
            row = self._agents.get(agent_id)
            if row is None:
                row = AgentRow(
                    id=str(uuid.uuid4()),
                    agent_id=agent_id,
                    platform=decoded["platform"],
                    region=decoded.get("region", ""),
                    status="offline",
                    capacity=capacity,
                    last_heartbeat=now,
                    websocket_id=None,
                    metadata=metadata,
                    api_key_hash=None,
                    api_key_created_at=None,
                    api_key_last_used_at=None,
                    approval_status="pending",
                    approved_at=None,
                    approved_by=None,
                    created_at=now,
                    updated_at=now,
                )
                self._agents[agent_id] = row
                status = 201
            else:
                row.platform = decoded["platform"]
                row.region = decoded.get("region", "")
                row.status = "online"
                row.capacity = capacity
                row.last_heartbeat = now
                row.metadata = metadata
                row.updated_at = now
                status = 200
            agent = agent_json(row, with_approval=False)
            approval, key_hash = row.approval_status, row.api_key_hash
        if not auth.is_bootstrap:
            return self._json(ctx, status, agent)
        if approval == "approved" and key_hash is not None:
            return self._json(
                ctx,
                200,
                GoMap(
                    agent=agent,
                    approvalStatus="approved",
                    message="Agent approved. Use your configured API key for subsequent requests.",
                ),
            )
        if approval == "pending":
            return self._json(
                ctx,
                202,
                GoMap(
                    agent=agent,
                    approvalStatus="pending",
                    message=(
                        "Agent registration request received. Waiting for administrator "
                        "approval. Please retry registration periodically."
                    ),
                ),
            )
        return self._json(
            ctx,
            403,
            GoMap(
                agent=agent,
                approvalStatus="rejected",
                message="Agent registration has been rejected by administrator.",
            ),
        )

    async def _heartbeat(
        self,
        request: web.Request,
        ctx: _Ctx,
        params: dict[str, str],
        auth: AgentAuth,
        body: bytes,
    ) -> web.Response:
        """``UpdateHeartbeat``: ``status`` online|draining; the path's agent row updated (404
        when none), ``capacity`` too when sent."""
        agent_id = params["agent_id"]
        decoded, problem = bind_and_validate(body, HEARTBEAT_SHAPE)
        if decoded is None:
            return self._json(ctx, 400, problem)
        now = self._now()
        async with self._lock:
            row = self._agents.get(agent_id)
            if row is not None:
                row.last_heartbeat = now
                row.status = decoded["status"]
                if "capacity" in decoded:
                    row.capacity = stored_capacity(decoded["capacity"])
                row.updated_at = now
        if row is None:
            return self._json(ctx, 404, GoMap(error="Agent not found", agentId=agent_id))
        return self._json(
            ctx,
            200,
            GoMap(
                message="Heartbeat updated successfully",
                agentId=agent_id,
                status=decoded["status"],
                lastHeartbeat=now,
            ),
        )

    # --- the agent WebSocket (agent_websocket.go, agent_hub.go) ---------------------------------

    async def _connect(
        self,
        request: web.Request,
        ctx: _Ctx,
        params: dict[str, str],
        auth: AgentAuth,
        body: bytes,
    ) -> web.StreamResponse:
        """``HandleAgentConnection``: ``?agent_id=`` required (400), the row must exist (404),
        its approval status is *not* looked at; then the upgrade and the hub."""
        agent_id = request.query.get("agent_id", "")
        if agent_id == "":
            return self._json(
                ctx,
                400,
                GoMap(error="Missing agent_id", details="agent_id query parameter is required"),
            )
        async with self._lock:
            row = self._agents.get(agent_id)
            platform = row.platform if row is not None else ""
        if row is None:
            return self._json(
                ctx,
                404,
                GoMap(
                    error="Agent not found",
                    details="Agent must register before connecting via WebSocket",
                    agentId=agent_id,
                ),
            )
        ws = web.WebSocketResponse(
            autoping=False, autoclose=True, max_msg_size=MAX_MESSAGE_SIZE, compress=False
        )
        if not ws.can_prepare(request).ok:
            # gorilla's Upgrader.returnError: http.Error(w, "Bad Request", 400).
            response = web.Response(
                status=400, text="Bad Request\n", headers={"Sec-Websocket-Version": "13"}
            )
            return self._finish(ctx, response)
        await ws.prepare(request)
        self._record(ctx, 101)
        await self._hub.serve(agent_id, ws, request.transport, platform)
        return ws
