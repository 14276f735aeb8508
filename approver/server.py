"""The approver's aiohttp application and server. Handlers are thin: parse, call, render.

Routes:

* ``POST /api/v1/agents/register``: StreamSpace's registration call (:mod:`approver.wire`);
  200 approved / 202 pending / 403 rejected (:mod:`approver.answers`), 400 malformed body,
  415 not JSON, 413 body over 64 KiB, 503 + ``Retry-After`` when the database is unavailable.
* ``GET /api/v1/admin/agents[?status=pending|active|inactive|rejected]``: ``{"agents": [...]}``.
* ``POST /api/v1/admin/agents/{agentId}/approve`` and ``.../reject``: ``{"agent": {...}}``, or 404.
  Admin routes need ``Authorization: Bearer <token>`` (``adminTokensFile``); otherwise 401 with
  ``WWW-Authenticate: Bearer`` (RFC 6750 section 3).
* ``GET /healthz``: 200 while the process serves. ``GET /readyz``: 200 when the database answers,
  503 otherwise.

Database trouble anywhere becomes 503 with ``Retry-After: retryAfterSeconds`` (DESIGN,
"Failure semantics"); domain errors never leave a handler as exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from approver.admin import AdminService
from approver.admin_tokens import AdminTokens, AdminTokensError, bearer_token
from approver.answers import agent_json, error_body, registration_answer
from approver.config import ApproverSettings, ConfigError, env_name
from approver.decision import DecisionPolicy
from approver.records import AgentStatus
from approver.registration import Registrar
from approver.store import Store, StoreUnavailable
from approver.wire import BadRequest, parse_registration
from bootstrap_token import AuditEvent, AuditSink, KeyLoadError, KeySet, VerificationPolicy

log = logging.getLogger(__name__)

#: 64 KiB. A StreamSpace registration body is about 300 bytes; ``metadata`` is free-form, so
#: leave room, but far below aiohttp's 1 MiB default: the endpoint is unauthenticated.
MAX_REQUEST_BYTES = 64 * 1024

REGISTER_PATH = "/api/v1/agents/register"
ADMIN_AGENTS_PATH = "/api/v1/admin/agents"
_REALM = 'Bearer realm="agent-bootstrap-approver"'

SETTINGS_KEY = web.AppKey("settings", ApproverSettings)
STORE_KEY = web.AppKey("store", Store)
REGISTRAR_KEY = web.AppKey("registrar", Registrar)
ADMIN_KEY = web.AppKey("admin", AdminService)
ADMIN_TOKENS_KEY = web.AppKey("admin_tokens", AdminTokens)
AUDIT_KEY = web.AppKey("audit", AuditSink)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: ApproverSettings,
    *,
    key_set: KeySet,
    store: Store,
    clock: Callable[[], float] = time.time,
    audit: AuditSink | None = None,
) -> web.Application:
    """Build the application.

    Args:
        settings: validated settings.
        key_set: the webhook's public keys (may be empty when auto-approval is off).
        store: an opened (and migrated) store; the application closes it on cleanup.
        clock: seconds since the epoch; tokens are verified and records stamped with it.
        audit: audit sink (default: JSON lines on the ``agent_bootstrap.audit`` logger).

    Raises:
        ConfigError: ``adminTokensFile`` cannot be read or parsed (the message names it).
    """
    sink = audit or AuditSink()
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_store_errors])
    app[SETTINGS_KEY] = settings
    app[STORE_KEY] = store
    app[AUDIT_KEY] = sink
    app[ADMIN_TOKENS_KEY] = load_admin_tokens(settings)
    app[REGISTRAR_KEY] = Registrar(
        store=store,
        key_set=key_set,
        verification=VerificationPolicy(
            issuer=settings.token.issuer,
            audience=settings.token.audience,
            leeway_seconds=settings.token.leeway_seconds,
            trust=settings.trust,
        ),
        policy=DecisionPolicy(
            auto_approve=settings.auto_approve.enabled,
            agent_id_prefix=settings.agent_id_prefix,
        ),
        audit=sink,
        clock=clock,
    )
    app[ADMIN_KEY] = AdminService(store=store, audit=sink, clock=clock)
    app.cleanup_ctx.append(_close_store)
    app.router.add_post(REGISTER_PATH, register)
    app.router.add_get(ADMIN_AGENTS_PATH, admin_list)
    app.router.add_post(ADMIN_AGENTS_PATH + "/{agent_id}/approve", admin_approve)
    app.router.add_post(ADMIN_AGENTS_PATH + "/{agent_id}/reject", admin_reject)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _close_store(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[STORE_KEY].close()


@web.middleware
async def _store_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Database unavailable -> 503 with Retry-After; nothing was written."""
    try:
        return await handler(request)
    except StoreUnavailable as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        retry_after = request.app[SETTINGS_KEY].retry_after_seconds
        return web.json_response(
            error_body("store_unavailable", "the approver's database is unavailable; retry"),
            status=503,
            headers={"Retry-After": str(retry_after)},
        )


