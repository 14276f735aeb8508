"""``serve``: run the approver until SIGTERM/SIGINT: open what the settings name
(:mod:`approver.resources`), migrate the store, build the application (:mod:`approver.http.app`)
and serve it on ``host:port`` (HTTPS when a certificate is configured), draining on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from approver.config import ApproverSettings
from approver.http.app import create_app
from approver.http.app_keys import (
    ADMIN_TOKENS_KEY,
)
from approver.resources import (
    load_key_set,
    open_kube,
    open_store,
    server_ssl_context,
)

log = logging.getLogger(__name__)


async def serve(settings: ApproverSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run the approver until SIGTERM/SIGINT (or until ``stop`` is set).

    Loads the key set, the TLS context and the tokens files, opens the store and migrates it,
    opens the Kubernetes client when enabled, then serves on ``host:port`` (HTTPS when
    ``tlsCertFile`` is set) until told to stop, and closes everything on the way out.

    Raises:
        ConfigError: a file named by the settings cannot be used.
        StoreUnavailable: the database could not be migrated.
    """
    key_set = load_key_set(settings)
    ssl_context = server_ssl_context(settings)
    store = open_store(settings)
    kube: ApiClient | None = None
    try:
        await store.migrate()
        kube = await open_kube(settings)
        app = create_app(settings, key_set=key_set, store=store, kube=kube)
    except BaseException:
        if kube is not None:
            await kube.close()
        await store.close()
        raise
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.host, settings.port, ssl_context=ssl_context, backlog=1024
        )
        await site.start()
        scheme = "https" if ssl_context else "http"
        if ssl_context is None:
            log.warning("serving plain HTTP: terminate TLS in front of the approver")
        if settings.auto_approve.enabled and not settings.kubernetes.enabled:
            # docs/security-model.md, "Forged review" and "Stolen signing key".
            log.warning(
                "auto-approving without kubernetes.enabled: tokens are not checked against the "
                "live pod, so a token minted for a made-up review (anyone who reaches the "
                "webhook's port) approves; turn it on or keep the webhook's NetworkPolicy narrow"
            )
        log.info(
            "approver listening on %s://%s:%d (database %s, auto-approve %s, %d key(s), "
            "%d admin token(s), kubernetes %s, api keys %s, service-account tokens %s)",
            scheme,
            settings.host,
            settings.port,
            store.url,
            "on" if settings.auto_approve.enabled else "off",
            len(key_set),
            len(app[ADMIN_TOKENS_KEY].current()),
            "on" if settings.kubernetes.enabled else "off",
            "on" if settings.api_keys.enabled else "off",
            settings.service_account_tokens.mode
            if settings.service_account_tokens.enabled
            else "off",
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
