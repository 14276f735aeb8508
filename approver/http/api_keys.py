"""aiohttp handlers of the API-key admin API. Thin: parse, call :class:`ApiKeyAdmin`, render.

Mounted by :func:`add_routes` under ``/api/v1/admin/api-keys`` (the prefix is an argument):

==========================================  =====================================================
route                                       answer
==========================================  =====================================================
``POST {prefix}``                           201 ``{"apiKey": meta, "key": "abk_..."}``: the only
                                            time the key is shown; 400 bad body
``GET {prefix}``                            200 ``{"apiKeys": [meta, ...]}``: never a secret
``POST {prefix}/{keyId}/revoke``            200 ``{"apiKey": meta, "changed": bool}``; 404; 409
                                            ``api_key_not_managed`` (Secret-provisioned)
``POST {prefix}/{keyId}/rotate``            201 ``{"apiKey": new meta, "key": "abk_...",
                                            "replaced": old meta}``; 404; 409
==========================================  =====================================================

``meta`` is :func:`approver.api_keys.wire.key_json`. Answers carrying a key have
``Cache-Control: no-store`` (RFC 9111 section 5.2.2.5) so no proxy or browser keeps it. Every
route first calls ``authorize(request)``, which returns the administrator's name or raises
``web.HTTPUnauthorized`` (the approver's bearer-token check). Errors are the application's error
middleware's (:mod:`approver.http.errors`): a body it cannot read is 400/415 and audited
(``admin.request``), an unknown key 404, a key in the wrong state 409, the database down 503 +
``Retry-After``; all ``{"error": code, "message"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from approver.api_keys.admin import ApiKeyAdmin, ApiKeyNotFound
from approver.api_keys.format import ID_PATTERN
from approver.api_keys.wire import CreateKeyRequest, RotateKeyRequest, key_json
from approver.domain.requests import BadRequest, parse_model
from approver.http.common import ACTOR, read_json

ADMIN_API_KEYS_PATH = "/api/v1/admin/api-keys"

#: Returns the authenticated administrator's name, or raises ``web.HTTPUnauthorized``.
Authorize = Callable[[web.Request], str]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def add_routes(
    app: web.Application,
    *,
    admin: ApiKeyAdmin,
    authorize: Authorize,
    prefix: str = ADMIN_API_KEYS_PATH,
) -> None:
    """Add the four routes above to ``app``.

    Args:
        app: the approver's application (its middleware turns StoreUnavailable into 503).
        admin: the service the handlers call.
        authorize: the bearer-token check; called first by every handler.
        prefix: the collection path, default ``/api/v1/admin/api-keys``.
    """

    def _admin(request: web.Request) -> str:
        actor = authorize(request)
        request[ACTOR] = actor
        return actor

    def _key_id(request: web.Request) -> str:
        """The ``{key_id}`` path segment; an id that cannot exist is ApiKeyNotFound (404)."""
        key_id = request.match_info["key_id"]
        if not ID_PATTERN.fullmatch(key_id):
            raise ApiKeyNotFound("no API key has this id")
        return key_id

    async def create(request: web.Request) -> web.Response:
        actor = _admin(request)
        body = parse_model(CreateKeyRequest, await read_json(request))
        try:
            issued = await admin.create(
                name=body.name,
                actor=actor,
                scope=body.scope,
                expires_at=body.expiry(admin.now()),
            )
        except ValueError as exc:  # a scope or an expiry the service refuses
            raise BadRequest("invalid_request", str(exc)) from None
        return web.json_response(
            {"apiKey": key_json(issued.record, at=admin.now()), "key": issued.key},
            status=201,
            headers=_NO_STORE,
        )

    async def list_keys(request: web.Request) -> web.Response:
        actor = _admin(request)
        keys = await admin.list_keys(actor=actor)
        at = admin.now()
        return web.json_response({"apiKeys": [key_json(k, at=at) for k in keys]})

    async def revoke(request: web.Request) -> web.Response:
        actor = _admin(request)
        result = await admin.revoke(key_id=_key_id(request), actor=actor)
        return web.json_response(
            {"apiKey": key_json(result.record, at=admin.now()), "changed": result.changed}
        )

    async def rotate(request: web.Request) -> web.Response:
        actor = _admin(request)
        key_id = _key_id(request)
        body = parse_model(RotateKeyRequest, await read_json(request, optional=True) or {})
        try:
            rotation = await admin.rotate(
                key_id=key_id,
                actor=actor,
                grace_seconds=body.grace_seconds,
                expires_at=body.expiry(admin.now()),
            )
        except ValueError as exc:  # an expiry the service refuses
            raise BadRequest("invalid_request", str(exc)) from None
        at = admin.now()
        return web.json_response(
            {
                "apiKey": key_json(rotation.new.record, at=at),
                "key": rotation.new.key,
                "replaced": key_json(rotation.old, at=at),
            },
            status=201,
            headers=_NO_STORE,
        )

    handlers: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("POST", prefix, create),
        ("GET", prefix, list_keys),
        ("POST", prefix + "/{key_id}/revoke", revoke),
        ("POST", prefix + "/{key_id}/rotate", rotate),
    ]
    for method, path, handler in handlers:
        app.router.add_route(method, path, handler)