def _json_error(status: int, code: str, message: str | None = None) -> web.Response:
    return web.json_response(error_body(code, message), status=status)


# --- registration ----------------------------------------------------------------------------


async def register(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/register``: decide a registration (see module docstring)."""
    if request.content_type != "application/json":
        return _json_error(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        data = await request.json()
    except ValueError:
        return _json_error(400, "invalid_json", "the body is not JSON")
    try:
        body = parse_registration(data)
    except BadRequest as exc:
        return _json_error(400, exc.code, exc.message)
    result = await request.app[REGISTRAR_KEY].register(request=body, headers=request.headers)
    status, payload = registration_answer(result.decision, result.agent)
    return web.json_response(payload, status=status)


# --- admin -----------------------------------------------------------------------------------


def _actor(request: web.Request) -> str:
    """The authenticated administrator, or raise 401 (and audit the refusal)."""
    token = bearer_token(request.headers.get("Authorization"))
    actor = request.app[ADMIN_TOKENS_KEY].authenticate(token) if token is not None else None
    if actor is not None:
        return actor
    reason = "missing_bearer" if token is None else "bad_bearer"
    request.app[AUDIT_KEY].emit(
        AuditEvent(
            component="approver",
            event="admin.auth",
            decision="denied",
            reason=reason,
            security=token is not None,
            message=f"{request.method} {request.path}",
        )
    )
    challenge = _REALM if token is None else _REALM + ', error="invalid_token"'
    raise web.HTTPUnauthorized(
        text='{"error": "unauthorized"}',
        content_type="application/json",
        headers={"WWW-Authenticate": challenge},
    )


async def admin_list(request: web.Request) -> web.Response:
    """``GET /api/v1/admin/agents[?status=...]``: ``{"agents": [record, ...]}``, oldest first."""
    actor = _actor(request)
    raw = request.query.get("status")
    status: AgentStatus | None = None
    if raw is not None:
        try:
            status = AgentStatus(raw)
        except ValueError:
            allowed = ", ".join(s.value for s in AgentStatus)
            return _json_error(400, "invalid_status", f"status must be one of: {allowed}")
    agents = await request.app[ADMIN_KEY].list_agents(actor=actor, status=status)
    return web.json_response({"agents": [agent_json(a) for a in agents]})


async def admin_approve(request: web.Request) -> web.Response:
    """``POST /api/v1/admin/agents/{agentId}/approve``: ``{"agent": record}`` or 404."""
    actor = _actor(request)
    agent = await request.app[ADMIN_KEY].approve(
        agent_id=request.match_info["agent_id"], actor=actor
    )
    if agent is None:
        return _json_error(404, "agent_not_found")
    return web.json_response({"agent": agent_json(agent)})


async def admin_reject(request: web.Request) -> web.Response:
    """``POST /api/v1/admin/agents/{agentId}/reject``: ``{"agent": record}`` or 404."""
    actor = _actor(request)
    agent = await request.app[ADMIN_KEY].reject(
        agent_id=request.match_info["agent_id"], actor=actor
    )
    if agent is None:
        return _json_error(404, "agent_not_found")
    return web.json_response({"agent": agent_json(agent)})


# --- health ----------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 ``{"status": "ok"}`` while the process serves (liveness)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when the database answers, else 503 via the middleware."""
    await request.app[STORE_KEY].ping()
    return web.json_response({"status": "ready"})


# --- resources from settings -----------------------------------------------------------------


def _field(*loc: str) -> str:
    return f"{'.'.join(loc)} (env {env_name(loc)})"


def load_key_set(settings: ApproverSettings) -> KeySet:
    """The verification keys from ``token.jwksFile`` (JWKS or PEM), or an empty set when unset.

    Raises:
        ConfigError: the file cannot be read or holds no usable Ed25519 public key.
    """
    path = settings.token.jwks_file
    if path is None:
        return KeySet()
    try:
        key_set = KeySet.from_file(path)
    except (KeyLoadError, OSError) as exc:
        raise ConfigError(f"{_field('token', 'jwksFile')}: {exc}") from None
    if not key_set:
        raise ConfigError(f"{_field('token', 'jwksFile')}: holds no key")
    return key_set


def load_admin_tokens(settings: ApproverSettings) -> AdminTokens:
    """The admin tokens from ``adminTokensFile``, or none (admin API closed) when unset.

    Raises:
        ConfigError: the file cannot be read, or a line is invalid (line number, never content).
    """
    path = settings.admin_tokens_file
    if path is None:
        return AdminTokens()
    try:
        return AdminTokens.from_file(path)
    except AdminTokensError as exc:
        raise ConfigError(f"{_field('adminTokensFile')}: {exc}") from None


def server_ssl_context(settings: ApproverSettings) -> ssl.SSLContext | None:
    """A TLS 1.2+ server context from ``tlsCertFile``/``tlsKeyFile``, or None for plain HTTP.

    Raises:
        ConfigError: the certificate or key cannot be loaded, or they do not match.
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(
            f"{_field('tlsCertFile')} / {_field('tlsKeyFile')}: cannot load: {reason}"
        ) from None
    return context


async def serve(settings: ApproverSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run the approver until SIGTERM/SIGINT (or until ``stop`` is set).

    Loads the key set, the TLS context and the admin tokens, opens the store and migrates it,
    then serves on ``host:port`` (HTTPS when ``tlsCertFile`` is set) until told to stop, and
    closes everything on the way out.

    Raises:
        ConfigError: a file named by the settings cannot be used.
        StoreUnavailable: the database could not be migrated.
    """
    key_set = load_key_set(settings)
    ssl_context = server_ssl_context(settings)
    try:
        store = Store.open(settings.database_url)
    except ValueError as exc:
        raise ConfigError(f"{_field('databaseUrl')}: {exc}") from None
    try:
        app = create_app(settings, key_set=key_set, store=store)
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
        await site.start()
        scheme = "https" if ssl_context else "http"
        if ssl_context is None:
            log.warning("serving plain HTTP: terminate TLS in front of the approver")
        log.info(
            "approver listening on %s://%s:%d (database %s, auto-approve %s, %d key(s), "
            "%d admin token(s))",
            scheme,
            settings.host,
            settings.port,
            store.url,
            "on" if settings.auto_approve.enabled else "off",
            len(key_set),
            len(app[ADMIN_TOKENS_KEY]),
        )
        await _wait(stop)
    finally:
        await runner.cleanup()


async def _wait(stop: asyncio.Event | None) -> None:
    if stop is not None:
        await stop.wait()
        return
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, event.set)
    try:
        await event.wait()
        log.info("stopping")
    finally:
        for sig in signals:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
