"""The approver's persistence: agent records, burnt bootstrap-token ``jti`` values, the audit
hash chain.

* :mod:`approver.store.tables`: the schema (SQLAlchemy Core); :mod:`approver.store.rows`: rows
  to domain types.
* :mod:`approver.store.store`: :class:`Store` and its :class:`Transaction`.
* :mod:`approver.store.errors`: :class:`StoreUnavailable` (503) and :class:`StoreConflict`.

Migrations live in ``approver/migrations`` (Alembic) and run with :meth:`Store.migrate`.
"""

from approver.store.errors import StoreConflict, StoreError, StoreUnavailable
from approver.store.store import (
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    AgentFilter,
    AuditFilter,
    Store,
    Transaction,
)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT_SECONDS",
    "AgentFilter",
    "AuditFilter",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "Transaction",
]
