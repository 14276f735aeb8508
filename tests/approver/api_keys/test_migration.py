"""Migration 0003 creates exactly the api_keys table of approver.api_keys.tables."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from approver.api_keys.tables import api_keys, api_keys_metadata
from tests.approver.api_keys.conftest import migration_module, run_migration


def test_revision_chain() -> None:
    """0003 follows 0002 (the agent-core revision)."""
    module = migration_module()
    assert (module.revision, module.down_revision) == ("0003", "0002")


async def test_schema_matches_the_tables_module(engine: AsyncEngine) -> None:
    """Alembic finds no difference between the migrated table and the metadata."""
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), api_keys_metadata
            )
        )
    assert diff == []


async def test_downgrade(engine: AsyncEngine) -> None:
    """downgrade() drops the table again."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: run_migration(sync, "downgrade"))
        tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    assert "api_keys" not in tables


async def test_constraints(engine: AsyncEngine) -> None:
    """The database refuses maxAgents 0 and a negative counter."""
    row = {
        "id": "a" * 16,
        "name": "k",
        "secret_hash": "0" * 64,
        "created_at": sa.func.now(),
    }
    for bad in ({"max_agents": 0}, {"approved_count": -1}):
        async with engine.connect() as conn:
            try:
                await conn.execute(sa.insert(api_keys).values(**row, **bad))
            except sa.exc.IntegrityError:
                await conn.rollback()
            else:  # pragma: no cover - the assertion below reports it
                raise AssertionError(f"{bad} was accepted")
