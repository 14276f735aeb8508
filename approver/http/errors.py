"""The approver's one error boundary: every exception a handler lets out, and the answer it gets.

Handlers parse, call a use case and render; they do not catch errors. :func:`error_middleware`
turns what escapes them into JSON ``{"error": code, "message": ...}`` answers::

    Exception raised by a handler or use case          answer
    -------------------------------------------------  ----------------------------------------
    BadRequest (approver.domain.requests)               400 (415 for unsupported_media_type),
                                                       audited as the route's ``*.request`` or
                                                       ``agent.register`` event, decision
                                                       ``invalid`` (a JSON line, not stored)
    ControlPlaneRefused (approver.domain.control_plane) 400, audited the same way
    TransitionNotAllowed (approver.domain.lifecycle)    409 ``transition_not_allowed``
    ApiKeyAdminError (approver.api_keys.admin)
     +-- ApiKeyNotFound                                404 ``api_key_not_found``
     +-- ApiKeyNotManaged, ApiKeyStateConflict          409 with the error's code
    StoreUnavailable (approver.store)                   503 ``store_unavailable`` + Retry-After;
                                                       on the registration route 202 pending +
                                                       Retry-After (StreamSpace's agent exits on
                                                       a 503, waits on a 202)
    ControlPlaneUnavailable                             the same, ``control_plane_unavailable``,
                                                       Retry-After at least the control plane's
    web.HTTPException (aiohttp: 404, 405, 413; the      the same status as JSON; headers such as
      bearer check's 401)                              ``Allow`` and ``WWW-Authenticate`` kept

Nothing else is caught: a bug is aiohttp's 500 with a traceback in the log, as it should be.
No answer or audit event carries a request's value (a token, a key, a path); messages name
members, rules and route patterns only.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from approver.api_keys.admin import ApiKeyAdminError, ApiKeyNotFound
from approver.domain.control_plane import ControlPlaneRefused, ControlPlaneUnavailable
from approver.domain.lifecycle import TransitionNotAllowed
from approver.domain.requests import BadRequest
from approver.domain.sync_plan import CONTROL_PLANE_UNAVAILABLE
from approver.http.answers import pending_retry_answer
from approver.http.app_keys import METRICS_KEY, SETTINGS_KEY
from approver.http.common import ACTOR, json_error, json_response, refused_request, request_route
from approver.registration import REGISTER_EVENT
from approver.store import StoreUnavailable
from approver.store.health import DatabaseStalled

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The registration route: where an outage is a 202 pending, not a 503.
REGISTER_PATH = "/api/v1/agents/register"
#: The audit event of an admin (or other) request refused as unreadable.
ADMIN_REQUEST_EVENT = "admin.request"
#: Answers that may hold a key are never stored by a proxy or browser (RFC 9111 5.2.2.5).
NO_STORE = {"Cache-Control": "no-store"}

#: ``error`` codes of the errors aiohttp raises itself (other statuses: ``http_<status>``).
_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def _is_registration(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical == REGISTER_PATH


def _refused(request: web.Request, status: int, exc: BadRequest) -> web.Response:
    event = REGISTER_EVENT if _is_registration(request) else ADMIN_REQUEST_EVENT
    return refused_request(request, status, exc, event=event, actor=request.get(ACTOR))


def _unavailable(
    request: web.Request, code: str, what: str, at_least: float | None
) -> web.Response:
    retry_after = max(request.app[SETTINGS_KEY].retry_after_seconds, math.ceil(at_least or 0))
    headers = {"Retry-After": str(retry_after)}
    if _is_registration(request):
        return json_response(
            pending_retry_answer(code, f"{what} is unavailable"),
            status=202,
            headers={**NO_STORE, **headers},
        )
    response = json_error(503, code, f"{what} is unavailable; retry")
    response.headers.update(headers)
    return response


def _from_aiohttp(exc: web.HTTPException, max_request_bytes: int) -> web.StreamResponse:
    if exc.status == 413:
        message = f"the request body is over {max_request_bytes} bytes"
    else:
        message = exc.reason
    response = json_error(
        exc.status, _HTTP_ERROR_CODES.get(exc.status, f"http_{exc.status}"), message
    )
    for name, value in exc.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def error_middleware(max_request_bytes: int) -> Middleware:
    """The middleware of the table above (``max_request_bytes`` names the 413's limit)."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as exc:
            return _refused(request, 415 if exc.code == "unsupported_media_type" else 400, exc)
        except ControlPlaneRefused as exc:
            return _refused(request, exc.status, BadRequest(exc.code, str(exc)))
        except TransitionNotAllowed as exc:
            return json_error(409, "transition_not_allowed", str(exc))
        except ApiKeyAdminError as exc:
            return json_error(
                404 if isinstance(exc, ApiKeyNotFound) else 409, exc.code, exc.message
            )
        except StoreUnavailable as exc:
            # While the database hangs the watchdog logged it once (approver.store.health);
            # each refused request would be one more line per request.
            stalled = isinstance(exc, DatabaseStalled)
            level = logging.DEBUG if stalled else logging.WARNING
            log.log(level, "%s: %s", request_route(request), exc)
            metrics = request.app.get(METRICS_KEY)
            if metrics is not None:
                metrics.database_errors.labels("stalled" if stalled else "unavailable").inc()
            return _unavailable(request, "store_unavailable", "the approver's database", None)
        except ControlPlaneUnavailable as exc:
            log.warning("%s: control plane: %s", request_route(request), exc)
            return _unavailable(
                request, CONTROL_PLANE_UNAVAILABLE, "the control plane", exc.retry_after
            )
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            return _from_aiohttp(exc, max_request_bytes)

    return errors


def body_deadline_middleware(seconds: float) -> Middleware:
    """Read a request's body, when it has one, within ``seconds`` before any handler runs;
    slower gets ``408 request_timeout`` and the connection closed (RFC 9110 section 15.5.9).
    Handlers then read the body aiohttp keeps. A WebSocket upgrade has no body to wait for.
    Runs inside :func:`error_middleware`, which turns a body over the limit into JSON 413. A
    body that cannot be read (the client left, broken chunking) gets ``400 body_unreadable``
    and a DEBUG line."""

    @web.middleware
    async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(seconds):
                    await request.read()
            except TimeoutError:
                log.info(
                    "%s: request body not received within %g s", request_route(request), seconds
                )
                response = json_error(
                    408, "request_timeout", f"the request body did not arrive within {seconds:g} s"
                )
                response.force_close()
                return response
            except (OSError, HttpProcessingError) as exc:
                # The client went away mid-body (or the guard closed a trickle to make room:
                # bootstrap_token.http_guard), or sent chunking aiohttp cannot parse: nobody
                # waits for this answer; a DEBUG line, not aiohttp's traceback per connection.
                log.debug(
                    "%s: request body unreadable (%s)", request_route(request), type(exc).__name__
                )
                response = json_error(400, "body_unreadable", "the request body could not be read")
                response.force_close()
                return response
        return await handler(request)

    return body_deadline
