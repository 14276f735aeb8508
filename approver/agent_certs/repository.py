"""SQL for ``agent_certificates``: plain async functions over a SQLAlchemy ``AsyncConnection``
the caller owns (a :meth:`approver.store.Store.transaction`'s connection for writes, so an
issuance and its audit event commit together; a reader connection for lookups).

Database trouble leaves through the caller's :func:`approver.store.translated` block as
:class:`approver.store.StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from approver.agent_certs.records import CertificateRow, IssuedWith, RevokedReason
from approver.agent_certs.tables import agent_certificates as t
from approver.domain.records import AgentStatus
from approver.store.tables import agents


def _row(m: Any) -> CertificateRow:
    return CertificateRow(
        serial=m["serial"],
        agent_id=m["agent_id"],
        sha256=m["sha256"],
        issued_at=m["issued_at"],
        not_before=m["not_before"],
        not_after=m["not_after"],
        issued_with=IssuedWith(m["issued_with"]),
        issuer_sha256=m["issuer_sha256"],
        revoked_at=m["revoked_at"],
        revoked_reason=RevokedReason(m["revoked_reason"]) if m["revoked_reason"] else None,
        revoked_by=m["revoked_by"],
    )


async def insert(conn: AsyncConnection, row: CertificateRow) -> None:
    """Insert one issued certificate."""
    await conn.execute(
        sa.insert(t).values(
            serial=row.serial,
            agent_id=row.agent_id,
            sha256=row.sha256,
            issued_at=row.issued_at,
            not_before=row.not_before,
            not_after=row.not_after,
            issued_with=row.issued_with.value,
            issuer_sha256=row.issuer_sha256,
        )
    )


async def get(conn: AsyncConnection, serial: str, *, lock: bool = False) -> CertificateRow | None:
    """The certificate with ``serial`` (hex), or None; its row locked for the transaction with
    ``lock`` (``SELECT ... FOR UPDATE``, PostgreSQL; SQLite's writer lock serialises anyway)."""
    query = sa.select(t).where(t.c.serial == serial)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    found = (await conn.execute(query)).first()
    return _row(found._mapping) if found is not None else None


async def for_agent(
    conn: AsyncConnection, agent_id: str, *, live_at: datetime | None = None
) -> list[CertificateRow]:
    """The agent's certificates, oldest first; only those not revoked and not expired at
    ``live_at`` when given."""
    query = sa.select(t).where(t.c.agent_id == agent_id)
    if live_at is not None:
        query = query.where(t.c.revoked_at.is_(None), t.c.not_after > live_at)
    rows = (await conn.execute(query.order_by(t.c.issued_at, t.c.serial))).all()
    return [_row(r._mapping) for r in rows]


async def revoke(
    conn: AsyncConnection,
    serials: Sequence[str],
    *,
    at: datetime,
    reason: RevokedReason,
    by: str,
) -> int:
    """Mark the not yet revoked certificates among ``serials`` revoked; how many were."""
    if not serials:
        return 0
    result = await conn.execute(
        sa.update(t)
        .where(t.c.serial.in_(list(serials)), t.c.revoked_at.is_(None))
        .values(revoked_at=at, revoked_reason=reason.value, revoked_by=by)
    )
    return int(result.rowcount)


async def revoke_agent(
    conn: AsyncConnection, agent_id: str, *, at: datetime, reason: RevokedReason, by: str
) -> list[str]:
    """Revoke every not yet revoked, unexpired certificate of ``agent_id``; their serials."""
    result = await conn.execute(
        sa.update(t)
        .where(t.c.agent_id == agent_id, t.c.revoked_at.is_(None), t.c.not_after > at)
        .values(revoked_at=at, revoked_reason=reason.value, revoked_by=by)
        .returning(t.c.serial)
    )
    return sorted(str(serial) for (serial,) in result.all())


async def newest_issue(conn: AsyncConnection, agent_id: str) -> datetime | None:
    """When ``agent_id`` was last issued a certificate, or None."""
    value: datetime | None = (
        await conn.execute(sa.select(sa.func.max(t.c.issued_at)).where(t.c.agent_id == agent_id))
    ).scalar_one()
    if value is not None and value.tzinfo is None:  # SQLite's aggregate skips the type
        value = value.replace(tzinfo=UTC)
    return value


async def revocation_version(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """``(count, latest revoked_at)`` of the revoked rows: changes whenever a certificate is
    revoked by any path (lists built from the table are cached against it)."""
    count, latest = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.max(t.c.revoked_at)).where(
                t.c.revoked_at.is_not(None)
            )
        )
    ).one()
    return int(count), latest


async def purge_expired(conn: AsyncConnection, before: datetime) -> int:
    """Delete the rows whose certificate expired before ``before``; how many. An expired
    certificate fails every handshake, so its row no longer matters to anyone."""
    result = await conn.execute(sa.delete(t).where(t.c.not_after < before))
    return int(result.rowcount)


async def revoked_unexpired(
    conn: AsyncConnection, now: datetime, *, issuer_sha256: str | None = None
) -> list[tuple[str, datetime]]:
    """``(serial, revoked at)`` of every certificate not yet expired at ``now`` that no longer
    counts: revoked (or superseded), or whose agent is no longer ``active`` (its pod deleted,
    revoked or rejected: the agent's ``updated_at`` is the date) or gone (``now``). What a
    CRL lists (:func:`approver.domain.agent_certificates.build_crl`); only those the CA with
    ``issuer_sha256`` signed, when given."""
    query = (
        sa.select(t.c.serial, t.c.revoked_at, agents.c.status, agents.c.updated_at)
        .select_from(t.outerjoin(agents, agents.c.agent_id == t.c.agent_id))
        .where(
            t.c.not_after > now,
            sa.or_(
                t.c.revoked_at.is_not(None),
                agents.c.agent_id.is_(None),
                agents.c.status != AgentStatus.ACTIVE.value,
            ),
        )
        .order_by(t.c.serial)
    )
    if issuer_sha256 is not None:
        query = query.where(t.c.issuer_sha256 == issuer_sha256)
    out: list[tuple[str, datetime]] = []
    for serial, revoked_at, _status, updated_at in (await conn.execute(query)).all():
        out.append((serial, revoked_at or updated_at or now))
    return out
