"""The agent store: SQLAlchemy 2 async Core on SQLite (aiosqlite) or PostgreSQL (asyncpg).

* Every registration decision runs in one :meth:`Store.transaction`: read the view, decide,
  write, commit. The answer is given only after the commit, so an acknowledged approval is
  durable (DESIGN, "Failure semantics").
* SQLite: WAL (readers do not block the writer), ``busy_timeout`` (a writer waits for the lock
  instead of failing at once), ``synchronous=FULL`` (a committed approval survives power loss)
  and ``BEGIN IMMEDIATE`` (a transaction takes the write lock up front, so two of them can never
  both read and then fail to upgrade; SQLAlchemy's "Serializable isolation / Savepoints /
  Transactional DDL" recipe for pysqlite/aiosqlite).
* PostgreSQL: READ COMMITTED; the agent row is read ``FOR UPDATE`` so an admin decision and a
  registration retry of the same agent serialise; a concurrent burn of the same ``jti`` blocks
  on the primary key until the first transaction ends, then fails (:class:`StoreConflict`).
* Database trouble leaves as :class:`StoreUnavailable` (503) or :class:`StoreConflict` (decide
  again), never as a driver exception.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from approver.records import AgentRecord, AgentStatus, ApprovalMethod, TokenUse
from approver.store.errors import StoreConflict, StoreUnavailable
from approver.store.tables import agents, token_uses

log = logging.getLogger(__name__)

#: Where the packaged Alembic environment lives (package data, see pyproject.toml).
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"

#: Seconds to wait for a connection, a lock or a statement before answering 503.
DEFAULT_TIMEOUT_SECONDS = 5.0

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
    except _UNAVAILABLE as error:
        raise StoreUnavailable(f"database unavailable ({_short(error)})") from error
    except exc.DBAPIError as error:
        if isinstance(error, exc.ProgrammingError | exc.DataError):
            raise
        # asyncpg's generic Error (database missing, role missing, server shutting down).
        raise StoreUnavailable(f"database unavailable ({_short(error)})") from error


def _record(row: Row[Any]) -> AgentRecord:
    m = row._mapping
    return AgentRecord(
        id=m["id"],
        agent_id=m["agent_id"],
        platform=m["platform"],
        region=m["region"],
        capacity=m["capacity"],
        metadata=m["metadata"],
        status=AgentStatus(m["status"]),
        approval_method=ApprovalMethod(m["approval_method"]) if m["approval_method"] else None,
        approved_by=m["approved_by"],
        approved_at=m["approved_at"],
        reason=m["reason"],
        jti=m["jti"],
        kid=m["kid"],
        cluster=m["cluster"],
        namespace=m["namespace"],
        pod_name=m["pod_name"],
        pod_uid=m["pod_uid"],
        credential_hash=m["credential_hash"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _values(record: AgentRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "agent_id": record.agent_id,
        "platform": record.platform,
        "region": record.region,
        "capacity": record.capacity,
        "metadata": record.metadata,
        "status": record.status.value,
        "approval_method": record.approval_method.value if record.approval_method else None,
        "approved_by": record.approved_by,
        "approved_at": record.approved_at,
        "reason": record.reason,
        "jti": record.jti,
        "kid": record.kid,
        "cluster": record.cluster,
        "namespace": record.namespace,
        "pod_name": record.pod_name,
        "pod_uid": record.pod_uid,
        "credential_hash": record.credential_hash,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


class Transaction:
    """Statements inside one :meth:`Store.transaction`. Not for use after it ends."""

    def __init__(self, connection: AsyncConnection, *, lock_rows: bool) -> None:
        self._conn = connection
        self._lock_rows = lock_rows

    async def get_agent(self, agent_id: str, *, lock: bool = False) -> AgentRecord | None:
        """The record with ``agent_id``, or None. ``lock``: hold the row until the transaction
        ends (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
        serialises writers)."""
        query = sa.select(agents).where(agents.c.agent_id == agent_id)
        if lock and self._lock_rows:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return _record(row) if row is not None else None

    async def jti_owner(self, jti: str) -> str | None:
        """The agent id that burnt ``jti``, or None. Informs the answer only: the burn itself is
        :meth:`burn_jti`, which the database refuses for a taken ``jti``."""
        query = sa.select(token_uses.c.agent_id).where(token_uses.c.jti == jti)
        owner = (await self._conn.execute(query)).scalar_one_or_none()
        return str(owner) if owner is not None else None

    async def burn_jti(self, use: TokenUse) -> None:
        """Record the first use of ``use.jti``: one INSERT on the primary key.

        Raises:
            StoreConflict: the ``jti`` is already burnt (by a committed transaction, or by a
                concurrent one that then committed). The whole transaction is rolled back.
        """
        await self._conn.execute(
            sa.insert(token_uses).values(
                jti=use.jti,
                agent_id=use.agent_id,
                kid=use.kid,
                namespace=use.namespace,
                used_at=use.used_at,
                expires_at=use.expires_at,
            )
        )

    async def insert_agent(self, record: AgentRecord) -> None:
        """Insert a new record. Raises StoreConflict when the agent id exists already."""
        await self._conn.execute(sa.insert(agents).values(**_values(record)))

    async def update_agent(self, record: AgentRecord) -> None:
        """Overwrite the mutable columns of the record with ``record.id``.

        Raises:
            LookupError: no record has that id (a caller bug: update what you read).
        """
        values = _values(record)
        for immutable in ("id", "agent_id", "created_at"):
            del values[immutable]
        result = await self._conn.execute(
            sa.update(agents).where(agents.c.id == record.id).values(**values)
        )
        if result.rowcount != 1:
            raise LookupError(f"no agent record with id {record.id}")


class Store:
    """The approver's database. Build with :meth:`open`; call :meth:`close` once at the end."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._closed = False

    @classmethod
    def open(cls, url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Store:
        """Create the engine for ``url``; connects lazily, so a database that is down now makes
        requests fail with :class:`StoreUnavailable` rather than the start.

        Args:
            url: ``sqlite+aiosqlite:///path.db`` or ``postgresql+asyncpg://user@host/db``.
            timeout_seconds: connect, lock-wait and statement timeout, in seconds.

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

            engine = create_async_engine(parsed, hide_parameters=True, async_creator=connect)
            _configure_sqlite(engine, timeout_seconds=timeout_seconds)
        elif (backend, driver) == ("postgresql", "asyncpg"):
            engine = create_async_engine(
                parsed,
                hide_parameters=True,
                pool_pre_ping=True,
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
        else:
            raise ValueError(
                "databaseUrl must use sqlite+aiosqlite:// or postgresql+asyncpg://, "
                f"got {backend}+{driver}"
            )
        return cls(engine)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

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
        async with _translated(), self._engine.begin() as conn:
            yield Transaction(conn, lock_rows=self.dialect == "postgresql")

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        """The record with ``agent_id``, or None. Raises StoreUnavailable."""
        async with self.transaction() as tx:
            return await tx.get_agent(agent_id)

    async def list_agents(
        self, *, status: AgentStatus | None = None, limit: int = 1000
    ) -> list[AgentRecord]:
        """Records, oldest first, optionally only those with ``status``; at most ``limit``.

        Raises:
            StoreUnavailable.
        """
        query = sa.select(agents).order_by(agents.c.created_at, agents.c.agent_id).limit(limit)
        if status is not None:
            query = query.where(agents.c.status == status.value)
        async with _translated(), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def jti_owner(self, jti: str) -> str | None:
        """The agent id that burnt ``jti``, or None. Raises StoreUnavailable."""
        async with self.transaction() as tx:
            return await tx.jti_owner(jti)

    async def ping(self) -> None:
        """Round-trip ``SELECT 1``. Raises StoreUnavailable."""
        async with _translated(), self._engine.connect() as conn:
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
    return await aiosqlite.connect(database, timeout=timeout_seconds)


def _probe_sqlite(database: str, timeout_seconds: float) -> None:
    sqlite3.connect(database, timeout=timeout_seconds).close()


def _configure_sqlite(engine: AsyncEngine, *, timeout_seconds: float) -> None:
    """Pragmas on every new connection, and ``BEGIN IMMEDIATE`` for every transaction."""

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
        connection.exec_driver_sql("BEGIN IMMEDIATE")
