"""AdmissionReview wire types: the request the API server sends, typed only where we read it.

Reference: Kubernetes "Dynamic Admission Control", sections "Request" and "Response"
(https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/),
API types ``admission.k8s.io/v1`` and ``v1beta1`` (same request body apart from ``apiVersion``).

Unknown fields are *ignored*, not forbidden: the API server adds fields to the review over
versions (``requestKind``, ``requestResource``, ``options``, ``requestSubResource`` ...), and a
webhook that refused them would stop stamping after a cluster upgrade. Config and other input we
own are ``extra="forbid"``; the API server's wire format is the one place we must be lenient.

The types are frozen dataclasses filled by small hand-written readers rather than pydantic
models: the review is on the pod-creation hot path, and validating the whole envelope and pod
with pydantic cost about 16 µs per review where these readers, which look only at the dozen
fields used, cost about 2 µs (docs/webhook.md, "Where the time goes"). The pod itself stays a plain
``dict`` in :attr:`AdmissionRequest.object` (the JSON Patch must be computed against exactly
what was sent); :class:`PodView` types the handful of pod fields the stamping policy reads.
These per-request types are ``slots`` dataclasses but not ``frozen``: a frozen dataclass's
``__init__`` sets each field through ``object.__setattr__``, 2.5x slower, and nothing mutates
them after parsing.

Exception tree::

    ValueError
    └── MalformedReview     the body is not a JSON AdmissionReview we can answer (HTTP 400), or
                            its pod has a read field of the wrong type (answered allowed)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from bootstrap_token.jsonio import InvalidJson, loads
from webhook.errors import MalformedReview

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
ApiVersion = Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]


@dataclass(slots=True)
class GroupVersionKind:
    """``request.kind``, e.g. ``{"group": "", "version": "v1", "kind": "Pod"}``."""

    group: str
    version: str
    kind: str


@dataclass(slots=True)
class GroupVersionResource:
    """``request.resource``: the resource acted on, e.g. ``pods`` in the core group."""

    group: str
    version: str
    resource: str


@dataclass(slots=True)
class AdmissionRequest:
    """``request`` of an AdmissionReview, the fields this webhook uses.

    Attributes:
        uid: echoed in ``response.uid``; joins the webhook's and the API server's audit records.
        kind: the object's group/version/kind.
        resource: the resource's group/version/resource.
        sub_resource: ``subResource``; set for ``pods/status``, ``pods/eviction``..., empty for
            the pod itself.
        name: object name; None for a ``generateName`` pod.
        namespace: the namespace the API server resolved: trust is based on it.
        operation: ``CREATE``, ``UPDATE``, ``DELETE`` or ``CONNECT``.
        username: ``userInfo.username``, for audit; empty when absent.
        object: the object as it will be created (for CREATE), as sent.
        dry_run: ``dryRun``: nothing will be persisted.
    """

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    operation: str
    sub_resource: str = ""
    name: str | None = None
    namespace: str | None = None
    username: str = ""
    object: dict[str, Any] | None = field(default=None, repr=False)
    dry_run: bool = False

    @property
    def is_dry_run(self) -> bool:
        """``dryRun`` (absent and null read as False)."""
        return self.dry_run

    @property
    def is_pod_create(self) -> bool:
        """True for a CREATE of a core/v1 Pod itself (not of a pods subresource)."""
        return (
            self.operation == "CREATE"
            and self.kind.group == ""
            and self.kind.kind == "Pod"
            and self.resource.resource == "pods"
            and not self.sub_resource
        )


@dataclass(slots=True)
class AdmissionReview:
    """The envelope: ``{"apiVersion", "kind": "AdmissionReview", "request": {...}}``."""

    api_version: ApiVersion
    request: AdmissionRequest


@dataclass(slots=True)
class OwnerReference:
    """One ``metadata.ownerReferences`` entry (``metav1.OwnerReference``), the fields read."""

    kind: str
    name: str
    uid: str
    controller: bool = False


@dataclass(slots=True)
class PodView:
    """A typed, read-only view of the pod fields the stamping policy reads.

    Attributes:
        name: ``metadata.name``; None at mutating time for controller-made pods.
        generate_name: ``metadata.generateName``.
        labels: ``metadata.labels`` (empty when absent).
        has_annotations: ``metadata.annotations`` is a map (not absent, not null).
        service_account_name: ``spec.serviceAccountName``.
        controller: the owner reference with ``controller: true``, if any.
    """

    name: str | None
    generate_name: str | None
    labels: Mapping[str, str]
    has_annotations: bool
    service_account_name: str | None
    controller: OwnerReference | None


class _Reader:
    """Collects the locations of wrongly typed fields, to name them all in one message."""

    __slots__ = ("bad",)

    def __init__(self) -> None:
        self.bad: list[str] = []

    def string(self, data: Mapping[str, Any], key: str, loc: str, *, required: bool) -> str | None:
        value = data.get(key)
        if isinstance(value, str) and (value or not required):
            return value
        if value is None and not required:
            return None
        self.bad.append(loc)
        return None

    def mapping(self, data: Mapping[str, Any], key: str, loc: str) -> dict[str, Any] | None:
        value = data.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.bad.append(loc)
        return None


def _locations(bad: list[str]) -> str:
    locs = sorted(set(bad))
    shown = ", ".join(locs[:5])
    return shown + (f" (+{len(locs) - 5} more)" if len(locs) > 5 else "")


def _not_review(bad: list[str]) -> MalformedReview:
    return MalformedReview(
        "not_admission_review", f"not an AdmissionReview: invalid {_locations(bad)}"
    )


def _gvk(reader: _Reader, data: dict[str, Any] | None, loc: str, name: str) -> tuple[str, ...]:
    if data is None:
        reader.bad.append(loc)
        return ("", "", "")
    group = data.get("group")
    version = data.get("version")
    last = data.get(name)
    if isinstance(group, str) and isinstance(version, str) and isinstance(last, str) and last:
        return (group, version, last)  # the API server's case; the readers below name errors
    group = reader.string(data, "group", f"{loc}.group", required=False) or ""
    version = reader.string(data, "version", f"{loc}.version", required=False) or ""
    last = reader.string(data, name, f"{loc}.{name}", required=True) or ""
    return (group, version, last)


def parse_review(body: bytes) -> AdmissionReview:
    """Parse and check an AdmissionReview from a JSON request body.

    Args:
        body: the raw HTTP body (UTF-8 JSON).

    Returns:
        The review. ``apiVersion`` is ``admission.k8s.io/v1`` or ``v1beta1``.

    Raises:
        MalformedReview: reason ``empty_body``, ``invalid_json`` (not UTF-8 JSON, or not a JSON
            object), or ``not_admission_review`` (wrong ``apiVersion``/``kind``, no ``request``,
            no ``request.uid``, or a used field of the wrong type). The message names the
            offending fields, never their values.
    """
    if not body.strip():
        raise MalformedReview("empty_body", "request body is empty")
    try:
        document = loads(body)
    except InvalidJson:
        raise MalformedReview("invalid_json", "request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedReview("invalid_json", "request body is not a JSON object")
    reader = _Reader()
    api_version = document.get("apiVersion")
    if api_version not in API_VERSIONS:
        reader.bad.append("apiVersion")
    if document.get("kind") != "AdmissionReview":
        reader.bad.append("kind")
    request = document.get("request")
    if not isinstance(request, dict):
        reader.bad.append("request")
        raise _not_review(reader.bad)
    uid = reader.string(request, "uid", "request.uid", required=True)
    kind = _gvk(reader, reader.mapping(request, "kind", "request.kind"), "request.kind", "kind")
    resource = _gvk(
        reader,
        reader.mapping(request, "resource", "request.resource"),
        "request.resource",
        "resource",
    )
    operation = reader.string(request, "operation", "request.operation", required=True)
    sub_resource = reader.string(request, "subResource", "request.subResource", required=False)
    name = reader.string(request, "name", "request.name", required=False)
    namespace = reader.string(request, "namespace", "request.namespace", required=False)
    user_info = reader.mapping(request, "userInfo", "request.userInfo")
    username = (
        reader.string(user_info, "username", "request.userInfo.username", required=False)
        if user_info is not None
        else None
    )
    obj = reader.mapping(request, "object", "request.object")
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        reader.bad.append("request.dryRun")
    if reader.bad or uid is None or operation is None:
        raise _not_review(reader.bad or ["request"])
    return AdmissionReview(
        api_version=cast(ApiVersion, api_version),
        request=AdmissionRequest(
            uid=uid,
            kind=GroupVersionKind(*kind),
            resource=GroupVersionResource(*resource),
            operation=operation,
            sub_resource=sub_resource or "",
            name=name or None,
            namespace=namespace or None,
            username=username or "",
            object=obj,
            dry_run=bool(dry_run),
        ),
    )


def _string_map(reader: _Reader, data: Mapping[str, Any], key: str, loc: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        reader.bad.append(loc)
        return {}
    for k, v in value.items():
        if not isinstance(v, str):
            reader.bad.append(f"{loc}.{k}")
    return value


def _controller(reader: _Reader, metadata: Mapping[str, Any]) -> OwnerReference | None:
    refs = metadata.get("ownerReferences")
    if refs is None:
        return None
    if not isinstance(refs, list):
        reader.bad.append("metadata.ownerReferences")
        return None
    found: OwnerReference | None = None
    for index, ref in enumerate(refs):
        if isinstance(ref, dict):
            kind, name, uid = ref.get("kind"), ref.get("name"), ref.get("uid")
            controller = ref.get("controller")
            if (
                isinstance(kind, str) and kind
                and isinstance(name, str) and name
                and isinstance(uid, str) and uid
                and (controller is None or isinstance(controller, bool))
            ):  # fmt: skip
                if controller is True and found is None:
                    found = OwnerReference(kind=kind, name=name, uid=uid, controller=True)
                continue
        _bad_owner_reference(reader, ref, f"metadata.ownerReferences.{index}")
    return found


def _bad_owner_reference(reader: _Reader, ref: Any, loc: str) -> None:
    """Name the wrong fields of an ownerReferences entry that failed the quick check."""
    if not isinstance(ref, dict):
        reader.bad.append(loc)
        return
    reader.string(ref, "kind", f"{loc}.kind", required=True)
    reader.string(ref, "name", f"{loc}.name", required=True)
    reader.string(ref, "uid", f"{loc}.uid", required=True)
    controller = ref.get("controller")
    if controller is not None and not isinstance(controller, bool):
        reader.bad.append(f"{loc}.controller")


def parse_pod(obj: Mapping[str, Any]) -> PodView:
    """Type the pod fields we read from ``request.object`` (the dict itself is not changed).

    Raises:
        MalformedReview: reason ``malformed_pod`` when a read field has the wrong type (the API
            server never sends that for a Pod CREATE); the message names the fields.
    """
    reader = _Reader()
    metadata = reader.mapping(obj, "metadata", "metadata") or {}
    spec = reader.mapping(obj, "spec", "spec") or {}
    name = reader.string(metadata, "name", "metadata.name", required=False)
    generate_name = reader.string(metadata, "generateName", "metadata.generateName", required=False)
    labels = _string_map(reader, metadata, "labels", "metadata.labels")
    annotations = metadata.get("annotations")
    _string_map(reader, metadata, "annotations", "metadata.annotations")
    controller = _controller(reader, metadata)
    service_account = reader.string(
        spec, "serviceAccountName", "spec.serviceAccountName", required=False
    )
    if reader.bad:
        raise MalformedReview(
            "malformed_pod", f"request.object is not a Pod: invalid {_locations(reader.bad)}"
        )
    return PodView(
        name=name or None,
        generate_name=generate_name or None,
        labels=labels,
        has_annotations=isinstance(annotations, dict),
        service_account_name=service_account or None,
        controller=controller,
    )
