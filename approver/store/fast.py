"""The hot path's writes, straight on the driver connection (sqlite3 or asyncpg).

Under load a registration is CPU-bound, and SQLAlchemy's per-statement machinery (execution
context, parameter processing, result setup: about 60-100 µs for a 28-column insert on these
machines) costs several times what the driver spends sending the statement. The hot path's
four writes (burn a ``jti``, insert an agent, append an audit event, move the chain head) and
its one read (the agent's record and the ``jti``'s owner) therefore run as prepared SQL on the
transaction's own driver connection: same transaction, the statements SQLAlchemy would send,
values converted by the columns' own SQLAlchemy bind and result processors for the dialect (so
a ``UTCDateTime``, a ``Uuid`` or a ``JSON`` column stores and reads exactly what SQLAlchemy
would). Every other read stays on SQLAlchemy.

Driver errors are re-raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``, ...), so
the store's error translation (:class:`StoreConflict`, :class:`StoreUnavailable`) is unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Dialect

from approver.store.reads import AGENT_AND_OWNER, AGENT_AND_OWNER_LOCKED
from approver.store.tables import agents, audit_chain_head, audit_events, token_uses

Processor = Callable[[Any], Any] | None


class FastStatement:
    """An INSERT or UPDATE built once for a dialect, with the columns' bind processors.

    Args:
        sql: the statement with ``{}`` where each placeholder goes (``?`` on SQLite, ``$n`` on
            PostgreSQL).
        columns: for each placeholder, in order: the parameter name and the column whose type
            converts its value.
        dialect: the engine's dialect.
    """

    def __init__(self, sql: str, columns: Sequence[tuple[str, sa.Column[Any]]], dialect: Dialect):
        if dialect.name == "sqlite":
            marks = ["?"] * len(columns)
        else:
            marks = [f"${n}" for n in range(1, len(columns) + 1)]
        self.sql = sql.format(*marks)
        # dialect_impl: the type as this dialect runs it (a DateTime becomes SQLite's DATETIME,
        # which formats the string SQLAlchemy stores); what SQLAlchemy itself applies.
        self._params: list[tuple[str, Processor]] = [
            (name, column.type.dialect_impl(dialect).bind_processor(dialect))
            for name, column in columns
        ]

    def parameters(self, values: Mapping[str, Any]) -> list[Any]:
        """Positional, converted parameters from ``values`` (by parameter name)."""
        return [
            process(values[name]) if process is not None else values[name]
            for name, process in self._params
        ]

    async def pg(self, connection: Any, values: Mapping[str, Any], *, fetch: bool) -> Any:
        """Execute on an asyncpg connection (inside the caller's transaction): the first row
        when ``fetch``, else the number of rows the statement touched.

        Raises:
            ``sqlalchemy.exc.DBAPIError`` subclasses, as SQLAlchemy would have raised them.
        """
        try:
            if fetch:
                return await connection.fetchrow(self.sql, *self.parameters(values))
            status: str = await connection.execute(self.sql, *self.parameters(values))
        except asyncpg.PostgresError as error:
            raise _pg_error(self.sql, error) from error
        except asyncpg.InterfaceError as error:
            raise exc.InterfaceError(self.sql, None, error) from error
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def pg_many(self, connection: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row on an asyncpg connection, pipelined (``executemany``)."""
        try:
            await connection.executemany(self.sql, [self.parameters(v) for v in rows])
        except asyncpg.PostgresError as error:
            raise _pg_error(self.sql, error) from error
        except asyncpg.InterfaceError as error:
            raise exc.InterfaceError(self.sql, None, error) from error

    def run_many(self, connection: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row on a sqlite3 connection."""
        try:
            connection.executemany(self.sql, [self.parameters(v) for v in rows])
        except sqlite3.IntegrityError as error:
            raise exc.IntegrityError(self.sql, None, error) from error
        except sqlite3.OperationalError as error:
            raise exc.OperationalError(self.sql, None, error) from error

    def run(self, connection: sqlite3.Connection, values: Mapping[str, Any]) -> sqlite3.Cursor:
        """Execute on a sqlite3 connection (inside the caller's transaction).

        Raises:
            sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, or another
            ``sqlalchemy.exc.DBAPIError``: as SQLAlchemy would have raised them.
        """
        try:
            return connection.execute(self.sql, self.parameters(values))
        except sqlite3.IntegrityError as error:
            raise exc.IntegrityError(self.sql, None, error) from error
        except sqlite3.OperationalError as error:
            raise exc.OperationalError(self.sql, None, error) from error
        except sqlite3.DatabaseError as error:
            raise exc.DatabaseError(self.sql, None, error) from error


def insert(table: sa.Table, dialect: Dialect, *, suffix: str = "") -> FastStatement:
    """``INSERT INTO table (every column) VALUES (?, ...)`` plus ``suffix`` (e.g. an ``ON
    CONFLICT`` clause); parameters by column name."""
    columns = list(table.columns)
    names = ", ".join(c.name for c in columns)
    marks = ", ".join("{}" for _ in columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}){suffix}"  # noqa: S608 - schema names
    return FastStatement(sql, [(c.name, c) for c in columns], dialect)


def update(
    table: sa.Table,
    dialect: Dialect,
    *,
    set_columns: Sequence[str],
    where: Sequence[tuple[str, str]],
) -> FastStatement:
    """``UPDATE table SET col = ? ... WHERE col = ? AND ...``; ``where`` pairs are (column,
    parameter name); SET parameters are named after their columns."""
    cols = table.c
    sets = ", ".join(f"{name} = {{}}" for name in set_columns)
    conds = " AND ".join(f"{column} = {{}}" for column, _ in where)
    sql = f"UPDATE {table.name} SET {sets} WHERE {conds}"  # noqa: S608 - names from the schema
    params = [(name, cols[name]) for name in set_columns] + [
        (param, cols[column]) for column, param in where
    ]
    return FastStatement(sql, params, dialect)


class FastRead:
    """A SELECT built once for a dialect, run on the driver connection, its values converted by
    the result processors SQLAlchemy itself would apply (a ``Uuid``, a ``UTCDateTime`` or a
    ``JSON`` column reads back exactly as through SQLAlchemy).

    Args:
        query: the SELECT; its bound parameters are named (``sa.bindparam``) and every one is
            given to :meth:`pg` and :meth:`run` by that name.
        dialect: the engine's dialect.
    """

    def __init__(self, query: sa.Select[Any], dialect: Dialect) -> None:
        compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        self.sql = str(compiled)
        self._names = list(compiled.positiontup or [])
        self._binds = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in self._names
        ]
        self._columns: list[tuple[str, Processor]] = [
            (str(column.key), column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in query.selected_columns
        ]

    def _parameters(self, values: Mapping[str, Any]) -> list[Any]:
        return [
            process(values[name]) if process is not None else values[name]
            for name, process in self._binds
        ]

    def _row(self, row: Sequence[Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {
            name: process(value) if process is not None else value
            for (name, process), value in zip(self._columns, row, strict=True)
        }

    async def pg(self, connection: Any, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row on an asyncpg connection, by column name, or None.

        Raises:
            ``sqlalchemy.exc.DBAPIError`` subclasses, as SQLAlchemy would have raised them.
        """
        try:
            row = await connection.fetchrow(self.sql, *self._parameters(values))
        except asyncpg.PostgresError as error:
            raise _pg_error(self.sql, error) from error
        except asyncpg.InterfaceError as error:
            raise exc.InterfaceError(self.sql, None, error) from error
        return self._row(tuple(row) if row is not None else None)

    def run(
        self, connection: sqlite3.Connection, values: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The first row on a sqlite3 connection, by column name, or None.

        Raises:
            sqlalchemy.exc.OperationalError, or another ``sqlalchemy.exc.DBAPIError``.
        """
        try:
            row = connection.execute(self.sql, self._parameters(values)).fetchone()
        except sqlite3.OperationalError as error:
            raise exc.OperationalError(self.sql, None, error) from error
        except sqlite3.DatabaseError as error:
            raise exc.DatabaseError(self.sql, None, error) from error
        return self._row(row)


class FastStatements:
    """The hot path's statements, built once per engine (module docstring)."""

    def __init__(self, dialect: Dialect) -> None:
        self.agent_and_owner = FastRead(AGENT_AND_OWNER, dialect)
        self.agent_and_owner_locked = FastRead(AGENT_AND_OWNER_LOCKED, dialect)

        self.insert_agent = insert(agents, dialect)
        self.claim_jti = insert(
            token_uses, dialect, suffix=" ON CONFLICT (jti) DO NOTHING RETURNING jti"
        )
        self.insert_audit = insert(audit_events, dialect)
        self.advance_head = update(
            audit_chain_head,
            dialect,
            set_columns=("seq", "hash"),
            where=(("id", "p_id"), ("seq", "p_old_seq"), ("hash", "p_old_hash")),
        )
        self.set_head = update(
            audit_chain_head, dialect, set_columns=("seq", "hash"), where=(("id", "p_id"),)
        )


async def driver_connection(connection: Any) -> Any:
    """The driver connection under a SQLAlchemy ``AsyncConnection``: the sqlite3 connection
    (aiosqlite's ``_conn``) or the asyncpg connection."""
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    return driver._conn if connection.dialect.name == "sqlite" else driver


#: SQLSTATE classes and codes, PostgreSQL documentation, "PostgreSQL Error Codes" (Appendix A).
_INTEGRITY_CLASS = "23"
_DATA_CLASS = "22"
_PROGRAMMING_CLASSES = ("42", "0A")


def _pg_error(sql: str, error: Exception) -> exc.DBAPIError:
    state = str(getattr(error, "sqlstate", "") or "")
    if state.startswith(_INTEGRITY_CLASS):
        return exc.IntegrityError(sql, None, error)
    if state.startswith(_DATA_CLASS):
        return exc.DataError(sql, None, error)
    if state.startswith(_PROGRAMMING_CLASSES):
        return exc.ProgrammingError(sql, None, error)
    return exc.OperationalError(sql, None, error)
