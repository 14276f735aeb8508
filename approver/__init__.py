"""The approver: decides StreamSpace agent registrations, auto-approving the agents whose pods
carry a valid bootstrap token bound to that one pod (docs/design.md, "Approver: registration"; the
reference is docs/approver.md).

Layers, inner to outer (docs/design.md, "Layers"; ``lint-imports`` checks the direction in
``make test``, contracts in ``pyproject.toml``):

* :mod:`approver.domain`: pure types and rules, no I/O and no adapter library: records, request
  bodies, credentials presented, identifiers, binding (pod checks), the decision engine and its
  reason codes, lifecycle transitions, quota, per-agent keys, the control-plane port and the
  sync plan, and the ports (protocols) the engine needs (:mod:`approver.domain.ports`).
* :mod:`approver.audit`: the audit event, its hash chain and its text form.
* Adapters at the edge: :mod:`approver.store` (SQLAlchemy, Alembic, group commit),
  :mod:`approver.kube` (kubernetes-asyncio), :mod:`approver.files` (JWKS and tokens files),
  :mod:`approver.connectors` (the StreamSpace connector), the credential feature packages
  :mod:`approver.api_keys` and :mod:`approver.service_accounts`, and :mod:`approver.verifiers`
  (their wiring into decision steps 3 and 4).
* Use cases on top: :mod:`approver.registration`, :mod:`approver.admin`, :mod:`approver.review`,
  :mod:`approver.reconcile`, :mod:`approver.sweeper`, :mod:`approver.control_plane_sync`,
  :mod:`approver.gate`, sharing :mod:`approver.transitions` (transition, write, audit).
* :mod:`approver.http`: the aiohttp handlers, one error middleware
  (:mod:`approver.http.errors`, the exception tree and the answer each maps to) and the
  application (:mod:`approver.http.app`).
* Composition: :mod:`approver.config` (settings), :mod:`approver.resources` (what the settings
  name, opened), :mod:`approver.serve` (serving), :mod:`approver.__main__` (the
  ``agent-bootstrap-approver`` command).
"""
