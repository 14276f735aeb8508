"""Read a ReplicaSet through kubernetes-asyncio (apps/v1) for the Deployment that controls it,
cached per ReplicaSet UID: :class:`approver.domain.workloads.DeploymentSource`.

Every pod of a ReplicaSet asks the same question, so answers are kept (least recently used
first out, at most ``cache_size``, each for ``cache_seconds``: a ReplicaSet can be orphaned or
adopted, rarely). Concurrent questions about one ReplicaSet share one read. Only a ReplicaSet
that exists under the asked UID is cached; a 404 (or the name now belonging to another UID) is
"no Deployment", uncached; every other API error, a connection error or a timeout is
:class:`~approver.domain.workloads.OwnerLookupError`, uncached (the agent's retry reads again).

RBAC: ``get`` on ``replicasets`` (``apps``) in the namespaces whose pods the approver reads.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

import aiohttp
from kubernetes_asyncio.client import ApiClient, AppsV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from approver.domain.workloads import OwnerLookupError, deployment_from_replica_set
from bootstrap_token import OwnerRef

#: ReplicaSets remembered (an approver sees few: one per Deployment and rollout).
CACHE_SIZE = 1024
#: How long an answer is kept.
CACHE_SECONDS = 600.0

__all__ = ["CACHE_SECONDS", "CACHE_SIZE", "KubeReplicaSets"]


class KubeReplicaSets:
    """ReplicaSet reads. ``timeout_seconds`` bounds each request.

    Args:
        api: the Kubernetes client.
        timeout_seconds: the request timeout (``kubernetes.requestTimeoutSeconds``).
        cache_size: how many ReplicaSets' answers are kept.
        cache_seconds: how long each answer is kept.
        clock: monotonic seconds (``time.monotonic``).
    """

    def __init__(
        self,
        api: ApiClient,
        *,
        timeout_seconds: float,
        cache_size: int = CACHE_SIZE,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._api = api
        self._apps = AppsV1Api(api)
        self._timeout = timeout_seconds
        self._size = cache_size
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, OwnerRef | None]] = OrderedDict()
        self._reading: dict[str, asyncio.Task[tuple[bool, OwnerRef | None]]] = {}

    @property
    def cached(self) -> int:
        """How many answers are kept now."""
        return len(self._cache)

    async def deployment_of(self, namespace: str, replica_set: OwnerRef) -> OwnerRef | None:
        """The Deployment controlling ``replica_set`` (read by name in ``namespace``), or
        None.

        Raises:
            OwnerLookupError: the ReplicaSet could not be read now.
        """
        key = replica_set.uid
        hit = self._cache.get(key)
        if hit is not None:
            stored_at, deployment = hit
            if self._clock() - stored_at < self._ttl:
                self._cache.move_to_end(key)
                return deployment
            del self._cache[key]
        task = self._reading.get(key)
        if task is None:
            task = asyncio.create_task(self._read(namespace, replica_set))
            self._reading[key] = task
            task.add_done_callback(lambda done: self._done(key, done))
        # shield: a caller that gives up (its request cancelled) does not cancel the read the
        # others wait for.
        exists, deployment = await asyncio.shield(task)
        if exists:
            self._remember(key, deployment)
        return deployment

    def _done(self, key: str, task: asyncio.Task[tuple[bool, OwnerRef | None]]) -> None:
        if self._reading.get(key) is task:
            del self._reading[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up already

    def _remember(self, key: str, deployment: OwnerRef | None) -> None:
        self._cache[key] = (self._clock(), deployment)
        self._cache.move_to_end(key)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def _read(self, namespace: str, replica_set: OwnerRef) -> tuple[bool, OwnerRef | None]:
        """(the ReplicaSet exists under its UID, its Deployment)."""
        try:
            model = await self._apps.read_namespaced_replica_set(
                replica_set.name, namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return False, None
            message = f"Kubernetes API answered {exc.status} {exc.reason}"[:200]
            raise OwnerLookupError(message) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise OwnerLookupError(f"Kubernetes API unreachable: {type(exc).__name__}") from None
        except ValueError as exc:  # an answer the client's model refuses
            raise OwnerLookupError(f"unreadable ReplicaSet: {exc}"[:200]) from None
        obj = self._api.sanitize_for_serialization(model)
        meta = obj.get("metadata") or {}
        if meta.get("uid") != replica_set.uid:
            return False, None  # another ReplicaSet under that name: the pod's is gone
        return True, deployment_from_replica_set(obj, replica_set)
