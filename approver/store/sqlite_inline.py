"""aiosqlite, with the statements that cannot wait run inline on the event loop.

aiosqlite runs every call on one worker thread per connection and hands the result back with
``call_soon_threadsafe``: a thread hop per statement and per fetch, about 200 µs of CPU each
on these machines (futex and self-pipe wake-ups), so a registration's nine statements cost more
than everything else it does. But most SQLite statements never wait: on a WAL database, reads
and the writes inside a transaction touch only the page cache (microseconds). Only two kinds
can block: ``BEGIN IMMEDIATE`` (waits for the write lock, up to ``busy_timeout``) and
``COMMIT`` (fsync, ``synchronous=FULL``).

So :class:`InlineConnection` keeps aiosqlite's worker thread for ``COMMIT`` (and connect, close,
rollback, pragmas), and runs every other statement and fetch directly. ``BEGIN IMMEDIATE`` is
first tried inline with ``busy_timeout`` 0, which succeeds at once whenever no other process
holds the write lock (the approver's own writes share one connection); only when the lock is
taken does it go to the worker thread and wait the configured ``busy_timeout`` there, off the
event loop. One thread hop per transaction instead of one per statement, with the same
durability and locking. The sqlite3
connection is shared between the loop thread and the worker thread, never at the same time:
each call is awaited before the next (SQLAlchemy's adapter holds a mutex per connection), and
Python's sqlite3 is built thread-safe ("serialized").
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

#: Statements that may wait (lock or fsync): these still go through the worker thread.
_MAY_WAIT = re.compile(r"\s*(BEGIN|COMMIT|END|ROLLBACK|PRAGMA|VACUUM)\b", re.IGNORECASE)


_BEGIN = re.compile(r"\s*BEGIN\b", re.IGNORECASE)


def _locked(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


class InlineCursor(aiosqlite.Cursor):
    """An aiosqlite cursor whose non-waiting calls run inline (module docstring)."""

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> InlineCursor:
        if _BEGIN.match(sql):
            await self._begin(sql)
        elif _MAY_WAIT.match(sql):
            await super().execute(sql, parameters)
        else:
            self._cursor.execute(sql, list(parameters) if parameters is not None else [])
        return self

    async def _begin(self, sql: str) -> None:
        """``BEGIN``: inline when the lock is free, else wait for it on the worker thread."""
        conn = self._conn
        busy_ms = conn._busy_ms if isinstance(conn, InlineConnection) else 0
        self._cursor.execute("PRAGMA busy_timeout = 0")
        try:
            try:
                self._cursor.execute(sql)
                return
            except sqlite3.OperationalError as error:
                if not _locked(error):
                    raise
            self._cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            await super().execute(sql)
        finally:
            self._cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> InlineCursor:
        if _MAY_WAIT.match(sql):
            await super().executemany(sql, parameters)
        else:
            self._cursor.executemany(sql, parameters)  # type: ignore[arg-type]  # sqlite3's own check
        return self

    async def fetchone(self) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._cursor.fetchone()
        return row

    async def fetchmany(self, size: int | None = None) -> Iterable[sqlite3.Row]:
        if size is None:
            return self._cursor.fetchmany()
        return self._cursor.fetchmany(size)

    async def fetchall(self) -> Iterable[sqlite3.Row]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection handing out :class:`InlineCursor` objects.

    Args:
        connector: opens the sqlite3 connection (on the worker thread).
        busy_timeout_ms: the ``busy_timeout`` the connection is configured with (restored
            after each inline ``BEGIN`` attempt).
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection], *, busy_timeout_ms: int):
        super().__init__(connector, iter_chunk_size=64)
        self._busy_ms = busy_timeout_ms

    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return InlineCursor(self, self._conn.cursor())

    @contextmanager
    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> aiosqlite.Cursor:
        cursor = InlineCursor(self, self._conn.cursor())
        return await cursor.execute(sql, parameters)


def connect(database: str, *, timeout_seconds: float) -> InlineConnection:
    """Like :func:`aiosqlite.connect` (await the result to open it)."""

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, timeout=timeout_seconds, check_same_thread=False)

    return InlineConnection(connector, busy_timeout_ms=int(timeout_seconds * 1000))
