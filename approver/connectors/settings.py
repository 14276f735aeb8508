"""``controlPlane`` settings (mounted into the approver's settings as ``controlPlane``).

YAML (camelCase; environment ``AGENT_BOOTSTRAP_APPROVER_CONTROL_PLANE__TYPE=streamspace``
etc.)::

    controlPlane:
      type: streamspace            # none (default): the approver's answer is the only record
      budgetSeconds: 6             # control-plane time one registration may spend
      requestTimeoutSeconds: 3     # one call
      syncIntervalSeconds: 10      # how often the control plane's own list is read
      gateRecheckSeconds: 10       # how often open agent WebSockets are re-checked
      streamspace:
        url: http://streamspace-api.streamspace.svc:8000
        caFile: null               # PEM bundle when url is https (default: system trust)
        bootstrapKeyFile: /etc/agent-bootstrap/streamspace/agent-bootstrap-key
        adminUsernameFile: /etc/agent-bootstrap/streamspace-admin/username
        adminPasswordFile: /etc/agent-bootstrap/streamspace-admin/password
        forwardClientAddress: true # X-Forwarded-For: the agent's address

Secrets are files (mounted Secrets), never values in the file or the environment; they are read
at start and again when the control plane refuses them (a rotated password is picked up).
``budgetSeconds`` stays below StreamSpace's agent's 10 s client timeout
(``agents/k8s-agent/main.go`` ``registerAgent``) with room for the approver's own work.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, FilePath, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )


class ControlPlaneType(StrEnum):
    """``controlPlane.type``."""

    NONE = "none"  #: no connector: the approver's own records and keys are the only ones
    STREAMSPACE = "streamspace"  #: StreamSpace's API (:mod:`approver.connectors.streamspace`)


class StreamSpaceSettings(_Section):
    """``controlPlane.streamspace``: StreamSpace's API and the two secrets it needs."""

    url: str = Field(
        pattern=r"^https?://[^\s/?#]+$",
        description="StreamSpace's API base URL, scheme://host:port without a path, e.g. "
        "http://streamspace-api.streamspace.svc:8000 (its chart serves plain HTTP).",
    )
    ca_file: FilePath | None = Field(
        default=None,
        alias="caFile",
        description="PEM CA bundle trusted for an https url. Default: the system's trust.",
    )
    bootstrap_key_file: FilePath = Field(
        alias="bootstrapKeyFile",
        description="A file holding StreamSpace's AGENT_BOOTSTRAP_KEY (its Secret "
        "<release>-secrets, key agent-bootstrap-key): the approver makes pending records "
        "with it. No agent pod holds it any more.",
    )
    admin_username_file: FilePath = Field(
        alias="adminUsernameFile",
        description="A file holding the user name of a dedicated StreamSpace account with "
        "role admin (its admin routes accept only a user login).",
    )
    admin_password_file: FilePath = Field(
        alias="adminPasswordFile",
        description="A file holding that account's password.",
    )
    forward_client_address: bool = Field(
        default=True,
        alias="forwardClientAddress",
        description="Send the agent's address as X-Forwarded-For on the agent routes, so "
        "StreamSpace's per-client rate limit (60 requests/min by default) applies per agent "
        "pod as it did before, not to the approver as one client. Default true.",
    )


class ControlPlaneSettings(_Section):
    """``controlPlane``: where an approval takes effect (:mod:`approver.connectors`)."""

    type: ControlPlaneType = Field(
        default=ControlPlaneType.NONE,
        description="'none' (default): the approver answers agents itself and issues its own "
        "per-agent keys. 'streamspace': approvals take effect in StreamSpace (its records, "
        "its keys) and the approver gates the agents' WebSocket (controlPlane.streamspace).",
    )
    budget_seconds: float = Field(
        default=6.0,
        alias="budgetSeconds",
        gt=0,
        le=9,
        description="Most time one registration spends on control-plane calls, retries "
        "included, in seconds; past it the agent is answered 202 pending with Retry-After. "
        "Default 6 (StreamSpace's agent gives up on a request after 10 s).",
    )
    request_timeout_seconds: float = Field(
        default=3.0,
        alias="requestTimeoutSeconds",
        gt=0,
        le=60,
        description="Timeout of one control-plane call, in seconds. Default 3.",
    )
    sync_interval_seconds: float = Field(
        default=10.0,
        alias="syncIntervalSeconds",
        ge=0.05,
        le=3600,
        description="How often the control plane's own agent list is read for its "
        "administrators' decisions, and records not yet in step are brought in step, in "
        "seconds. Default 10.",
    )
    gate_recheck_seconds: float = Field(
        default=10.0,
        alias="gateRecheckSeconds",
        ge=0.05,
        le=3600,
        description="How often each open agent WebSocket is checked against the agent's "
        "record (closed once the agent is no longer active or its key was replaced), in "
        "seconds. Default 10.",
    )
    streamspace: StreamSpaceSettings | None = Field(
        default=None, description="Required when type is streamspace."
    )

    @model_validator(mode="after")
    def _adapter_settings(self) -> Self:
        if self.type is ControlPlaneType.STREAMSPACE and self.streamspace is None:
            raise ValueError(
                "controlPlane.streamspace is required when controlPlane.type is streamspace"
            )
        if self.request_timeout_seconds > self.budget_seconds:
            raise ValueError("controlPlane.requestTimeoutSeconds must not exceed budgetSeconds")
        return self

    @property
    def enabled(self) -> bool:
        """True when a connector is configured."""
        return self.type is not ControlPlaneType.NONE
