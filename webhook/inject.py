"""Zero-change agents: JSON Patch operations that point an env var at the token annotation.

An agent that only knows an env var (StreamSpace's k8s-agent sends ``AGENT_API_KEY`` as its
``X-Agent-API-Key`` header) gets the token through the downward API: the variable of each named
container becomes::

    {"name": "AGENT_API_KEY",
     "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                "fieldPath": "metadata.annotations['<annotation key>']"}}}

(Kubernetes "Expose Pod Information to Containers Through Environment Variables"; ``fieldRef``
supports ``metadata.annotations['<KEY>']``). The kubelet resolves it when the container starts,
after admission, so the value is the token this same patch sets.

References: RFC 6902 (JSON Patch), RFC 6901 (JSON Pointer). Every operation targets a member
whose parent exists in the object as sent, so the patch applies: a patch that does not apply
fails the pod even under ``failurePolicy: Ignore``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.errors import MalformedReview
from webhook.patch import PatchOp

#: Pod spec lists that hold containers, in the order their operations are emitted.
CONTAINER_LISTS = ("initContainers", "containers")


@dataclass(frozen=True, slots=True)
class EnvInjection:
    """What to inject: ``variable`` into the containers named in ``containers``."""

    containers: frozenset[str]
    variable: str


def env_var(*, variable: str, annotation_key: str) -> dict[str, Any]:
    """The ``EnvVar`` that reads annotation ``annotation_key`` through the downward API."""
    return {
        "name": variable,
        "valueFrom": {
            "fieldRef": {
                "apiVersion": "v1",
                "fieldPath": f"metadata.annotations['{annotation_key}']",
            }
        },
    }


def inject_env(
    obj: Mapping[str, Any],
    *,
    containers: Collection[str],
    variable: str,
    annotation_key: str,
) -> list[PatchOp]:
    """Operations that set ``variable`` of each container named in ``containers`` to the token
    annotation (:func:`env_var`); see :func:`set_env` for the operations and errors."""
    return set_env(
        obj,
        containers=containers,
        entry=env_var(variable=variable, annotation_key=annotation_key),
    )


def set_env(
    obj: Mapping[str, Any],
    *,
    containers: Collection[str],
    entry: Mapping[str, Any],
) -> list[PatchOp]:
    """:func:`set_envs` for one ``EnvVar`` (``entry``) in the containers named."""
    return set_envs(obj, [(containers, entry)])


def set_envs(
    obj: Mapping[str, Any],
    assignments: Sequence[tuple[Collection[str], Mapping[str, Any]]],
) -> list[PatchOp]:
    """Operations that make each assignment's ``EnvVar`` the one definition of its variable in
    each container it names; several assignments may name the same container (the token of
    ``injectEnv`` and the proxy URL of ``agentProxy``).

    Args:
        obj: the pod as sent in ``request.object`` (not modified).
        assignments: ``(container names, EnvVar with its name)`` pairs; names are matched in
            ``spec.containers`` and ``spec.initContainers`` (an init container only when
            named).

    Returns:
        Per matching container at ``/spec/<list>/<i>``:

        * ``env`` absent or null: one ``add .../env`` with every assigned entry, in order;
        * otherwise, for each assigned variable the container defines (e.g. from a
          ``secretKeyRef``): ``replace .../env/<j>`` at its first definition, keeping that
          position, so variables that expand ``$(VARIABLE)`` after it still see it
          (Kubernetes "Define Dependent Environment Variables"); then ``remove .../env/<k>``
          for every later definition of any of them, highest index first, so each index still
          names the entry it named in the object as sent; then ``add .../env/-`` (append) for
          each variable the container did not define. The container ends with exactly one
          definition of each (the API server warns that a duplicate "hides previous
          definition", and the kubelet would use the last one).

        Empty when no container matches; containers without a string ``name`` never match.

    Raises:
        MalformedReview: reason ``malformed_pod`` when ``spec``, a container list or a matching
            container's ``env`` has the wrong JSON type (the API server never sends that).
    """
    spec = obj.get("spec")
    if spec is None:
        return []
    if not isinstance(spec, dict):
        raise MalformedReview("malformed_pod", "request.object is not a Pod: invalid spec")
    ops: list[PatchOp] = []
    for list_name in CONTAINER_LISTS:
        items = spec.get(list_name)
        if items is None:
            continue
        if not isinstance(items, list):
            raise MalformedReview(
                "malformed_pod", f"request.object is not a Pod: invalid spec.{list_name}"
            )
        for index, container in enumerate(items):
            if not isinstance(container, dict):
                continue
            entries = [dict(e) for names, e in assignments if container.get("name") in names]
            if not entries:
                continue
            base = f"/spec/{list_name}/{index}/env"
            env = container.get("env")
            if env is None:
                ops.append({"op": "add", "path": base, "value": entries})
                continue
            if not isinstance(env, list):
                raise MalformedReview(
                    "malformed_pod",
                    f"request.object is not a Pod: invalid spec.{list_name}.{index}.env",
                )
            removals: list[int] = []
            appends: list[PatchOp] = []
            for value in entries:
                defined = [
                    j
                    for j, item in enumerate(env)
                    if isinstance(item, dict) and item.get("name") == value["name"]
                ]
                if defined:
                    first, *others = defined
                    ops.append({"op": "replace", "path": f"{base}/{first}", "value": value})
                    removals.extend(others)
                else:
                    appends.append({"op": "add", "path": f"{base}/-", "value": value})
            ops.extend(
                {"op": "remove", "path": f"{base}/{j}"} for j in sorted(removals, reverse=True)
            )
            ops.extend(appends)
    return ops
