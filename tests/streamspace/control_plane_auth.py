"""StreamSpace's authentication, for the control-plane stand-in: agent keys, login JWTs, users.

Sources (streamspace-dev/streamspace @ c4fc035):

* ``api/internal/auth/agent_apikey.go``: keys are 32 random bytes as 64 hex characters
  (``GenerateAPIKey``), stored as a bcrypt hash (``HashAPIKey``, ``BcryptCost`` 12), checked with
  ``bcrypt.CompareHashAndPassword`` (``CompareAPIKey``); ``ValidateAPIKeyFormat``.
* ``api/internal/middleware/agent_auth.go`` ``RequireAuth``: on every agent route and the agent
  WebSocket (:func:`require_agent_auth`).
* ``api/internal/auth/jwt.go``: HS256 login tokens (``generateTokenInternal``, ``Claims``,
  ``ValidateToken``); ``session_store.go`` ``ValidateSession`` accepts every session while the
  Redis cache is off (``CACHE_ENABLED`` defaults to false in ``api/cmd/main.go``).
* ``api/internal/auth/middleware.go`` ``Middleware`` and ``RequireRole`` (:func:`admin_auth`).
* ``api/internal/db/users.go`` ``VerifyPassword``/``GetUserByUsername``/``GetUser``.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import bcrypt
import jwt

from tests.streamspace.gojson import GoJSONError, GoMap, decode_struct, unmarshal
from tests.streamspace.models import AGENT_ID_BODY

# --- Agent API keys (agent_apikey.go) ------------------------------------------------------------

API_KEY_LENGTH = 32  # bytes; 64 hex characters
BCRYPT_COST = 12


def generate_api_key() -> str:
    """``GenerateAPIKey``: 32 random bytes, lowercase hex."""
    return secrets.token_hex(API_KEY_LENGTH)


def validate_api_key_format(key: str) -> str | None:
    """``ValidateAPIKeyFormat``: None, or the error text (length counted in bytes)."""
    size = len(key.encode("utf-8", "surrogateescape"))
    if size != API_KEY_LENGTH * 2:
        return f"API key must be {API_KEY_LENGTH * 2} characters (got {size})"
    try:
        bytes.fromhex(key)
    except ValueError:
        return "API key must contain only hexadecimal characters"
    if any(c.isspace() for c in key):  # bytes.fromhex skips spaces, hex.DecodeString does not
        return "API key must contain only hexadecimal characters"
    return None


def _bcrypt_input(secret: str) -> bytes:
    # Go's bcrypt reads at most 72 bytes of the password when comparing; Python's refuses more.
    return secret.encode("utf-8", "surrogateescape")[:72]


def bcrypt_hash_sync(secret: str, cost: int) -> bytes:
    """``bcrypt.GenerateFromPassword(secret, cost)``."""
    return bcrypt.hashpw(_bcrypt_input(secret), bcrypt.gensalt(rounds=cost))


def bcrypt_compare_sync(secret: str, hashed: bytes) -> bool:
    """``bcrypt.CompareHashAndPassword(hashed, secret) == nil``."""
    try:
        return bcrypt.checkpw(_bcrypt_input(secret), hashed)
    except ValueError:
        return False


async def bcrypt_hash(secret: str, cost: int) -> bytes:
    """:func:`bcrypt_hash_sync` off the event loop."""
    return await asyncio.to_thread(bcrypt_hash_sync, secret, cost)


async def bcrypt_compare(secret: str, hashed: bytes) -> bool:
    """:func:`bcrypt_compare_sync` off the event loop."""
    return await asyncio.to_thread(bcrypt_compare_sync, secret, hashed)


# --- RequireAuth (agent_auth.go) -----------------------------------------------------------------


@dataclass(frozen=True)
class AgentAuth:
    """What ``RequireAuth`` puts in the gin context when it lets a request through."""

    agent_id: str  # authenticated_agent_id
    method: str  # auth_method: "mtls", "agent_api_key" or "bootstrap_key"
    is_bootstrap: bool  # isBootstrapAuth


@dataclass(frozen=True)
class AuthRefusal:
    """``RequireAuth`` aborted the request with this status and JSON body."""

    status: int
    body: GoMap


#: Look up ``(exists, api_key_hash)`` of an agent row (``SELECT api_key_hash FROM agents ...``).
AgentLookup = Callable[[str], Awaitable[tuple[bool, bytes | None]]]


def agent_id_from_body(body: bytes) -> str:
    """``RequireAuth``'s body read: ``json.Unmarshal`` into ``struct{AgentID string
    `json:"agentId"`}``; any error (bad JSON, ``agentId`` not a string) leaves it empty."""
    if not body:
        return ""
    try:
        decoded = decode_struct(unmarshal(body), AGENT_ID_BODY)
    except GoJSONError:
        return ""
    value = decoded.get("agentId", "")
    return value if isinstance(value, str) else ""


async def require_agent_auth(
    *,
    api_key: str,
    query_agent_id: str,
    path_agent_id: str,
    body: bytes,
    client_cert_cn: str | None,
    bootstrap_key: str,
    lookup: AgentLookup,
) -> AgentAuth | AuthRefusal:
    """``AgentAuth.RequireAuth``, branch by branch.

    1. A verified client certificate (mTLS): its CN is the agent id; the row must exist (404).
    2. Else ``X-Agent-API-Key`` is required (401 ``Missing authentication``) and must be 64 hex
       characters (401 ``Invalid API key format``).
    3. The agent id comes from the ``agent_id`` query parameter, else the ``:agent_id`` path
       parameter, else the JSON body's ``agentId``; none: 400 ``Missing agent_id``.
    4. No row: the shared ``AGENT_BOOTSTRAP_KEY`` passes as bootstrap auth, else 404.
    5. A row without ``api_key_hash``, or whose hash does not match: the shared key passes as
       bootstrap auth (so it is a master key for every agent id), else 403 ``Invalid API key``.
    6. A matching key: ``agent_api_key`` (the caller then updates ``api_key_last_used_at``).
    """
    if client_cert_cn is not None:
        if not client_cert_cn:
            return AuthRefusal(
                401,
                GoMap(
                    error="Invalid client certificate",
                    details="Certificate Common Name (CN) is empty - must be agent_id",
                ),
            )
        exists, _ = await lookup(client_cert_cn)
        if not exists:
            return AuthRefusal(
                404,
                GoMap(
                    error="Agent not found",
                    details="Agent must be pre-registered before connecting",
                    agentId=client_cert_cn,
                ),
            )
        return AgentAuth(client_cert_cn, "mtls", is_bootstrap=False)

    if api_key == "":
        return AuthRefusal(
            401,
            GoMap(
                error="Missing authentication",
                details="Either client certificate (mTLS) or X-Agent-API-Key header is required",
            ),
        )
    problem = validate_api_key_format(api_key)
    if problem is not None:
        return AuthRefusal(401, GoMap(error="Invalid API key format", details=problem))

    agent_id = query_agent_id or path_agent_id
    if agent_id == "":
        agent_id = agent_id_from_body(body)
    if agent_id == "":
        return AuthRefusal(
            400, GoMap(error="Missing agent_id", details="agent_id must be provided")
        )

    bootstrap_ok = bootstrap_key != "" and api_key == bootstrap_key
    exists, key_hash = await lookup(agent_id)
    if not exists:
        if bootstrap_ok:
            return AgentAuth(agent_id, "bootstrap_key", is_bootstrap=True)
        return AuthRefusal(
            404,
            GoMap(
                error="Agent not found",
                details="Agent must be pre-registered or use a valid bootstrap key",
                agentId=agent_id,
            ),
        )
    if key_hash is None or not await bcrypt_compare(api_key, key_hash):
        if bootstrap_ok:
            return AgentAuth(agent_id, "bootstrap_key", is_bootstrap=True)
        return AuthRefusal(403, GoMap(error="Invalid API key"))
    return AgentAuth(agent_id, "agent_api_key", is_bootstrap=False)


# --- Users (users.go) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A local StreamSpace user (``users`` table, ``provider`` ``local``).

    ``id`` and ``email`` are derived when left empty (a UUID, ``<username>@streamspace.local``).
    """

    username: str
    password: str
    role: str = "admin"
    active: bool = True
    id: str = ""
    email: str = ""
    full_name: str = ""


