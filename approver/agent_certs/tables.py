"""The ``agent_certificates`` table (SQLAlchemy 2 Core), created by migration ``0007``.

One row per certificate the approver issued to an agent (:mod:`approver.agent_certs`). Kept on
its own :class:`~sqlalchemy.MetaData`, like ``api_keys``, so importing it never changes the core
schema's metadata; the migration test compares the migrated table with it.

``serial`` is the certificate's serial number in lowercase hex (159 random bits, RFC 5280
section 4.1.2.2), the primary key: the gate looks a presented certificate up by it. The
certificate itself is not stored (its SHA-256 is, to tell which one a serial was): it holds no
secret, but nothing reads it back. ``revoked_reason`` says why a row stopped counting before
its notAfter: ``revoked`` (an administrator), ``superseded`` (the agent holds newer ones),
``agent_inactive`` (its agent left ``active``: pod deleted, revoked, rejected, here or in the
control plane), ``agent_deleted`` (an administrator deleted its agent) or ``agent_rebound`` (an
active agent was bound to another credential or pod: a recreated pod with the same name). A
revoked row never counts again, even when its agent is approved again (as a replaced key never
comes back).
No foreign key to ``agents``: a deleted agent's certificates must stay listed as revoked until
they expire (the CRL takes rows whose agent is gone as revoked).
"""

from __future__ import annotations

import sqlalchemy as sa

from approver.store.tables import NAMING_CONVENTION, UTCDateTime

agent_certificates_metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: Values of ``issued_with``: the credential an issuance was authorized by.
ISSUED_WITH = ("api_key", "certificate")
#: Values of ``revoked_reason``.
REVOKED_REASONS = ("revoked", "superseded", "agent_inactive", "agent_deleted", "agent_rebound")

agent_certificates = sa.Table(
    "agent_certificates",
    agent_certificates_metadata,
    sa.Column("serial", sa.String(40), primary_key=True),
    sa.Column("agent_id", sa.String(253), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("issued_at", UTCDateTime(), nullable=False),
    sa.Column("not_before", UTCDateTime(), nullable=False),
    sa.Column("not_after", UTCDateTime(), nullable=False),
    sa.Column("issued_with", sa.String(16), nullable=False),
    sa.Column("issuer_sha256", sa.String(64), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_reason", sa.String(16), nullable=True),
    sa.Column("revoked_by", sa.String(128), nullable=True),
    sa.CheckConstraint("issued_with IN ('api_key', 'certificate')", name="issued_with"),
    sa.CheckConstraint(
        "revoked_reason IS NULL OR revoked_reason IN "
        "('revoked', 'superseded', 'agent_inactive', 'agent_deleted', "
        "'agent_rebound')",
        name="revoked_reason",
    ),
    sa.Index(None, "agent_id"),
    sa.Index(None, "not_after"),
)
