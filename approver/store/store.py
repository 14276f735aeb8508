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
import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from approver.audit.chain import ChainedEvent
from approver.domain.records import AgentRecord, AgentStatus
from approver.store import sqlite_inline
from approver.store.errors import StoreUnavailable
from approver.store.fast import FastStatements
from approver.store.filters import AgentFilter, AuditFilter
from approver.store.health import DEFAULT_STALL_SECONDS, DatabaseHealth, DatabaseStalled
from approver.store.rows import (
    agent_from_row,
    chained_from_row,
)
from approver.store.tables import agents, audit_chain_head, audit_events
from approver.store.transaction import HeadCache, Transaction
from approver.store.translate import translated

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


class Store:
    """The approver's database. Build with :meth:`open`; call :meth:`close` once at the end.

    On SQLite, writes go through one connection (transactions queue in the pool, in order,
    instead of spinning in SQLite's busy handler) and reads through a pool of their own; on
    PostgreSQL both use one pool.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        reader: AsyncEngine | None = None,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
    ) -> None:
        self._engine = engine
        #: The hung-database watchdog (approver.store.health) the registration writes and
        #: ``/readyz`` go through.
        self.health = DatabaseHealth(self.ping, stall_seconds=stall_seconds)
        self._reader = reader or engine
        #: Told the seconds each committed transaction took (the metrics), if set.
        self.on_transaction: Callable[[float], None] | None = None
        self._closed = False
        self._head = HeadCache()
        self._fast = FastStatements(engine.dialect)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        pool_size: int = DEFAULT_POOL_SIZE,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
    ) -> Store:
        """Create the engine for ``url``; connects lazily, so a database that is down now makes
        requests fail with :class:`StoreUnavailable` rather than the start.

        Args:
            url: ``sqlite+aiosqlite:///path.db`` or ``postgresql+asyncpg://user@host/db``.
            timeout_seconds: connect, lock-wait and statement timeout, in seconds.
            pool_size: PostgreSQL connections per process (and SQLite readers).
            stall_seconds: seconds without progress that count as a hung database
                (:mod:`approver.store.health`).

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
                return cls(sqlite_engine(1, writer=True), stall_seconds=stall_seconds)
            return cls(
                sqlite_engine(1, writer=True),
                reader=sqlite_engine(pool_size, writer=False),
                stall_seconds=stall_seconds,
            )
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
            return cls(engine, stall_seconds=stall_seconds)
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
        self._refuse_while_hung()
        started = time.perf_counter()
        async with translated():
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
        if self.on_transaction is not None:
            self.on_transaction(time.perf_counter() - started)

    def _refuse_while_hung(self) -> None:
        """Raise :class:`DatabaseStalled` at once while the watchdog says the database hangs
        (approver.store.health): the admin API and the sweeper answer 503 instead of waiting
        out the timeout behind it."""
        if not self.health.ready:
            raise DatabaseStalled("database not answering")

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A reader connection (SQLite's read pool, PostgreSQL's pool); refused at once while
        the database hangs. Raises StoreUnavailable."""
        self._refuse_while_hung()
        async with translated(), self._reader.connect() as conn:
            yield conn

    def reading(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A reader connection for the statements of other modules (e.g. agent
        certificates), inside :func:`translated`: driver errors leave as
        :class:`StoreUnavailable`; refused at once while the database hangs."""
        return self._reading()

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        """The record with ``agent_id``, or None. Raises StoreUnavailable."""
        async with self._reading() as conn:
            row = (
                await conn.execute(sa.select(agents).where(agents.c.agent_id == agent_id))
            ).first()
        return agent_from_row(row._mapping) if row is not None else None

    async def get_agent_by_key(self, digest: str) -> AgentRecord | None:
        """The record whose per-agent key hashes to ``digest``, or None. Raises
        StoreUnavailable."""
        async with self._reading() as conn:
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
        if where.deployment_uid is not None:
            query = query.where(agents.c.owner_deployment_uid == where.deployment_uid)
        if where.deployment_name is not None:
            query = query.where(agents.c.owner_deployment_name == where.deployment_name)
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
        async with self._reading() as conn:
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
        async with self._reading() as conn:
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
        async with self._reading() as conn:
            row = (await conn.execute(query)).one()
        return int(row.seq), str(row.hash)

    async def pending_backlog(self) -> tuple[int, datetime | None]:
        """How many agents are pending, and when the oldest of them first registered (None:
        none pending). One aggregate query (the metrics' refresh).

        Raises:
            StoreUnavailable.
        """
        t = agents.c
        query = sa.select(sa.func.count(), sa.func.min(t.created_at)).where(
            t.status == AgentStatus.PENDING.value
        )
        async with self._reading() as conn:
            count, oldest = (await conn.execute(query)).one()
        return int(count), oldest

    async def jti_owner(self, jti: str) -> str | None:
        """The agent id that burnt ``jti``, or None. Raises StoreUnavailable."""
        async with self.transaction() as tx:
            return await tx.jti_owner(jti)

    async def ping(self) -> None:
        """Round-trip ``SELECT 1``. Raises StoreUnavailable."""
        async with translated(), self._reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def check_ready(self) -> None:
        """Readiness: :meth:`ping` under the hung-database watchdog, so it answers within
        about ``stall_seconds`` even when the database hangs.

        Raises:
            StoreUnavailable: the database did not answer (``DatabaseStalled`` while it hangs).
        """
        await self.health.check()

    async def migrate(self) -> None:
        """Upgrade the schema to the newest migration (Alembic ``upgrade head``), in one
        transaction; on PostgreSQL under an advisory lock, so replicas starting together take
        turns. Idempotent.

        Raises:
            StoreUnavailable: the database could not be reached.
        """
        async with translated(), self._engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            await conn.run_sync(_upgrade_head)
        # One probe under the watchdog: its latency sets the stall probe's confirm window
        # before the first load (approver.store.health); a failure here is the next
        # caller's to see.
        with contextlib.suppress(StoreUnavailable):
            await self.health.check()

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        if not self._closed:
            self._closed = True
            await self.health.close()
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
