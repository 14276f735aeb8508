"""Read and list pods through kubernetes-asyncio; Pod JSON to
:class:`approver.domain.binding.LivePod`.

Errors: a 404 on a read is "no such pod" (None); every other API error, a connection error or a
timeout is :class:`PodLookupError`; a 410 on a list is :class:`ResourceExpired` (re-list from
scratch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from approver.domain.binding import LivePod, PodLookupError
from bootstrap_token import OwnerRef

#: Pods per page of a list (``limit``/``continue``).
LIST_PAGE = 500


__all__ = ["KubePods", "PodLookupError", "ResourceExpired", "pod_from_json"]


class ResourceExpired(PodLookupError):
    """410 Gone: the resourceVersion is too old; list again without it."""


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def pod_from_json(obj: Mapping[str, Any]) -> LivePod:
    """A :class:`LivePod` from a Pod in the API's JSON shape (camelCase).

    Raises:
        ValueError: no ``metadata.name``/``namespace``/``uid``.
    """
    meta = obj.get("metadata") or {}
    name, namespace, uid = meta.get("name"), meta.get("namespace"), meta.get("uid")
    if not (isinstance(name, str) and isinstance(namespace, str) and isinstance(uid, str)):
        raise ValueError("a Pod needs metadata.name, metadata.namespace and metadata.uid")
    controller = None
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            try:
                controller = OwnerRef(kind=ref["kind"], name=ref["name"], uid=ref["uid"])
            except (KeyError, ValueError):
                controller = None
            break
    rv = meta.get("resourceVersion")
    status = obj.get("status") or {}
    addresses = {status.get("podIP")} | {
        item.get("ip") for item in status.get("podIPs") or [] if isinstance(item, Mapping)
    }
    return LivePod(
        namespace=namespace,
        name=name,
        uid=uid,
        terminating=meta.get("deletionTimestamp") is not None,
        annotations=_str_map(meta.get("annotations")),
        controller=controller,
        labels=_str_map(meta.get("labels")),
        resource_version=str(rv) if rv is not None else None,
        addresses=frozenset(a for a in addresses if isinstance(a, str) and a),
    )


def _lookup_error(exc: BaseException) -> PodLookupError:
    if isinstance(exc, ApiException):
        if exc.status == 410:
            return ResourceExpired("410 Gone: resourceVersion too old")
        return PodLookupError(f"Kubernetes API answered {exc.status} {exc.reason}"[:200])
    return PodLookupError(f"Kubernetes API unreachable: {type(exc).__name__}")


class KubePods:
    """Pod reads and lists. ``timeout_seconds`` bounds each request."""

    def __init__(self, api: ApiClient, *, timeout_seconds: float) -> None:
        self._api = api
        self._core = CoreV1Api(api)
        self._timeout = timeout_seconds

    @property
    def core(self) -> CoreV1Api:
        return self._core

    async def read(self, namespace: str, name: str) -> LivePod | None:
        """The pod, or None when the API says 404.

        Raises:
            PodLookupError: any other failure.
        """
        try:
            model = await self._core.read_namespaced_pod(
                name, namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _lookup_error(exc) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _lookup_error(exc) from None
        return pod_from_json(self._api.sanitize_for_serialization(model))

    async def list(self, namespace: str, *, label_selector: str) -> tuple[list[LivePod], str]:
        """Every pod of ``namespace`` matching ``label_selector`` (pages of 500), and the
        list's ``resourceVersion`` to watch from.

        Raises:
            ResourceExpired: 410 while paging (the continue token expired): list again.
            PodLookupError: any other failure.
        """
        pods: list[LivePod] = []
        token: str | None = None
        resource_version = ""
        while True:
            options: dict[str, Any] = {"limit": LIST_PAGE, "_request_timeout": self._timeout}
            if label_selector:
                options["label_selector"] = label_selector
            if token:
                options["_continue"] = token
            try:
                page = await self._core.list_namespaced_pod(namespace, **options)
            except (TimeoutError, ApiException, aiohttp.ClientError, OSError) as exc:
                raise _lookup_error(exc) from None
            data = self._api.sanitize_for_serialization(page)
            for item in data.get("items") or []:
                item.setdefault("metadata", {}).setdefault("namespace", namespace)
                pods.append(pod_from_json(item))
            meta = data.get("metadata") or {}
            resource_version = resource_version or str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if not token:
                return pods, resource_version
