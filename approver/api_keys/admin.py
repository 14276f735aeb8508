"""API key administration: create, list, revoke, rotate. Each action writes one audit event.

No HTTP here (:mod:`approver.http.api_keys` is the aiohttp layer, :mod:`approver.api_keys_cli`
the command line). The full key string exists only in the value :meth:`ApiKeyAdmin.create` and
:meth:`ApiKeyAdmin.rotate` return, once; audit events and logs name a key by its id and name.

Errors::

    ApiKeyAdminError            code
    ├── ApiKeyNotFound          api_key_not_found        no key has this id         (HTTP 404)
    ├── ApiKeyNotManaged        api_key_not_managed      a Secret-provisioned key   (HTTP 409)
    └── ApiKeyStateConflict     api_key_not_active,      rotate of a revoked or     (HTTP 409)
                                api_key_already_rotated  expired key, or of a key
                                                         that has a successor
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from approver.api_keys import repository
from approver.api_keys.format import generate_key
from approver.api_keys.records import ApiKeyRecord, KeySource, KeyState
from approver.api_keys.scope import ApiKeyScope
from approver.api_keys.secret_folder import SecretFolderKeys
from approver.store import Store
from bootstrap_token import AuditEvent, AuditSink

#: Default grace period of a rotation: the old key keeps working this long (seconds).
DEFAULT_ROTATION_GRACE_SECONDS = 24 * 60 * 60
#: Longest grace period a rotation accepts (seconds): 30 days.
MAX_ROTATION_GRACE_SECONDS = 30 * 24 * 60 * 60


class ApiKeyAdminError(Exception):
    """Base class: an admin action on a key cannot be done. ``code`` is the error code."""

    code = "api_key_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiKeyNotFound(ApiKeyAdminError):
    code = "api_key_not_found"


class ApiKeyNotManaged(ApiKeyAdminError):
    code = "api_key_not_managed"


class ApiKeyStateConflict(ApiKeyAdminError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: its record and the full key string, shown once. ``repr`` hides it."""

    record: ApiKeyRecord
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation's result: the new key (shown once) and the old key, now ``rotating``."""

    new: IssuedKey
    old: ApiKeyRecord


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoke's result: the record after it, and whether this call changed it."""

    record: ApiKeyRecord
    changed: bool


def _validate_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 128 or not name.isprintable():
        raise ValueError("name must be 1..128 printable characters")
    return name


