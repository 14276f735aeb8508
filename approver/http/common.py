"""Shared pieces of the HTTP handlers: JSON answers, bearer authentication, query parsing."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web

from approver.audit.text import audit_value
from approver.domain.requests import BadRequest
from approver.files.tokens import TokenFile, bearer_token
from approver.http.answers import error_body
from approver.http.app_keys import AUDIT_KEY, AUTH_LINES_KEY
from bootstrap_token import AuditEvent, jsonio
from bootstrap_token.jws import b64url_decode, b64url_encode

_REALM = 'Bearer realm="agent-bootstrap-approver"'
#: What :func:`request_route` names when no route matched the request.
UNMATCHED_ROUTE = "(no route)"
#: Where an authenticated handler leaves the caller's name on the request (for the audit event
#: of a refusal written by :mod:`approver.http.errors`).
ACTOR = web.RequestKey("actor", str)
_E = TypeVar("_E", bound=StrEnum)


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``body`` as compact JSON (orjson when installed)."""
    return web.Response(
        body=jsonio.dumps(body), status=status, content_type="application/json", headers=headers
    )


def json_error(status: int, code: str, message: str | None = None) -> web.Response:
    """``{"error": code, "message": ...}`` with ``status``."""
    return json_response(error_body(code, message), status=status)


def request_route(request: web.Request) -> str:
    """``"<METHOD> <route pattern>"`` of ``request``, for audit events and log lines written
    before (or without) authentication, e.g. ``GET /api/v1/admin/agents/{agent_id}``.

    The pattern is the one the route was registered with (``resource.canonical``), never the
    request's path: an unauthenticated caller chooses the path, percent-decoded by aiohttp, and
    could put a U+202E override, escape sequences or thousands of characters into the audit
    log with it. A request no route matched is named :data:`UNMATCHED_ROUTE`. The method is
    rendered by :func:`approver.audit.text.audit_value` (aiohttp only parses token characters,
    but this does not rely on it).
    """
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else UNMATCHED_ROUTE
    return f"{audit_value(request.method, limit=32)} {route}"


def refused_request(
    request: web.Request,
    status: int,
    exc: BadRequest,
    *,
    event: str,
    actor: str | None = None,
) -> web.Response:
    """Answer a request the API cannot read (``exc``) with ``status`` and emit an audit event
    about it (decision ``invalid``, reason ``exc.code``).

    The event is a JSON line only, not appended to the stored chain: the request changed
    nothing, and an unauthenticated client must not be able to grow the database with it (the
    refused bearer check of :func:`authenticate` does the same). It names the method and the
    path's route (:func:`request_route`), never the path itself, the body or the offending value
    (``exc.message`` names members and rules only).
    """
    request.app[AUDIT_KEY].emit(
        AuditEvent(
            component="approver",
            event=event,
            decision="invalid",
            reason=exc.code,
            actor=actor,
            message=f"{request_route(request)}: {exc.message}",
        )
    )
    return json_error(status, exc.code, exc.message)


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """The request's JSON body (415 unless ``application/json``; 400 when not JSON). With
    ``optional``, an empty body is None."""
    raw = await request.read()
    if optional and not raw:
        return None
    if request.content_type != "application/json":
        raise BadRequest("unsupported_media_type", "send Content-Type: application/json")
    try:
        return jsonio.loads(raw)
    except jsonio.InvalidJson:
        raise BadRequest("invalid_json", "the body is not JSON") from None


def authenticate(request: web.Request, *token_files: TokenFile) -> str:
    """The caller's actor name from ``Authorization: Bearer`` checked against ``token_files``
    (constant time), or raise 401 (and audit the refusal, without the token). The 401 body has
    the shape of every other error, ``{"error": "unauthorized", "message": ...}``.

    The ``admin.auth`` event names the method and the route pattern (:func:`request_route`),
    never the path the unauthenticated caller sent."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is not None:
        for tokens in token_files:
            actor = tokens.current().authenticate(token)
            if actor is not None:
                return actor
    reason = "missing_bearer" if token is None else "bad_bearer"
    route = request_route(request)
    sampler = request.app.get(AUTH_LINES_KEY)
    left_out = 0 if sampler is None else sampler.admit((reason, request.remote), time.monotonic())
    if left_out is not None:
        more = f"; {left_out} more like it in the last 10 s not logged" if left_out else ""
        request.app[AUDIT_KEY].emit(
            AuditEvent(
                component="approver",
                event="admin.auth",
                decision="denied",
                reason=reason,
                security=token is not None,
                message=route + more,
            )
        )
    challenge = _REALM if token is None else _REALM + ', error="invalid_token"'
    message = (
        "send Authorization: Bearer <token>"
        if token is None
        else "the bearer token is not one of the configured tokens"
    )
    raise web.HTTPUnauthorized(
        text=jsonio.dumps(error_body("unauthorized", message)).decode("utf-8"),
        content_type="application/json",
        headers={"WWW-Authenticate": challenge},
    )


def enum_param(query: Mapping[str, str], name: str, kind: type[_E]) -> _E | None:
    """An enum query parameter, or None; 400 ``invalid_<name>`` naming the allowed values."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise BadRequest(f"invalid_{_snake(name)}", f"{name} must be one of: {allowed}") from None


def bool_param(query: Mapping[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise BadRequest(f"invalid_{_snake(name)}", f"{name} must be true or false")


def int_param(
    query: Mapping[str, str], name: str, *, default: int | None, low: int, high: int
) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"invalid_{_snake(name)}", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"invalid_{_snake(name)}", f"{name} must be {low}..{high}")
    return value


def time_param(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"invalid_{_snake(name)}", f"{name} must be an RFC 3339 time") from None
    if value.tzinfo is None:
        raise BadRequest(f"invalid_{_snake(name)}", f"{name} must carry a time zone")
    return value


def check_known(query: Mapping[str, str], known: Iterable[str]) -> None:
    """400 ``unknown_parameter`` for a query parameter the endpoint does not take (a misspelt
    filter must not silently list everything)."""
    allowed = set(known)
    for name in query:
        if name not in allowed:
            raise BadRequest("unknown_parameter", f"unknown query parameter {name!r}")


def encode_cursor(parts: list[str]) -> str:
    """An opaque paging cursor."""
    return b64url_encode(jsonio.dumps(parts))


def decode_cursor(raw: str) -> list[str]:
    """The parts of :func:`encode_cursor`; 400 ``invalid_cursor`` otherwise."""
    try:
        data = jsonio.loads(b64url_decode(raw))
    except ValueError:
        raise BadRequest("invalid_cursor", "cursor is not one this API returned") from None
    if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
        raise BadRequest("invalid_cursor", "cursor is not one this API returned")
    return data


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
