"""Agent-facing and control-plane-facing handlers: registration and credential review.

* ``POST /api/v1/agents/register``: StreamSpace's registration call
  (:mod:`approver.domain.requests`); 200 approved (with ``apiKey`` once) / 202 pending / 403
  rejected (:mod:`approver.http.answers`). A body it cannot read is 400 (``invalid_json``,
  ``invalid_request``, ``invalid_agent_id``), 415 not JSON, 413 over 64 KiB; an unavailable
  database or control plane is 202 pending with ``Retry-After``, nothing written (the table of
  :mod:`approver.http.errors`); so is a registration that a limit on unauthenticated pending
  records refuses (:mod:`approver.http.limits`). Answers carry ``Cache-Control: no-store``: one
  of them holds a key.
* ``POST /api/v1/agents/review``: ``{"apiKey": "aga_..."}`` (or the key in ``X-Agent-API-Key``)
  -> 200 ``{"authenticated", "agentId", "status", "namespace", "approvalMethod", "reason"}``
  (:mod:`approver.review`); the caller authenticates with a bearer token from
  ``reviewTokensFile`` or ``adminTokensFile``.
"""

from __future__ import annotations

import time

from aiohttp import web

from approver.domain.credentials import API_KEY_HEADER
from approver.domain.decision import Effect, Outcome
from approver.domain.requests import (
    BadRequest,
    ReviewRequest,
    forwarded_body,
    parse_model,
    parse_registration,
)
from approver.http.answers import registration_answer
from approver.http.app_keys import (
    ADMIN_TOKENS_KEY,
    METRICS_KEY,
    REGISTRAR_KEY,
    REVIEW_TOKENS_KEY,
    REVIEWER_KEY,
)
from approver.http.common import ACTOR, authenticate, json_response, read_json
from approver.http.errors import NO_STORE, REGISTER_PATH
from approver.http.limits import limited_response
from approver.metrics import ApproverMetrics, waited_for_approval
from approver.registration import Registration

REVIEW_PATH = "/api/v1/agents/review"


async def register(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/register``: decide a registration (module docstring)."""
    if request.content_type != "application/json":
        raise BadRequest("unsupported_media_type", "send Content-Type: application/json")
    started = time.perf_counter()
    data = await read_json(request)
    body = parse_registration(data)
    result = await request.app[REGISTRAR_KEY].register(
        request=body,
        headers=request.headers,
        body=forwarded_body(data),
        client_ip=request.remote,
    )
    if result.limited is not None:
        return limited_response(result.limited, agent_path=True)
    _count(request.app[METRICS_KEY], result, seconds=time.perf_counter() - started)
    status, payload = registration_answer(result.decision, result.agent, api_key=result.api_key)
    return json_response(payload, status=status, headers=NO_STORE)


def _count(metrics: ApproverMetrics, result: Registration, *, seconds: float) -> None:
    """The decided registration's series: its decision, reason and approval method; its
    duration; and, when it approved the agent now (created approved, or a pending agent
    activated), the time since its first registration."""
    decision = result.decision
    metrics.registration(
        decision=decision.outcome.value,
        reason=decision.reason,
        approval_method=decision.approval_method,
    )
    metrics.registration_duration.observe(seconds)
    if (
        decision.outcome is Outcome.APPROVED
        and decision.effect in (Effect.CREATE, Effect.ACTIVATE)
        and result.agent is not None
    ):
        metrics.approved(
            approval_method=decision.approval_method,
            waited_seconds=waited_for_approval(result.agent),
        )


async def review(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/review``: is this per-agent API key valid, and whose is it?"""
    actor = authenticate(request, request.app[REVIEW_TOKENS_KEY], request.app[ADMIN_TOKENS_KEY])
    request[ACTOR] = actor
    data = await read_json(request, optional=True)
    if data is not None:
        api_key = parse_model(ReviewRequest, data).api_key
    else:
        api_key = request.headers.get(API_KEY_HEADER, "").strip()
        if not api_key:
            raise BadRequest("invalid_request", f"send {{'apiKey': ...}} or {API_KEY_HEADER}")
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
        headers=NO_STORE,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(REGISTER_PATH, register)
    app.router.add_post(REVIEW_PATH, review)
