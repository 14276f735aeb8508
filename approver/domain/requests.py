"""Wire input of the approver's HTTP API: the registration body, validated (pydantic).

The registration body is what StreamSpace's k8s-agent sends (``agents/k8s-agent/main.go``,
``AgentRegistrationRequest``; the exact bytes are ``tests/fixtures/streamspace/
registration-request.json``)::

    {"agentId": "k8s-prod-cluster-streamspace-k8s-agent-7d9f8b6c5-bb9n5",
     "platform": "kubernetes",
     "region": "default",                                                 # optional (omitempty)
     "capacity": {"maxSessions": 100, "cpu": "64 cores", "memory": "256Gi"},   # optional
     "metadata": {"kubernetes": true, "namespace": "streamspace"}}        # optional

Older agents sent ``capacity: {"maxCpu": 100, "maxMemory": 128, "maxSessions": 100}``
(integers); StreamSpace changed the shape in its commit ``d3560ac``
(``api/internal/models/agent.go`` ``AgentCapacity``), and may change it again.

**A 400 is fatal to StreamSpace's agent** (``registerAgent`` returns an error for any status but
200/201/202 and ``Run``/``runStandalone`` exit), so a rule that refused a whole fleet's new body
shape would crash-loop every agent pod at once. The rule here: only the members the approver
*decides on* are validated strictly:

* ``agentId``: the agent id rule of :mod:`approver.domain.identifiers` (400 ``invalid_agent_id``);
* ``platform``: a string of the same character class, 1..64 (API-key scopes match on it;
  StreamSpace itself refuses anything but ``kubernetes``/``docker``/``vm``/``cloud``).

Every other member is only *stored*, whatever its JSON type: ``capacity`` is kept as the agent
sent it when it is a JSON object (any members, any types), ``region`` when it is a string of the
agent id's character class (at most 128), ``metadata`` when it is an object; anything else is
stored as absent, and unknown top-level members are ignored. None of them ever becomes a 400.
The raw body is also what a control-plane connector forwards (:mod:`approver.connectors`), so
the control plane receives every member as the agent sent it. ``metadata`` is free-form by
design; the approver reads ``metadata.podName`` and ``metadata.podNamespace`` from it
(:mod:`approver.domain.binding`, strings only).

Messages name the member and the rule, never the value. Answers are built in
:mod:`approver.http.answers`.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from approver.domain.identifiers import (
    NAMESPACE_RULE,
    OBJECT_NAME_RULE,
    agent_id_problem,
    is_namespace_name,
    is_object_name,
    label_problem,
)
from bootstrap_token import jsonio

_M = TypeVar("_M", bound=BaseModel)


class _Wire(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )


#: The error type (and 400 ``error`` code) of an agent id breaking the rule.
INVALID_AGENT_ID = "invalid_agent_id"


def _agent_id(value: str) -> str:
    problem = agent_id_problem(value)
    if problem is not None:
        raise PydanticCustomError(INVALID_AGENT_ID, problem)
    return value


def _label(max_length: int, *, empty_ok: bool = False) -> AfterValidator:
    def check(value: str) -> str:
        if empty_ok and value == "":
            return value
        problem = label_problem(value, max_length=max_length)
        if problem is not None:
            raise PydanticCustomError("invalid_label", problem)
        return value

    return AfterValidator(check)


#: An agent id checked by :func:`approver.domain.identifiers.agent_id_problem`.
AgentId = Annotated[str, AfterValidator(_agent_id)]


def _stored_object(value: object) -> dict[str, Any] | None:
    """A JSON object member as sent, anything else as absent (never an error)."""
    return dict(value) if isinstance(value, dict) else None


def _stored_region(value: object) -> str | None:
    """``region`` when it is a string of the agent id's class (at most 128), else absent."""
    if isinstance(value, str) and (value == "" or label_problem(value, max_length=128) is None):
        return value
    return None


class RegistrationRequest(_Wire):
    """``POST /api/v1/agents/register`` body. Only ``agentId`` and ``platform`` are validated;
    the other members are stored as sent or dropped, never refused (module docstring)."""

    agent_id: AgentId = Field(alias="agentId")
    platform: Annotated[str, _label(64)]
    region: Annotated[str | None, BeforeValidator(_stored_region)] = None
    capacity: Annotated[dict[str, Any] | None, BeforeValidator(_stored_object)] = None
    metadata: Annotated[
        dict[str, Any], BeforeValidator(lambda value: _stored_object(value) or {})
    ] = Field(default_factory=dict)


