"""The count behind the cap on pending records per namespace
(:mod:`approver.domain.pending_limits`).

Kept apart from :class:`approver.store.Transaction` (its statements run on the transaction's
connection, :attr:`Transaction.connection`, and commit or roll back with it).

A record counts when it is ``pending`` (marked ``pending_expired`` or not: it is a row all the
same) and no credential bound it to a namespace (``namespace`` is null: the registration that
made it proved nothing). It is attributed to a bucket by what its registration *claimed*, the
rule of :func:`approver.domain.pending_limits.claimed_namespace` written in SQL: the stored
``metadata.podNamespace`` unless absent or JSON null, else ``metadata.namespace``; that value is
the bucket when it is one of the known namespaces, else the record is in the "no namespace"
bucket. The JSON members are read with the dialect's own operator (``JSON_EXTRACT`` on SQLite,
``->>`` on PostgreSQL); the scan is bounded by the ``(namespace, status)`` index and by the cap
itself.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from approver.domain.binding import POD_NAMESPACE_KEY
from approver.domain.pending_limits import NAMESPACE_KEY
from approver.domain.records import AgentStatus
from approver.store.tables import agents
from approver.store.transaction import Transaction


def _claim() -> sa.ColumnElement[Any]:
    member = agents.c.metadata
    return sa.func.coalesce(
        member[POD_NAMESPACE_KEY].as_string(), member[NAMESPACE_KEY].as_string()
    )


async def count_unbound_pending(
    tx: Transaction, *, bucket: str | None, known: frozenset[str]
) -> int:
    """Pending records without a bound namespace in ``bucket`` (a namespace of ``known``, or
    None: every claim outside ``known``, and none)."""
    claim = _claim()
    query = (
        sa.select(sa.func.count())
        .select_from(agents)
        .where(agents.c.status == AgentStatus.PENDING.value)
        .where(agents.c.namespace.is_(None))
    )
    if bucket is not None:
        query = query.where(claim == bucket)
    elif known:
        query = query.where(sa.or_(claim.is_(None), claim.not_in(sorted(known))))
    return int((await tx.connection.execute(query)).scalar_one())
