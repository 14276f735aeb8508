"""Wire input of the approver's HTTP API: the registration body, validated (pydantic).

The registration body is exactly what StreamSpace's k8s-agent sends
(``agents/k8s-agent/main.go``, ``AgentRegistrationRequest``)::

    {"agentId": "k8s-prod-cluster-streamspace-k8s-agent-7d9f8b6c5-x2x7q",
     "platform": "kubernetes",
     "region": "default",                                       # optional (omitempty)
     "capacity": {"maxCpu": 100, "maxMemory": 128, "maxSessions": 100},   # optional
     "metadata": {"namespace": "streamspace", "kubernetes": true}}       # optional

Unknown members are ignored, at the top level and in ``capacity``: StreamSpace may add fields
to its agent's request in a later version, and an approver that answered those agents 400 would
stop every registration of a fleet at once. Known members stay typed and validated (a
``capacity.maxCpu`` that is not an integer is still 400), and only known members are stored.
``metadata`` is free-form by design; the approver reads ``metadata.podName`` and
``metadata.podNamespace`` from it (:mod:`approver.binding`).

Answers are built in :mod:`approver.answers`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_M = TypeVar("_M", bound=BaseModel)


class _Wire(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )


class Capacity(_Wire):
    """``capacity``: what the agent can run. Units as StreamSpace's agent states them."""

    max_cpu: int = Field(alias="maxCpu", ge=0, description="CPU cores.")
    max_memory: int = Field(alias="maxMemory", ge=0, description="Memory in GB.")
    max_sessions: int = Field(alias="maxSessions", ge=0, description="Concurrent sessions.")


class RegistrationRequest(_Wire):
    """``POST /api/v1/agents/register`` body. Unknown members are ignored (module docstring)."""

    agent_id: str = Field(alias="agentId", min_length=1, max_length=253)
    platform: str = Field(min_length=1, max_length=64)
    region: str | None = Field(default=None, max_length=128)
    capacity: Capacity | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


def parse_registration(data: object) -> RegistrationRequest:
    """Validate a decoded JSON body.

    Raises:
        BadRequest: not an object of the documented shape; the message names the members,
            never their values.
    """
    try:
        return RegistrationRequest.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("invalid_request", describe_validation(exc)) from None


class BadRequest(ValueError):
    """A request the API cannot read: answered with 400 ``{"error": code, "message": ...}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def describe_validation(exc: ValidationError) -> str:
    """``loc: msg`` for each error, without the offending input (which may be a secret)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class _Strict(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )


class BulkApproveRequest(_Strict):
    """``POST /api/v1/admin/agents/bulk-approve`` body: approve every pending agent of one
    controller owner (its UID, e.g. a ReplicaSet's), optionally in one namespace only."""

    owner_uid: str = Field(alias="ownerUid", min_length=1, max_length=64)
    namespace: str | None = Field(default=None, min_length=1, max_length=63)


class ReviewRequest(_Strict):
    """``POST /api/v1/agents/review`` body: the per-agent API key to review (it may come in
    the ``X-Agent-API-Key`` header instead)."""

    api_key: str = Field(alias="apiKey", min_length=1, max_length=256)


def parse_model(model: type[_M], data: object) -> _M:
    """Validate ``data`` as ``model``. Raises :class:`BadRequest` (members named, not values)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("invalid_request", describe_validation(exc)) from None
