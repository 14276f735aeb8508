"""Fixtures of the API-key tests: a database holding the ``api_keys`` table, an admin service.

The table is created by running migration ``0003``'s ``upgrade()`` on its own (through
Alembic's ``Operations``), so these tests exercise the migration, and do not depend on the
revisions before it; the full chain runs in the store's migration tests.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from approver.api_keys import ApiKeyAdmin, ApiKeyAuthenticator
from tests.approver.helpers import Clock, RecordingSink

MIGRATION = Path(__file__).resolve().parents[3] / "approver/migrations/versions/0003_api_keys.py"


def migration_module() -> ModuleType:
    """Migration 0003, loaded from its file (the versions folder is not a package)."""
    spec = importlib.util.spec_from_file_location("migration_0003", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_migration(connection: Connection, step: str = "upgrade") -> None:
    """Run 0003's ``upgrade()`` (or ``downgrade()``) on a synchronous connection."""
    module = migration_module()
    context = MigrationContext.configure(connection)
    with Operations.context(context):
        getattr(module, step)()


def sqlite_engine(path: Path) -> AsyncEngine:
    return create_async_engine(
        f"sqlite+aiosqlite:///{path}", hide_parameters=True, connect_args={"timeout": 5.0}
    )


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on an empty SQLite file or PostgreSQL database, with ``api_keys`` migrated."""
    created = create_async_engine(database_url, hide_parameters=True, connect_args={"timeout": 5.0})
    async with created.begin() as conn:
        await conn.run_sync(run_migration)
    try:
        yield created
    finally:
        await created.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audit() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def admin(engine: AsyncEngine, audit: RecordingSink, clock: Clock) -> ApiKeyAdmin:
    return ApiKeyAdmin(engine=engine, audit=audit, clock=clock)


@pytest.fixture
def authenticator(engine: AsyncEngine) -> ApiKeyAuthenticator:
    return ApiKeyAuthenticator(engine=engine)
