"""AdmissionReview wire types: the request the API server sends, typed only where we read it.

Reference: Kubernetes "Dynamic Admission Control", section "Request" and "Response"
(https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/),
API types ``admission.k8s.io/v1`` and ``v1beta1`` (same request body apart from ``apiVersion``).

Unknown fields are *ignored*, not forbidden: the API server adds fields to the review over
versions (``requestKind``, ``requestResource``, ``options``, ``requestSubResource`` ...), and a
webhook that refused them would stop stamping after a cluster upgrade. Config and other input we
own are ``extra="forbid"``; the API server's wire format is the one place we must be lenient.

The pod itself stays a plain ``dict`` in :attr:`AdmissionRequest.object` (the JSON Patch must be
computed against exactly what was sent); :class:`PodView` types the handful of pod fields the
stamping policy reads.

Exception tree::

    ValueError
    └── MalformedReview     the body is not a JSON AdmissionReview we can answer (HTTP 400)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
ApiVersion = Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]


class MalformedReview(ValueError):
    """The request body is not an AdmissionReview we can answer.

    ``reason`` is a stable snake_case code for metrics and audit; ``str(exc)`` is a short human
    message that names fields but never echoes input values.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _Wire(BaseModel):
    # extra="ignore": see the module docstring; the API server adds fields over versions.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class GroupVersionKind(_Wire):
    """``request.kind``, e.g. ``{"group": "", "version": "v1", "kind": "Pod"}``."""

    group: str = ""
    version: str = ""
    kind: str


class GroupVersionResource(_Wire):
    """``request.resource``: the resource being acted on, e.g. ``pods`` in the core group."""

    group: str = ""
    version: str = ""
    resource: str


class UserInfo(_Wire):
    """``request.userInfo``: who made the request (we read only the username, for the log)."""

    username: str = ""


class AdmissionRequest(_Wire):
    """``request`` of an AdmissionReview, the fields this webhook uses."""

    uid: str = Field(min_length=1, description="Echoed in response.uid; joins audit records.")
    kind: GroupVersionKind
    resource: GroupVersionResource
    sub_resource: str = Field(
        default="",
        alias="subResource",
        description="Set for subresource requests (pods/status, pods/eviction); empty for pods.",
    )
    name: str | None = Field(default=None, description="Object name; empty for generateName.")
    namespace: str | None = Field(
        default=None, description="The namespace the API server resolved: trust is based on it."
    )
    operation: str = Field(description="CREATE, UPDATE, DELETE or CONNECT.")
    user_info: UserInfo = Field(default_factory=UserInfo, alias="userInfo")
    object: dict[str, Any] | None = Field(
        default=None, description="The object as it will be created (for CREATE)."
    )
    dry_run: bool | None = Field(
        default=None, alias="dryRun", description="True: nothing will be persisted."
    )

    @property
    def is_dry_run(self) -> bool:
        """``dryRun`` as a bool (the field is optional on the wire)."""
        return bool(self.dry_run)

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


class AdmissionReview(_Wire):
    """The envelope: ``{"apiVersion", "kind": "AdmissionReview", "request": {...}}``."""

    api_version: ApiVersion = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class OwnerReference(_Wire):
    """One ``metadata.ownerReferences`` entry (``metav1.OwnerReference``)."""

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    uid: str = Field(min_length=1)
    controller: bool | None = None


class PodMetadata(_Wire):
    """The pod's ``metadata`` fields the stamping policy reads."""

    name: str | None = None
    generate_name: str | None = Field(default=None, alias="generateName")
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: tuple[OwnerReference, ...] | None = Field(
        default=None, alias="ownerReferences"
    )


class PodSpec(_Wire):
    """The pod's ``spec`` fields the stamping policy reads."""

    service_account_name: str | None = Field(default=None, alias="serviceAccountName")


class PodView(_Wire):
    """A typed, read-only view of a Pod object from ``request.object``."""

    metadata: PodMetadata = Field(default_factory=PodMetadata)
    spec: PodSpec = Field(default_factory=PodSpec)

    @property
    def controller(self) -> OwnerReference | None:
        """The owner reference with ``controller: true``, if any (at most one is allowed)."""
        for ref in self.metadata.owner_references or ():
            if ref.controller:
                return ref
        return None


def _locations(exc: ValidationError) -> str:
    locs = sorted({".".join(str(part) for part in err["loc"]) or "body" for err in exc.errors()})
    shown = ", ".join(locs[:5])
    return shown + (f" (+{len(locs) - 5} more)" if len(locs) > 5 else "")


def parse_review(body: bytes) -> AdmissionReview:
    """Parse and validate an AdmissionReview from a JSON request body.

    Args:
        body: the raw HTTP body (UTF-8 JSON).

    Returns:
        The validated review. ``apiVersion`` is ``admission.k8s.io/v1`` or ``v1beta1``.

    Raises:
        MalformedReview: reason ``empty_body``, ``invalid_json`` (not JSON, or not a JSON
            object), or ``not_admission_review`` (wrong ``apiVersion``/``kind``, no ``request``,
            no ``request.uid``, or a used field of the wrong type). The message names the
            offending fields, never their values.
    """
    if not body.strip():
        raise MalformedReview("empty_body", "request body is empty")
    try:
        return AdmissionReview.model_validate_json(body)
    except ValidationError as exc:
        if any(err["type"] in ("json_invalid", "json_type") for err in exc.errors()):
            raise MalformedReview("invalid_json", "request body is not valid JSON") from None
        if any(err["type"] == "model_type" and not err["loc"] for err in exc.errors()):
            raise MalformedReview("invalid_json", "request body is not a JSON object") from None
        raise MalformedReview(
            "not_admission_review", f"not an AdmissionReview: invalid {_locations(exc)}"
        ) from None


def parse_pod(obj: dict[str, Any]) -> PodView:
    """Type the pod fields we read from ``request.object`` (the dict itself is not changed).

    Raises:
        MalformedReview: reason ``malformed_pod`` when a read field has the wrong type (the API
            server never sends that for a Pod CREATE).
    """
    try:
        return PodView.model_validate(obj)
    except ValidationError as exc:
        raise MalformedReview(
            "malformed_pod", f"request.object is not a Pod: invalid {_locations(exc)}"
        ) from None
