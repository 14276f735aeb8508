"""The agent reads of the registration path, as SQLAlchemy statements (run through SQLAlchemy
by :class:`~approver.store.transaction.Transaction`, or prepared on the driver connection by
:class:`~approver.store.fast.FastRead`).

Bound parameters: ``p_agent_id`` (the agent id), ``p_jti`` (a token's ``jti``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from approver.store.tables import agents, token_uses

#: The agent with ``p_agent_id`` (no row when absent); locked: ``SELECT ... FOR UPDATE``.
AGENT = sa.select(agents).where(agents.c.agent_id == sa.bindparam("p_agent_id"))
AGENT_LOCKED = AGENT.with_for_update()

_OWNER = (
    sa.select(token_uses.c.agent_id)
    .where(token_uses.c.jti == sa.bindparam("p_jti"))
    .scalar_subquery()
    .label("jti_owner")
)
_ONE = sa.select(sa.literal_column("1").label("one")).subquery("one")


def _agent_and_owner(agent: sa.Select[Any]) -> sa.Select[Any]:
    """Always one row: who burnt ``p_jti`` (``jti_owner``, NULL when nobody) beside the columns
    of the agent ``agent`` selects (all NULL when absent); an outer join from a one-row
    subquery keeps the row either way. PostgreSQL allows ``FOR UPDATE`` in a sub-SELECT in
    ``FROM`` and locks the rows it returns (PostgreSQL documentation, SELECT, "The Locking
    Clause")."""
    found = agent.subquery("a")
    return sa.select(_OWNER, found).select_from(_ONE.outerjoin(found, sa.true()))


#: The registration's one read: the agent's record and the ``jti``'s owner.
AGENT_AND_OWNER = _agent_and_owner(AGENT)
AGENT_AND_OWNER_LOCKED = _agent_and_owner(AGENT_LOCKED)
