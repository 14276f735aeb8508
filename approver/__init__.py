"""The approver: decides StreamSpace agent registrations, auto-approving the agents whose pods
carry a valid bootstrap token bound to that one pod (docs/design.md, "Approver: registration"; the
reference is docs/approver.md).

Modules, from types to adapters:

* :mod:`approver.domain.records`: agent status, approval method, agent record (types, no I/O).
* :mod:`approver.domain.requests`: request bodies (pydantic); :mod:`approver.http.answers`: JSON
answers.
* :mod:`approver.domain.credentials`: which credentials a request presents (headers, hashes).
* :mod:`approver.domain.binding`: pod name/namespace rules and live-pod checks (pure).
* :mod:`approver.domain.decision`: the pure decision engine, with the table of reason codes.
* :mod:`approver.domain.lifecycle`: the transition table (pure); :mod:`approver.domain.quota`,
  :mod:`approver.domain.agent_keys`, :mod:`approver.audit.chain`: quota, per-agent keys, hash chain.
* :mod:`approver.verifiers`: the slots for decision steps 3 (API key) and 4 (service account).
* :mod:`approver.files.tokens`: bearer tokens, constant-time checks, the re-read tokens file.
* :mod:`approver.store`: SQLAlchemy async store, Alembic migrations, group commit.
* :mod:`approver.kube`: kubernetes-asyncio adapters (client, pods, watch).
* :mod:`approver.registration`, :mod:`approver.admin`, :mod:`approver.review`,
  :mod:`approver.reconcile`, :mod:`approver.sweeper`: the use cases (decide, write, audit).
* :mod:`approver.config`: settings; :mod:`approver.http.agents`, :mod:`approver.http.admin`:
  handlers; :mod:`approver.http.app`: app factory and ``serve``; :mod:`approver.__main__`: the
  ``agent-bootstrap-approver`` command.
"""
