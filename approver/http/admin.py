"""Admin handlers (bearer tokens from ``adminTokensFile``; 401 with ``WWW-Authenticate: Bearer``
otherwise, RFC 6750 section 3). Every call is audited with the caller as actor
(:mod:`approver.admin`).

* ``GET /api/v1/admin/agents?status=&namespace=&method=&owner=&deploymentUid=&deployment=&
  expired=&limit=&cursor=``: ``{"agents": [...], "nextCursor": "..." | null}``, oldest first;
  ``limit`` 1..500 (100); ``deployment`` (a name) only with ``namespace``.
* ``GET /api/v1/admin/agents/{agentId}``: ``{"agent": {...}}`` or 404.
* ``POST /api/v1/admin/agents/{agentId}/approve`` | ``/reject`` | ``/revoke``:
  ``{"agent": {...}}``; 404 unknown agent; 409 ``transition_not_allowed`` (revoke of a pending
  or rejected agent).
* ``DELETE /api/v1/admin/agents/{agentId}``: ``{"deleted": "<agentId>"}`` or 404.
* ``POST /api/v1/admin/agents/bulk-approve`` with exactly one of ``{"ownerUid": "..."}``,
  ``{"deploymentUid": "..."}``, ``{"deployment": "<name>", "namespace": "..."}`` (and
  ``"namespace"`` optionally with the first two): ``{"approved": ["<agentId>", ...], "count":
  n}``; only agents whose owner was proven (:mod:`approver.admin`).
* ``GET /api/v1/audit?event=&agentId=&actor=&reason=&security=&since=&until=&order=asc|desc&
  after=&before=&limit=``: ``{"events": [{..., "seq", "prevHash", "hash"}], "next": seq | null}``
  (pass ``next`` as ``after`` going ascending, as ``before`` going descending). Also served at
  ``/api/v1/admin/audit``.

Unknown query parameters are refused (400 ``unknown_parameter``): a misspelt filter must not
silently list everything. A ``namespace`` filter that is not a DNS-1123 label, or an ``owner``
filter that is empty or over 64 characters (the stored UID's width), can never match and is
refused with 400 ``invalid_filter``, naming the parameter, never the value; likewise a
``deploymentUid`` filter, and a ``deployment`` filter that is not a DNS-1123 subdomain or comes
without ``namespace``. An ``{agentId}``
in the path, or an ``agentId`` filter, outside the agent id rule
(:mod:`approver.domain.identifiers`)
is refused with 400 ``invalid_agent_id`` before any lookup. Every 400/415 is audited as
``admin.request`` ``invalid`` with the caller as actor (a JSON line; nothing is stored). Filter
values in the stored ``admin.list`` message are rendered by
:func:`approver.audit.text.audit_value` (printable ASCII, at most 128 characters each).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from approver.admin import MAX_PAGE
from approver.audit.chain import ChainedEvent
from approver.domain.control_plane import ControlPlaneError
from approver.domain.identifiers import (
    NAMESPACE_RULE,
    OBJECT_NAME_RULE,
    is_namespace_name,
    is_object_name,
)
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod, ControlPlaneState
from approver.domain.requests import BadRequest, BulkApproveRequest, check_agent_id, parse_model
from approver.http.answers import agent_json
from approver.http.app_keys import ADMIN_KEY, ADMIN_TOKENS_KEY, CONTROL_PLANE_KEY, SYNC_KEY
from approver.http.common import (
    ACTOR,
    authenticate,
    bool_param,
    check_known,
    decode_cursor,
    encode_cursor,
    enum_param,
    int_param,
    json_error,
    json_response,
    read_json,
    time_param,
)
from approver.store import AgentFilter, AuditFilter

log = logging.getLogger(__name__)

ADMIN_AGENTS_PATH = "/api/v1/admin/agents"
AUDIT_PATH = "/api/v1/audit"
ADMIN_AUDIT_PATH = "/api/v1/admin/audit"
DEFAULT_PAGE = 100
#: The audit event of an admin request refused with 400/415.
BAD_REQUEST_EVENT = "admin.request"
#: The error code of a list filter that can never match.
INVALID_FILTER = "invalid_filter"
#: Longest controller owner UID the store holds (``agents.owner_uid``).
OWNER_UID_MAX_LENGTH = 64
#: The message of a 404 ``agent_not_found``.
AGENT_NOT_FOUND = "no agent has this agentId"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _admin(request: web.Request) -> str:
    actor = authenticate(request, request.app[ADMIN_TOKENS_KEY])
    request[ACTOR] = actor
    return actor


def _agent_id(request: web.Request) -> str:
    """The ``{agent_id}`` path segment (percent-decoded by aiohttp), checked by the agent id
    rule. Raises BadRequest ``invalid_agent_id``."""
    return check_agent_id(request.match_info["agent_id"], where="path agentId")


async def list_agents(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/admin/agents``: filtered, paged listing."""
    actor = _admin(request)
    q = request.query
    check_known(
        q,
        (
            "status",
            "namespace",
            "method",
            "owner",
            "deploymentUid",
            "deployment",
            "expired",
            "limit",
            "cursor",
        ),
    )
    where = AgentFilter(
        status=enum_param(q, "status", AgentStatus),
        namespace=_namespace_filter(q),
        approval_method=enum_param(q, "method", ApprovalMethod),
        owner_uid=_owner_filter(q),
        expired=bool_param(q, "expired"),
        deployment_uid=_owner_filter(q, "deploymentUid"),
        deployment_name=_deployment_filter(q),
    )
    limit = int_param(q, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE) or DEFAULT_PAGE
    after = _agent_cursor(q["cursor"]) if "cursor" in q else None
    agents = await request.app[ADMIN_KEY].list_agents(
        actor=actor, where=where, after=after, limit=limit
    )
    next_cursor = _next_agent_cursor(agents[-1]) if len(agents) == limit else None
    return json_response({"agents": [agent_json(a) for a in agents], "nextCursor": next_cursor})


