"""Ghost cleanup: the pod watch (kubernetes-asyncio against the local API stand-in) makes the
agents of deleted pods inactive, re-lists at start and on 410 Gone, resumes on resourceVersion."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from kubernetes_asyncio.client import ApiClient

from approver.domain.binding import LivePod
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod
from approver.kube.pods import KubePods
from approver.kube.watch import PodEvents, PodWatcher, cancel
from approver.reconcile import PodReconciler
from approver.store import Store, StoreUnavailable
from tests.approver.helpers import NAMESPACE, NOW, OWNER, RecordingSink
from tests.kube_api import KubeApi, api_client, make_pod

T0 = datetime.fromtimestamp(NOW, UTC)
SELECTOR = "app.kubernetes.io/component=k8s-agent"


@pytest.fixture
async def kube() -> AsyncIterator[KubeApi]:
    async with KubeApi() as server:
        yield server


@pytest.fixture
async def client(kube: KubeApi) -> AsyncIterator[ApiClient]:
    api = api_client(kube)
    try:
        yield api
    finally:
        await api.close()


def bound(name: str, uid: str | None, *, status: AgentStatus = AgentStatus.ACTIVE) -> AgentRecord:
    return AgentRecord(
        id=uuid.uuid4(),
        agent_id=f"agent-{name}",
        platform="kubernetes",
        region=None,
        capacity=None,
        metadata={},
        status=status,
        approval_method=ApprovalMethod.NAMESPACE if status is AgentStatus.ACTIVE else None,
        approved_by="bootstrap-token" if status is AgentStatus.ACTIVE else None,
        approved_at=T0 if status is AgentStatus.ACTIVE else None,
        reason="bootstrap_token_accepted",
        jti=None,
        kid=None,
        cluster=None,
        namespace=NAMESPACE,
        pod_name=name,
        pod_uid=uid,
        credential_hash="c" * 64,
        created_at=T0,
        updated_at=T0,
    )


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for ``check`` (the watch runs in the background); fail after a generous 20 s."""
    deadline = time.monotonic() + 20
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Watch:
    def __init__(
        self,
        store: Store,
        client: ApiClient,
        *,
        timeout: int = 30,
        resync: float = 600.0,
        handler: PodEvents | None = None,
    ) -> None:
        self.audit = RecordingSink()
        self.store = store
        self.watcher = PodWatcher(
            KubePods(client, timeout_seconds=5),
            namespaces=[NAMESPACE],
            label_selector=SELECTOR,
            handler=handler or PodReconciler(store=store, audit=self.audit, clock=time.time),
            clock=time.time,
            watch_timeout_seconds=timeout,
            resync_seconds=resync,
            max_backoff_seconds=0.2,
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self.task = asyncio.create_task(self.watcher.run())
        await asyncio.wait_for(self.watcher.wait_synced(), 20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        await cancel(self.task)

    async def status(self, agent_id: str) -> AgentStatus | None:
        record = await self.store.get_agent(agent_id)
        return record.status if record else None

    @property
    def stats(self):  # type: ignore[no-untyped-def]
        return self.watcher.stats[NAMESPACE]


async def seed(store: Store, *records: AgentRecord) -> None:
    async with store.transaction() as tx:
        for record in records:
            await tx.insert_agent(record)


class TestPodWatch:
    async def test_relist_at_start_reconciles_what_happened_while_down(
        self, store: Store, client: ApiClient, kube: KubeApi
    ) -> None:
        """Agents whose pods went while the approver was down become inactive at start; agents
        with live pods, pods outside trust, rejected agents are left alone."""
        alive = kube.add_pod(make_pod(NAMESPACE, "alive", owner=OWNER))
        await seed(
            store,
            bound("alive", alive["metadata"]["uid"]),
            bound("gone", "uid-of-a-deleted-pod"),
            bound("gone-pending", "uid-2", status=AgentStatus.PENDING),
            bound("by-name-gone", None),
            replace(bound("rejected-gone", "uid-3"), status=AgentStatus.REJECTED),
            replace(bound("elsewhere", "uid-4"), namespace="untrusted"),
        )
        async with Watch(store, client) as watch:
            names = ("alive", "gone", "gone-pending", "by-name-gone", "rejected-gone", "elsewhere")
            statuses = {a: await watch.status(f"agent-{a}") for a in names}
        assert statuses == {
            "alive": AgentStatus.ACTIVE,
            "gone": AgentStatus.INACTIVE,
            "gone-pending": AgentStatus.INACTIVE,
            "by-name-gone": AgentStatus.INACTIVE,
            "rejected-gone": AgentStatus.REJECTED,
            "elsewhere": AgentStatus.ACTIVE,
        }
        gone = await store.get_agent("agent-gone")
        assert gone is not None
        assert (gone.reason, gone.updated_by) == ("pod_deleted", "pod-watch")
        events = [e for e in watch.audit.events if e.event == "agent.pod_deleted"]
        assert sorted(e.agent_id or "" for e in events) == [
            "agent-by-name-gone",
            "agent-gone",
            "agent-gone-pending",
        ]
        assert (await store.list_audit())[-1].event.reason == "pod_deleted"

    async def test_deleted_pod_makes_its_agent_inactive(
        self, store: Store, client: ApiClient, kube: KubeApi
    ) -> None:
        """HPA scale-down: a DELETED watch event makes the pod's agent inactive at once."""
        pods = [kube.add_pod(make_pod(NAMESPACE, f"p{n}", owner=OWNER)) for n in range(3)]
        await seed(store, *[bound(p["metadata"]["name"], p["metadata"]["uid"]) for p in pods])
        async with Watch(store, client) as watch:
            kube.delete_pod(NAMESPACE, "p1")

            async def inactive() -> bool:
                return await watch.status("agent-p1") is AgentStatus.INACTIVE

            await until(inactive, "agent-p1 inactive")
            assert await watch.status("agent-p0") is AgentStatus.ACTIVE
            assert await watch.status("agent-p2") is AgentStatus.ACTIVE

    async def test_a_deleted_pod_of_the_same_name_but_another_uid(
        self, store: Store, client: ApiClient, kube: KubeApi
    ) -> None:
        """A DELETED event for another pod (another UID) of the agent's pod name leaves the
        agent alone: it is bound to its own pod's UID (a StatefulSet pod recreated)."""
        kube.add_pod(make_pod(NAMESPACE, "agent-0", owner=OWNER))
        async with Watch(store, client) as watch:
            now = datetime.now(UTC)
            await seed(store, replace(bound("agent-0", "the-new-pods-uid"), updated_at=now))
            kube.delete_pod(NAMESPACE, "agent-0")
            marker = kube.add_pod(make_pod(NAMESPACE, "marker", owner=OWNER))
            await until(lambda: _seen(watch, marker["metadata"]["resourceVersion"]), "marker")
            assert await watch.status("agent-agent-0") is AgentStatus.ACTIVE

    async def test_resumes_from_the_last_resource_version(
        self, store: Store, client: ApiClient, kube: KubeApi
    ) -> None:
        """When the server ends a watch, the next one starts at the last resourceVersion seen,
        without listing again."""
        async with Watch(store, client) as watch:
            pod = kube.add_pod(make_pod(NAMESPACE, "a", owner=OWNER))
            rv = pod["metadata"]["resourceVersion"]
            await until(lambda: _seen(watch, rv), "the ADDED event")
            kube.end_watches()
            await until(lambda: _watches_from(kube, rv), "a watch resuming at the last rv")
            assert watch.stats.lists == 1

    async def test_gone_410_relists_and_reconciles(
        self, store: Store, client: ApiClient, kube: KubeApi
    ) -> None:
        """A 410 Gone (history compacted) makes the watch list again, and the list finds the
        deletion the watch never reported."""
        pod = kube.add_pod(make_pod(NAMESPACE, "silent", owner=OWNER))
        await seed(store, bound("silent", pod["metadata"]["uid"]))
        async with Watch(store, client) as watch:
            await until(lambda: _async(kube.open_watches == 1), "the watch to open")
            kube.delete_pod_silently(NAMESPACE, "silent")
            kube.expire_watches()

            async def relisted() -> bool:
                return await watch.status("agent-silent") is AgentStatus.INACTIVE

            await until(relisted, "the re-list after 410")
            assert watch.stats.expired >= 1
            assert watch.stats.lists >= 2

    async def test_bookmarks_advance_the_resume_point(
        self, store: Store, client: ApiClient, kube: KubeApi
    ) -> None:
        """A BOOKMARK moves the resume point without any pod change."""
        async with Watch(store, client) as watch:
            await until(lambda: _async(kube.open_watches == 1), "the watch to open")
            rv = str(kube.bump_resource_version(5))
            kube.bookmark()
            await until(lambda: _seen(watch, rv), "the bookmark")

    async def test_watch_ends_and_restarts(self, store: Store, kube: KubeApi) -> None:
        """A watch the server ends is followed by another one."""
        client = api_client(kube)
        try:
            async with Watch(store, client) as watch:
                await until(lambda: _async(kube.open_watches == 1), "the watch to open")
                kube.end_watches()
                await until(lambda: _async(watch.stats.watches >= 2), "a second watch")
        finally:
            await client.close()


class FlakyStore(PodReconciler):
    """A reconciler whose first DELETED event meets a database that is down."""

    failed = 0

    async def pod_deleted(self, pod: LivePod) -> None:
        if not self.failed:
            self.failed += 1
            raise StoreUnavailable("database down (test)")
        await super().pod_deleted(pod)


class TestRecovery:
    async def test_resync_lists_again(self, store: Store, client: ApiClient, kube: KubeApi) -> None:
        """With the resync due, a watch that ends is followed by a list, which finds a deletion
        the watch never saw."""
        pod = kube.add_pod(make_pod(NAMESPACE, "quiet", owner=OWNER))
        await seed(store, bound("quiet", pod["metadata"]["uid"]))
        async with Watch(store, client, resync=0) as watch:
            await until(lambda: _async(kube.open_watches == 1), "the watch to open")
            kube.delete_pod_silently(NAMESPACE, "quiet")
            kube.end_watches()

            async def inactive() -> bool:
                return await watch.status("agent-quiet") is AgentStatus.INACTIVE

            await until(inactive, "the resync list")
            assert watch.stats.expired == 0

    async def test_event_lost_to_a_database_outage_is_found_by_the_next_list(
        self, store: Store, client: ApiClient, kube: KubeApi
    ) -> None:
        """A DELETED event the database could not record makes the watch list again."""
        pod = kube.add_pod(make_pod(NAMESPACE, "p", owner=OWNER))
        await seed(store, bound("p", pod["metadata"]["uid"]))
        handler = FlakyStore(store=store, audit=RecordingSink(), clock=time.time)
        async with Watch(store, client, handler=handler) as watch:
            await until(lambda: _async(kube.open_watches == 1), "the watch to open")
            kube.delete_pod(NAMESPACE, "p")

            async def inactive() -> bool:
                return await watch.status("agent-p") is AgentStatus.INACTIVE

            await until(inactive, "the list after the outage")
            assert handler.failed == 1
            assert watch.stats.lists >= 2


async def _async(value: bool) -> bool:
    return value


async def _seen(watch: Watch, rv: str) -> bool:
    return watch.stats.resource_version is not None and int(watch.stats.resource_version) >= int(rv)


async def _watches_from(kube: KubeApi, rv: str) -> bool:
    return any(
        r.query.get("watch", "").lower() == "true" and r.query.get("resourceVersion") == rv
        for r in kube.requests
    )
