"""The store on SQLite and on a real PostgreSQL: migrations, records, single use of a jti."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from approver.domain.records import AgentRecord, AgentStatus, ApprovalMethod, TokenUse
from approver.store import Store, StoreConflict, StoreUnavailable
from approver.store.store import ALEMBIC_INI, MIGRATIONS_DIR, _probe_sqlite
from approver.store.tables import metadata
from tests.approver.helpers import (
    AGENT_ID,
    NAMESPACE,
    NOW,
    POD_NAME,
    SECOND_AGENT_ID,
)

AT = datetime.fromtimestamp(NOW, UTC)
JTI = "Qm9vdHN0cmFwVG9rZW4xMjM"
KID = "k" * 43


def agent(agent_id: str = AGENT_ID, **changes: object) -> AgentRecord:
    record = AgentRecord(
        id=uuid.uuid4(),
        agent_id=agent_id,
        platform="kubernetes",
        region="default",
        capacity={"maxCpu": 100, "maxMemory": 128, "maxSessions": 100},
        metadata={"namespace": NAMESPACE, "kubernetes": True},
        status=AgentStatus.ACTIVE,
        approval_method=ApprovalMethod.NAMESPACE,
        approved_by="bootstrap-token",
        approved_at=AT,
        reason="bootstrap_token_accepted",
        jti=JTI,
        kid=KID,
        cluster="prod-eu-1",
        namespace=NAMESPACE,
        pod_name=POD_NAME,
        pod_uid=None,
        credential_hash="ab" * 32,
        created_at=AT,
        updated_at=AT,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def use(agent_id: str = AGENT_ID, jti: str = JTI) -> TokenUse:
    return TokenUse(
        jti=jti,
        agent_id=agent_id,
        kid=KID,
        namespace=NAMESPACE,
        used_at=AT,
        expires_at=AT + timedelta(hours=1, seconds=30),
    )


def head_revision() -> str:
    """The newest revision of the packaged migrations."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _table_of(diff: object) -> str | None:
    """The table name an Alembic autogenerate diff entry is about."""
    item = diff[0] if isinstance(diff, list) else diff
    assert isinstance(item, tuple)
    for part in item[1:]:
        table = getattr(part, "table", None)
        if table is not None and hasattr(table, "name"):
            return str(table.name)
        if isinstance(part, sa.Table):
            return part.name
        if isinstance(part, str) and part in metadata.tables:
            return part
    return None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestMigrations:
    async def test_migrate_is_idempotent(self, store: Store, database_url: str) -> None:
        """Migrating an up-to-date database again changes nothing and keeps the head revision."""
        await store.migrate()
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                version = (
                    await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                ).scalar_one()
        finally:
            await engine.dispose()
        assert version == head_revision()

    async def test_schema_matches_the_tables_module(self, store: Store, database_url: str) -> None:
        """The migrated schema is exactly approver.store.tables (Alembic finds no difference)."""
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                diff = await conn.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                    )
                )
        finally:
            await engine.dispose()
        # Tables of other modules (their own MetaData, later migrations) are theirs to check.
        assert [d for d in diff if _table_of(d) in metadata.tables] == []

    def test_new_sqlite_file_raced_into_wal_mode(self, tmp_path: Path) -> None:
        """Three connections opening a brand-new file at once all get it in WAL mode and write.

        Switching to WAL takes an exclusive lock that SQLite refuses at once (no busy wait)
        when connections of a new file race for it: before the probe retried, about one race
        in seven failed with "database is locked" (the flake of the test below)."""
        failures: list[BaseException] = []

        def replica(path: str) -> None:
            try:
                _probe_sqlite(path, 5.0)
                connection = sqlite3.connect(path, timeout=5.0, isolation_level=None)
                try:
                    assert connection.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
                    connection.execute("BEGIN IMMEDIATE")
                    connection.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                    connection.execute("COMMIT")
                finally:
                    connection.close()
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)

        for attempt in range(50):
            path = str(tmp_path / f"new-{attempt}.db")
            threads = [threading.Thread(target=replica, args=(path,)) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert failures == []

    async def test_replicas_migrating_together(self, database_url: str) -> None:
        """Two replicas starting at once both migrate successfully, one after the other."""
        first, second = Store.open(database_url), Store.open(database_url)
        try:
            await asyncio.gather(first.migrate(), second.migrate())
            assert await first.list_agents() == []
        finally:
            await first.close()
            await second.close()


class TestAgents:
    async def test_round_trip(self, store: Store) -> None:
        """A record reads back equal, its times timezone-aware UTC."""
        record = agent()
        async with store.transaction() as tx:
            await tx.insert_agent(record)
        loaded = await store.get_agent(AGENT_ID)
        assert loaded == record
        assert loaded is not None
        assert loaded.created_at.tzinfo is not None
        assert loaded.created_at.utcoffset() == timedelta(0)

    async def test_agent_id_is_unique(self, store: Store) -> None:
        """A second record with the same agent id is refused by the database."""
        async with store.transaction() as tx:
            await tx.insert_agent(agent())
        with pytest.raises(StoreConflict):
            async with store.transaction() as tx:
                await tx.insert_agent(agent())

    async def test_update(self, store: Store) -> None:
        """An update overwrites the mutable columns of the record with that id."""
        record = agent(status=AgentStatus.PENDING, approval_method=None, reason="expired")
        async with store.transaction() as tx:
            await tx.insert_agent(record)
        later = AT + timedelta(minutes=5)
        changed = replace(
            record,
            status=AgentStatus.REJECTED,
            reason="rejected_by_admin",
            approved_by="alice",
            updated_at=later,
        )
        async with store.transaction() as tx:
            await tx.update_agent(changed)
        assert await store.get_agent(AGENT_ID) == changed

    async def test_update_of_a_missing_record(self, store: Store) -> None:
        """Updating a record that does not exist is a caller bug, reported as LookupError."""
        with pytest.raises(LookupError):
            async with store.transaction() as tx:
                await tx.update_agent(agent())

    async def test_list_filters_by_status_oldest_first(self, store: Store) -> None:
        """Listing returns records oldest first, optionally only one status."""
        older = agent(SECOND_AGENT_ID, status=AgentStatus.PENDING, approval_method=None)
        newer = agent(created_at=AT + timedelta(seconds=1))
        async with store.transaction() as tx:
            await tx.insert_agent(newer)
            await tx.insert_agent(older)
        assert [a.agent_id for a in await store.list_agents()] == [SECOND_AGENT_ID, AGENT_ID]
        assert [a.agent_id for a in await store.list_agents(status=AgentStatus.PENDING)] == [
            SECOND_AGENT_ID
        ]
        assert await store.list_agents(status=AgentStatus.INACTIVE) == []


class TestTokenUses:
    async def test_burn_and_owner(self, store: Store) -> None:
        """A burnt jti names the agent that burnt it; an unknown jti names nobody."""
        async with store.transaction() as tx:
            await tx.burn_jti(use())
        assert await store.jti_owner(JTI) == AGENT_ID
        assert await store.jti_owner("unused-jti-0000000000") is None

    async def test_second_burn_is_refused(self, store: Store) -> None:
        """The database refuses a second use of a jti, even by the same agent."""
        async with store.transaction() as tx:
            await tx.burn_jti(use())
        with pytest.raises(StoreConflict):
            async with store.transaction() as tx:
                await tx.burn_jti(use(SECOND_AGENT_ID))
        assert await store.jti_owner(JTI) == AGENT_ID

    async def test_refused_burn_writes_nothing(self, store: Store) -> None:
        """A transaction whose burn is refused leaves no half-written agent behind."""
        async with store.transaction() as tx:
            await tx.burn_jti(use())

        async def insert_then_burn() -> None:
            async with store.transaction() as tx:
                await tx.insert_agent(agent(SECOND_AGENT_ID))
                await tx.burn_jti(use(SECOND_AGENT_ID))

        with pytest.raises(StoreConflict):
            await insert_then_burn()
        assert await store.get_agent(SECOND_AGENT_ID) is None

    async def test_concurrent_burns_one_wins(self, store: Store) -> None:
        """Two transactions burning the same jti at once: exactly one commits."""
        started = asyncio.Event()

        async def burn(agent_id: str) -> str:
            try:
                async with store.transaction() as tx:
                    await tx.burn_jti(use(agent_id))
                    started.set()
                    await asyncio.sleep(0.05)  # hold the transaction open while the other runs
                return "won"
            except StoreConflict:
                return "refused"

        results = await asyncio.gather(burn(AGENT_ID), burn(SECOND_AGENT_ID))
        assert sorted(results) == ["refused", "won"]
        winner = AGENT_ID if results[0] == "won" else SECOND_AGENT_ID
        assert await store.jti_owner(JTI) == winner


class TestUnavailable:
    async def test_sqlite_file_cannot_be_opened(self, tmp_path: Path) -> None:
        """An SQLite path in a missing directory is StoreUnavailable, not a driver error."""
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'approver.db'}")
        try:
            with pytest.raises(StoreUnavailable, match="unable to open database file"):
                await store.migrate()
            with pytest.raises(StoreUnavailable):
                await store.list_agents()
            with pytest.raises(StoreUnavailable):
                await store.ping()
        finally:
            await store.close()

    async def test_postgresql_port_closed(self) -> None:
        """A PostgreSQL that refuses connections is StoreUnavailable, without the password."""
        store = Store.open(
            f"postgresql+asyncpg://approver:s3cr3t@127.0.0.1:{closed_port()}/agents",
            timeout_seconds=2,
        )
        try:
            with pytest.raises(StoreUnavailable) as info:
                async with store.transaction() as tx:
                    await tx.get_agent(AGENT_ID)
            assert "s3cr3t" not in str(info.value)
            assert "s3cr3t" not in store.url
        finally:
            await store.close()

    async def test_sqlite_locked_past_the_timeout(self, tmp_path: Path) -> None:
        """A writer that holds SQLite's lock past busy_timeout makes the other StoreUnavailable."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}"
        holder, waiter = Store.open(url), Store.open(url, timeout_seconds=0.2)
        try:
            await holder.migrate()
            async with holder.transaction():
                with pytest.raises(StoreUnavailable, match="locked"):
                    async with waiter.transaction() as tx:
                        await tx.get_agent(AGENT_ID)
        finally:
            await holder.close()
            await waiter.close()

    def test_unsupported_driver(self) -> None:
        """Only the async drivers aiosqlite and asyncpg are accepted."""
        with pytest.raises(ValueError, match="sqlite\\+aiosqlite"):
            Store.open("postgresql+psycopg2://approver@db/agents")
