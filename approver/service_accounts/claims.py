"""The claims of a Kubernetes projected (bound) service-account token, and the identity it proves.

Shape, as the API server signs it (``pkg/serviceaccount/claims.go``; Kubernetes documentation,
"Managing Service Accounts", "Bound service account token volume" and "Service account tokens")::

    {
      "aud": ["agent-approver"],                       # the projected volume's audience
      "exp": 1764471600, "iat": 1764468000, "nbf": 1764468000,   # seconds since the epoch
      "iss": "https://kubernetes.default.svc.cluster.local",
      "jti": "ea28ed49-2e11-4280-9ec5-bc3d1d84661a",   # Kubernetes 1.29+
      "sub": "system:serviceaccount:streamspace:streamspace-agent",
      "kubernetes.io": {
        "namespace": "streamspace",
        "serviceaccount": {"name": "streamspace-agent", "uid": "..."},
        "pod": {"name": "streamspace-k8s-agent-7d9f8b6c5-x2x7q", "uid": "..."},
        "node": {"name": "worker-1", "uid": "..."},    # Kubernetes 1.30+, optional
        "warnafter": 1764471600                        # only on extended default-audience tokens
      }
    }

Unknown claims are ignored (not refused): the API server adds claims across releases
(``jti``, ``node``, ``credential-id``), and an approver must keep accepting tokens of a newer
cluster. Every claim the approver relies on is required and typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: ``sub``/``username`` of a service account: ``system:serviceaccount:<namespace>:<name>``
#: (Kubernetes documentation, "Authenticating", "Service account tokens").
SERVICE_ACCOUNT_USER_PREFIX = "system:serviceaccount:"


class _Claims(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ObjectRef(_Claims):
    """``{"name", "uid"}``: an object the token is bound to."""

    name: str = Field(min_length=1, max_length=253)
    uid: str = Field(min_length=1, max_length=64)


class KubernetesClaim(_Claims):
    """The private ``kubernetes.io`` claim."""

    namespace: str = Field(min_length=1, max_length=63)
    serviceaccount: ObjectRef
    pod: ObjectRef | None = None
    node: ObjectRef | None = None
    secret: ObjectRef | None = None
    warnafter: int | None = None


class ServiceAccountTokenClaims(_Claims):
    """The validated claims set of a projected service-account token (shape above)."""

    iss: str = Field(min_length=1)
    sub: str = Field(min_length=1)
    aud: tuple[str, ...] = Field(min_length=1)
    exp: int
    iat: int | None = None
    nbf: int | None = None
    jti: str | None = None
    kubernetes: KubernetesClaim = Field(alias="kubernetes.io")

    @field_validator("aud", mode="before")
    @classmethod
    def _aud_list(cls, value: object) -> object:
        # RFC 7519 section 4.1.3: a single audience may be a plain string.
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _subject_matches(self) -> Self:
        expected = (
            f"{SERVICE_ACCOUNT_USER_PREFIX}{self.kubernetes.namespace}:"
            f"{self.kubernetes.serviceaccount.name}"
        )
        if self.sub != expected:
            raise ValueError("sub does not name the kubernetes.io service account")
        return self


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """Who presented the token, as the API server (TokenReview) or the issuer's signature vouches.

    Attributes:
        namespace: the service account's (and pod's) namespace.
        service_account: the service account's name.
        service_account_uid: its UID (None when TokenReview did not return one).
        pod_name: the pod the token is bound to; None when it is not pod-bound.
        pod_uid: that pod's UID; None when not pod-bound.
        node_name: the pod's node, when the token names it (Kubernetes 1.30+).
        expires_at: the token's ``exp`` in seconds since the epoch, when known.
    """

    namespace: str
    service_account: str
    service_account_uid: str | None
    pod_name: str | None
    pod_uid: str | None
    node_name: str | None = None
    expires_at: int | None = None

    @property
    def pair(self) -> str:
        """``namespace:serviceaccount``, the allow-list's form."""
        return f"{self.namespace}:{self.service_account}"

    @property
    def pod_bound(self) -> bool:
        """True when both the pod name and the pod UID are known."""
        return bool(self.pod_name) and bool(self.pod_uid)


def parse_service_account_user(username: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of ``system:serviceaccount:<namespace>:<name>``, else None."""
    if not username.startswith(SERVICE_ACCOUNT_USER_PREFIX):
        return None
    namespace, sep, name = username[len(SERVICE_ACCOUNT_USER_PREFIX) :].partition(":")
    if not sep or not namespace or not name or ":" in name:
        return None
    return namespace, name
