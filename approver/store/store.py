"""The agent store: SQLAlchemy 2 async Core on SQLite (aiosqlite) or PostgreSQL (asyncpg).

* Every registration decision runs in one :meth:`Store.transaction`: read the view, decide,
  write, commit. The answer is given only after the commit, so an acknowledged approval is
  durable (docs/design.md, "Failure semantics").
* SQLite: WAL (readers do not block the writer), ``busy_timeout`` (a writer waits for the lock
  instead of failing at once), ``synchronous=FULL`` (a committed approval survives power loss)
  and ``BEGIN IMMEDIATE`` (a transaction takes the write lock up front, so two of them can never
  both read and then fail to upgrade; SQLAlchemy's "Serializable isolation / Savepoints /
  Transactional DDL" recipe for pysqlite/aiosqlite).
* PostgreSQL: READ COMMITTED; the agent row is read ``FOR UPDATE`` so an admin decision and a
  registration retry of the same agent serialise; a concurrent burn of the same ``jti`` blocks
  on the primary key until the first transaction ends, then inserts nothing
  (:meth:`Transaction.claim_jti` answers False).
* Lock order, the same in every transaction, so none waits on another crosswise: agent rows
  (by agent id), quota advisory locks (sorted), ``token_uses``/``agents`` inserts, and last the
  audit chain head (:meth:`Transaction.append_audit`), held only until the commit.
* Database trouble leaves as :class:`StoreUnavailable` (503) or :class:`StoreConflict` (decide
  again), never as a driver exception.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from approver.audit.chain import ChainedEvent, link
from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod, TokenUse
from approver.store import sqlite_inline
from approver.store.errors import StoreConflict, StoreUnavailable
from approver.store.fast import FastStatement, FastWrites, driver_connection
from approver.store.rows import (
    agent_from_row,
    agent_values,
    audit_values,
    chained_from_row,
    fit_event,
    token_use_values,
)
from approver.store.tables import agents, audit_chain_head, audit_events, token_uses
from bootstrap_token import AuditEvent

log = logging.getLogger(__name__)

#: Where the packaged Alembic environment lives (package data, see pyproject.toml).
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"

#: Seconds to wait for a connection, a lock or a statement before answering 503.
DEFAULT_TIMEOUT_SECONDS = 5.0
#: Pooled connections per process (PostgreSQL; SQLite readers).
DEFAULT_POOL_SIZE = 10

#: Key of the PostgreSQL advisory lock held while migrating, so replicas starting together
#: migrate one after the other. Any constant works; this is "agent-bootstrap" in ASCII, truncated.
_MIGRATION_LOCK_KEY = 0x6167656E74626F6F

# Driver errors that mean "the database cannot serve this now". IntegrityError (a constraint) is
# a conflict instead; ProgrammingError/DataError are bugs and propagate.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    OSError,  # asyncpg raises ConnectionRefusedError, TimeoutError and friends unwrapped
)


#: PostgreSQL SQLSTATEs after which the transaction is simply run again: deadlock_detected (two
#: replicas' batches locking rows crosswise) and serialization_failure.
_RETRYABLE = frozenset({"40P01", "40001"})


def _chain(events: list[AuditEvent], head: tuple[int, str]) -> list[ChainedEvent]:
    """``events`` linked one after the other after ``head`` (seq, hash)."""
    links = []
    seq, prev = head
    for audit_event in events:
        item = link(audit_event, seq=seq + 1, prev_hash=prev)
        links.append(item)
        seq, prev = item.seq, item.hash
    return links


def _sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None)
    for source in (orig, getattr(orig, "__cause__", None)):
        state = getattr(source, "sqlstate", None) or getattr(source, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _short(error: BaseException) -> str:
    """A one-line description of a driver error, without statement or parameters."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(orig if orig is not None else error).__name__}: {first}"[:200]


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """Map driver exceptions to :class:`StoreConflict` / :class:`StoreUnavailable`."""
    try:
        yield
    except exc.IntegrityError as error:
        raise StoreConflict(f"constraint refused the write ({_short(error)})") from error
    except exc.DBAPIError as error:
        if _sqlstate(error) in _RETRYABLE:
            raise StoreConflict(f"transaction aborted, retry ({_short(error)})") from error
        if isinstance(error, _UNAVAILABLE):
            raise StoreUnavailable(f"database unavailable ({_short(error)})") from error
        if isinstance(error, exc.ProgrammingError | exc.DataError):
            raise
        # asyncpg's generic Error (database missing, role missing, server shutting down).
        raise StoreUnavailable(f"database unavailable ({_short(error)})") from error
    except _UNAVAILABLE as error:
        raise StoreUnavailable(f"database unavailable ({_short(error)})") from error


