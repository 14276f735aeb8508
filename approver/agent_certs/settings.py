"""``agentCertificates`` settings (mounted into the approver's settings as
``agentCertificates``).

YAML (camelCase; environment ``AGENT_BOOTSTRAP_APPROVER_AGENT_CERTIFICATES__ENABLED=true``
etc.)::

    agentCertificates:
      enabled: false
      caCertFile: /etc/agent-bootstrap/agent-ca/ca.crt       # signs agent certificates
      caKeyFile: /etc/agent-bootstrap/agent-ca/ca.key
      trustBundleFile: /etc/agent-bootstrap/agent-ca/ca-bundle.crt  # what the gate trusts
      lifetimeSeconds: 86400
      maxLivePerAgent: 2
      requireAtGate: false
      cluster: default
      minReissueSeconds: 60
      crlValiditySeconds: 600

The approver must terminate TLS itself (``tlsCertFile``): the client certificate is read from
its own handshake. See docs/agent-certificates.md.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, FilePath, model_validator

#: Shortest and longest certificate lifetimes accepted, in seconds (5 minutes, 30 days).
MIN_LIFETIME_SECONDS = 300
MAX_LIFETIME_SECONDS = 30 * 86400


class AgentCertificateSettings(BaseModel):
    """``agentCertificates``: client certificates for approved agents (issue 16)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    enabled: bool = Field(
        default=False,
        description="Default false. True: approved agents may obtain client certificates "
        "(POST /api/v1/agents/{agentId}/certificate) and the gate verifies those presented.",
    )
    ca_cert_file: FilePath | None = Field(
        default=None,
        alias="caCertFile",
        description="PEM certificate of the agent CA that signs agent certificates (certs-tooling "
        "agent-ca, or a cert-manager CA Secret's tls.crt). Required when enabled; re-read on "
        "change.",
    )
    ca_key_file: FilePath | None = Field(
        default=None,
        alias="caKeyFile",
        description="PEM private key of caCertFile (ECDSA or Ed25519). Required when enabled.",
    )
    trust_bundle_file: FilePath | None = Field(
        default=None,
        alias="trustBundleFile",
        description="PEM bundle of the agent CAs whose certificates the gate accepts (the "
        "current one, plus the previous one during a rotation). Default: caCertFile.",
    )
    lifetime_seconds: int = Field(
        default=86400,
        alias="lifetimeSeconds",
        ge=MIN_LIFETIME_SECONDS,
        le=MAX_LIFETIME_SECONDS,
        description="Validity of an issued certificate, in seconds (never past the CA's). "
        "Default 86400 (24 h); 300 .. 30 days. Agents renew at two thirds of it.",
    )
    max_live_per_agent: int = Field(
        default=2,
        alias="maxLivePerAgent",
        ge=1,
        le=16,
        description="Live certificates one agent may hold; issuing one more revokes its oldest "
        "(superseded). Default 2 (the current one and its renewal).",
    )
    require_at_gate: bool = Field(
        default=False,
        alias="requireAtGate",
        description="True: the gate refuses agent traffic (WebSocket, heartbeat) without a "
        "live client certificate of that agent, whatever key it sends. Default false: a "
        "certificate, when presented, must be valid, and the key is checked either way.",
    )
    cluster: str = Field(
        default="default",
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$",
        description="The cluster named in a certificate's URI SAN when the agent's record names "
        "none (an agent approved without a bootstrap token). Default 'default'.",
    )
    min_reissue_seconds: int = Field(
        default=60,
        alias="minReissueSeconds",
        ge=0,
        le=86400,
        description="An agent that still holds a live certificate is issued another one at "
        "most this often (429 with Retry-After before); one without a live certificate gets "
        "one at once. Bounds what a stolen key can mint and how fast the revoked list grows. "
        "Default 60; 0 turns the limit off.",
    )
    crl_validity_seconds: int = Field(
        default=600,
        alias="crlValiditySeconds",
        ge=60,
        le=7 * 86400,
        description="nextUpdate - thisUpdate of the served CRL, in seconds: how long a relying "
        "party may cache it. Default 600.",
    )

    @model_validator(mode="after")
    def _files(self) -> Self:
        if self.enabled and (self.ca_cert_file is None or self.ca_key_file is None):
            raise ValueError(
                "agentCertificates.caCertFile and agentCertificates.caKeyFile are required when "
                "agentCertificates.enabled is true"
            )
        return self

    @property
    def trust_bundle(self) -> FilePath | None:
        """The bundle the gate trusts (``trustBundleFile``, else ``caCertFile``)."""
        return self.trust_bundle_file or self.ca_cert_file
