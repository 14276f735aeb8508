"""Counting every HTTP answer of the approver (``responses_total{route, code}``,
:mod:`approver.metrics`): the outermost middleware, so 503s, 429s and 400s made by the other
middlewares are counted too.

``route`` is the matched route's template (``/api/v1/admin/agents/{agent_id}``), never the
path a client sent (a label value a client could choose would grow the series without bound);
a request no route matched (or with a method its route does not take) is ``other``. Answers the
connection guard gives before any request exists (408, 431, 400, 503) are not here: they are
``connection_refusals_total{kind}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from approver.metrics import OTHER_ROUTE, ApproverMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_template(request: web.Request) -> str:
    """The matched route's template, or :data:`~approver.metrics.OTHER_ROUTE`."""
    resource = request.match_info.route.resource
    if resource is None:
        return OTHER_ROUTE
    return resource.canonical


def responses_middleware(metrics: ApproverMetrics) -> Middleware:
    """Count each answer by route template and status code (an exception that escapes every
    handler counts as the 500 aiohttp answers; a request cancelled because its client left,
    499)."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        except asyncio.CancelledError:
            code = 499  # the client went away first (nginx's convention)
            raise
        finally:
            metrics.responses.labels(route_template(request), str(code)).inc()

    return count
