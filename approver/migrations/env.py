"""Alembic environment of the approver's schema.

Two ways in:

* programmatic (the service): :meth:`approver.store.Store.migrate` passes an open synchronous
  connection (from ``AsyncConnection.run_sync``) in ``config.attributes["connection"]``, already
  inside a transaction; migrations run on it and commit with it.
* command line (developers): ``alembic -c approver/alembic.ini -x url=<database url> upgrade head``;
  the URL may also come from ``AGENT_BOOTSTRAP_APPROVER_DATABASE_URL``. Async drivers are driven
  through ``asyncio.run``.

Logging is left alone: the service configures it, and Alembic's ``fileConfig`` would replace it.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from approver.store.tables import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE on SQLite
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "AGENT_BOOTSTRAP_APPROVER_DATABASE_URL"
    )
    if not url:
        raise SystemExit("pass -x url=<database url> or set AGENT_BOOTSTRAP_APPROVER_DATABASE_URL")
    return url


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async(_url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
