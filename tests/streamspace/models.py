"""StreamSpace's agent rows, their JSON, and its request validation, for the control-plane stand-in.

Sources (streamspace-dev/streamspace @ c4fc035):

* ``api/internal/db/database.go`` (``CREATE TABLE IF NOT EXISTS agents`` and migrations 005/007):
  the columns of :class:`AgentRow`.
* ``api/internal/models/agent.go``: ``Agent`` (JSON names, ``omitempty``), ``AgentCapacity``
  (``Value``/``Scan`` through ``json.Marshal``, so a stored capacity is the struct's fields only),
  ``AgentMetadata`` (a map), ``AgentRegistrationRequest`` and ``AgentHeartbeatRequest`` (``binding``
  tags checked by gin's ``ShouldBindJSON``, ``validate`` tags by the validator package).
* ``api/internal/validator/validator.go`` ``BindAndValidate``: 400 ``{"error": "Invalid request
  format", "details": <bind error>}`` for a decoding or ``binding`` failure, 400 ``{"error":
  "Validation failed", "fields": {<lowercased Go field>: <formatValidationError>}}`` for a
  ``validate`` failure.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.streamspace.gojson import GoJSONError, GoMap, Struct, decode_first, decode_struct

# --- Decoding targets (encoding/json) ----------------------------------------------------------

CAPACITY = Struct(
    "AgentCapacity",
    "models.AgentCapacity",
    {"maxSessions": "int", "cpu": "string", "memory": "string", "storage": "string"},
)
REGISTRATION = Struct(
    "AgentRegistrationRequest",
    "models.AgentRegistrationRequest",
    {
        "agentId": "string",
        "platform": "string",
        "region": "string",
        "capacity": CAPACITY,
        "metadata": "map",
    },
    type_names={"metadata": "models.AgentMetadata"},
)
HEARTBEAT = Struct(
    "AgentHeartbeatRequest",
    "models.AgentHeartbeatRequest",
    {"status": "string", "activeSessions": "int", "capacity": CAPACITY},
)
LOGIN = Struct("LoginRequest", "models.LoginRequest", {"username": "string", "password": "string"})
#: ``models.AgentMessage`` (api/internal/models/agent_protocol.go), read by ``readPump``.
AGENT_MESSAGE = Struct(
    "AgentMessage",
    "models.AgentMessage",
    {"type": "string", "timestamp": "time", "payload": "raw"},
)
#: ``models.HeartbeatMessage`` (agent_protocol.go), read by ``handleHeartbeat``.
HEARTBEAT_MESSAGE = Struct(
    "HeartbeatMessage",
    "models.HeartbeatMessage",
    {"status": "string", "activeSessions": "int", "capacity": CAPACITY},
)
#: The anonymous struct ``RequireAuth`` reads ``agentId`` from (agent_auth.go).
AGENT_ID_BODY = Struct("", 'struct { AgentID string "json:\\"agentId\\"" }', {"agentId": "string"})


# --- Validation (gin binding tags, then the validator package's validate tags) -----------------


@dataclass(frozen=True)
class Rule:
    """One field's tags, as go-playground/validator reads them (``required,min=3,max=100``)."""

    go_field: str
    json_name: str
    tags: tuple[tuple[str, str], ...]  # (tag, param)
    integer: bool = False


