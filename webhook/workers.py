"""Several worker processes on one port (``workers > 1``), under a small supervisor.

One Python process uses one core. With ``workers: N`` the supervisor starts N processes (the
``spawn`` start method: no state forked from the parent) that each bind ``host:port`` with
``SO_REUSEPORT``, so the kernel spreads new connections over them (socket(7)). Each worker loads
and watches the key and certificate files itself, and serves ``/mutate``, ``/healthz`` and
``/readyz`` on its own connections.

The supervisor serves nothing on the HTTPS port. It

* serves the metrics port, summing the workers' series from prometheus_client's multiprocess
  files (``PROMETHEUS_MULTIPROC_DIR``, a private temporary folder removed at exit);
* restarts a worker that dies (a worker that dies within :data:`CRASH_WINDOW_SECONDS` of its
  start counts as a crash; :data:`MAX_CRASHES` of those in a row stop the webhook with exit 1,
  so a bad port or certificate does not loop forever);
* forwards SIGTERM/SIGINT to every worker, which drain as in :mod:`webhook.run`, and kills those
  still running ``shutdownDelaySeconds + shutdownGraceSeconds + 5`` seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from multiprocessing.process import BaseProcess

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from webhook.config import WebhookSettings
from webhook.run import start_metrics

logger = logging.getLogger(__name__)

#: A worker that exits sooner than this after its start is counted as a crash.
CRASH_WINDOW_SECONDS = 10.0
#: Consecutive crashes after which the supervisor gives up (exit status 1).
MAX_CRASHES = 5
#: Seconds between two looks at the workers.
POLL_SECONDS = 0.5

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _worker_main(settings: WebhookSettings, index: int) -> None:
    """Entry point of one worker process (runs in a fresh interpreter)."""
    from webhook.process import configure_logging, run_server

    configure_logging(settings)
    logging.getLogger(__name__).debug("worker %d started (pid %d)", index, os.getpid())
    raise SystemExit(run_server(settings, worker=True))


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[BaseProcess | None] = [None] * settings.workers
        self.started: list[float] = [0.0] * settings.workers
        self.crashes = 0

    def start(self, index: int) -> None:
        process = self.context.Process(
            target=_worker_main,
            args=(self.settings, index),
            name=f"webhook-worker-{index}",
        )
        process.start()
        self.workers[index] = process
        self.started[index] = time.monotonic()

    def reap(self) -> bool:
        """Restart workers that exited. Returns False once crashes exceed :data:`MAX_CRASHES`."""
        for index, process in enumerate(self.workers):
            if process is None or process.is_alive():
                continue
            if process.pid is not None:
                mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
            lived = time.monotonic() - self.started[index]
            self.crashes = self.crashes + 1 if lived < CRASH_WINDOW_SECONDS else 0
            logger.error(
                "worker %d (pid %s) exited with %s after %.1fs; %s",
                index,
                process.pid,
                process.exitcode,
                lived,
                "giving up" if self.crashes >= MAX_CRASHES else "restarting it",
            )
            if self.crashes >= MAX_CRASHES:
                return False
            self.start(index)
        return True

    async def stop(self) -> None:
        """SIGTERM every worker; SIGKILL those still running after the drain bound."""
        alive = [p for p in self.workers if p is not None and p.is_alive()]
        for process in alive:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        bound = self.settings.shutdown_delay_seconds + self.settings.shutdown_grace_seconds + 5
        deadline = time.monotonic() + bound
        # Polled: a process exit is no awaitable event here (multiprocessing has no async join).
        while any(p.is_alive() for p in alive) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        for process in alive:
            if process.is_alive():
                logger.error("worker pid %s did not stop in %.0fs; killing it", process.pid, bound)
                process.kill()
            process.join(timeout=5)


async def _supervise(settings: WebhookSettings, metrics_dir: str) -> int:
    supervisor = Supervisor(settings)
    for index in range(settings.workers):
        supervisor.start(index)
    metrics_runner: web.AppRunner | None = None
    if settings.metrics_port:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
        metrics_runner = await start_metrics(settings, registry)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    logger.info(
        "supervising %d workers on %s:%d%s",
        settings.workers,
        settings.host,
        settings.port,
        f", metrics on http://{settings.metrics_host}:{settings.metrics_port}/metrics"
        if settings.metrics_port
        else "",
    )
    status = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)
            if not stop.is_set() and not supervisor.reap():
                status = 1
                break
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await supervisor.stop()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
    return status


def supervise(settings: WebhookSettings) -> int:
    """Run ``settings.workers`` worker processes until SIGTERM/SIGINT.

    Returns:
        0 after a signal, 1 when workers kept crashing.
    """
    metrics_dir = tempfile.mkdtemp(prefix="agent-bootstrap-webhook-metrics-")
    # Read by prometheus_client when a worker imports it: must be set before spawning.
    os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        return asyncio.run(_supervise(settings, metrics_dir))
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
