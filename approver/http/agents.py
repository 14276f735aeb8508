"""Agent-facing and control-plane-facing handlers: registration and credential review.

* ``POST /api/v1/agents/register``: StreamSpace's registration call
(:mod:`approver.domain.requests`);
  200 approved (with ``apiKey`` once) / 202 pending / 403 rejected (:mod:`approver.http.answers`),
  400 malformed body (``invalid_json``, ``invalid_request``, or ``invalid_agent_id`` for an
  ``agentId`` outside the rule of :mod:`approver.domain.identifiers`; audited as ``agent.register``
  ``invalid``, no record written), 415 not JSON, 413 body over 64 KiB, 503 + ``Retry-After``
  when the database is unavailable. Answers carry ``Cache-Control: no-store``: one of them
  holds a key.
* ``POST /api/v1/agents/review``: ``{"apiKey": "aga_..."}`` (or the key in ``X-Agent-API-Key``)
  -> 200 ``{"authenticated", "agentId", "status", "namespace", "approvalMethod", "reason"}``
  (:mod:`approver.review`); the caller authenticates with a bearer token from
  ``reviewTokensFile`` or ``adminTokensFile``.
"""

from __future__ import annotations

import logging
import math

from aiohttp import web

from approver.domain.control_plane import ControlPlaneRefused, ControlPlaneUnavailable
from approver.domain.credentials import API_KEY_HEADER
from approver.domain.requests import (
    BadRequest,
    ReviewRequest,
    forwarded_body,
    parse_model,
    parse_registration,
)
from approver.domain.sync_plan import CONTROL_PLANE_UNAVAILABLE
from approver.http.answers import pending_retry_answer, registration_answer
from approver.http.app_keys import (
    ADMIN_TOKENS_KEY,
    REGISTRAR_KEY,
    REVIEW_TOKENS_KEY,
    REVIEWER_KEY,
    SETTINGS_KEY,
)
from approver.http.common import (
    authenticate,
    json_error,
    json_response,
    read_json,
    refused_request,
    request_route,
)
from approver.registration import REGISTER_EVENT
from approver.store import StoreUnavailable

log = logging.getLogger(__name__)

REGISTER_PATH = "/api/v1/agents/register"
REVIEW_PATH = "/api/v1/agents/review"
_NO_STORE = {"Cache-Control": "no-store"}


async def register(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/register``: decide a registration (module docstring)."""
    try:
        if request.content_type != "application/json":
            raise BadRequest("unsupported_media_type", "send Content-Type: application/json")
        data = await read_json(request)
        body = parse_registration(data)
    except BadRequest as exc:
        status = 415 if exc.code == "unsupported_media_type" else 400
        return refused_request(request, status, exc, event=REGISTER_EVENT)
    try:
        result = await request.app[REGISTRAR_KEY].register(
            request=body,
            headers=request.headers,
            body=forwarded_body(data),
            client_ip=request.remote,
        )
    except StoreUnavailable as exc:
        log.warning("%s: %s", request_route(request), exc)
        return retry_later(request, "store_unavailable", "the approver's database is unavailable")
    except ControlPlaneUnavailable as exc:
        log.warning("%s: control plane: %s", request_route(request), exc)
        return retry_later(
            request,
            CONTROL_PLANE_UNAVAILABLE,
            "the control plane is unavailable",
            at_least=exc.retry_after,
        )
    except ControlPlaneRefused as exc:
        return refused_request(
            request, exc.status, BadRequest(exc.code, str(exc)), event=REGISTER_EVENT
        )
    status, payload = registration_answer(result.decision, result.agent, api_key=result.api_key)
    return json_response(payload, status=status, headers=_NO_STORE)


def retry_later(
    request: web.Request, reason: str, message: str, *, at_least: float | None = None
) -> web.Response:
    """202 ``{"approvalStatus": "pending", "reason", "message"}`` with ``Retry-After``: the
    answer StreamSpace's agent waits on (module docstring) when the approver cannot decide now.
    ``at_least``: a longer wait asked for by the control plane (a 429's ``retryAfter``).
    """
    retry_after = max(request.app[SETTINGS_KEY].retry_after_seconds, math.ceil(at_least or 0))
    return json_response(
        pending_retry_answer(reason, message),
        status=202,
        headers={**_NO_STORE, "Retry-After": str(retry_after)},
    )


async def review(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/review``: is this per-agent API key valid, and whose is it?"""
    actor = authenticate(request, request.app[REVIEW_TOKENS_KEY], request.app[ADMIN_TOKENS_KEY])
    try:
        data = await read_json(request, optional=True)
        if data is not None:
            api_key = parse_model(ReviewRequest, data).api_key
        else:
            api_key = request.headers.get(API_KEY_HEADER, "").strip()
            if not api_key:
                raise BadRequest("invalid_request", f"send {{'apiKey': ...}} or {API_KEY_HEADER}")
    except BadRequest as exc:
        status = 415 if exc.code == "unsupported_media_type" else 400
        return json_error(status, exc.code, exc.message)
    result = await request.app[REVIEWER_KEY].review(api_key=api_key, actor=actor)
    agent = result.agent
    return json_response(
        {
            "authenticated": result.authenticated,
            "agentId": agent.agent_id if agent else None,
            "status": agent.status.value if agent else None,
            "namespace": agent.namespace if agent else None,
            "approvalMethod": (
                agent.approval_method.value if agent and agent.approval_method else None
            ),
            "reason": result.reason,
        },
        headers=_NO_STORE,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(REGISTER_PATH, register)
    app.router.add_post(REVIEW_PATH, review)
