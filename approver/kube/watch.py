"""Watch the agent pods of the trusted namespaces: list, then watch from the list's
``resourceVersion``; resume after every stream end from the last one seen; list again on 410.

Per namespace, a loop (Kubernetes API concepts, "Efficient detection of changes"):

1. **list** the agent pods (``labelSelector`` from ``trust.podSelector``) and hand them to
   :meth:`PodEvents.pods_listed`: the handler reconciles everything that happened while nobody
   watched (at start: while the approver was down). The list's ``resourceVersion`` is the
   resume point.
2. **watch** from it (``allowWatchBookmarks``, ``timeoutSeconds``); each event advances the
   resume point (``BOOKMARK`` events too); ``DELETED`` goes to :meth:`PodEvents.pod_deleted`.
   When the server ends the stream (its timeout), watch again from the resume point.
3. An ``ERROR`` event with a 410 ``Status`` (``Expired``/``Gone``: the resume point was
   compacted away), or a 410 on the list: back to 1. A connection error or another API error:
   wait (exponential backoff, 0.5 s to 30 s) and watch again from the resume point. A handler
   failure (the database down): wait, and list again, so the event it could not record is
   found by the reconciliation instead of lost.
4. Every ``resync_seconds`` (when a watch ends) list again anyway, like an informer's resync:
   a registration that read its pod just before the pod went, and committed just after the
   ``DELETED`` event was handled, is caught by the next list.

Two replicas both watch: the handlers' transitions are idempotent (a pod's agent becomes
``inactive`` once; the second replica finds nothing to change and writes nothing), so no leader
election is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

from approver.domain.binding import LivePod
from approver.kube.pods import KubePods, PodLookupError, ResourceExpired, pod_from_json
from approver.store import StoreError

log = logging.getLogger(__name__)


class PodEvents(Protocol):
    """What the watch reports (implemented by :class:`approver.reconcile.PodReconciler`)."""

    async def pods_listed(self, namespace: str, pods: Sequence[LivePod], *, started: float) -> None:
        """Every agent pod of ``namespace`` as of a list that started at ``started`` (seconds
        since the epoch)."""
        ...

    async def pod_deleted(self, pod: LivePod) -> None:
        """A pod (its last state) was deleted."""
        ...


@dataclass
class WatchStats:
    """Counters per namespace, for logs and tests."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    expired: int = 0
    errors: int = 0
    resource_version: str | None = None
    synced: asyncio.Event = field(default_factory=asyncio.Event)


class _Restart(Exception):
    """Internal: list again."""


class PodWatcher:
    """The list-then-watch loops of the trusted namespaces.

    Args:
        pods: the pod reader/lister (its ``core`` API is used for the watch).
        namespaces: the trusted namespaces.
        label_selector: ``labelSelector`` of the agent pods.
        handler: receives lists and deletions.
        clock: seconds since the epoch (``time.time``).
        watch_timeout_seconds: ``timeoutSeconds`` of one watch request (the server ends the
            stream then, and the loop resumes).
        resync_seconds: list again at least this often (checked when a watch ends).
        max_backoff_seconds: the longest wait after an error.
    """

    def __init__(
        self,
        pods: KubePods,
        *,
        namespaces: Sequence[str],
        label_selector: str,
        handler: PodEvents,
        clock: Callable[[], float],
        watch_timeout_seconds: int = 300,
        resync_seconds: float = 600.0,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self._pods = pods
        self._namespaces = tuple(sorted(set(namespaces)))
        self._selector = label_selector
        self._handler = handler
        self._clock = clock
        self._watch_timeout = watch_timeout_seconds
        self._resync = resync_seconds
        self._max_backoff = max_backoff_seconds
        self.stats = {ns: WatchStats() for ns in self._namespaces}

    async def run(self) -> None:
        """Watch every namespace until cancelled."""
        async with asyncio.TaskGroup() as group:
            for namespace in self._namespaces:
                group.create_task(self._loop(namespace), name=f"pod-watch:{namespace}")

    async def wait_synced(self) -> None:
        """Return once every namespace was listed and reconciled at least once."""
        for stats in self.stats.values():
            await stats.synced.wait()

    async def _loop(self, namespace: str) -> None:
        stats = self.stats[namespace]
        resource_version: str | None = None
        listed_at = 0.0
        failures = 0
        while True:
            try:
                if resource_version is None or self._clock() - listed_at >= self._resync:
                    listed_at = self._clock()
                    resource_version = await self._relist(namespace, stats)
                resource_version = await self._watch(namespace, resource_version, stats)
                failures = 0
            except (ResourceExpired, _Restart):
                stats.expired += 1
                resource_version = None
                log.info("pod watch %s: resourceVersion expired (410), listing again", namespace)
            except (
                PodLookupError,
                ApiException,
                aiohttp.ClientError,
                TimeoutError,
                OSError,
            ) as exc:
                stats.errors += 1
                failures += 1
                log.warning("pod watch %s: %s; retrying", namespace, _describe(exc))
                await asyncio.sleep(self._backoff(failures))
            except StoreError as exc:
                stats.errors += 1
                failures += 1
                resource_version = None  # what we could not record is found by the next list
                log.warning("pod watch %s: store: %s; listing again", namespace, exc)
                await asyncio.sleep(self._backoff(failures))
            except Exception:
                # A bug must not end ghost cleanup for good: log it, start over with a list.
                stats.errors += 1
                failures += 1
                resource_version = None
                log.exception("pod watch %s: unexpected error; listing again", namespace)
                await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        base: float = min(self._max_backoff, 0.5 * 2.0 ** min(failures - 1, 10))
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret

    async def _relist(self, namespace: str, stats: WatchStats) -> str:
        started = self._clock()
        pods, resource_version = await self._pods.list(namespace, label_selector=self._selector)
        stats.lists += 1
        await self._handler.pods_listed(namespace, pods, started=started)
        stats.resource_version = resource_version
        stats.synced.set()
        log.info(
            "pod watch %s: listed %d agent pod(s) at resourceVersion %s",
            namespace,
            len(pods),
            resource_version,
        )
        return resource_version

    async def _watch(self, namespace: str, resource_version: str, stats: WatchStats) -> str:
        """One watch request; returns the resume point when the server ends the stream."""
        stats.watches += 1
        stream = watch.Watch(return_type="object")
        try:
            async with stream:
                async for event in stream.stream(
                    self._pods.core.list_namespaced_pod,
                    namespace,
                    label_selector=self._selector or None,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self._watch_timeout,
                    _request_timeout=self._watch_timeout + 30,
                ):
                    stats.events += 1
                    resource_version = await self._event(event, resource_version)
                    stats.resource_version = resource_version
        except ApiException as exc:
            if exc.status == 410:
                raise _Restart from None
            raise
        return resource_version

    async def _event(self, event: dict[str, Any], resource_version: str) -> str:
        kind = event.get("type")
        raw = event.get("raw_object") or {}
        meta = raw.get("metadata") or {} if isinstance(raw, dict) else {}
        next_version = str(meta.get("resourceVersion") or resource_version)
        if kind == "DELETED":
            try:
                pod = pod_from_json(raw)
            except ValueError:
                log.warning("pod watch: DELETED event without a usable Pod; ignored")
            else:
                await self._handler.pod_deleted(pod)
        return next_version


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"API {exc.status} {exc.reason}"[:200]
    return f"{type(exc).__name__}: {exc}"[:200]


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
