"""Migration 0007 creates exactly the agent_certificates table of approver.agent_certs.tables,
on SQLite and PostgreSQL, and its constraints hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from approver.agent_certs.tables import agent_certificates, agent_certificates_metadata
from approver.store import Store

NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.fixture
async def migrated(database_url: str) -> AsyncIterator[Store]:
    store = Store.open(database_url)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def test_schema_matches_the_tables_module(migrated: Store) -> None:
    async with migrated.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}),
                agent_certificates_metadata,
            )
        )
    # compare_metadata sees the other tables as "removed"; what concerns this table must be
    # nothing.
    assert [d for d in diff if "agent_certificates" in repr(d)] == []
    assert any("ix_agents_api_key_hash" in repr(d) for d in diff)  # the comparison ran


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "serial": "1f",
        "agent_id": "agent-1",
        "sha256": "0" * 64,
        "issued_at": NOW,
        "not_before": NOW,
        "not_after": NOW,
        "issued_with": "api_key",
        "issuer_sha256": "1" * 64,
    }
    row.update(changes)
    return row


async def test_constraints(migrated: Store) -> None:
    """The database refuses an unknown issued_with or revoked_reason and a second row with the
    same serial; it takes a good row."""
    async with migrated.engine.begin() as conn:
        await conn.execute(sa.insert(agent_certificates).values(**_row()))
    for bad in (
        _row(serial="20", issued_with="password"),
        _row(serial="21", revoked_reason="bored"),
        _row(),
    ):
        async with migrated.engine.connect() as conn:
            with pytest.raises(sa.exc.IntegrityError):
                await conn.execute(sa.insert(agent_certificates).values(**bad))
            await conn.rollback()
