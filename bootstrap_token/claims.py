"""The bootstrap token's claims set: the one documented model both services share.

Shape (JSON, camelCase as on the wire)::

    {
      "iss": "agent-bootstrap-webhook", "aud": "agent-approver",
      "iat": 1764468000, "nbf": 1764468000, "exp": 1764471600,      # seconds since the epoch
      "jti": "<22 chars base64url, 128 random bits>",
      "cluster": "prod-eu-1",
      "namespace": "streamspace",          # request.namespace of the AdmissionReview
      "serviceAccount": "streamspace-agent",
      "pod": {"generateName": "streamspace-k8s-agent-7d9f8b6c5-"} | {"name": "agent-0"},
      "owner": {"kind": "ReplicaSet", "name": "...", "uid": "..."} | null,
      "admissionUid": "<request.uid>"
    }

At mutating time a controller-made pod has no name and no UID yet, so ``pod`` names where the
token may be used, and the approver binds it to one agent at first use (docs/design.md, "The
bootstrap token").
"""

from __future__ import annotations

import base64
import secrets
from typing import Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: Bounds on ``exp - iat`` in seconds (docs/design.md, "The bootstrap token": default 1 h,
#: bounded 5 min .. 24 h).
MIN_TTL_SECONDS = 5 * 60
MAX_TTL_SECONDS = 24 * 60 * 60
DEFAULT_TTL_SECONDS = 60 * 60


def new_jti() -> str:
    """Return a fresh ``jti``: 128 random bits from :mod:`secrets`, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


#: Bounds on a NumericDate claim (RFC 7519 section 2): from the epoch to the last second of
#: year 9999, the range a ``datetime`` holds; anything later is not a time we could store.
MIN_NUMERIC_DATE = 0
MAX_NUMERIC_DATE = 253_402_300_799


class _Wire(BaseModel):
    # strict: every claim has exactly its JSON type. A time is a JSON integer (not a boolean,
    # a float or a numeric string), a name a JSON string, ``pod``/``owner`` JSON objects;
    # nothing is converted (a lax model took "1764471600" or true for a time).
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, strict=True)


class PodRef(_Wire):
    """Where the token may be used: exactly one of ``name`` or ``generateName``."""

    name: str | None = Field(default=None, min_length=1, max_length=253)
    generate_name: str | None = Field(
        default=None, alias="generateName", min_length=1, max_length=253
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.name is None) == (self.generate_name is None):
            raise ValueError("pod must carry exactly one of 'name' or 'generateName'")
        return self

    def admits(self, pod_name: str) -> bool:
        """True when ``pod_name`` is this pod: equal to ``name`` or starting with ``generateName``.

        A ``generateName`` match also requires a non-empty suffix, since the API server always
        appends random characters (Kubernetes API conventions, "generateName").
        """
        if self.name is not None:
            return pod_name == self.name
        assert self.generate_name is not None
        return pod_name.startswith(self.generate_name) and len(pod_name) > len(self.generate_name)


class OwnerRef(_Wire):
    """The pod's controller owner reference at admission time."""

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    uid: str = Field(min_length=1)


class BootstrapClaims(_Wire):
    """The validated claims set of a bootstrap token. Times are integer seconds since the epoch.

    Types are strict (RFC 7519 section 2 NumericDate, narrowed to what the webhook mints: a JSON
    integer between :data:`MIN_NUMERIC_DATE` and :data:`MAX_NUMERIC_DATE`; no fractional
    seconds, booleans, numeric strings or non-finite numbers); a mismatch is a
    ``ValidationError``, which :func:`bootstrap_token.verify` reports as a malformed token.
    """

    iss: str = Field(min_length=1)
    aud: str = Field(min_length=1)
    iat: int = Field(ge=MIN_NUMERIC_DATE, le=MAX_NUMERIC_DATE)
    nbf: int = Field(ge=MIN_NUMERIC_DATE, le=MAX_NUMERIC_DATE)
    exp: int = Field(ge=MIN_NUMERIC_DATE, le=MAX_NUMERIC_DATE)
    jti: str = Field(min_length=16, max_length=64)
    cluster: str = Field(min_length=1)
    namespace: str = Field(min_length=1, max_length=63)
    service_account: str = Field(alias="serviceAccount", min_length=1, max_length=253)
    pod: PodRef
    owner: OwnerRef | None = None
    admission_uid: str = Field(alias="admissionUid", min_length=1)

    @field_validator("owner", mode="before")
    @classmethod
    def _owner_object_when_present(cls, value: object, info: ValidationInfo) -> object:
        # On the wire (``context={"wire": True}``, as :func:`bootstrap_token.verify` passes) the
        # claim is absent when the pod has no controller, never ``null``: not its JSON type.
        # In Python, ``owner=None`` is how "no owner" is spelt.
        if value is None and isinstance(info.context, dict) and info.context.get("wire"):
            raise ValueError("owner is an object when present, never null")
        return value

    @model_validator(mode="after")
    def _times_ordered(self) -> Self:
        if not (self.nbf <= self.exp and self.iat <= self.exp):
            raise ValueError("claims must satisfy nbf <= exp and iat <= exp")
        return self

    @property
    def ttl_seconds(self) -> int:
        """``exp - iat`` in seconds."""
        return self.exp - self.iat

    def to_payload(self) -> dict[str, object]:
        """The JSON claims set as signed (camelCase aliases, ``owner`` omitted when absent)."""
        return self.model_dump(by_alias=True, exclude_none=True)