@dataclass
class UserRecord:
    """A user as stored: the password only as its bcrypt hash."""

    id: str
    username: str
    email: str
    full_name: str
    role: str
    provider: str
    password_hash: bytes
    active: bool
    created_at: datetime
    updated_at: datetime
    last_login: datetime | None = None

    @classmethod
    def create(cls, user: User, *, cost: int, now: datetime) -> UserRecord:
        """``UserDB.CreateUser`` for a local user (the password hashed with bcrypt)."""
        return cls(
            id=user.id or str(uuid.uuid4()),
            username=user.username,
            email=user.email or f"{user.username}@streamspace.local",
            full_name=user.full_name,
            role=user.role,
            provider="local",
            password_hash=bcrypt_hash_sync(user.password, cost),
            active=user.active,
            created_at=now,
            updated_at=now,
        )

    def login_json(self, last_login: datetime | None) -> dict[str, Any]:
        """``models.User`` as ``Login`` returns it: from ``GetUserByUsername``, which selects
        no ``org_id`` (``"orgId": ""``), no quota and no groups; ``lastLogin`` is the value read
        before ``UpdateLastLogin`` (the previous login)."""
        out: dict[str, Any] = {
            "id": self.id,
            "orgId": "",
            "username": self.username,
            "email": self.email,
            "fullName": self.full_name,
            "role": self.role,
            "provider": self.provider,
            "active": self.active,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }
        if last_login is not None:
            out["lastLogin"] = last_login
        return out


# --- JWT (jwt.go) --------------------------------------------------------------------------------

ISSUER = "streamspace-api"
#: ``ValidateToken``'s key function accepts any ``*jwt.SigningMethodHMAC``.
_HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
#: ``api/cmd/main.go``: ``JWT_SECRET must be at least 32 characters long`` (log.Fatal).
MIN_JWT_SECRET_LENGTH = 32


