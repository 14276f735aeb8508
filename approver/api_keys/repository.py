"""SQL for the ``api_keys`` table: plain async functions over a SQLAlchemy ``AsyncConnection``.

Every function takes the connection of a transaction the caller owns, so the registrar can look
a key up and claim an approval slot *inside its own registration transaction*, and the admin
service can rotate (insert the new key, schedule the old key's revocation) atomically.

:func:`claim_approval` is the race-safe half of ``maxAgents``: one conditional UPDATE,
``approved_count = approved_count + 1 WHERE id = :id AND approved_count < max_agents AND not
revoked AND not expired``. Two transactions claiming the last slot at once: on PostgreSQL (READ
COMMITTED) the second UPDATE waits for the first's row lock, then re-evaluates its WHERE on the
committed row and matches nothing (PostgreSQL documentation, "Transaction Isolation", 13.2.1);
on SQLite the write lock serialises them. Either way exactly one wins, and a rolled-back
registration gives its slot back with the rest of its transaction.

Database trouble leaves as :class:`approver.store.StoreUnavailable` (503) or
:class:`approver.store.StoreConflict`, never as a driver exception; see :func:`translated`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from approver.api_keys.reasons import ApiKeyReason
from approver.api_keys.records import ApiKeyRecord, KeySource
from approver.api_keys.scope import ApiKeyScope
from approver.api_keys.tables import api_keys
from approver.store import StoreConflict, StoreUnavailable

#: ``last_used_at`` is written at most this often per key by a mere authentication, so a retry
#: loop of many agents does not turn every registration into a write.
TOUCH_INTERVAL = timedelta(seconds=60)

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    OSError,
)


def _short(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    source = orig if orig is not None else error
    lines = str(source).strip().splitlines()
    return f"{type(source).__name__}: {lines[0] if lines else ''}"[:200]


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Map driver errors to :class:`StoreConflict` (a constraint) and :class:`StoreUnavailable`
    (anything that means "not now"); bugs (ProgrammingError, DataError) propagate."""
    try:
        yield
    except exc.IntegrityError as error:
        raise StoreConflict(f"constraint refused the write ({_short(error)})") from error
    except _UNAVAILABLE as error:
        raise StoreUnavailable(f"database unavailable ({_short(error)})") from error
    except exc.DBAPIError as error:
        if isinstance(error, exc.ProgrammingError | exc.DataError):
            raise
        raise StoreUnavailable(f"database unavailable ({_short(error)})") from error


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction on ``engine``: commits at the end of the block, rolls back if it raises.

    Raises:
        StoreUnavailable, StoreConflict.
    """
    async with translated(), engine.begin() as conn:
        yield conn


def _record(row: Row[Any]) -> ApiKeyRecord:
    m = row._mapping
    return ApiKeyRecord(
        key_id=m["id"],
        name=m["name"],
        secret_hash=m["secret_hash"],
        scope=ApiKeyScope(
            platforms=frozenset(m["platforms"] or ()),
            agent_id_pattern=m["agent_id_pattern"],
            max_agents=m["max_agents"],
        ),
        source=KeySource.API,
        created_at=m["created_at"],
        created_by=m["created_by"],
        expires_at=m["expires_at"],
        revoke_at=m["revoke_at"],
        revoked_by=m["revoked_by"],
        last_used_at=m["last_used_at"],
        approved_count=m["approved_count"],
        replaced_by=m["replaced_by"],
    )


async def insert_key(conn: AsyncConnection, record: ApiKeyRecord) -> None:
    """Insert a new key (``source`` must be ``api``).

    Raises:
        ValueError: a Secret-provisioned record (those live in files, not in the database).
        StoreConflict (through :func:`translated`): the id exists (80 random bits: practically
            never).
    """
    if record.source is not KeySource.API:
        raise ValueError("only API-created keys are stored in the database")
    await conn.execute(
        sa.insert(api_keys).values(
            id=record.key_id,
            name=record.name,
            secret_hash=record.secret_hash,
            platforms=sorted(record.scope.platforms) if record.scope.platforms else None,
            agent_id_pattern=record.scope.agent_id_pattern,
            max_agents=record.scope.max_agents,
            approved_count=record.approved_count,
            created_at=record.created_at,
            created_by=record.created_by,
            expires_at=record.expires_at,
            revoke_at=record.revoke_at,
            revoked_by=record.revoked_by,
            last_used_at=record.last_used_at,
            replaced_by=record.replaced_by,
        )
    )


async def get_key(
    conn: AsyncConnection, key_id: str, *, for_update: bool = False
) -> ApiKeyRecord | None:
    """The key with ``key_id``, or None. ``for_update``: lock the row until the transaction ends
    (PostgreSQL ``SELECT ... FOR UPDATE``; ignored on SQLite, whose writers are serialised)."""
    query = sa.select(api_keys).where(api_keys.c.id == key_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _record(row) if row is not None else None


async def list_keys(conn: AsyncConnection) -> list[ApiKeyRecord]:
    """Every stored key, oldest first."""
    query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    return [_record(row) for row in (await conn.execute(query)).all()]


async def schedule_revocation(
    conn: AsyncConnection,
    key_id: str,
    *,
    at: datetime,
    by: str,
    replaced_by: str | None = None,
) -> bool:
    """Make the key revoked from ``at`` on; an earlier ``revoke_at`` already set is kept.

    Args:
        key_id: the key.
        at: when revocation takes effect (now: immediate; later: a rotation's grace period).
        by: the actor, recorded as ``revoked_by``.
        replaced_by: the new key's id, for a rotation.

    Returns:
        True when a row changed (the key exists and was not already revoked by ``at``).
    """
    values: dict[str, Any] = {"revoke_at": at, "revoked_by": by}
    if replaced_by is not None:
        values["replaced_by"] = replaced_by
    result = await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id)
        .where(sa.or_(api_keys.c.revoke_at.is_(None), api_keys.c.revoke_at > at))
        .values(**values)
    )
    return result.rowcount == 1


async def touch(conn: AsyncConnection, key_id: str, *, at: datetime) -> None:
    """Set ``last_used_at = at`` unless it was set less than :data:`TOUCH_INTERVAL` before."""
    await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id)
        .where(
            sa.or_(
                api_keys.c.last_used_at.is_(None),
                api_keys.c.last_used_at < at - TOUCH_INTERVAL,
            )
        )
        .values(last_used_at=at)
    )


async def claim_approval(
    conn: AsyncConnection, key_id: str, *, at: datetime
) -> ApiKeyReason | None:
    """Count one approval against the key, race-safe; call it in the approval's transaction.

    One statement::

        UPDATE api_keys SET approved_count = approved_count + 1, last_used_at = :at
         WHERE id = :id
           AND (max_agents IS NULL OR approved_count < max_agents)
           AND (revoke_at IS NULL OR revoke_at > :at)
           AND (expires_at IS NULL OR expires_at > :at)

    so a key revoked, expired or filled up since :meth:`ApiKeyAuthenticator.authenticate` looked
    at it cannot approve. The caller must roll back (or not write the approval) when this
    returns a reason.

    Returns:
        None when the slot was claimed; else ``api_key_max_agents_reached``,
        ``api_key_revoked``, ``api_key_expired`` or ``api_key_unknown`` (deleted meanwhile).
    """
    result = await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id)
        .where(
            sa.or_(
                api_keys.c.max_agents.is_(None),
                api_keys.c.approved_count < api_keys.c.max_agents,
            )
        )
        .where(sa.or_(api_keys.c.revoke_at.is_(None), api_keys.c.revoke_at > at))
        .where(sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > at))
        .values(approved_count=api_keys.c.approved_count + 1, last_used_at=at)
    )
    if result.rowcount == 1:
        return None
    record = await get_key(conn, key_id)
    if record is None:
        return ApiKeyReason.UNKNOWN
    return record.unusable_reason(at) or ApiKeyReason.MAX_AGENTS_REACHED
