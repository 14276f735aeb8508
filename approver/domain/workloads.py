"""The workload above an agent's pod: its controller (a ReplicaSet) and the Deployment that
controls that ReplicaSet. Pure: the read is :mod:`approver.kube.replicasets`.

An agent's record keeps its pod's controller only from verified evidence (see
:class:`approver.domain.records.OwnerEvidence`). When that controller is a ReplicaSet, the
registrar asks the Kubernetes API for the ReplicaSet and records the Deployment named by its
controller ``ownerReferences`` entry, so an administrator can approve every pending agent of one
Deployment at once, across its ReplicaSets (a rollout makes a new one). The Deployment adds
nothing to the proof: it is read from the object the proven owner names, by its UID.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bootstrap_token import OwnerRef

REPLICA_SET = "ReplicaSet"
DEPLOYMENT = "Deployment"
#: The widths of ``agents.owner_deployment_name`` / ``owner_deployment_uid``.
NAME_MAX_LENGTH = 253
UID_MAX_LENGTH = 64


class OwnerLookupError(Exception):
    """The owner's object could not be read now (API status other than 404, connection,
    timeout)."""


class DeploymentSource(Protocol):
    """Finds the Deployment of a ReplicaSet (:class:`approver.kube.replicasets.KubeReplicaSets`
    in production)."""

    async def deployment_of(self, namespace: str, replica_set: OwnerRef) -> OwnerRef | None:
        """The Deployment controlling ``replica_set`` (read by name in ``namespace``), or None:
        the ReplicaSet is gone (404, or its name now belongs to another UID) or has no
        Deployment controller. Raises :class:`OwnerLookupError`."""
        ...


def controller_reference(metadata: Mapping[str, Any]) -> OwnerRef | None:
    """The ``ownerReferences`` entry with ``controller: true`` of an object's ``metadata`` (the
    API's JSON shape), or None (none, or one without a usable kind, name and uid). Kubernetes
    allows at most one controller reference per object."""
    for ref in metadata.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            try:
                return OwnerRef(kind=ref["kind"], name=ref["name"], uid=ref["uid"])
            except (KeyError, ValueError):
                return None
    return None


def deployment_from_replica_set(obj: Mapping[str, Any], replica_set: OwnerRef) -> OwnerRef | None:
    """The Deployment controlling the ReplicaSet ``obj`` (the API's JSON shape), when ``obj``
    is the very ReplicaSet ``replica_set`` names (same UID: a ReplicaSet deleted and made again
    under its name is another object) and its controller is a Deployment; else None."""
    meta = obj.get("metadata") or {}
    if not isinstance(meta, Mapping) or meta.get("uid") != replica_set.uid:
        return None
    controller = controller_reference(meta)
    if controller is None or controller.kind != DEPLOYMENT:
        return None
    if len(controller.name) > NAME_MAX_LENGTH or len(controller.uid) > UID_MAX_LENGTH:
        return None  # not a Kubernetes object name or UID; nothing a record can hold
    return controller
