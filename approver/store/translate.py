"""Driver errors, translated: what the store lets out is :class:`StoreUnavailable` (the database
cannot serve this now: 503, or 202 on the registration path) or :class:`StoreConflict` (a
constraint or a retryable SQLSTATE: decide again), never a driver exception.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc

from approver.store.errors import StoreConflict, StoreUnavailable

log = logging.getLogger(__name__)

# Driver errors that mean "the database cannot serve this now". IntegrityError (a constraint) is
# a conflict instead; ProgrammingError/DataError are bugs and propagate.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    OSError,  # asyncpg raises ConnectionRefusedError, TimeoutError and friends unwrapped
)


#: PostgreSQL SQLSTATEs after which the transaction is simply run again: deadlock_detected (two
#: replicas' batches locking rows crosswise) and serialization_failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None)
    for source in (orig, getattr(orig, "__cause__", None)):
        state = getattr(source, "sqlstate", None) or getattr(source, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def short_reason(error: BaseException) -> str:
    """A one-line description of a driver error, without statement or parameters."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(orig if orig is not None else error).__name__}: {first}"[:200]


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Map driver exceptions to :class:`StoreConflict` / :class:`StoreUnavailable`."""
    try:
        yield
    except exc.IntegrityError as error:
        raise StoreConflict(f"constraint refused the write ({short_reason(error)})") from error
    except exc.DBAPIError as error:
        if sqlstate(error) in RETRYABLE_SQLSTATES:
            raise StoreConflict(f"transaction aborted, retry ({short_reason(error)})") from error
        if isinstance(error, UNAVAILABLE_ERRORS):
            raise StoreUnavailable(f"database unavailable ({short_reason(error)})") from error
        if isinstance(error, exc.ProgrammingError | exc.DataError):
            raise
        # asyncpg's generic Error (database missing, role missing, server shutting down).
        raise StoreUnavailable(f"database unavailable ({short_reason(error)})") from error
    except exc.TimeoutError as error:
        # SQLAlchemy's pool timeout: every connection of this process is in use, the database
        # itself may be fine (a pool too small for the work asked of it).
        raise StoreUnavailable(
            "connection pool exhausted: no connection of this process freed within the pool "
            "timeout (databasePoolSize too small for the load, or transactions held too long)"
        ) from error
    except UNAVAILABLE_ERRORS as error:
        raise StoreUnavailable(f"database unavailable ({short_reason(error)})") from error