def _namespace_filter(q: Mapping[str, str]) -> str | None:
    """The ``namespace`` filter: a DNS-1123 label (every stored namespace is a Kubernetes
    namespace name), else 400 ``invalid_filter``."""
    value = q.get("namespace")
    if value is not None and not is_namespace_name(value):
        raise BadRequest(INVALID_FILTER, f"namespace: {NAMESPACE_RULE}")
    return value


def _owner_filter(q: Mapping[str, str], name: str = "owner") -> str | None:
    """The ``owner`` (or ``deploymentUid``) filter: a UID, 1..64 characters, else 400
    ``invalid_filter``. Not checked further: Kubernetes generates UUIDs, but accepts any
    non-empty ``ownerReferences`` uid, and the approver stores the one it was given."""
    value = q.get(name)
    if value is not None and not 1 <= len(value) <= OWNER_UID_MAX_LENGTH:
        raise BadRequest(
            INVALID_FILTER, f"{name}: must be 1..{OWNER_UID_MAX_LENGTH} characters (a UID)"
        )
    return value


def _deployment_filter(q: Mapping[str, str]) -> str | None:
    """The ``deployment`` filter: a Deployment's name (a DNS-1123 subdomain), only with
    ``namespace`` (names are per namespace), else 400 ``invalid_filter``."""
    value = q.get("deployment")
    if value is None:
        return None
    if not is_object_name(value):
        raise BadRequest(INVALID_FILTER, f"deployment: {OBJECT_NAME_RULE}")
    if "namespace" not in q:
        raise BadRequest(INVALID_FILTER, "deployment: needs namespace (names are per namespace)")
    return value


def _agent_cursor(raw: str) -> tuple[datetime, uuid.UUID]:
    parts = decode_cursor(raw)
    try:
        created, ident = parts
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except ValueError:
        raise BadRequest("invalid_cursor", "cursor is not one this API returned") from None


def _next_agent_cursor(last: AgentRecord) -> str:
    return encode_cursor([last.created_at.isoformat(), str(last.id)])


