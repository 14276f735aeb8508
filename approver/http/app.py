"""The approver's aiohttp application: routes, the error boundary, background tasks.

Routes (handlers in :mod:`approver.http.agents` and :mod:`approver.http.admin`):

* ``POST /api/v1/agents/register``: StreamSpace's registration call.
* ``POST /api/v1/agents/review``: credential review for a control plane.
* ``/api/v1/admin/agents...``: list, get, approve, reject, revoke, delete, bulk-approve.
* ``/api/v1/admin/api-keys...``: create, list, revoke, rotate API keys
  (:mod:`approver.http.api_keys`; the same admin bearer tokens).
* ``GET /api/v1/audit``: the stored audit chain.
* ``GET /healthz``: 200 while the process serves. ``GET /readyz``: 200 when the database answers,
  503 otherwise.

Database trouble anywhere becomes 503 with ``Retry-After: retryAfterSeconds`` (docs/design.md,
"Failure semantics"); domain errors never leave a handler as exceptions. Errors aiohttp raises
itself (413 body over :data:`MAX_REQUEST_BYTES`, 404 unknown path, 405 wrong method) are
answered as JSON too, ``{"error": code, "message": ...}`` like every other error.

Background tasks (started with the app, cancelled at cleanup): the pending sweeper
(:mod:`approver.sweeper`) and, with ``kubernetes.enabled`` and ``kubernetes.watch``, the pod
watch (:mod:`approver.kube.watch`, :mod:`approver.reconcile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp
from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from approver.admin import AdminService
from approver.agent_certificates import AgentCertificates, CertificatePolicy
from approver.api_keys import ApiKeyAdmin
from approver.audit.sampling import LineSampler
from approver.config import ApproverSettings, ConfigError
from approver.connectors.metered import MeteredControlPlane
from approver.control_plane_sync import ControlPlaneSync
from approver.domain.control_plane import ControlPlane
from approver.domain.decision import DecisionPolicy
from approver.domain.quota import QuotaPolicy
from approver.gate import AgentGate
from approver.http import admin as http_admin
from approver.http import agents as http_agents
from approver.http import api_keys as api_keys_http
from approver.http import certificates as http_certificates
from approver.http import gate as http_gate
from approver.http.app_keys import (
    ADMIN_KEY,
    ADMIN_TOKENS_KEY,
    AUDIT_KEY,
    AUTH_LINES_KEY,
    CONTROL_PLANE_KEY,
    METRICS_KEY,
    REGISTRAR_KEY,
    REVIEW_TOKENS_KEY,
    REVIEWER_KEY,
    SETTINGS_KEY,
    STORE_KEY,
    SYNC_KEY,
)
from approver.http.common import authenticate, json_response
from approver.http.errors import body_deadline_middleware, error_middleware
from approver.http.gate import (
    CONNECTIONS_KEY,
    GATE_KEY,
    SESSION_KEY,
    UPSTREAM_KEY,
    GateConnections,
)
from approver.http.metered import responses_middleware
from approver.kube.pods import KubePods
from approver.kube.replicasets import KubeReplicaSets
from approver.kube.selector import selector_string
from approver.kube.watch import PodWatcher
from approver.metrics import ApproverMetrics, refresh_backlog, waited_for_approval
from approver.pending_limits.gate import pending_gate
from approver.reconcile import PodReconciler
from approver.registration import Registrar
from approver.resources import open_control_plane, signing_ca, token_file, where_set
from approver.review import CredentialReviewer
from approver.store import Store, StoreUnavailable
from approver.store.batcher import WriteBatcher
from approver.sweeper import PendingSweeper
from approver.verifiers import (
    CredentialVerifier,
    api_key_folder,
    close_verifiers,
    configured_bootstrap_checks,
    configured_verifiers,
)
from bootstrap_token import AuditSink, KeySet, VerificationPolicy

log = logging.getLogger(__name__)

#: 64 KiB. A StreamSpace registration body is about 300 bytes; ``metadata`` is free-form, so
#: leave room, but far below aiohttp's 1 MiB default: the endpoint is unauthenticated.
MAX_REQUEST_BYTES = 64 * 1024

__all__ = ["MAX_REQUEST_BYTES", "SWEEPER_KEY", "WATCHER_KEY", "create_app"]

WATCHER_KEY = web.AppKey("pod_watcher", PodWatcher)
SWEEPER_KEY = web.AppKey("pending_sweeper", PendingSweeper)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: ApproverSettings,
    *,
    key_set: KeySet,
    store: Store,
    clock: Callable[[], float] = time.time,
    audit: AuditSink | None = None,
    kube: ApiClient | None = None,
    verifiers: Sequence[CredentialVerifier] | None = None,
    background: bool = True,
    control_plane: ControlPlane | None = None,
    metrics: ApproverMetrics | None = None,
) -> web.Application:
    """Build the application.

    Args:
        settings: validated settings.
        key_set: the webhook's public keys (may be empty when auto-approval is off).
        store: an opened (and migrated) store; the application closes it on cleanup.
        clock: seconds since the epoch; tokens are verified and records stamped with it.
        audit: audit sink (default: JSON lines on the ``agent_bootstrap.audit`` logger).
        kube: the Kubernetes client, required when ``kubernetes.enabled`` or
            ``serviceAccountTokens`` uses TokenReview (:func:`serve` makes
            one from ``kubernetes.kubeconfig`` or the in-cluster config; tests pass one for a
            stand-in). The application closes it on cleanup.
        verifiers: step-3/4 verifiers; default :func:`approver.verifiers.configured_verifiers`
            (the API-key path reads ``store``'s database and ``apiKeys.secretDir``; the
            service-account path in mode tokenreview uses ``kube``). The application closes
            them on cleanup.
        background: start the sweeper, the pod watch, the control-plane sync loop, the
            gate's recheck and the tokens files' follow-up (tests of single requests turn them
            off).
        control_plane: the control plane's adapter; default: built from ``controlPlane``
            (None when its type is ``none``). The application closes it on cleanup.
        metrics: the Prometheus series (approver.metrics); default: a registry of its own.
            :func:`approver.serve.serve` exposes it on ``metricsPort``.

    Raises:
        ConfigError: ``adminTokensFile``/``reviewTokensFile`` cannot be read or parsed, or
            Kubernetes is enabled without a client.
    """
    if settings.uses_kubernetes_api and kube is None:
        field = (
            where_set(settings, "kubernetes", "enabled")
            if settings.kubernetes.enabled
            else where_set(settings, "serviceAccountTokens", "mode")
        )
        raise ConfigError(
            f"{field}: no Kubernetes client (serve() builds one "
            "from kubernetes.kubeconfig or the in-cluster configuration)"
        )
    sink = audit or AuditSink()
    metrics = metrics if metrics is not None else ApproverMetrics()
    metrics.watch_database(lambda: store.health.ready)
    metrics.watch_jwks(lambda: len(key_set))
    store.on_transaction = metrics.store_duration.labels("transaction").observe
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES,
        middlewares=[
            responses_middleware(metrics),
            error_middleware(MAX_REQUEST_BYTES),
            body_deadline_middleware(settings.body_timeout_seconds),
        ],
    )
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app[STORE_KEY] = store
    app[AUDIT_KEY] = sink
    app[AUTH_LINES_KEY] = LineSampler()
    app[ADMIN_TOKENS_KEY] = token_file(settings, "adminTokensFile")
    app[REVIEW_TOKENS_KEY] = token_file(settings, "reviewTokensFile")
    pods = (
        KubePods(kube, timeout_seconds=settings.kubernetes.request_timeout_seconds)
        if kube is not None and settings.kubernetes.enabled
        else None
    )
    folder = api_key_folder(settings)
    if verifiers is None:
        try:
            verifiers = configured_verifiers(
                settings, kube=kube, engine=store.engine, folder=folder, pods=pods
            )
        except (ValueError, OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where_set(settings, 'serviceAccountTokens')}: {exc}") from None
    if control_plane is None and settings.control_plane.enabled:
        control_plane = open_control_plane(settings)
    if control_plane is not None:
        control_plane = MeteredControlPlane(control_plane, metrics)
    app[REGISTRAR_KEY] = Registrar(
        store=store,
        key_set=key_set,
        verification=VerificationPolicy(
            issuer=settings.token.issuer,
            audience=settings.token.audience,
            leeway_seconds=settings.token.leeway_seconds,
            trust=settings.trust,
            clusters=settings.token.clusters,
        ),
        policy=DecisionPolicy(
            auto_approve=settings.auto_approve.enabled,
            agent_id_prefix=settings.agent_id_prefix,
            kubernetes=pods is not None,
            quota=QuotaPolicy(
                per_namespace=settings.auto_approve.max_active_per_namespace,
                per_owner=settings.auto_approve.max_active_per_owner,
            ),
            bootstrap_checks=configured_bootstrap_checks(settings),
            bind_source_address=settings.kubernetes.bind_source_address,
        ),
        audit=sink,
        clock=clock,
        pods=pods,
        owners=(
            KubeReplicaSets(kube, timeout_seconds=settings.kubernetes.request_timeout_seconds)
            if kube is not None and pods is not None
            else None
        ),
        token_annotation=settings.kubernetes.token_annotation,
        verifiers=verifiers,
        writer=WriteBatcher(
            store,
            max_batch=settings.write_batch_size,
            max_parallel=1 if store.dialect == "sqlite" else settings.write_concurrency,
        ),
        control_plane=control_plane,
        pending_gate=pending_gate(settings, registry=metrics.registry),
    )
    app[ADMIN_KEY] = AdminService(
        store=store,
        audit=sink,
        clock=clock,
        on_approved=lambda record: metrics.approved(
            approval_method=record.approval_method, waited_seconds=waited_for_approval(record)
        ),
    )
    app[REVIEWER_KEY] = CredentialReviewer(store=store, audit=sink, clock=clock)
    app[SWEEPER_KEY] = PendingSweeper(
        store=store, audit=sink, clock=clock, ttl_seconds=settings.pending_ttl_seconds
    )
    certificates = _agent_certificates(app, settings, store, sink, clock, control_plane)
    sync: ControlPlaneSync | None = None
    if control_plane is not None:
        sync = ControlPlaneSync(
            store=store,
            control_plane=control_plane,
            audit=sink,
            clock=clock,
            interval_seconds=settings.control_plane.sync_interval_seconds,
        )
        _add_gate(app, settings, store, control_plane, sync, certificates)
    if pods is not None and settings.kubernetes.watch:
        app[WATCHER_KEY] = PodWatcher(
            pods,
            namespaces=sorted(settings.trust.namespaces),
            label_selector=selector_string(settings.trust.pod_selector),
            handler=PodReconciler(
                store=store, audit=sink, clock=clock, changed=sync.wake if sync else None
            ),
            clock=clock,
            watch_timeout_seconds=settings.kubernetes.watch_timeout_seconds,
            resync_seconds=settings.kubernetes.resync_seconds,
        )
    app.cleanup_ctx.append(_resources(kube, verifiers))
    if background:
        app.cleanup_ctx.append(_background)
    http_agents.add_routes(app)
    http_admin.add_routes(app)
    api_keys_http.add_routes(
        app,
        admin=ApiKeyAdmin(
            engine=store.engine,
            store=store,
            audit=sink,
            clock=clock,
            folder=folder,
            default_grace_seconds=settings.api_keys.rotation_grace_seconds,
        ),
        authorize=_admin_actor,
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _agent_certificates(
    app: web.Application,
    settings: ApproverSettings,
    store: Store,
    sink: AuditSink,
    clock: Callable[[], float],
    control_plane: ControlPlane | None,
) -> AgentCertificates | None:
    """Agent client certificates (``agentCertificates.enabled``): the service, its routes and
    the agent CA files' follow-up; None when off.

    Raises:
        ConfigError: the agent CA files cannot be used.
    """
    ca = signing_ca(settings)
    if ca is None:
        return None
    options = settings.agent_certificates
    certificates = AgentCertificates(
        store=store,
        ca=ca,
        audit=sink,
        clock=clock,
        policy=CertificatePolicy(
            lifetime_seconds=options.lifetime_seconds,
            max_live_per_agent=options.max_live_per_agent,
            cluster=options.cluster,
            control_plane=control_plane is not None,
            crl_validity_seconds=options.crl_validity_seconds,
            min_reissue_seconds=options.min_reissue_seconds,
        ),
    )
    app[http_certificates.CERTIFICATES_KEY] = certificates
    http_certificates.add_routes(app)
    interval = settings.tls_reload_interval_seconds

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_purge(certificates), name="agent-certificates-purge")]
        if interval > 0:
            tasks.append(asyncio.create_task(ca.follow(interval), name="agent-ca-files"))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(background)
    return certificates


#: Seconds between two purges of expired agent certificates.
PURGE_INTERVAL_SECONDS = 3600


async def _purge(certificates: AgentCertificates) -> None:
    """Delete expired certificates' rows every :data:`PURGE_INTERVAL_SECONDS` (a database
    that is down is tried again at the next one)."""
    while True:
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)
        try:
            purged = await certificates.purge_expired()
        except StoreUnavailable as exc:
            log.warning("agent certificates purge: %s", exc)
            continue
        if purged:
            log.info("purged %d expired agent certificate(s)", purged)


def _add_gate(
    app: web.Application,
    settings: ApproverSettings,
    store: Store,
    control_plane: ControlPlane,
    sync: ControlPlaneSync,
    certificates: AgentCertificates | None,
) -> None:
    """The control plane's pieces: the adapter, the sync loop, the agent gate's routes."""
    gate = AgentGate(
        store=store,
        certificates=certificates,
        require_certificate=certificates is not None
        and settings.agent_certificates.require_at_gate,
    )
    app[CONTROL_PLANE_KEY] = control_plane
    app[SYNC_KEY] = sync
    app[GATE_KEY] = gate
    app[CONNECTIONS_KEY] = GateConnections(
        gate, recheck_seconds=settings.control_plane.gate_recheck_seconds
    )
    app[UPSTREAM_KEY] = control_plane.upstream
    http_gate.add_routes(app)

    async def close_relays(app: web.Application) -> None:
        # on_shutdown runs before aiohttp waits for open requests (60 s): a relayed WebSocket
        # is an open request for its whole life, so close them first (1001 to both sides).
        await app[CONNECTIONS_KEY].close_all()

    app.on_shutdown.append(close_relays)

    async def session(app: web.Application) -> AsyncIterator[None]:
        upstream = app[UPSTREAM_KEY]
        # No pool limit: every relayed WebSocket holds one upstream connection for its life
        # (aiohttp's default of 100 would make the 101st agent wait for a free slot).
        connector = aiohttp.TCPConnector(
            ssl=upstream.ssl if upstream.ssl is not None else True, limit=0
        )
        app[SESSION_KEY] = aiohttp.ClientSession(connector=connector)
        try:
            yield
        finally:
            await app[SESSION_KEY].close()
            await control_plane.close()

    app.cleanup_ctx.append(session)


def _admin_actor(request: web.Request) -> str:
    """The admin bearer check of the admin API (401 otherwise)."""
    return authenticate(request, request.app[ADMIN_TOKENS_KEY])


def _resources(
    kube: ApiClient | None, verifiers: Sequence[CredentialVerifier]
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def resources(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                await close_verifiers(verifiers)
            finally:
                if kube is not None:
                    await kube.close()
                await app[STORE_KEY].close()

    return resources


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The sweeper, the pod watch, the control-plane sync loop, the gate's recheck and the tokens
    files' follow-up, for the life of the app."""
    settings = app[SETTINGS_KEY]
    sweeper = app[SWEEPER_KEY]
    tasks = [
        asyncio.create_task(
            sweeper.run(interval_seconds=settings.sweep_interval_seconds), name="pending-sweeper"
        )
    ]
    watcher = app.get(WATCHER_KEY)
    if watcher is not None:
        tasks.append(asyncio.create_task(watcher.run(), name="pod-watch"))
    sync = app.get(SYNC_KEY)
    if sync is not None:
        tasks.append(asyncio.create_task(sync.run(), name="control-plane-sync"))
    connections = app.get(CONNECTIONS_KEY)
    if connections is not None:
        tasks.append(asyncio.create_task(connections.run(), name="gate-recheck"))
    tasks.append(
        asyncio.create_task(
            refresh_backlog(app[STORE_KEY], app[METRICS_KEY], clock=time.time),
            name="metrics-backlog",
        )
    )
    for name, key in (("admin", ADMIN_TOKENS_KEY), ("review", REVIEW_TOKENS_KEY)):
        # A changed tokens file is applied and logged when it changes, not at the next request.
        tasks.append(asyncio.create_task(app[key].follow(), name=f"{name}-tokens-file"))
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 ``{"status": "ok"}`` while the process serves (liveness)."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when the database answers, else 503 via the middleware."""
    await request.app[STORE_KEY].check_ready()
    return json_response({"status": "ready"})


# --- resources from settings -----------------------------------------------------------------