def _tags(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for part in text.split(","):
        tag, _, param = part.partition("=")
        out.append((tag, param))
    return tuple(out)


def _failed_tag(rule: Rule, value: Any) -> tuple[str, str] | None:
    """The first tag ``value`` fails (validator stops at it), or None."""
    zero: Any = 0 if rule.integer else ""
    if value is None:
        value = zero
    for tag, param in rule.tags:
        if tag == "omitempty":
            if value == zero:
                return None
        elif tag == "required":
            if value == zero:
                return tag, param
        elif tag == "oneof":
            choices = param.split(" ")
            if (str(value) if rule.integer else value) not in choices:
                return tag, param
        elif tag in ("min", "max", "gte", "lte"):
            size = value if rule.integer else len(value)  # strings: rune count
            limit = int(param)
            ok = size >= limit if tag in ("min", "gte") else size <= limit
            if not ok:
                return tag, param
        else:
            raise AssertionError(tag)
    return None


def _format_validation_error(go_field: str, tag: str, param: str) -> str:
    """``validator.formatValidationError`` (validator.go)."""
    messages = {
        "required": f"{go_field} is required",
        "min": f"Must be at least {param} characters",
        "max": f"Must be at most {param} characters",
        "oneof": f"Must be one of: {param}",
        "gte": f"Must be greater than or equal to {param}",
        "lte": f"Must be less than or equal to {param}",
    }
    return messages.get(tag, f"Validation failed: {tag}")


@dataclass(frozen=True)
class RequestShape:
    """A request struct: how it decodes, its ``binding`` tags and its ``validate`` tags."""

    struct: Struct
    binding: Sequence[Rule]
    validate: Sequence[Rule] = field(default_factory=tuple)


REGISTRATION_SHAPE = RequestShape(
    REGISTRATION,
    binding=(
        Rule("AgentID", "agentId", _tags("required")),
        Rule("Platform", "platform", _tags("required,oneof=kubernetes docker vm cloud")),
    ),
    validate=(
        Rule("AgentID", "agentId", _tags("required,min=3,max=100")),
        Rule("Platform", "platform", _tags("required,oneof=kubernetes docker vm cloud")),
        Rule("Region", "region", _tags("omitempty,min=2,max=50")),
    ),
)
HEARTBEAT_SHAPE = RequestShape(
    HEARTBEAT,
    binding=(Rule("Status", "status", _tags("required,oneof=online draining")),),
    validate=(
        Rule("Status", "status", _tags("required,oneof=online draining")),
        Rule("ActiveSessions", "activeSessions", _tags("gte=0"), integer=True),
    ),
)
LOGIN_SHAPE = RequestShape(
    LOGIN,
    binding=(
        Rule("Username", "username", _tags("required")),
        Rule("Password", "password", _tags("required")),
    ),
)


class BindError(Exception):
    """``c.ShouldBindJSON`` failed: Go's error text."""


def should_bind_json(body: bytes, shape: RequestShape) -> dict[str, Any]:
    """gin's ``ShouldBindJSON``: ``json.Decoder.Decode`` then the ``binding`` tags.

    Raises :class:`BindError` with the error gin returns (``EOF``, a type error, or
    go-playground's ``Key: 'Struct.Field' Error:Field validation for 'Field' failed on the
    'tag' tag`` lines).
    """
    try:
        decoded = decode_struct(decode_first(body), shape.struct)
    except GoJSONError as exc:
        raise BindError(str(exc)) from None
    lines = []
    for rule in shape.binding:
        failed = _failed_tag(rule, decoded.get(rule.json_name))
        if failed is not None:
            lines.append(
                f"Key: '{shape.struct.go_name}.{rule.go_field}' Error:Field validation for "
                f"'{rule.go_field}' failed on the '{failed[0]}' tag"
            )
    if lines:
        raise BindError("\n".join(lines))
    return decoded


def validate_request(decoded: dict[str, Any], shape: RequestShape) -> GoMap | None:
    """``validator.ValidateRequest``: ``{lowercased field: message}`` or None."""
    errors = GoMap()
    for rule in shape.validate:
        failed = _failed_tag(rule, decoded.get(rule.json_name))
        if failed is not None:
            errors[rule.go_field.lower()] = _format_validation_error(rule.go_field, *failed)
    return errors or None


def bind_and_validate(body: bytes, shape: RequestShape) -> tuple[dict[str, Any] | None, GoMap]:
    """``validator.BindAndValidate``: the decoded request, or None and the 400 answer's body."""
    try:
        decoded = should_bind_json(body, shape)
    except BindError as exc:
        return None, GoMap(error="Invalid request format", details=str(exc))
    fields = validate_request(decoded, shape)
    if fields is not None:
        return None, GoMap(error="Validation failed", fields=fields)
    return decoded, GoMap()


# --- Stored values -------------------------------------------------------------------------------


def stored_capacity(decoded: dict[str, Any] | None) -> dict[str, Any] | None:
    """``AgentCapacity.Value`` then ``Scan``: the struct's four fields, ``storage`` omitempty."""
    if decoded is None:
        return None
    capacity: dict[str, Any] = {
        "maxSessions": decoded.get("maxSessions", 0),
        "cpu": decoded.get("cpu", ""),
        "memory": decoded.get("memory", ""),
    }
    if decoded.get("storage"):
        capacity["storage"] = decoded["storage"]
    return capacity


@dataclass
class AgentRow:
    """One row of StreamSpace's ``agents`` table (database.go), as the stand-in keeps it."""

    id: str
    agent_id: str
    platform: str
    region: str | None
    status: str
    capacity: dict[str, Any] | None
    last_heartbeat: datetime | None
    websocket_id: str | None
    metadata: GoMap | None
    api_key_hash: bytes | None
    api_key_created_at: datetime | None
    api_key_last_used_at: datetime | None
    approval_status: str | None
    approved_at: datetime | None
    approved_by: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """A copy with the SQL column names; ``api_key_hash`` only as ``has_api_key``."""
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "platform": self.platform,
            "region": self.region,
            "status": self.status,
            "capacity": copy.deepcopy(self.capacity),
            "last_heartbeat": self.last_heartbeat,
            "websocket_id": self.websocket_id,
            "metadata": copy.deepcopy(self.metadata),
            "has_api_key": self.api_key_hash is not None,
            "api_key_created_at": self.api_key_created_at,
            "api_key_last_used_at": self.api_key_last_used_at,
            "approval_status": self.approval_status,
            "approved_at": self.approved_at,
            "approved_by": self.approved_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def agent_json(row: AgentRow, *, with_approval: bool) -> dict[str, Any]:
    """``models.Agent`` as ``json.Marshal`` writes it, from the columns a query selected.

    ``with_approval``: the query selected ``approval_status, approved_at, approved_by``
    (``ListAgents``); otherwise (``RETURNING`` of ``RegisterAgent``, ``GetAgent``) those fields
    stay at their zero value: ``"approvalStatus": ""`` (no ``omitempty``), the others omitted.
    """
    out: dict[str, Any] = {"id": row.id, "agentId": row.agent_id, "platform": row.platform}
    if row.region:
        out["region"] = row.region
    out["status"] = row.status
    if row.capacity is not None:
        out["capacity"] = dict(row.capacity)
    if row.last_heartbeat is not None:
        out["lastHeartbeat"] = row.last_heartbeat
    if row.websocket_id is not None:
        out["websocketId"] = row.websocket_id
    if row.metadata is not None:
        out["metadata"] = copy.deepcopy(row.metadata)
    out["approvalStatus"] = (row.approval_status or "") if with_approval else ""
    if with_approval and row.approved_at is not None:
        out["approvedAt"] = row.approved_at
    if with_approval and row.approved_by is not None:
        out["approvedBy"] = row.approved_by
    out["createdAt"] = row.created_at
    out["updatedAt"] = row.updated_at
    return out