#: The members of StreamSpace's ``AgentRegistrationRequest`` (``api/internal/models/agent.go``),
#: the only ones its handler reads.
REGISTRATION_MEMBERS = ("agentId", "platform", "region", "capacity", "metadata")
_FOLDED = {m.casefold(): m for m in REGISTRATION_MEMBERS}


def forwarded_body(data: dict[str, Any]) -> bytes:
    """The registration body a control plane receives: the members StreamSpace reads, exactly
    as the agent sent them (any JSON type), in their order; everything else left out.

    Forwarding the agent's bytes would let a body say one thing to the approver and another to
    the control plane (Go matches JSON keys case-insensitively, the last match winning), so the
    body is rebuilt from the members the approver read; :func:`parse_registration` refuses a
    body whose keys differ from those members only in case."""
    return jsonio.dumps({m: data[m] for m in REGISTRATION_MEMBERS if m in data})


def parse_registration(data: object) -> RegistrationRequest:
    """Validate a decoded JSON body.

    A member whose name equals one of :data:`REGISTRATION_MEMBERS` but for case (``AgentID``,
    ``agentid``) is refused: Go's ``encoding/json``, which StreamSpace decodes with, would take
    it for that member.

    Raises:
        BadRequest: ``invalid_agent_id`` when ``agentId`` breaking its rule is the only
            problem, else ``invalid_request``; the message names the members and the rules
            they break, never their values.
    """
    if isinstance(data, dict):
        for key in data:
            member = _FOLDED.get(key.casefold())
            if member is not None and key != member:
                raise BadRequest(
                    "invalid_request",
                    f"a member named like {member!r} but for case: Go's JSON decoder, which "
                    "StreamSpace uses, would read it as that member; send it once, spelt "
                    f"{member!r}",
                )
    try:
        return RegistrationRequest.model_validate(data)
    except ValidationError as exc:
        types = {err["type"] for err in exc.errors(include_url=False, include_input=False)}
        code = INVALID_AGENT_ID if types == {INVALID_AGENT_ID} else "invalid_request"
        raise BadRequest(code, describe_validation(exc)) from None


def check_agent_id(value: str, *, where: str = "agentId") -> str:
    """``value`` when it is an acceptable agent id
    (:func:`approver.domain.identifiers.agent_id_problem`).

    Args:
        value: an agent id from a URL path or a query parameter.
        where: how the 400 message names the place it came from.

    Raises:
        BadRequest: ``invalid_agent_id``, naming ``where`` and the rule, never the value.
    """
    problem = agent_id_problem(value)
    if problem is not None:
        raise BadRequest(INVALID_AGENT_ID, f"{where}: {problem}")
    return value


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


def _namespace(value: str) -> str:
    if not is_namespace_name(value):
        raise PydanticCustomError("invalid_namespace", NAMESPACE_RULE)
    return value


def _object_name(value: str) -> str:
    if not is_object_name(value):
        raise PydanticCustomError("invalid_name", OBJECT_NAME_RULE)
    return value


class BulkApproveRequest(_Strict):
    """``POST /api/v1/admin/agents/bulk-approve`` body: approve every pending agent of one
    workload whose owner was proven (:mod:`approver.admin`), named by exactly one of:

    * ``ownerUid``: the controller owner's UID (e.g. a ReplicaSet's);
    * ``deploymentUid``: the UID of the Deployment controlling the owner (every ReplicaSet of
      it: a rollout's old and new ones);
    * ``deployment``: that Deployment's name (a DNS-1123 subdomain), with ``namespace``.

    ``namespace`` (a DNS-1123 label: nothing else can match) narrows the first two, and is
    required with ``deployment``."""

    owner_uid: str | None = Field(default=None, alias="ownerUid", min_length=1, max_length=64)
    deployment_uid: str | None = Field(
        default=None, alias="deploymentUid", min_length=1, max_length=64
    )
    deployment: Annotated[str, AfterValidator(_object_name)] | None = None
    namespace: Annotated[str, AfterValidator(_namespace)] | None = None

    @model_validator(mode="after")
    def _one_workload(self) -> BulkApproveRequest:
        named = [self.owner_uid, self.deployment_uid, self.deployment]
        if sum(v is not None for v in named) != 1:
            raise PydanticCustomError(
                "one_workload", "give exactly one of ownerUid, deploymentUid, deployment"
            )
        if self.deployment is not None and self.namespace is None:
            raise PydanticCustomError(
                "namespace_required", "deployment needs namespace (names are per namespace)"
            )
        return self


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
