"""Fixtures of the approver's tests: keys, databases (SQLite and a real PostgreSQL), stores.

PostgreSQL runs when ``AGENT_BOOTSTRAP_TEST_PG_DSN`` names a server, e.g.
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``. Each test gets a database of its own,
created on that server (``agent_bootstrap_t_<random>``) and dropped after the test, so tests
never see each other's rows and nothing is left behind. Without the variable those tests skip,
and say how to run them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import pytest
import sqlalchemy as sa

from approver.store import Store
from bootstrap_token import KeySet, SigningKey
from tests.approver.helpers import write_jwks

PG_DSN_ENV = "AGENT_BOOTSTRAP_TEST_PG_DSN"
PG_SKIP_REASON = (
    f"PostgreSQL not configured: set {PG_DSN_ENV}="
    "postgresql+asyncpg://postgres@127.0.0.1:5432/test to run this test on a real PostgreSQL"
)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """The webhook's Ed25519 signing key."""
    return SigningKey.generate()


@pytest.fixture(scope="session")
def key_set(signing_key: SigningKey) -> KeySet:
    """The approver's verification keys: the webhook's public key."""
    return KeySet([signing_key.public_key])


@pytest.fixture
def jwks_file(signing_key: SigningKey, tmp_path: Path) -> Path:
    """The webhook's public JWKS as a file, as mounted into the approver."""
    return write_jwks(signing_key, tmp_path / "jwks.json")


@pytest.fixture(scope="session")
def pg_server() -> sa.URL:
    """The PostgreSQL server of ``AGENT_BOOTSTRAP_TEST_PG_DSN``; skips the test when unset."""
    dsn = os.environ.get(PG_DSN_ENV)
    if not dsn:
        pytest.skip(PG_SKIP_REASON)
    url = sa.make_url(dsn)
    if url.get_backend_name() != "postgresql":
        pytest.fail(f"{PG_DSN_ENV} must be a postgresql+asyncpg:// URL")
    return url.set(drivername="postgresql+asyncpg")


@pytest.fixture
async def pg_url(pg_server: sa.URL) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test (SQLAlchemy URL); dropped afterwards."""
    name = f"agent_bootstrap_t_{secrets.token_hex(6)}"
    admin_dsn = pg_server.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_server.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: an SQLite file in ``tmp_path``, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store on :func:`database_url`, closed after the test."""
    opened = Store.open(database_url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated SQLite store (for tests about HTTP, not about the database)."""
    opened = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}")
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()