@dataclass(frozen=True, slots=True)
class AgentFilter:
    """Which agents :meth:`Store.list_agents` returns (every set field must match).

    Attributes:
        status: one status.
        namespace: the recorded namespace (the cluster's word, see records).
        approval_method: how they were approved.
        owner_uid: the controller owner's UID.
        expired: True: only pending records marked expired; False: only unmarked ones.
    """

    status: AgentStatus | None = None
    namespace: str | None = None
    approval_method: ApprovalMethod | None = None
    owner_uid: str | None = None
    expired: bool | None = None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which stored audit events :meth:`Store.list_audit` returns (every set field must match;
    times are inclusive bounds)."""

    event: str | None = None
    agent_id: str | None = None
    actor: str | None = None
    reason: str | None = None
    security: bool | None = None
    since: datetime | None = None
    until: datetime | None = None


# The hot path's statements, built once: a statement built per call costs more in SQLAlchemy's
# coercions and cache-key generation (about 100 µs for a 28-column insert) than the database
# spends running it. Values go in as execution parameters.
_AGENT = sa.select(agents).where(agents.c.agent_id == sa.bindparam("p_agent_id"))
_AGENT_LOCKED = _AGENT.with_for_update()
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
        head: _HeadCache | None = None,
        fast: FastWrites | None = None,
    ) -> None:
        self._conn = connection
        self._lock_rows = lock_rows
        self._fast = fast
        self._driver: Any = None
        self._cache = head or _HeadCache()
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
        query = _AGENT_LOCKED if lock and self._lock_rows else _AGENT
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
        last event. The head this process committed last is tried first (:class:`_HeadCache`):
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
            links = _chain(pending, cached)
            if await self._advance_head(cached, links[-1]):
                await self._insert_audits(links)
                self._finished(links)
                return
        query = _HEAD_LOCKED if self._lock_rows else _HEAD
        row = (await self._conn.execute(query)).one()
        links = _chain(pending, (int(row.seq), str(row.hash)))
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
class _HeadCache:
    """The chain head as this process last committed it: a hint, checked by the conditional
    update that uses it (a stale hint costs one extra statement, never a wrong link)."""

    value: tuple[int, str] | None = None


class Store:
    """The approver's database. Build with :meth:`open`; call :meth:`close` once at the end.

    On SQLite, writes go through one connection (transactions queue in the pool, in order,
    instead of spinning in SQLite's busy handler) and reads through a pool of their own; on
    PostgreSQL both use one pool.
    """

    def __init__(self, engine: AsyncEngine, *, reader: AsyncEngine | None = None) -> None:
        self._engine = engine
        self._reader = reader or engine
        self._closed = False
        self._head = _HeadCache()
        self._fast = FastWrites(engine.dialect)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> Store:
        """Create the engine for ``url``; connects lazily, so a database that is down now makes
        requests fail with :class:`StoreUnavailable` rather than the start.

        Args:
            url: ``sqlite+aiosqlite:///path.db`` or ``postgresql+asyncpg://user@host/db``.
            timeout_seconds: connect, lock-wait and statement timeout, in seconds.
            pool_size: PostgreSQL connections per process (and SQLite readers).

        Raises:
            ValueError: the URL names another driver (only aiosqlite and asyncpg are async and
                supported).
        """
        parsed = sa.make_url(url)
        backend = parsed.get_backend_name()
        driver = parsed.get_driver_name()
        if (backend, driver) == ("sqlite", "aiosqlite"):
            database = parsed.database or ":memory:"

            async def connect() -> aiosqlite.Connection:
                return await _open_sqlite(database, timeout_seconds=timeout_seconds)

            def sqlite_engine(size: int, *, writer: bool) -> AsyncEngine:
                engine = create_async_engine(
                    parsed,
                    hide_parameters=True,
                    async_creator=connect,
                    pool_size=size,
                    max_overflow=0,
                    pool_timeout=timeout_seconds,
                    # Writes always go through engine.begin(), which commits or rolls back
                    # itself; the pool's extra ROLLBACK on return would be one more thread hop
                    # per transaction for nothing.
                    pool_reset_on_return=None if writer else "rollback",
                )
                _configure_sqlite(
                    engine,
                    timeout_seconds=timeout_seconds,
                    begin="BEGIN IMMEDIATE" if writer else "BEGIN",
                )
                return engine

            if database == ":memory:":
                return cls(sqlite_engine(1, writer=True))
            return cls(sqlite_engine(1, writer=True), reader=sqlite_engine(pool_size, writer=False))
        if (backend, driver) == ("postgresql", "asyncpg"):
            engine = create_async_engine(
                parsed,
                hide_parameters=True,
                pool_pre_ping=True,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=timeout_seconds,
                connect_args={
                    "timeout": timeout_seconds,
                    "command_timeout": timeout_seconds,
                    "server_settings": {
                        "lock_timeout": str(int(timeout_seconds * 1000)),
                        "application_name": "agent-bootstrap-approver",
                    },
                },
            )
            return cls(engine)
        raise ValueError(
            "databaseUrl must use sqlite+aiosqlite:// or postgresql+asyncpg://, "
            f"got {backend}+{driver}"
        )

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """The engine writes go through (for modules with tables of their own)."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL with any password masked, for logs."""
        return self._engine.url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One transaction: commits when the block ends, rolls back if it raises.

        Raises:
            StoreUnavailable: the database could not be reached, locked past the timeout, or
                failed to commit; nothing was written.
            StoreConflict: a unique constraint refused a write; nothing was written.
        """
        async with _translated():
            async with self._engine.begin() as conn:
                tx = Transaction(
                    conn,
                    lock_rows=self.dialect == "postgresql",
                    head=self._head,
                    fast=self._fast,
                )
                yield tx
                await tx._finish()
            tx._committed()

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        """The record with ``agent_id``, or None. Raises StoreUnavailable."""
        async with _translated(), self._reader.connect() as conn:
            row = (
                await conn.execute(sa.select(agents).where(agents.c.agent_id == agent_id))
            ).first()
        return agent_from_row(row._mapping) if row is not None else None

    async def get_agent_by_key(self, digest: str) -> AgentRecord | None:
        """The record whose per-agent key hashes to ``digest``, or None. Raises
        StoreUnavailable."""
        async with _translated(), self._reader.connect() as conn:
            row = (
                await conn.execute(sa.select(agents).where(agents.c.api_key_hash == digest))
            ).first()
        return agent_from_row(row._mapping) if row is not None else None

    async def list_agents(
        self,
        *,
        status: AgentStatus | None = None,
        where: AgentFilter | None = None,
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 1000,
    ) -> list[AgentRecord]:
        """Records, oldest first (``created_at``, then ``id``), matching ``where`` (and
        ``status``), after the keyset cursor ``after``; at most ``limit``.

        Raises:
            StoreUnavailable.
        """
        where = where or AgentFilter()
        query = sa.select(agents).order_by(agents.c.created_at, agents.c.id).limit(limit)
        status = status or where.status
        if status is not None:
            query = query.where(agents.c.status == status.value)
        if where.namespace is not None:
            query = query.where(agents.c.namespace == where.namespace)
        if where.approval_method is not None:
            query = query.where(agents.c.approval_method == where.approval_method.value)
        if where.owner_uid is not None:
            query = query.where(agents.c.owner_uid == where.owner_uid)
        if where.expired is True:
            query = query.where(agents.c.expired_at.is_not(None))
        elif where.expired is False:
            query = query.where(agents.c.expired_at.is_(None))
        if after is not None:
            created, ident = after
            query = query.where(
                sa.or_(
                    agents.c.created_at > created,
                    sa.and_(agents.c.created_at == created, agents.c.id > ident),
                )
            )
        async with _translated(), self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [agent_from_row(row._mapping) for row in rows]

    async def list_audit(
        self,
        *,
        where: AuditFilter | None = None,
        after: int | None = None,
        before: int | None = None,
        descending: bool = False,
        limit: int = 100,
    ) -> list[ChainedEvent]:
        """Stored audit events matching ``where``, by ``seq`` (ascending, or descending),
        with ``seq > after`` and ``seq < before``; at most ``limit``.

        Raises:
            StoreUnavailable.
        """
        where = where or AuditFilter()
        t = audit_events.c
        query = sa.select(audit_events)
        for column, value in (
            (t.event, where.event),
            (t.agent_id, where.agent_id),
            (t.actor, where.actor),
            (t.reason, where.reason),
            (t.security, where.security),
        ):
            if value is not None:
                query = query.where(column == value)
        if where.since is not None:
            query = query.where(t.time >= where.since)
        if where.until is not None:
            query = query.where(t.time <= where.until)
        if after is not None:
            query = query.where(t.seq > after)
        if before is not None:
            query = query.where(t.seq < before)
        query = query.order_by(t.seq.desc() if descending else t.seq).limit(limit)
        async with _translated(), self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [chained_from_row(row._mapping) for row in rows]

    async def iter_audit(self, *, batch: int = 1000) -> AsyncIterator[ChainedEvent]:
        """Every stored audit event in ``seq`` order, read in batches (for ``audit verify``).

        Raises:
            StoreUnavailable.
        """
        after = 0
        while True:
            page = await self.list_audit(after=after, limit=batch)
            for item in page:
                yield item
            if len(page) < batch:
                return
            after = page[-1].seq

    async def audit_head(self) -> tuple[int, str]:
        """The chain head ``(seq, hash)``. Raises StoreUnavailable."""
        query = sa.select(audit_chain_head.c.seq, audit_chain_head.c.hash).where(
            audit_chain_head.c.id == 1
        )
        async with _translated(), self._reader.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row.seq), str(row.hash)

    async def jti_owner(self, jti: str) -> str | None:
        """The agent id that burnt ``jti``, or None. Raises StoreUnavailable."""
        async with self.transaction() as tx:
            return await tx.jti_owner(jti)

    async def ping(self) -> None:
        """Round-trip ``SELECT 1``. Raises StoreUnavailable."""
        async with _translated(), self._reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def migrate(self) -> None:
        """Upgrade the schema to the newest migration (Alembic ``upgrade head``), in one
        transaction; on PostgreSQL under an advisory lock, so replicas starting together take
        turns. Idempotent.

        Raises:
            StoreUnavailable: the database could not be reached.
        """
        async with _translated(), self._engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            await conn.run_sync(_upgrade_head)

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._engine.dispose()
            if self._reader is not self._engine:
                await self._reader.dispose()


def _upgrade_head(connection: Connection) -> None:
    # Imported here: Alembic is only needed when migrating.
    from alembic import command
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def _open_sqlite(database: str, *, timeout_seconds: float) -> aiosqlite.Connection:
    """Open an aiosqlite connection, probing the file first in a worker thread.

    When aiosqlite's own connect fails it stops its worker thread without waiting for it
    (``Connection._connect``); the thread then reports to an event loop that may already be
    closed (a failed ``migrate`` at start), printing a stray traceback. The probe fails first,
    before aiosqlite starts a thread, with the same ``sqlite3.OperationalError``.
    """
    await asyncio.to_thread(_probe_sqlite, database, timeout_seconds)
    return await sqlite_inline.connect(database, timeout_seconds=timeout_seconds)


def _probe_sqlite(database: str, timeout_seconds: float) -> None:
    """Open the file once (in a worker thread) and put it in WAL mode, retrying while locked.

    Switching a database to WAL takes an exclusive lock, and SQLite answers ``database is
    locked`` at once, without waiting ``busy_timeout``, when two connections of a brand-new file
    race for it (each holding a shared lock: waiting could deadlock). Replicas starting together
    on a new file hit exactly that. The mode is stored in the file, so once one connection set
    it, every later ``PRAGMA journal_mode=WAL`` (see :func:`_configure_sqlite`) is a no-op.
    """
    connection = sqlite3.connect(database, timeout=timeout_seconds)
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)  # this is a worker thread, never the event loop
    finally:
        connection.close()


def _configure_sqlite(engine: AsyncEngine, *, timeout_seconds: float, begin: str) -> None:
    """Pragmas on every new connection, and ``begin`` for every transaction: ``BEGIN
    IMMEDIATE`` for the writer (the write lock up front), ``BEGIN`` for readers (a WAL
    snapshot that never blocks a writer)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, instead of the driver's implicit,
        # deferred BEGIN (which also commits before DDL, breaking transactional migrations).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout_seconds * 1000)}")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)
