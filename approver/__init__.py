"""The approver: decides StreamSpace agent registrations, auto-approving the agents whose pods
carry a valid bootstrap token (DESIGN.md, "Approver: registration").

Modules, from types to adapters:

* :mod:`approver.records`: agent status, approval method, agent record (types, no I/O).
* :mod:`approver.wire`: the registration body (pydantic); :mod:`approver.answers`: JSON answers.
* :mod:`approver.credentials`: which bootstrap token a request presents (headers).
* :mod:`approver.decision`: the pure decision engine, with the table of reason codes.
* :mod:`approver.admin_tokens`: admin bearer tokens, constant-time checks.
* :mod:`approver.store`: SQLAlchemy async Core store, Alembic migrations.
* :mod:`approver.registration`, :mod:`approver.admin`: verify, decide, write, audit.
* :mod:`approver.config`: settings; :mod:`approver.server`: aiohttp app and ``serve``;
  :mod:`approver.__main__`: the ``agent-bootstrap-approver`` command.
"""