async def get_agent(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/admin/agents/{agentId}``."""
    actor = _admin(request)
    agent = await request.app[ADMIN_KEY].get_agent(agent_id=_agent_id(request), actor=actor)
    if agent is None:
        return json_error(404, "agent_not_found", AGENT_NOT_FOUND)
    return json_response({"agent": agent_json(agent)})


def _action(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        actor = _admin(request)
        agent_id = _agent_id(request)
        service = request.app[ADMIN_KEY]
        act = {"approve": service.approve, "reject": service.reject, "revoke": service.revoke}[name]
        agent = await act(agent_id=agent_id, actor=actor)
        if agent is None:
            return json_error(404, "agent_not_found", AGENT_NOT_FOUND)
        sync = request.app.get(SYNC_KEY)
        if sync is not None:
            sync.wake()  # carry the decision to the control plane now
        return json_response({"agent": agent_json(agent)})

    handler.__doc__ = f"``POST /api/v1/admin/agents/{{agentId}}/{name}``."
    return handler


async def delete_agent(request: web.Request) -> web.StreamResponse:
    """``DELETE /api/v1/admin/agents/{agentId}``."""
    actor = _admin(request)
    agent_id = _agent_id(request)
    deleted = await request.app[ADMIN_KEY].delete(agent_id=agent_id, actor=actor)
    if deleted is None:
        return json_error(404, "agent_not_found", AGENT_NOT_FOUND)
    control_plane = request.app.get(CONTROL_PLANE_KEY)
    if control_plane is not None and deleted.control_plane not in (None, ControlPlaneState.ABSENT):
        # The row is gone here, so the sync loop cannot see it: deregister it there now.
        try:
            await control_plane.remove(agent_id)
        except ControlPlaneError as exc:
            log.warning("delete of %s: not deregistered in the control plane: %s", agent_id, exc)
            return json_response({"deleted": agent_id, "controlPlane": "not_removed"})
    return json_response({"deleted": agent_id})


async def bulk_approve(request: web.Request) -> web.StreamResponse:
    """``POST /api/v1/admin/agents/bulk-approve``."""
    actor = _admin(request)
    body = parse_model(BulkApproveRequest, await read_json(request))
    approved = await request.app[ADMIN_KEY].bulk_approve(
        owner_uid=body.owner_uid,
        deployment_uid=body.deployment_uid,
        deployment_name=body.deployment,
        namespace=body.namespace,
        actor=actor,
    )
    sync = request.app.get(SYNC_KEY)
    if approved and sync is not None:
        sync.wake()
    return json_response({"approved": [a.agent_id for a in approved], "count": len(approved)})


async def list_audit(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/audit``: stored audit events, filtered and paged by ``seq``."""
    actor = _admin(request)
    q = request.query
    check_known(
        q,
        (
            "event",
            "agentId",
            "actor",
            "reason",
            "security",
            "since",
            "until",
            "order",
            "after",
            "before",
            "limit",
        ),
    )
    order = q.get("order", "asc")
    if order not in ("asc", "desc"):
        raise BadRequest("invalid_order", "order must be asc or desc")
    where = AuditFilter(
        event=q.get("event"),
        agent_id=(check_agent_id(q["agentId"], where="query agentId") if "agentId" in q else None),
        actor=q.get("actor"),
        reason=q.get("reason"),
        security=bool_param(q, "security"),
        since=time_param(q, "since"),
        until=time_param(q, "until"),
    )
    limit = int_param(q, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE) or DEFAULT_PAGE
    events = await request.app[ADMIN_KEY].list_audit(
        actor=actor,
        where=where,
        after=int_param(q, "after", default=None, low=0, high=2**62),
        before=int_param(q, "before", default=None, low=0, high=2**62),
        descending=order == "desc",
        limit=limit,
    )
    next_seq = events[-1].seq if len(events) == limit else None
    return json_response({"events": [audit_json(e) for e in events], "next": next_seq})


def audit_json(item: ChainedEvent) -> dict[str, Any]:
    """A stored event as JSON: the shared audit schema plus ``seq``, ``prevHash``, ``hash``."""
    body: dict[str, Any] = item.event.model_dump(mode="json", exclude_none=True)
    body.update({"seq": item.seq, "prevHash": item.prev_hash, "hash": item.hash})
    return body


def add_routes(app: web.Application) -> None:
    app.router.add_get(ADMIN_AGENTS_PATH, list_agents)
    app.router.add_post(ADMIN_AGENTS_PATH + "/bulk-approve", bulk_approve)
    app.router.add_get(ADMIN_AGENTS_PATH + "/{agent_id}", get_agent)
    app.router.add_delete(ADMIN_AGENTS_PATH + "/{agent_id}", delete_agent)
    for name in ("approve", "reject", "revoke"):
        app.router.add_post(ADMIN_AGENTS_PATH + "/{agent_id}/" + name, _action(name))
    app.router.add_get(AUDIT_PATH, list_audit)
    app.router.add_get(ADMIN_AUDIT_PATH, list_audit)
