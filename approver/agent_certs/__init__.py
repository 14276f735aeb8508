"""Agent client certificates, the adapter side: the ``agent_certificates`` table, its SQL, and
the agent CA files the approver signs with (:mod:`approver.agent_certs.ca_files`). The rules are
in :mod:`approver.domain.agent_certificates`, the use case in :mod:`approver.agent_certificates`.
"""
