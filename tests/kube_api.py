"""A local stand-in for the few Kubernetes API calls the approver makes, for tests.

No kube-apiserver runs on the test machines (docs/design.md, "What we test against"), so this small
aiohttp server answers on 127.0.0.1 with the Kubernetes API's own JSON shapes. The code under test
does not know about it: it gets a kubernetes-asyncio ``ApiClient`` (:func:`api_client`) or a
kubeconfig file (:func:`write_kubeconfig`) that points at it, exactly as it would get one for a
real cluster.

Endpoints (``Authorization: Bearer <token>`` required, else 401 with a ``Status``):

* ``GET /api/v1/namespaces/{ns}/pods/{name}``: the Pod, or a ``Status`` with reason ``NotFound``
  and code 404.
* ``GET /api/v1/namespaces/{ns}/pods?labelSelector=&resourceVersion=&limit=&continue=``: a
  ``PodList`` with ``metadata.resourceVersion`` (and ``metadata.continue`` when ``limit`` cuts it).
  A ``resourceVersion`` older than the retained history answers 410 ``Expired``.
* ``GET /api/v1/namespaces/{ns}/pods?watch=true&resourceVersion=N&allowWatchBookmarks=true&
  timeoutSeconds=S``: newline-delimited watch events ``{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|
  ERROR", "object": ...}``. Without ``resourceVersion`` (or ``"0"``) it starts with a synthetic
  ``ADDED`` per existing pod; with one, it replays the retained history after it; with one older
  than the history, it sends one ``ERROR`` event holding a ``Status`` with code 410 and reason
  ``Expired`` and ends (Kubernetes API concepts, "Efficient detection of changes"). A pod that
  stops matching the selector is sent as ``DELETED``, as the API server does.
* ``GET /apis/apps/v1/namespaces/{ns}/replicasets/{name}``: the ReplicaSet
  (:func:`make_replica_set`, :meth:`KubeApi.add_replica_set`), a ``Status`` 404 ``NotFound``,
  or, while :attr:`KubeApi.replica_set_failure` is set, a ``Status`` with that code (e.g. 500).
* ``POST /apis/authentication.k8s.io/v1/tokenreviews``: a ``TokenReview`` whose ``status`` has
  ``authenticated``, ``user`` (``username``, ``uid``, ``groups``, ``extra`` with
  ``authentication.kubernetes.io/pod-name`` and ``pod-uid`` for pod-bound tokens), ``audiences``
  and ``error``. Tests register which tokens are valid for which audiences with :meth:`add_token`.
  As on a real API server, a pod-bound token stops authenticating once its pod is gone (or
  replaced by another pod with the same name), unless registered with ``check_pod=False``.
* ``GET /api/v1/namespaces/{ns}/secrets/{name}`` and ``.../configmaps/{name}``: the object, or a
  ``Status`` 404 ``NotFound`` (``secrets "x" not found``, ``details.kind`` the resource).
* ``POST /api/v1/namespaces/{ns}/secrets`` and ``.../configmaps``: 201 with the stored object
  (``uid``, ``resourceVersion``, ``creationTimestamp`` set), or a ``Status`` 409
  ``AlreadyExists`` (``secrets "x" already exists``) when the name is taken. Secret ``data``
  values must be base64 (else 400 ``BadRequest``). :attr:`KubeApi.before_create` runs first,
  so a test can make another writer win the race.
* ``GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}`` and
  ``PATCH`` of it: only ``Content-Type: application/json-patch+json`` (RFC 6902: ``test``,
  ``add``, ``replace``, ``remove``) is accepted here, else 415 ``UnsupportedMediaType``; a
  failed ``test`` or a bad path answers 422 ``Invalid``, as the API server does.
  (:func:`make_mutating_webhook_configuration`, :meth:`KubeApi.add_object`).
* While ``(verb, resource)`` is in :attr:`KubeApi.forbidden` (e.g. ``("create", "secrets")``),
  such requests get the API server's 403 ``Forbidden`` ``Status`` (RBAC said no).

Tests change its state while the code under test talks to it: :meth:`KubeApi.add_pod`,
:meth:`~KubeApi.update_pod`, :meth:`~KubeApi.terminate_pod`, :meth:`~KubeApi.delete_pod`,
:meth:`~KubeApi.bump_resource_version`, :meth:`~KubeApi.compact` (the next watch or list from
an older ``resourceVersion`` gets 410), :meth:`~KubeApi.expire_watches` (open watches get an
``ERROR`` 410 now), :meth:`~KubeApi.bookmark`, :meth:`~KubeApi.end_watches` (open watches end, as
at ``timeoutSeconds``). Every request is recorded in :attr:`KubeApi.requests`.

Usage::

    async with KubeApi() as kube:
        kube.add_pod(make_pod("streamspace", "agent-x2x7q", annotations={ANNOTATION: token}))
        client = api_client(kube)            # kubernetes_asyncio.client.ApiClient
        try:
            ...                              # hand `client` to the code under test
        finally:
            await client.close()

TLS: pass ``ssl_context`` (a server context, e.g. from the test PKI's approver certificate, whose
SAN covers ``localhost``) and ``ca_file`` to :func:`api_client`; the URL then uses ``https`` and
the host name ``localhost``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import ssl
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

Json = dict[str, Any]

DEFAULT_TOKEN = "kube-api-stand-in-bearer-token"
#: The audience a TokenReview without ``spec.audiences`` is checked against (the API server's).
API_SERVER_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
#: The agent pod labels of StreamSpace's chart (the trust policy's default ``podSelector``).
AGENT_LABELS = {"app.kubernetes.io/component": "k8s-agent"}
_BODY: web.RequestKey[Json | None] = web.RequestKey("body")
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def status(code: int, reason: str, message: str, *, details: Json | None = None) -> Json:
    """A ``meta/v1`` ``Status`` object (``status: Failure``)."""
    body: Json = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def make_pod(
    namespace: str,
    name: str,
    *,
    uid: str | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    owner: Mapping[str, str] | None = None,
    generate_name: str | None = None,
    service_account: str = "default",
    phase: str = "Running",
    pod_ip: str | None = "127.0.0.1",
) -> Json:
    """A Pod as the API server returns it (``metadata.resourceVersion`` is set by the stand-in).

    Args:
        owner: ``{"kind", "name", "uid"}`` of the controller (an ``ownerReferences`` entry with
            ``controller: true``), or None for a bare pod.
        pod_ip: ``status.podIP`` (and ``podIPs``): by default loopback, where the tests' agents
            connect from; None for a pod without a network yet.
    """
    metadata: Json = {
        "name": name,
        "namespace": namespace,
        "uid": uid or str(uuid.uuid4()),
        "creationTimestamp": _now(),
        "labels": dict(AGENT_LABELS if labels is None else labels),
        "annotations": dict(annotations or {}),
    }
    if generate_name is not None:
        metadata["generateName"] = generate_name
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner["kind"],
                "name": owner["name"],
                "uid": owner["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "k8s-agent", "image": "streamspace/k8s-agent:latest"}],
        },
        "status": {"phase": phase}
        | ({"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]} if pod_ip is not None else {}),
    }


def make_replica_set(
    namespace: str,
    name: str,
    *,
    uid: str | None = None,
    deployment: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    replicas: int = 1,
) -> Json:
    """A ReplicaSet (``apps/v1``) as the API server returns it, as a Deployment makes it: its
    name is the Deployment's plus the pod-template hash, and its controller reference names the
    Deployment.

    Args:
        deployment: ``{"name", "uid"}`` of the controlling Deployment, or None for a bare
            ReplicaSet.
    """
    template_hash = name.rsplit("-", 1)[-1]
    pod_labels = {**dict(AGENT_LABELS if labels is None else labels)}
    pod_labels["pod-template-hash"] = template_hash
    metadata: Json = {
        "name": name,
        "namespace": namespace,
        "uid": uid or str(uuid.uuid4()),
        "generation": 1,
        "creationTimestamp": _now(),
        "labels": dict(pod_labels),
        "annotations": {
            "deployment.kubernetes.io/desired-replicas": str(replicas),
            "deployment.kubernetes.io/max-replicas": str(replicas + 1),
            "deployment.kubernetes.io/revision": "1",
        },
    }
    if deployment is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment["name"],
                "uid": deployment["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(pod_labels)},
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": {
                    "containers": [{"name": "k8s-agent", "image": "streamspace/k8s-agent:latest"}]
                },
            },
        },
        "status": {
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": 1,
        },
    }


# --- label selectors (Kubernetes "Labels and Selectors": equality- and set-based) -------------


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """True when ``labels`` satisfy a label selector string (``a=b,c!=d,e in (f,g),h,!i``)."""
    for term in _split_selector(selector):
        words = term.split()
        if len(words) >= 3 and words[1] in ("in", "notin"):
            key, op = words[0], words[1]
            values = {v.strip() for v in term.split("(", 1)[1].rstrip(")").split(",")}
            if op == "in" and labels.get(key) not in values:
                return False
            if op == "notin" and key in labels and labels[key] in values:
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.split("==" if "==" in term else "=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


# --- the server ---------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    content_type: str = ""


@dataclass
class _Event:
    rv: int
    type: str
    namespace: str
    obj: Json
    previous: Json | None


@dataclass
class _Watch:
    namespace: str
    selector: str
    bookmarks: bool
    queue: asyncio.Queue[Json | None] = field(default_factory=asyncio.Queue)


@dataclass
class _TokenEntry:
    audiences: tuple[str, ...]
    user: Json
    pod: tuple[str, str, str] | None  # namespace, name, uid
    check_pod: bool


class KubeApi:
    """The stand-in server. Use ``async with KubeApi() as kube`` (or :meth:`start`/:meth:`close`).

    Args:
        token: the bearer token clients must send.
        ssl_context: serve HTTPS with this server context; None: plain HTTP.
        history: how many events are retained for watch replay before older resource
            versions answer 410 (like etcd compaction).
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        ssl_context: ssl.SSLContext | None = None,
        history: int = 10_000,
    ) -> None:
        self.token = token
        self.ssl_context = ssl_context
        self.requests: list[RecordedRequest] = []
        self._history_size = history
        self._rv = 1000
        self._oldest_rv = self._rv  # watches/lists from below this get 410
        self._pods: dict[tuple[str, str], Json] = {}
        self._events: list[_Event] = []
        self._watches: list[_Watch] = []
        self._tokens: dict[str, _TokenEntry] = {}
        self._replica_sets: dict[tuple[str, str], Json] = {}
        #: While set, every ReplicaSet read is answered with a ``Status`` of this code.
        self.replica_set_failure: int | None = None
        #: Secrets, ConfigMaps (namespaced) and MutatingWebhookConfigurations, by
        #: (resource, namespace or "", name).
        self.objects: dict[tuple[str, str, str], Json] = {}
        #: (verb, resource) pairs answered 403 Forbidden, e.g. ("create", "secrets").
        self.forbidden: set[tuple[str, str]] = set()
        #: Called with (resource, body) before a create is processed (a racing writer).
        self.before_create: Callable[[str, Json], None] | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> KubeApi:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._get_pod)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._list_or_watch)
        app.router.add_get(
            "/apis/apps/v1/namespaces/{ns}/replicasets/{name}", self._get_replica_set
        )
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        for resource in ("secrets", "configmaps"):
            app.router.add_get(f"/api/v1/namespaces/{{ns}}/{resource}/{{name}}", self._get_object)
            app.router.add_post(f"/api/v1/namespaces/{{ns}}/{resource}", self._create_object)
        mwc = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
        app.router.add_get(mwc, self._get_object)
        app.router.add_patch(mwc, self._patch_object)
        app.middlewares.append(self._auth)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.end_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeApi:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, or ``https://localhost:<port>`` with TLS."""
        if self.ssl_context is not None:
            return f"https://localhost:{self._port}"
        return f"http://127.0.0.1:{self._port}"

    @property
    def resource_version(self) -> int:
        """The current (latest) resource version."""
        return self._rv

    # -- state changes (tests) ---------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, kind: str, pod: Json, previous: Json | None) -> None:
        ns = pod["metadata"]["namespace"]
        event = _Event(int(pod["metadata"]["resourceVersion"]), kind, ns, pod, previous)
        self._events.append(event)
        if len(self._events) > self._history_size:
            dropped = self._events.pop(0)
            self._oldest_rv = dropped.rv
        for watch in list(self._watches):
            message = self._for_watch(watch, event)
            if message is not None:
                watch.queue.put_nowait(message)

    def add_pod(self, pod: Json) -> Json:
        """Create a pod (``ADDED``); returns the stored copy with its resourceVersion."""
        stored = copy.deepcopy(pod)
        meta = stored["metadata"]
        key = (meta["namespace"], meta["name"])
        if key in self._pods:
            raise ValueError(f"pod {key} exists")
        meta["resourceVersion"] = str(self._next_rv())
        self._pods[key] = stored
        self._record("ADDED", copy.deepcopy(stored), None)
        return copy.deepcopy(stored)

    def update_pod(self, namespace: str, name: str, **metadata: Any) -> Json:
        """Change metadata members of a pod (``MODIFIED``), e.g. ``labels={...}``."""
        stored = self._pods[(namespace, name)]
        previous = copy.deepcopy(stored)
        stored["metadata"].update(copy.deepcopy(metadata))
        stored["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record("MODIFIED", copy.deepcopy(stored), previous)
        return copy.deepcopy(stored)

    def terminate_pod(self, namespace: str, name: str) -> Json:
        """Start a graceful deletion: ``deletionTimestamp`` set (``MODIFIED``); the pod stays."""
        return self.update_pod(
            namespace, name, deletionTimestamp=_now(), deletionGracePeriodSeconds=30
        )

    def delete_pod(self, namespace: str, name: str) -> Json:
        """Remove a pod (``DELETED`` with its last state)."""
        stored = self._pods.pop((namespace, name))
        previous = copy.deepcopy(stored)
        stored["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record("DELETED", copy.deepcopy(stored), previous)
        return stored

    def delete_pod_silently(self, namespace: str, name: str) -> None:
        """Remove a pod without any event (as if it went while nobody watched): only a re-list
        notices. Follow with :meth:`expire_watches` to make a watcher re-list."""
        self._pods.pop((namespace, name))
        self._next_rv()

    def pods(self, namespace: str) -> list[Json]:
        """The current pods of ``namespace`` (copies)."""
        return [copy.deepcopy(p) for (ns, _), p in sorted(self._pods.items()) if ns == namespace]

    def bump_resource_version(self, by: int = 1) -> int:
        """Advance the resource version (other objects changed); returns the new value."""
        self._rv += by
        return self._rv

    def compact(self) -> None:
        """Forget the history (etcd compaction): watches and lists from an older
        resourceVersion than the current one get 410 Expired."""
        self._events.clear()
        self._oldest_rv = self._rv

    def expire_watches(self) -> None:
        """Compact, and send every open watch an ``ERROR`` event with a 410 ``Status``."""
        self.compact()
        for watch in list(self._watches):
            watch.queue.put_nowait(self._gone_event(self._rv))
            watch.queue.put_nowait(None)

    def bookmark(self) -> None:
        """Send a ``BOOKMARK`` at the current resourceVersion to watches that asked for them."""
        for watch in list(self._watches):
            if watch.bookmarks:
                watch.queue.put_nowait(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": "Pod",
                            "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(self._rv)},
                        },
                    }
                )

    def end_watches(self) -> None:
        """End every open watch stream (as the server does at ``timeoutSeconds``)."""
        for watch in list(self._watches):
            watch.queue.put_nowait(None)

    @property
    def open_watches(self) -> int:
        """How many watch streams are open now."""
        return len(self._watches)

    def add_token(
        self,
        token: str,
        *,
        audiences: tuple[str, ...] = (API_SERVER_AUDIENCE,),
        namespace: str,
        service_account: str,
        pod: Json | None = None,
        check_pod: bool = True,
    ) -> None:
        """Register a service-account token that TokenReview authenticates.

        Args:
            audiences: the token's ``aud``; a review succeeds when its ``spec.audiences`` (or
                the API server's own audience when empty) intersect them.
            pod: the pod the token is bound to (``extra`` then carries its name and UID).
            check_pod: pod-bound tokens stop authenticating when that pod (that UID) is gone.
        """
        extra: Json = {}
        bound: tuple[str, str, str] | None = None
        if pod is not None:
            meta = pod["metadata"]
            extra = {POD_NAME_EXTRA: [meta["name"]], POD_UID_EXTRA: [meta["uid"]]}
            bound = (meta["namespace"], meta["name"], meta["uid"])
        self._tokens[token] = _TokenEntry(
            audiences=audiences,
            user={
                "username": f"system:serviceaccount:{namespace}:{service_account}",
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{service_account}")),
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "extra": extra,
            },
            pod=bound,
            check_pod=check_pod,
        )

    def add_replica_set(self, replica_set: Json) -> Json:
        """Create a ReplicaSet (:func:`make_replica_set`); returns the stored copy."""
        stored = copy.deepcopy(replica_set)
        meta = stored["metadata"]
        meta["resourceVersion"] = str(self._next_rv())
        self._replica_sets[(meta["namespace"], meta["name"])] = stored
        return copy.deepcopy(stored)

    def delete_replica_set(self, namespace: str, name: str) -> None:
        """Remove a ReplicaSet."""
        self._replica_sets.pop((namespace, name))
        self._next_rv()

    def revoke_token(self, token: str) -> None:
        """Make a registered token fail TokenReview from now on."""
        self._tokens.pop(token, None)

    # -- HTTP --------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.method in ("POST", "PATCH") and request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        request[_BODY] = body
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                body,
                request.headers.get("Content-Type", ""),
            )
        )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(status(401, "Unauthorized", "Unauthorized"), status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _get_pod(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self._pods.get((ns, name))
        if pod is None:
            return web.json_response(
                status(
                    404,
                    "NotFound",
                    f'pods "{name}" not found',
                    details={"name": name, "kind": "pods"},
                ),
                status=404,
            )
        return web.json_response(pod)

    async def _get_replica_set(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if self.replica_set_failure is not None:
            code = self.replica_set_failure
            reason = {403: "Forbidden", 429: "TooManyRequests"}.get(code, "InternalError")
            return web.json_response(
                status(code, reason, f'replicasets.apps "{name}": {reason}'), status=code
            )
        replica_set = self._replica_sets.get((ns, name))
        if replica_set is None:
            return web.json_response(
                status(
                    404,
                    "NotFound",
                    f'replicasets.apps "{name}" not found',
                    details={"name": name, "group": "apps", "kind": "replicasets"},
                ),
                status=404,
            )
        return web.json_response(replica_set)

    def _too_old(self, raw: str | None) -> bool:
        if raw in (None, "", "0"):
            return False
        try:
            return int(raw) < self._oldest_rv
        except ValueError:
            return True

    def _gone_event(self, requested: int | str) -> Json:
        return {
            "type": "ERROR",
            "object": status(
                410, "Expired", f"too old resource version: {requested} ({self._oldest_rv})"
            ),
        }

    async def _list_or_watch(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        query = request.query
        selector = query.get("labelSelector", "")
        if query.get("watch", "").lower() in ("true", "1"):
            return await self._watch(request, ns, selector)
        rv = query.get("resourceVersion")
        if self._tooold_for_list(rv):
            return web.json_response(
                status(410, "Expired", f"too old resource version: {rv} ({self._oldest_rv})"),
                status=410,
            )
        items = [
            p
            for p in self.pods(ns)
            if selector_matches(selector, p["metadata"].get("labels") or {})
        ]
        offset = 0
        list_rv = self._rv
        if query.get("continue"):
            token = json.loads(base64.urlsafe_b64decode(query["continue"]))
            offset, list_rv = token["offset"], token["rv"]
        metadata: Json = {"resourceVersion": str(list_rv)}
        if query.get("limit"):
            limit = int(query["limit"])
            end = offset + limit
            if end < len(items):
                metadata["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"offset": end, "rv": list_rv}).encode()
                ).decode()
                metadata["remainingItemCount"] = len(items) - end
            items = items[offset:end]
        else:
            items = items[offset:]
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return web.json_response(
            {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": items}
        )

    def _tooold_for_list(self, rv: str | None) -> bool:
        return self._too_old(rv)

    def _for_watch(self, watch: _Watch, event: _Event) -> Json | None:
        if event.namespace != watch.namespace:
            return None
        labels = event.obj["metadata"].get("labels") or {}
        matches = selector_matches(watch.selector, labels)
        before = (
            event.previous is not None
            and event.type != "ADDED"
            and selector_matches(watch.selector, event.previous["metadata"].get("labels") or {})
        )
        kind = event.type
        if event.type == "MODIFIED":
            if matches and not before:
                kind = "ADDED"
            elif before and not matches:
                kind = "DELETED"
            elif not matches:
                return None
        elif not matches and not (event.type == "DELETED" and before):
            return None
        return {"type": kind, "object": copy.deepcopy(event.obj)}

    async def _watch(self, request: web.Request, ns: str, selector: str) -> web.StreamResponse:
        query = request.query
        raw_rv = query.get("resourceVersion")
        watch = _Watch(
            namespace=ns,
            selector=selector,
            bookmarks=query.get("allowWatchBookmarks", "").lower() in ("true", "1"),
        )
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if self._too_old(raw_rv):
            await response.write(_line(self._gone_event(raw_rv or "")))
            await response.write_eof()
            return response
        initial: list[Json] = []
        if raw_rv in (None, "", "0"):
            for pod in self.pods(ns):
                if selector_matches(selector, pod["metadata"].get("labels") or {}):
                    initial.append({"type": "ADDED", "object": pod})
        else:
            since = int(raw_rv or 0)
            for event in self._events:
                if event.rv > since:
                    message = self._for_watch(watch, event)
                    if message is not None:
                        initial.append(message)
        self._watches.append(watch)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        try:
            for message in initial:
                await response.write(_line(message))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout is not None else None
            while True:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    message = await asyncio.wait_for(watch.queue.get(), remaining)
                except TimeoutError:
                    break
                if message is None:
                    break
                await response.write(_line(message))
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if watch in self._watches:
                self._watches.remove(watch)
        return response

    async def _token_review(self, request: web.Request) -> web.Response:
        review = request.get(_BODY) or {}
        spec = review.get("spec") or {}
        token = spec.get("token", "")
        wanted = tuple(spec.get("audiences") or ())
        answer: Json = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {"token": token, **({"audiences": list(wanted)} if wanted else {})},
        }
        entry = self._tokens.get(token)
        error: str | None = None
        audiences: list[str] = []
        if entry is None:
            error = "[invalid bearer token, token lookup failed]"
        else:
            targets = wanted or (API_SERVER_AUDIENCE,)
            audiences = [a for a in targets if a in entry.audiences]
            if not audiences:
                error = (
                    f"[invalid bearer token, token audiences {list(entry.audiences)} is invalid "
                    f"for the target audiences {list(targets)}]"
                )
            elif entry.pod is not None and entry.check_pod:
                ns, name, uid = entry.pod
                live = self._pods.get((ns, name))
                if live is None:
                    error = f'[invalid bearer token, pods "{name}" not found]'
                elif live["metadata"]["uid"] != uid:
                    error = (
                        f"[invalid bearer token, pod UID ({live['metadata']['uid']}) does not "
                        f"match the bound object's UID ({uid})]"
                    )
        if error is None and entry is not None:
            answer["status"] = {
                "authenticated": True,
                "user": copy.deepcopy(entry.user),
                "audiences": audiences,
            }
        else:
            answer["status"] = {"user": {}, "error": error}
        return web.json_response(answer, status=201)

    # -- Secrets, ConfigMaps, MutatingWebhookConfigurations -------------------------------------

    def add_object(self, obj: Json) -> Json:
        """Store an object as if created earlier (by hand, or by another writer); returns the
        stored copy with ``uid``, ``resourceVersion`` and ``creationTimestamp``."""
        stored = copy.deepcopy(obj)
        meta = stored["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(self._next_rv())
        meta.setdefault("creationTimestamp", _now())
        self.objects[(_RESOURCES[stored["kind"]], meta.get("namespace", ""), meta["name"])] = stored
        return copy.deepcopy(stored)

    def get_object(self, kind: str, name: str, namespace: str = "") -> Json | None:
        """A stored object (a copy), or None."""
        found = self.objects.get((_RESOURCES[kind], namespace, name))
        return copy.deepcopy(found) if found is not None else None

    @staticmethod
    def _resource(request: web.Request) -> str:
        return next(part for part in reversed(request.path.split("/")) if part in _KINDS)

    def _refused(self, verb: str, resource: str, request: web.Request) -> web.Response | None:
        if (verb, resource) not in self.forbidden:
            return None
        ns = request.match_info.get("ns")
        group = "admissionregistration.k8s.io" if resource == _MWC else ""
        where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        name = request.match_info.get("name", "")
        message = (
            f"{resource} {f'{name!r} ' if name else ''}is forbidden: User "
            f'"system:serviceaccount:{ns or "default"}:bootstrap" cannot {verb} resource '
            f'"{resource}" in API group "{group}"{where}'
        ).replace("'", '"')
        return web.json_response(
            status(403, "Forbidden", message, details={"name": name, "kind": resource}),
            status=403,
        )

    def _not_found(self, resource: str, name: str) -> web.Response:
        return web.json_response(
            status(
                404,
                "NotFound",
                f'{resource} "{name}" not found',
                details={"name": name, "kind": resource},
            ),
            status=404,
        )

    async def _get_object(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        refused = self._refused("get", resource, request)
        if refused is not None:
            return refused
        ns, name = request.match_info.get("ns", ""), request.match_info["name"]
        found = self.objects.get((resource, ns, name))
        if found is None:
            return self._not_found(resource, name)
        return web.json_response(found)

    async def _create_object(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        refused = self._refused("create", resource, request)
        if refused is not None:
            return refused
        ns = request.match_info["ns"]
        body = request[_BODY]
        if not isinstance(body, dict) or _RESOURCES.get(body.get("kind", "")) != resource:
            return web.json_response(status(400, "BadRequest", "wrong kind"), status=400)
        meta = body.setdefault("metadata", {})
        if meta.get("namespace", ns) != ns:
            message = (
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
            return web.json_response(status(400, "BadRequest", message), status=400)
        meta["namespace"] = ns
        name = meta.get("name", "")
        if resource == "secrets":
            try:
                for value in (body.get("data") or {}).values():
                    base64.b64decode(value, validate=True)
            except (ValueError, TypeError):
                return web.json_response(
                    status(400, "BadRequest", "illegal base64 data"), status=400
                )
        if self.before_create is not None:
            self.before_create(resource, copy.deepcopy(body))
        if (resource, ns, name) in self.objects:
            return web.json_response(
                status(
                    409,
                    "AlreadyExists",
                    f'{resource} "{name}" already exists',
                    details={"name": name, "kind": resource},
                ),
                status=409,
            )
        return web.json_response(self.add_object(body), status=201)

    async def _patch_object(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        refused = self._refused("patch", resource, request)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        found = self.objects.get((resource, "", name))
        if found is None:
            return self._not_found(resource, name)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/json-patch+json":
            message = (
                "the body of the request was in an unknown format - accepted media types "
                f"include: application/json-patch+json (got {content_type})"
            )
            return web.json_response(status(415, "UnsupportedMediaType", message), status=415)
        ops = request[_BODY]
        if not isinstance(ops, list):
            return web.json_response(status(400, "BadRequest", "not a JSON patch"), status=400)
        try:
            patched = _json_patch(found, ops)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            return web.json_response(status(422, "Invalid", str(exc)), status=422)
        patched["metadata"]["resourceVersion"] = str(self._next_rv())
        self.objects[(resource, "", name)] = patched
        return web.json_response(patched)


_MWC = "mutatingwebhookconfigurations"
_RESOURCES = {"Secret": "secrets", "ConfigMap": "configmaps", "MutatingWebhookConfiguration": _MWC}
_KINDS = set(_RESOURCES.values())


def _json_patch(document: Json, ops: list[Json]) -> Json:
    """RFC 6902 ``test``/``add``/``replace``/``remove`` on a copy of ``document`` (paths are
    RFC 6901 pointers). Raises ValueError (failed test), KeyError/IndexError (bad path)."""
    out = copy.deepcopy(document)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = out
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        key: Any = int(last) if isinstance(parent, list) else last
        kind = op["op"]
        if kind == "test":
            if parent[key] != op["value"]:
                raise ValueError(f"testing value {op['path']} failed")
        elif kind == "add":
            if isinstance(parent, list):
                parent.insert(key, op["value"])
            else:
                parent[key] = op["value"]
        elif kind == "replace":
            _ = parent[key]  # must exist
            parent[key] = op["value"]
        elif kind == "remove":
            del parent[key]
        else:
            raise ValueError(f"unsupported op {kind}")
    return out


def make_mutating_webhook_configuration(
    name: str, *, service: str, namespace: str, webhooks: list[str], ca_bundle: str | None = None
) -> Json:
    """A MutatingWebhookConfiguration (admissionregistration.k8s.io/v1) with one webhook per
    name in ``webhooks``, each calling ``service`` in ``namespace`` (``/mutate``, port 443),
    with every required field set, as the chart renders it."""
    hooks = []
    for hook in webhooks:
        client_config: Json = {
            "service": {"name": service, "namespace": namespace, "path": "/mutate", "port": 443}
        }
        if ca_bundle is not None:
            client_config["caBundle"] = ca_bundle
        hooks.append(
            {
                "name": hook,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "clientConfig": client_config,
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
            }
        )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": hooks,
    }


def _line(message: Json) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


# --- clients pointing at the stand-in -----------------------------------------------------


def configuration(kube: KubeApi, *, ca_file: Path | None = None) -> Configuration:
    """A kubernetes-asyncio ``Configuration`` for the stand-in: its URL and bearer token."""
    config = Configuration(
        host=kube.url,
        api_key={"BearerToken": kube.token},
        api_key_prefix={"BearerToken": "Bearer"},
    )
    if ca_file is not None:
        config.ssl_ca_cert = str(ca_file)
    return config


def api_client(kube: KubeApi, *, ca_file: Path | None = None) -> ApiClient:
    """A kubernetes-asyncio ``ApiClient`` talking to the stand-in. Close it after use."""
    return ApiClient(configuration=configuration(kube, ca_file=ca_file))


def write_kubeconfig(kube: KubeApi, path: Path, *, ca_file: Path | None = None) -> Path:
    """A kubeconfig file pointing at the stand-in (cluster, user with the token, context)."""
    cluster: Json = {"server": kube.url}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stand-in", "cluster": cluster}],
        "users": [{"name": "approver", "user": {"token": kube.token}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "approver"}}],
        "current-context": "stand-in",
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


_counter = itertools.count(1)


def unique_name(prefix: str) -> str:
    """``<prefix><n>``: a fresh name for tests that add many pods."""
    return f"{prefix}{next(_counter):05d}"
