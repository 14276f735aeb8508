"""The approver's persistence: agent records and burnt bootstrap-token ``jti`` values.

* :mod:`approver.store.tables`: the schema (SQLAlchemy Core).
* :mod:`approver.store.store`: :class:`Store` and its :class:`Transaction`.
* :mod:`approver.store.errors`: :class:`StoreUnavailable` (503) and :class:`StoreConflict`.

Migrations live in ``approver/migrations`` (Alembic) and run with :meth:`Store.migrate`.
"""

from approver.store.errors import StoreConflict, StoreError, StoreUnavailable
from approver.store.store import DEFAULT_TIMEOUT_SECONDS, Store, Transaction

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "Transaction",
]
