"""Pure JSON Patch builders for the pod's annotations.

References: RFC 6902 (JSON Patch), RFC 6901 (JSON Pointer). Builders take the object exactly as
the API server sent it (``request.object``) and return a list of operations that applies
cleanly to it: a patch that does not apply fails the pod even under ``failurePolicy: Ignore``
(Kubernetes "Dynamic Admission Control", "Response"), so every path below targets a member
whose parent is known to exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: One RFC 6902 operation, e.g. ``{"op": "add", "path": "/metadata/annotations/a~1b",
#: "value": "x"}``.
PatchOp = dict[str, Any]


def escape_pointer_token(token: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901 section 3).

    ``~`` becomes ``~0`` first, then ``/`` becomes ``~1``; the order matters so that a literal
    ``~1`` in the key is encoded as ``~01`` and not read back as ``/`` (RFC 6901 section 4).
    """
    return token.replace("~", "~0").replace("/", "~1")


def annotation_pointer(key: str) -> str:
    """The JSON Pointer of annotation ``key``: ``/metadata/annotations/<escaped key>``."""
    return "/metadata/annotations/" + escape_pointer_token(key)


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return None
    annotations = metadata.get("annotations")
    return annotations if isinstance(annotations, dict) else None


def set_annotation(obj: Mapping[str, Any], *, key: str, value: str) -> list[PatchOp]:
    """Operations that set annotation ``key`` to ``value`` on ``obj``.

    Args:
        obj: the object as sent in ``request.object`` (not modified).
        key: the annotation key, e.g. ``agents.streamspace.io/bootstrap-token``.
        value: the annotation value.

    Returns:
        One ``add`` operation:

        * ``metadata`` absent or not an object: ``add /metadata`` with
          ``{"annotations": {key: value}}``;
        * ``metadata.annotations`` absent or ``null``: ``add /metadata/annotations`` with
          ``{key: value}`` (RFC 6902 section 4.1: adding to an existing member replaces it, so
          this also covers ``null``);
        * otherwise ``add /metadata/annotations/<escaped key>``: adds the key, or replaces the
          value the pod came with (RFC 6902 section 4.1).
    """
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return [{"op": "add", "path": "/metadata", "value": {"annotations": {key: value}}}]
    if _annotations(obj) is None:
        return [{"op": "add", "path": "/metadata/annotations", "value": {key: value}}]
    return [{"op": "add", "path": annotation_pointer(key), "value": value}]


def remove_annotation(obj: Mapping[str, Any], *, key: str) -> list[PatchOp]:
    """Operations that remove annotation ``key`` from ``obj``, if it is there.

    Returns:
        ``[{"op": "remove", "path": "/metadata/annotations/<escaped key>"}]`` when the key is
        present, else ``[]``: RFC 6902 section 4.2 requires the target to exist, and a failing
        patch would fail the pod.
    """
    annotations = _annotations(obj)
    if annotations is None or key not in annotations:
        return []
    return [{"op": "remove", "path": annotation_pointer(key)}]


def has_annotation(obj: Mapping[str, Any], *, key: str) -> bool:
    """True when ``obj.metadata.annotations`` holds ``key`` (whatever its value)."""
    annotations = _annotations(obj)
    return annotations is not None and key in annotations