@dataclass
class JWTManager:
    """``auth.JWTManager`` with the session store off (``ValidateSession`` always true)."""

    secret: str
    token_duration: float
    issued: list[str] = field(default_factory=list)

    def generate(self, user: UserRecord, now: float) -> str:
        """``GenerateTokenWithContext``: HS256, the default organisation, claims in ``Claims``
        order; ``iat``/``nbf``/``exp`` are whole seconds (``jwt.NewNumericDate``)."""
        claims: dict[str, Any] = {
            "user_id": user.id,
            "org_id": "default-org",
            "org_name": "Default Organization",
            "k8s_namespace": "streamspace",
            "username": user.username,
            "email": user.email,
            "role": user.role,
            "org_role": "user",
            "iss": ISSUER,
            "sub": user.id,
            "exp": int(now + self.token_duration),
            "nbf": int(now),
            "iat": int(now),
            "jti": secrets.token_hex(32),  # GenerateSessionID
        }
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        self.issued.append(token)
        return token

    def validate(self, token: str, now: float) -> dict[str, Any] | str:
        """``ValidateToken`` (golang-jwt v5 ``ParseWithClaims``): the claims, or the error
        text the middleware puts in ``message``. Any HMAC algorithm passes the key function;
        ``exp`` must be after now and ``nbf`` not after it, with no leeway (checked here against
        the injected clock; PyJWT checks the signature)."""
        prefix = "failed to parse token: "
        if token.count(".") != 2:
            return prefix + "token is malformed: token contains an invalid number of segments"
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return prefix + "token is malformed: could not JSON decode header"
        alg = header.get("alg")
        if alg not in _HMAC_ALGORITHMS:
            return (
                prefix + "token is unverifiable: error while executing keyfunc: "
                f"unexpected signing method: {alg}"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=[str(alg)],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError:
            return prefix + "token signature is invalid: signature is invalid"
        except jwt.PyJWTError:
            return prefix + "token is malformed: could not JSON decode claim"
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not now < exp:
            return prefix + "token has invalid claims: token is expired"
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and now < nbf:
            return prefix + "token has invalid claims: token is not valid yet"
        return claims


# --- auth.Middleware + RequireRole("admin") ------------------------------------------------------


@dataclass(frozen=True)
class AdminRefusal:
    """The answer ``Middleware`` or ``RequireRole`` aborts with (``body`` None: no body)."""

    status: int
    body: GoMap | None


def admin_auth(
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    cookies: Mapping[str, str],
    path: str,
    jwt_manager: JWTManager,
    users_by_id: Mapping[str, UserRecord],
    now: float,
    required_role: str = "admin",
) -> dict[str, Any] | AdminRefusal:
    """``auth.Middleware`` then ``middleware.CSRFProtection`` then ``RequireRole``.

    Returns the token's claims (``userID`` is ``claims["user_id"]``) or the refusal:

    * no ``Authorization``: 401 ``Authorization header required``; not ``Bearer <token>``: 401
      ``Invalid authorization header format. Use: Bearer <token>``; a bad or expired token: 401
      ``Invalid or expired token`` with the parser's ``message``; the user gone: 401 ``User not
      found``; the user disabled: 403 ``User account is disabled``. A WebSocket upgrade reads
      ``?token=`` (or the ``streamspace_proxy_token`` cookie) and gets bare statuses.
    * CSRF: a request that got past the middleware carries ``Bearer ``, which CSRF lets through.
    * ``RequireRole``: the *token's* role must be ``admin``: 403 ``Insufficient permissions``.
    """
    upgrade = headers.get("Upgrade", "").lower()
    connection = headers.get("Connection", "").lower()
    websocket = upgrade == "websocket" and "upgrade" in connection
    token = ""
    if websocket or path.startswith(("/api/v1/http/", "/api/v1/vnc/", "/api/v1/websockify/")):
        token = query.get("token", "") or cookies.get("streamspace_proxy_token", "")

    def refuse(status: int, body: GoMap) -> AdminRefusal:
        return AdminRefusal(status, None if websocket else body)

    if token == "":
        header = headers.get("Authorization", "")
        if header == "":
            return refuse(401, GoMap(error="Authorization header required"))
        scheme, sep, rest = header.partition(" ")
        if not sep or scheme != "Bearer":
            return refuse(
                401, GoMap(error="Invalid authorization header format. Use: Bearer <token>")
            )
        token = rest
    claims = jwt_manager.validate(token, now)
    if isinstance(claims, str):
        return refuse(401, GoMap(error="Invalid or expired token", message=claims))
    user_id = claims.get("user_id")
    user = users_by_id.get(user_id) if isinstance(user_id, str) else None
    if user is None:
        return refuse(401, GoMap(error="User not found"))
    if not user.active:
        return refuse(403, GoMap(error="User account is disabled"))
    role = claims.get("role")
    if not isinstance(role, str) or role != required_role:
        return AdminRefusal(403, GoMap(error="Insufficient permissions"))
    return claims
