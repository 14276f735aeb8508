"""Statements inside one :meth:`approver.store.Store.transaction`: reads, the hot path's writes
(prepared once, :mod:`approver.store.fast`), quota locks, and the audit chain's append.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from approver.audit.chain import ChainedEvent, link
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod, TokenUse
from approver.store.fast import FastStatement, FastStatements, driver_connection
from approver.store.reads import AGENT, AGENT_AND_OWNER, AGENT_AND_OWNER_LOCKED, AGENT_LOCKED
from approver.store.rows import (
    agent_from_row,
    agent_values,
    audit_values,
    fit_event,
    token_use_values,
)
from approver.store.tables import agents, audit_chain_head, audit_events, token_uses
from bootstrap_token import AuditEvent

log = logging.getLogger(__name__)


def chain_events(events: list[AuditEvent], head: tuple[int, str]) -> list[ChainedEvent]:
    """``events`` linked one after the other after ``head`` (seq, hash)."""
    links = []
    seq, prev = head
    for audit_event in events:
        item = link(audit_event, seq=seq + 1, prev_hash=prev)
        links.append(item)
        seq, prev = item.seq, item.hash
    return links


# The hot path's statements, built once: a statement built per call costs more in SQLAlchemy's
# coercions and cache-key generation (about 100 µs for a 28-column insert) than the database
# spends running it. Values go in as execution parameters.
_AGENT_BY_KEY = sa.select(agents).where(agents.c.api_key_hash == sa.bindparam("p_digest"))
_JTI_OWNER = sa.select(token_uses.c.agent_id).where(token_uses.c.jti == sa.bindparam("p_jti"))
_INSERT_TOKEN_USE = sa.insert(token_uses)
_CLAIM_JTI_PG = (
    pg_insert(token_uses).on_conflict_do_nothing(index_elements=["jti"]).returning(token_uses.c.jti)
)
_CLAIM_JTI_SQLITE = (
    sqlite_insert(token_uses)
    .on_conflict_do_nothing(index_elements=["jti"])
    .returning(token_uses.c.jti)
)
_INSERT_AGENT = sa.insert(agents)
_UPDATE_AGENT = sa.update(agents).where(agents.c.id == sa.bindparam("p_id"))
_HEAD = sa.select(audit_chain_head.c.seq, audit_chain_head.c.hash).where(audit_chain_head.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()
_ADVANCE_HEAD = (
    sa.update(audit_chain_head)
    .where(audit_chain_head.c.id == 1)
    .where(audit_chain_head.c.seq == sa.bindparam("p_old_seq"))
    .where(audit_chain_head.c.hash == sa.bindparam("p_old_hash"))
    .values(seq=sa.bindparam("p_seq"), hash=sa.bindparam("p_hash"))
)
_INSERT_AUDIT = sa.insert(audit_events)
_UPDATE_HEAD = (
    sa.update(audit_chain_head)
    .where(audit_chain_head.c.id == 1)
    .values(seq=sa.bindparam("p_seq"), hash=sa.bindparam("p_hash"))
)


class Transaction:
    """Statements inside one :meth:`Store.transaction`. Not for use after it ends."""

    def __init__(
        self,
        connection: AsyncConnection,
        *,
        lock_rows: bool,
        head: HeadCache | None = None,
        fast: FastStatements | None = None,
    ) -> None:
        self._conn = connection
        self._lock_rows = lock_rows
        self._fast = fast
        self._driver: Any = None
        self._cache = head or HeadCache()
        self._head: tuple[int, str] | None = None
        self._pending: list[AuditEvent] = []
        self._chained: list[ChainedEvent] = []

    async def _raw(self) -> Any:
        """The driver connection, inside this transaction. SQLAlchemy's asyncpg adapter sends
        ``BEGIN`` lazily, with its first statement: a write sent to the driver before that
        would run (and commit) on its own, so a transaction whose first statement is a fast
        write starts the transaction through SQLAlchemy first."""
        if self._driver is None:
            driver = await driver_connection(self._conn)
            if self._lock_rows and not driver.is_in_transaction():
                await self._conn.execute(sa.text("SELECT 1"))
            self._driver = driver
        return self._driver

    async def _fast_write(self, statement: FastStatement, values: dict[str, Any]) -> int:
        """Run a prepared write on the driver connection; the number of rows it touched."""
        if self._lock_rows:
            count: int = await statement.pg(await self._raw(), values, fetch=False)
            return count
        return statement.run(await self._raw(), values).rowcount

    @property
    def connection(self) -> AsyncConnection:
        """The transaction's SQLAlchemy connection, for statements of other modules (e.g. a
        step-3 verifier's claim); they commit or roll back with everything else."""
        return self._conn

    def _locking(self, query: sa.Select[Any], *, lock: bool, skip_locked: bool = False) -> Any:
        if lock and self._lock_rows:
            return query.with_for_update(skip_locked=skip_locked)
        return query

    async def get_agent(self, agent_id: str, *, lock: bool = False) -> AgentRecord | None:
        """The record with ``agent_id``, or None. ``lock``: hold the row until the transaction
        ends (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
        serialises writers)."""
        query = AGENT_LOCKED if lock and self._lock_rows else AGENT
        row = (await self._conn.execute(query, {"p_agent_id": agent_id})).first()
        return agent_from_row(row._mapping) if row is not None else None

    async def get_agent_by_key(self, digest: str) -> AgentRecord | None:
        """The record whose per-agent API key hashes to ``digest``, or None (unique index)."""
        row = (await self._conn.execute(_AGENT_BY_KEY, {"p_digest": digest})).first()
        return agent_from_row(row._mapping) if row is not None else None

    async def jti_owner(self, jti: str) -> str | None:
        """The agent id that burnt ``jti``, or None. Informs the answer only: the burn itself is
        :meth:`claim_jti`, which the database refuses for a taken ``jti``."""
        owner = (await self._conn.execute(_JTI_OWNER, {"p_jti": jti})).scalar_one_or_none()
        return str(owner) if owner is not None else None

    async def get_agent_and_jti_owner(
        self, agent_id: str, jti: str, *, lock: bool = False
    ) -> tuple[AgentRecord | None, str | None]:
        """:meth:`get_agent` and :meth:`jti_owner` in one statement (one round trip on the
        registration path): ``(record or None, owner agent id or None)``. Both are read in the
        statement's snapshot; on PostgreSQL a ``jti`` burnt by a transaction that committed
        while this one waited for the row lock is not seen here, and :meth:`claim_jti` says so
        (the caller runs the attempt again)."""
        locked = lock and self._lock_rows
        values = {"p_agent_id": agent_id, "p_jti": jti}
        m: Mapping[str, Any] | None
        # On the driver when that costs no round trip: always on SQLite (BEGIN IMMEDIATE is
        # already sent), on PostgreSQL once the transaction has begun (else SQLAlchemy's own
        # BEGIN comes with the statement, and :meth:`_raw` would add one).
        if self._fast is not None and (not self._lock_rows or self._driver is not None):
            read = self._fast.agent_and_owner_locked if locked else self._fast.agent_and_owner
            raw = await self._raw()
            m = await read.pg(raw, values) if self._lock_rows else read.run(raw, values)
        else:
            query = AGENT_AND_OWNER_LOCKED if locked else AGENT_AND_OWNER
            m = (await self._conn.execute(query, values)).one()._mapping
        if m is None:
            raise RuntimeError("an outer join from a one-row subquery returned no row")
        record = agent_from_row(m) if m["id"] is not None else None
        owner = m["jti_owner"]
        return record, str(owner) if owner is not None else None

    async def claim_jti(self, use: TokenUse) -> bool:
        """Burn ``use.jti`` unless it is burnt: one ``INSERT ... ON CONFLICT DO NOTHING``.

        Returns:
            True when this transaction burnt it; False when it was burnt already (by a
            committed transaction, or by a concurrent one that then committed: PostgreSQL makes
            the insert wait for it). Nothing else in the transaction is affected.
        """
        if self._fast is not None:
            values = token_use_values(use)
            if self._lock_rows:
                row = await self._fast.claim_jti.pg(await self._raw(), values, fetch=True)
                return row is not None
            return self._fast.claim_jti.run(await self._raw(), values).fetchone() is not None
        statement = _CLAIM_JTI_PG if self._lock_rows else _CLAIM_JTI_SQLITE
        result = await self._conn.execute(statement, token_use_values(use))
        return result.first() is not None

    async def burn_jti(self, use: TokenUse) -> None:
        """Record the first use of ``use.jti``: one INSERT on the primary key.

        Raises:
            StoreConflict: the ``jti`` is already burnt (by a committed transaction, or by a
                concurrent one that then committed). The whole transaction is rolled back.
        """
        await self._conn.execute(_INSERT_TOKEN_USE, token_use_values(use))

    async def insert_agent(self, record: AgentRecord) -> None:
        """Insert a new record. Raises StoreConflict when the agent id exists already."""
        if self._fast is not None:
            await self._fast_write(self._fast.insert_agent, agent_values(record))
            return
        await self._conn.execute(_INSERT_AGENT, agent_values(record))

    async def update_agent(self, record: AgentRecord) -> None:
        """Overwrite the mutable columns of the record with ``record.id``.

        Raises:
            LookupError: no record has that id (a caller bug: update what you read).
        """
        values = agent_values(record)
        for immutable in ("id", "agent_id", "created_at"):
            del values[immutable]
        values["p_id"] = record.id
        result = await self._conn.execute(_UPDATE_AGENT, values)
        if result.rowcount != 1:
            raise LookupError(f"no agent record with id {record.id}")

    async def delete_agent(self, record: AgentRecord) -> None:
        """Delete the record with ``record.id`` (burnt ``jti`` values and audit events stay)."""
        await self._conn.execute(sa.delete(agents).where(agents.c.id == record.id))

    async def lock_keys(self, keys: Sequence[int]) -> None:
        """Take PostgreSQL advisory transaction locks on ``keys`` (sorted, so two transactions
        never wait on each other crosswise); SQLite serialises writers already: no-op."""
        if not self._lock_rows:
            return
        for key in sorted(set(keys)):
            await self._conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    async def count_active_auto(
        self, *, namespace: str | None = None, owner_uid: str | None = None
    ) -> int:
        """Active agents approved automatically (any method but ``manual``) in ``namespace``
        and/or with controller ``owner_uid``."""
        query = (
            sa.select(sa.func.count())
            .select_from(agents)
            .where(agents.c.status == AgentStatus.ACTIVE.value)
            .where(agents.c.approval_method != ApprovalMethod.MANUAL.value)
        )
        if namespace is not None:
            query = query.where(agents.c.namespace == namespace)
        if owner_uid is not None:
            query = query.where(agents.c.owner_uid == owner_uid)
        return int((await self._conn.execute(query)).scalar_one())

    async def select_agents(
        self,
        *,
        statuses: Sequence[AgentStatus],
        namespace: str | None = None,
        owner_uid: str | None = None,
        deployment_uid: str | None = None,
        deployment_name: str | None = None,
        proven_owner_only: bool = False,
        pod_uid: str | None = None,
        pod_name: str | None = None,
        bound_only: bool = False,
        created_before: datetime | None = None,
        unexpired_only: bool = False,
        limit: int | None = None,
        lock: bool = False,
        skip_locked: bool = False,
    ) -> list[AgentRecord]:
        """Records by status and the given fields, ordered by agent id (the lock order).

        Args:
            deployment_uid, deployment_name: the owner's Deployment (by UID, or by name: pass
                ``namespace`` with a name, Deployment names are per namespace).
            proven_owner_only: only records whose owner was recorded from verified evidence
                (``owner_evidence`` set; :class:`~approver.domain.records.OwnerEvidence`).
            bound_only: only records with a pod name or a pod UID.
            created_before: only records created before this time.
            unexpired_only: only records without ``expired_at``.
            lock: lock the rows (PostgreSQL ``FOR UPDATE``); ``skip_locked``: skip rows another
                transaction holds (``SKIP LOCKED``: two sweepers never take the same row).
        """
        query = sa.select(agents).where(agents.c.status.in_([s.value for s in statuses]))
        if namespace is not None:
            query = query.where(agents.c.namespace == namespace)
        if owner_uid is not None:
            query = query.where(agents.c.owner_uid == owner_uid)
        if deployment_uid is not None:
            query = query.where(agents.c.owner_deployment_uid == deployment_uid)
        if deployment_name is not None:
            query = query.where(agents.c.owner_deployment_name == deployment_name)
        if proven_owner_only:
            query = query.where(agents.c.owner_evidence.is_not(None))
        if pod_uid is not None:
            query = query.where(agents.c.pod_uid == pod_uid)
        if pod_name is not None:
            query = query.where(agents.c.pod_name == pod_name)
        if bound_only:
            query = query.where(
                sa.or_(agents.c.pod_uid.is_not(None), agents.c.pod_name.is_not(None))
            )
        if created_before is not None:
            query = query.where(agents.c.created_at < created_before)
        if unexpired_only:
            query = query.where(agents.c.expired_at.is_(None))
        query = query.order_by(agents.c.agent_id)
        if limit is not None:
            query = query.limit(limit)
        query = self._locking(query, lock=lock, skip_locked=skip_locked)
        rows = (await self._conn.execute(query)).all()
        return [agent_from_row(row._mapping) for row in rows]

    async def append_audit(self, event: AuditEvent) -> AuditEvent:
        """Store ``event`` as a link of the hash chain (:mod:`approver.audit.chain`), in this
        transaction.

        The event is chained when the transaction is about to commit, together with every
        other event of the transaction: the chain head is locked (``UPDATE``/``SELECT ... FOR
        UPDATE`` of its row on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers
        anyway) only for those last statements, so replicas wait for each other's commits, not
        for each other's work. The lock dies with the transaction, and events of a transaction
        that rolls back never existed: the head moves only with a commit.

        Why a head row and not an advisory lock: the row carries the last ``seq`` and ``hash``
        itself, so reading the predecessor and locking it are one statement, no session state
        can leak through a pooled connection, and ``audit verify`` checks the head against the
        last event. The head this process committed last is tried first (:class:`HeadCache`):
        one conditional ``UPDATE`` then locks and moves it, when nobody else moved it meanwhile
        (always, with one replica); otherwise it is read ``FOR UPDATE`` and the events are
        chained after it.

        Returns:
            The event as it will be stored (strings cut to their columns' lengths).
        """
        fitted = fit_event(event)
        self._pending.append(fitted)
        return fitted

    @property
    def chained(self) -> list[ChainedEvent]:
        """The events this transaction stored, with ``seq`` and hashes (after it finished)."""
        return list(self._chained)

    async def _finish(self) -> None:
        """Chain and insert this transaction's audit events, and move the head (before the
        commit)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        cached = self._cache.value
        if cached is not None:
            links = chain_events(pending, cached)
            if await self._advance_head(cached, links[-1]):
                await self._insert_audits(links)
                self._finished(links)
                return
        query = _HEAD_LOCKED if self._lock_rows else _HEAD
        row = (await self._conn.execute(query)).one()
        links = chain_events(pending, (int(row.seq), str(row.hash)))
        await self._insert_audits(links)
        last = links[-1]
        if self._fast is not None:
            await self._fast_write(
                self._fast.set_head, {"p_id": 1, "seq": last.seq, "hash": last.hash}
            )
        else:
            await self._conn.execute(_UPDATE_HEAD, {"p_seq": last.seq, "p_hash": last.hash})
        self._finished(links)

    def _finished(self, links: list[ChainedEvent]) -> None:
        self._chained.extend(links)
        self._head = (links[-1].seq, links[-1].hash)

    async def _advance_head(self, cached: tuple[int, str], last: ChainedEvent) -> bool:
        """Move the head from ``cached`` to ``last`` if it still is ``cached``; True if so (the
        head row is then locked by this transaction)."""
        if self._fast is not None:
            params = {
                "p_id": 1,
                "p_old_seq": cached[0],
                "p_old_hash": cached[1],
                "seq": last.seq,
                "hash": last.hash,
            }
            return await self._fast_write(self._fast.advance_head, params) == 1
        result = await self._conn.execute(
            _ADVANCE_HEAD,
            {
                "p_old_seq": cached[0],
                "p_old_hash": cached[1],
                "p_seq": last.seq,
                "p_hash": last.hash,
            },
        )
        return result.rowcount == 1

    async def _insert_audits(self, links: list[ChainedEvent]) -> None:
        rows = [audit_values(link) for link in links]
        if self._fast is not None:
            statement = self._fast.insert_audit
            if self._lock_rows:
                await statement.pg_many(await self._raw(), rows)
            else:
                statement.run_many(await self._raw(), rows)
            return
        await self._conn.execute(_INSERT_AUDIT, rows)

    def _committed(self) -> None:
        """The transaction committed: its head is now the chain's."""
        if self._head is not None:
            self._cache.value = self._head


@dataclass
class HeadCache:
    """The chain head as this process last committed it: a hint, checked by the conditional
    update that uses it (a stale hint costs one extra statement, never a wrong link)."""

    value: tuple[int, str] | None = None
