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
``web.HTTPUnauthorized`` (the approver's bearer-token check). ``StoreUnavailable`` propagates to
the application's middleware (503 + ``Retry-After``). Errors are ``{"error": code, "message"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from approver.api_keys.admin import ApiKeyAdmin, ApiKeyAdminError, ApiKeyNotFound
from approver.api_keys.format import ID_PATTERN
from approver.api_keys.wire import CreateKeyRequest, RotateKeyRequest, key_json
from approver.http.answers import error_body
from bootstrap_token import jsonio

ADMIN_API_KEYS_PATH = "/api/v1/admin/api-keys"

#: Returns the authenticated administrator's name, or raises ``web.HTTPUnauthorized``.
Authorize = Callable[[web.Request], str]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(status: int, code: str, message: str) -> web.Response:
    """``{"error": code, "message": message}``: the shape of every error of the approver."""
    return web.Response(
        body=jsonio.dumps(error_body(code, message)),
        status=status,
        content_type="application/json",
    )


def _refusal(kind: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    text = jsonio.dumps(error_body(code, message)).decode("utf-8")
    return kind(text=text, content_type="application/json")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


async def _body(request: web.Request, *, optional: bool) -> object:
    """The JSON body; ``{}`` for an empty optional body. Raises web.HTTPException (400/415)."""
    if optional and not request.can_read_body:
        return {}
    if request.content_type != "application/json":
        raise _refusal(
            web.HTTPUnsupportedMediaType,
            "unsupported_media_type",
            "send Content-Type: application/json",
        )
    try:
        return await request.json()
    except ValueError:
        raise _refusal(web.HTTPBadRequest, "invalid_json", "the body is not JSON") from None


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

    def _key_id(request: web.Request) -> str | None:
        key_id = request.match_info["key_id"]
        return key_id if ID_PATTERN.fullmatch(key_id) else None

    async def create(request: web.Request) -> web.Response:
        actor = authorize(request)
        data = await _body(request, optional=False)
        try:
            body = CreateKeyRequest.model_validate(data)
            issued = await admin.create(
                name=body.name,
                actor=actor,
                scope=body.scope,
                expires_at=body.expiry(admin.now()),
            )
        except ValidationError as exc:
            return _error(400, "invalid_request", _describe(exc))
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        return web.json_response(
            {"apiKey": key_json(issued.record, at=admin.now()), "key": issued.key},
            status=201,
            headers=_NO_STORE,
        )

    async def list_keys(request: web.Request) -> web.Response:
        actor = authorize(request)
        keys = await admin.list_keys(actor=actor)
        at = admin.now()
        return web.json_response({"apiKeys": [key_json(k, at=at) for k in keys]})

    async def revoke(request: web.Request) -> web.Response:
        actor = authorize(request)
        key_id = _key_id(request)
        if key_id is None:
            return _error(404, ApiKeyNotFound.code, "no API key has this id")
        try:
            result = await admin.revoke(key_id=key_id, actor=actor)
        except ApiKeyAdminError as exc:
            return _error(404 if isinstance(exc, ApiKeyNotFound) else 409, exc.code, exc.message)
        return web.json_response(
            {"apiKey": key_json(result.record, at=admin.now()), "changed": result.changed}
        )

    async def rotate(request: web.Request) -> web.Response:
        actor = authorize(request)
        key_id = _key_id(request)
        if key_id is None:
            return _error(404, ApiKeyNotFound.code, "no API key has this id")
        data = await _body(request, optional=True)
        try:
            body = RotateKeyRequest.model_validate(data)
            rotation = await admin.rotate(
                key_id=key_id,
                actor=actor,
                grace_seconds=body.grace_seconds,
                expires_at=body.expiry(admin.now()),
            )
        except ValidationError as exc:
            return _error(400, "invalid_request", _describe(exc))
        except ApiKeyAdminError as exc:
            return _error(404 if isinstance(exc, ApiKeyNotFound) else 409, exc.code, exc.message)
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
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
