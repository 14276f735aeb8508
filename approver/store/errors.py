"""Store errors: the only exceptions the store lets out for database trouble.

Exception tree::

    StoreError
    ├── StoreUnavailable    database unreachable, locked past busy_timeout, timed out, refused
    │                       the connection: nothing was written; the HTTP layer answers
    │                       503 with Retry-After (docs/design.md, "Failure semantics")
    └── StoreConflict       a unique constraint refused a write (a jti burnt by another
                            transaction, an agent id inserted concurrently): the transaction
                            was rolled back; the caller reads again and decides again

Messages name the failure class and the driver's short text; never a DSN, a password or a
statement's parameters (the engine runs with ``hide_parameters=True``).
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of store failures."""


class StoreUnavailable(StoreError):
    """The database cannot be used right now; retry later. Nothing was written."""


class StoreConflict(StoreError):
    """A unique constraint refused a write; the transaction was rolled back."""
