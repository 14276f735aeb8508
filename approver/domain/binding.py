"""Binding a credential to one agent: which pod the agent speaks for, and whether the live pod
agrees. Pure: the Kubernetes read is :mod:`approver.kube.pods`.

Which pod (docs/design.md, "Approver: registration"):

* the pod name is StreamSpace's agent id ``<agentIdPrefix>-<pod name>`` minus the prefix (or
  the agent id itself with no prefix set); a ``metadata.podName`` the agent sends must be the
  same name (else the binding is not provable);
* the pod's namespace is the *cluster's* word: the token's ``namespace`` claim (taken by the
  webhook from the AdmissionReview's ``request.namespace``). StreamSpace's agent sends a
  ``metadata.namespace`` too, but that is its NAMESPACE environment variable, the namespace it
  creates *sessions* in, not necessarily its own pod's; it is never compared. An agent that
  knows its pod's namespace may send ``metadata.podNamespace``; only that is compared.

The live pod (``kubernetes.enabled``), read by name in the token's namespace, must:

1. exist (else ``pod_not_found``, pending: perhaps a race with a deletion, perhaps a lie);
2. not be terminating (``metadata.deletionTimestamp`` set: ``pod_terminating``, pending);
3. carry this exact token in the annotation (``kubernetes.tokenAnnotation``), compared in
   constant time (else ``pod_token_mismatch``, 403 and a security event: the agent presents a
   token that is not its pod's, a copy from a sibling pod);
4. have a controller owner reference equal to the token's ``owner`` (kind, name, uid), or none
   when the token has none (else ``pod_owner_mismatch``, pending: an honest pod adopted by a
   controller after admission also lands here, so it waits for an administrator);
5. with ``kubernetes.bindSourceAddress`` (the default): be the pod the request comes from: its
   ``status.podIP`` (or one of ``status.podIPs``) is the request's source address (else
   ``pod_address_mismatch``, 403 and a security event). An annotation is readable by anyone who
   may ``get pods``, so a token presented from elsewhere, even for the right agent id, is not
   that pod's agent: the network's word, not the pod's. It needs the approver to see pod
   addresses, as it does for traffic inside the cluster; behind a proxy that rewrites the source
   address, turn it off.

A failed read (API unreachable, forbidden, timeout) is ``pod_lookup_failed``, pending: the retry
30 s later looks again.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from approver.domain.identifiers import is_pod_name
from approver.domain.requests import RegistrationRequest
from bootstrap_token import OwnerRef

POD_NAME_KEY = "podName"
POD_NAMESPACE_KEY = "podNamespace"


def bound_pod_name(request: RegistrationRequest, *, agent_id_prefix: str | None) -> str | None:
    """The pod name a registration speaks for, or None when it cannot be told.

    The agent id names the pod: the agent id without ``agent_id_prefix + "-"`` (StreamSpace:
    ``AGENT_ID=$(AGENT_ID_PREFIX)-$(POD_NAME)``), or, with no prefix configured, the agent id
    itself; it must be a possible pod name (a DNS-1123 subdomain,
    :func:`approver.domain.identifiers.is_pod_name`). ``metadata.podName``, when an agent sends it,
    must say the same: a pod may speak only for the agent id derived from its own name, so a
    stamped pod cannot claim another agent's id by naming itself in ``metadata`` (None: not
    provable).
    """
    if agent_id_prefix is None:
        derived: str | None = request.agent_id
    else:
        head = agent_id_prefix + "-"
        ok = request.agent_id.startswith(head) and len(request.agent_id) > len(head)
        derived = request.agent_id[len(head) :] if ok else None
    if derived is None or not is_pod_name(derived):
        return None
    sent = request.metadata.get(POD_NAME_KEY)
    if sent is not None and sent != derived:
        return None
    return derived


def pod_namespace_mismatch(request: RegistrationRequest, *, namespace: str) -> bool:
    """True when the agent sent ``metadata.podNamespace`` and it is not ``namespace``.

    ``metadata.namespace`` is deliberately not looked at (module docstring).
    """
    sent = request.metadata.get(POD_NAMESPACE_KEY)
    return sent is not None and sent != namespace


@dataclass(frozen=True, slots=True)
class LivePod:
    """What the approver needs of a Pod read from the Kubernetes API.

    Attributes:
        namespace, name, uid: ``metadata``.
        terminating: ``metadata.deletionTimestamp`` is set.
        annotations: ``metadata.annotations`` (the token annotation may be among them).
        controller: the ``ownerReferences`` entry with ``controller: true``, if any.
        labels: ``metadata.labels``.
        resource_version: ``metadata.resourceVersion``.
        addresses: ``status.podIP`` and ``status.podIPs`` (empty before the pod has a
            network).
    """

    namespace: str
    name: str
    uid: str
    terminating: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict, repr=False)
    controller: OwnerRef | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    resource_version: str | None = None
    addresses: frozenset[str] = frozenset()


class PodLookupError(Exception):
    """The pod could not be read now (API status other than 404, connection, timeout)."""


class PodSource(Protocol):
    """Reads one pod (:class:`approver.kube.pods.KubePods` in production)."""

    async def read(self, namespace: str, name: str) -> LivePod | None:
        """The pod, or None when it does not exist. Raises :class:`PodLookupError`."""
        ...


class PodCheck(StrEnum):
    """The live pod's verdict; every value but ``ok`` is also a reason code."""

    OK = "ok"
    NOT_FOUND = "pod_not_found"
    TERMINATING = "pod_terminating"
    TOKEN_MISMATCH = "pod_token_mismatch"  # noqa: S105 - a reason code
    OWNER_MISMATCH = "pod_owner_mismatch"
    LOOKUP_FAILED = "pod_lookup_failed"
    ADDRESS_MISMATCH = "pod_address_mismatch"

    @property
    def security_relevant(self) -> bool:
        """A token that is not the pod's own, or presented from another address than the
        pod's, is evidence of a copy (403)."""
        return self in (PodCheck.TOKEN_MISMATCH, PodCheck.ADDRESS_MISMATCH)


@dataclass(frozen=True, slots=True)
class PodEvidence:
    """The outcome of looking at the live pod: the verdict, and the pod's UID when it exists."""

    check: PodCheck
    uid: str | None = None


def check_live_pod(
    pod: LivePod | None,
    *,
    token: str,
    annotation: str,
    owner: OwnerRef | None,
    source_address: str | None = None,
    bind_source_address: bool = False,
) -> PodEvidence:
    """Apply the rules of the module docstring, in order.

    Args:
        pod: the pod read by name in the token's namespace, or None when the API said 404.
        token: the presented bootstrap token.
        annotation: the annotation key the webhook stamps (``kubernetes.tokenAnnotation``).
        owner: the token's ``owner`` claim.
        source_address: the request's source address (None: unknown, which fails rule 5).
        bind_source_address: apply rule 5.
    """
    if pod is None:
        return PodEvidence(PodCheck.NOT_FOUND)
    if pod.terminating:
        return PodEvidence(PodCheck.TERMINATING, pod.uid)
    stamped = pod.annotations.get(annotation, "")
    if not hmac.compare_digest(stamped.encode("utf-8"), token.encode("utf-8")):
        return PodEvidence(PodCheck.TOKEN_MISMATCH, pod.uid)
    if pod.controller != owner:
        return PodEvidence(PodCheck.OWNER_MISMATCH, pod.uid)
    if bind_source_address and (source_address is None or source_address not in pod.addresses):
        return PodEvidence(PodCheck.ADDRESS_MISMATCH, pod.uid)
    return PodEvidence(PodCheck.OK, pod.uid)