class ApiKeyAdmin:
    """Admin actions on API keys.

    Args:
        engine: the approver's database.
        audit: where audit events go.
        clock: seconds since the epoch (``time.time``).
        folder: Secret-provisioned keys, listed (never shown) and refused by revoke/rotate.
        default_grace_seconds: a rotation's grace period when the caller gives none.
        store: the approver's store on ``engine``: each change's audit event is then also
            stored in its audit hash chain, in the change's transaction (the approver and the
            ``api-keys`` command line pass it; without it events are only emitted).
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        audit: AuditSink,
        clock: Callable[[], float],
        folder: SecretFolderKeys | None = None,
        default_grace_seconds: int = DEFAULT_ROTATION_GRACE_SECONDS,
        store: Store | None = None,
    ) -> None:
        self._engine = engine
        self._store = store
        self._audit = audit
        self._clock = clock
        self._folder = folder
        self._default_grace = default_grace_seconds

    def now(self) -> datetime:
        """The clock as an aware UTC datetime."""
        return datetime.fromtimestamp(self._clock(), UTC)

    async def create(
        self,
        *,
        name: str,
        actor: str,
        scope: ApiKeyScope | None = None,
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        """Create a key. The returned :class:`IssuedKey` holds the only copy of the full key.

        Args:
            name: 1..128 printable characters (not unique).
            actor: the administrator.
            scope: what the key may approve (default: anything).
            expires_at: aware datetime after which the key stops working; None: never.

        Raises:
            ValueError: bad name, or ``expires_at`` naive or not in the future.
            StoreUnavailable.
        """
        at = self.now()
        _check_expiry(expires_at, at)
        issued = _issue(
            name=_validate_name(name),
            actor=actor,
            scope=scope or ApiKeyScope(),
            at=at,
            expires_at=expires_at,
        )
        async with self._writing() as (conn, events):
            await repository.insert_key(conn, issued.record)
            events.append(_event("api_key.create", "created", actor=actor, record=issued.record))
        return issued

    async def list_keys(self, *, actor: str) -> list[ApiKeyRecord]:
        """Every key: database keys oldest first, then Secret-provisioned keys by name.

        Raises:
            StoreUnavailable.
        """
        if self._folder is not None:
            await self._folder.refresh(now=self._clock())
        async with repository.transaction(self._engine) as conn:
            stored = await repository.list_keys(conn)
        keys = stored + (self._folder.records() if self._folder is not None else [])
        self._audit.emit(
            AuditEvent(
                component="approver",
                event="api_key.list",
                decision="listed",
                reason="ok",
                actor=actor,
                message=f"count={len(keys)}",
            )
        )
        return keys

    async def revoke(self, *, key_id: str, actor: str) -> Revocation:
        """Revoke a key now. Revoking a revoked key changes nothing (``changed=False``); revoking
        a rotating key ends its grace period now.

        Raises:
            ApiKeyNotFound, ApiKeyNotManaged (a Secret-provisioned key), StoreUnavailable.
        """
        self._refuse_provisioned(key_id)
        at = self.now()
        async with self._writing() as (conn, events):
            changed = await repository.schedule_revocation(conn, key_id, at=at, by=actor)
            record = await repository.get_key(conn, key_id)
            if record is None:
                raise ApiKeyNotFound("no API key has this id")
            events.append(
                _event(
                    "api_key.revoke",
                    "revoked",
                    actor=actor,
                    record=record,
                    reason="ok" if changed else "already_revoked",
                )
            )
        return Revocation(record=record, changed=changed)

    async def rotate(
        self,
        *,
        key_id: str,
        actor: str,
        grace_seconds: int | None = None,
        expires_at: datetime | None = None,
    ) -> Rotation:
        """Create a successor key and revoke the old one after a grace period, atomically.

        The new key takes the old key's name and scope (with a fresh ``maxAgents`` counter) and,
        unless ``expires_at`` is given, the old key's lifetime (``expires_at - created_at``)
        counted from now. Both keys work during the grace period, so agents can be moved over
        without downtime.

        Args:
            key_id: the key to replace; must be ``active``.
            actor: the administrator.
            grace_seconds: how long the old key keeps working, 0..30 days (default
                ``default_grace_seconds``).
            expires_at: the new key's expiry (aware, future), overriding the inherited one.

        Raises:
            ApiKeyNotFound, ApiKeyNotManaged, ApiKeyStateConflict (``api_key_not_active``: the
            key is revoked or expired; ``api_key_already_rotated``: it has a successor), ValueError
            (grace out of bounds, bad ``expires_at``), StoreUnavailable.
        """
        self._refuse_provisioned(key_id)
        grace = self._default_grace if grace_seconds is None else grace_seconds
        if not 0 <= grace <= MAX_ROTATION_GRACE_SECONDS:
            raise ValueError(f"graceSeconds must be 0..{MAX_ROTATION_GRACE_SECONDS}")
        at = self.now()
        _check_expiry(expires_at, at)
        async with self._writing() as (conn, events):
            old = await repository.get_key(conn, key_id, for_update=True)
            if old is None:
                raise ApiKeyNotFound("no API key has this id")
            state = old.state(at)
            if state is KeyState.ROTATING:
                raise ApiKeyStateConflict(
                    "api_key_already_rotated", "this key was rotated already; rotate its successor"
                )
            if state is not KeyState.ACTIVE:
                raise ApiKeyStateConflict("api_key_not_active", f"this key is {state.value}")
            if expires_at is None and old.expires_at is not None:
                expires_at = at + (old.expires_at - old.created_at)
            issued = _issue(
                name=old.name, actor=actor, scope=old.scope, at=at, expires_at=expires_at
            )
            await repository.insert_key(conn, issued.record)
            revoke_at = at + timedelta(seconds=grace)
            await repository.schedule_revocation(
                conn, key_id, at=revoke_at, by=actor, replaced_by=issued.record.key_id
            )
            old = replace(
                old, revoke_at=revoke_at, revoked_by=actor, replaced_by=issued.record.key_id
            )
            events.append(
                _event(
                    "api_key.rotate",
                    "rotated",
                    actor=actor,
                    record=old,
                    message=f"new_key_id={issued.record.key_id} grace_seconds={grace}",
                )
            )
        return Rotation(new=issued, old=old)

    def _refuse_provisioned(self, key_id: str) -> None:
        if self._folder is not None and self._folder.get(key_id) is not None:
            raise ApiKeyNotManaged(
                "this key is provisioned from the mounted Secret; change the Secret instead"
            )

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[tuple[AsyncConnection, list[AuditEvent]]]:
        """A write transaction and the list its audit events go into: with a store, they are
        appended to its audit hash chain in the same transaction (stored if and only if the
        change is); after the commit each is emitted. Raises StoreUnavailable, StoreConflict."""
        events: list[AuditEvent] = []
        if self._store is None:
            async with repository.transaction(self._engine) as conn:
                yield conn, events
        else:
            async with self._store.transaction() as tx:
                yield tx.connection, events
                for event in events:
                    await tx.append_audit(event)
        for event in events:
            self._audit.emit(event)


def _event(
    event: str,
    decision: str,
    *,
    actor: str,
    record: ApiKeyRecord,
    reason: str = "ok",
    message: str | None = None,
) -> AuditEvent:
    """The audit event of one key change; names the key by id and name, never its secret."""
    detail = f"key_id={record.key_id} name={record.name!r}"
    return AuditEvent(
        component="approver",
        event=event,
        decision=decision,
        reason=reason,
        actor=actor,
        approval_method="api_key",
        message=f"{detail} {message}" if message else detail,
    )


def _check_expiry(expires_at: datetime | None, at: datetime) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise ValueError("expiresAt must carry a time zone")
    if expires_at <= at:
        raise ValueError("expiresAt must lie in the future")


def _issue(
    *, name: str, actor: str, scope: ApiKeyScope, at: datetime, expires_at: datetime | None
) -> IssuedKey:
    generated = generate_key()
    record = ApiKeyRecord(
        key_id=generated.key_id,
        name=name,
        secret_hash=generated.secret_hash,
        scope=scope,
        source=KeySource.API,
        created_at=at,
        created_by=actor,
        expires_at=expires_at.astimezone(UTC) if expires_at else None,
    )
    return IssuedKey(record=record, key=generated.key)
