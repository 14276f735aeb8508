"""The approver's persistence: agent records, burnt bootstrap-token ``jti`` values, the audit
hash chain.

* :mod:`approver.store.tables`: the schema (SQLAlchemy Core); :mod:`approver.store.rows`: rows
  to domain types.
* :mod:`approver.store.store`: :class:`Store` (engines, SQLite set-up, migrations, reads);
  :mod:`approver.store.transaction`: its :class:`Transaction` (the decision's reads and writes,
  the audit chain's append); :mod:`approver.store.filters`: listing filters.
* :mod:`approver.store.errors`: :class:`StoreUnavailable` (503) and :class:`StoreConflict`;
  :mod:`approver.store.translate`: driver errors turned into them.

Migrations live in ``approver/migrations`` (Alembic) and run with :meth:`Store.migrate`.
"""

from approver.store.errors import StoreConflict, StoreError, StoreUnavailable
from approver.store.filters import AgentFilter, AuditFilter
from approver.store.store import DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT_SECONDS, Store
from approver.store.transaction import Transaction

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
