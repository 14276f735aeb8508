"""JSON Patch builders, checked by applying every patch with ``jsonpatch`` to real pod objects."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.payloads import KUBECTL_REVIEW, REPLICASET_REVIEW, load_json, streamspace_agent_review
from webhook.patch import (
    annotation_pointer,
    escape_pointer_token,
    has_annotation,
    remove_annotation,
    set_annotation,
)

KEY = "agents.streamspace.io/bootstrap-token"
TOKEN = "header.payload.signature"


def apply(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply ``ops`` like the API server does (on a copy; a bad patch raises)."""
    result: dict[str, Any] = jsonpatch.apply_patch(obj, ops)
    return result


def streamspace_pod(**kwargs: Any) -> dict[str, Any]:
    pod: dict[str, Any] = streamspace_agent_review(**kwargs)["request"]["object"]
    return pod


def without_annotations(pod: dict[str, Any]) -> dict[str, Any]:
    rest = copy.deepcopy(pod)
    rest["metadata"].pop("annotations", None)
    return rest


class TestEscapePointerToken:
    @pytest.mark.parametrize(
        ("key", "escaped"),
        [
            ("plain", "plain"),
            ("a/b", "a~1b"),
            ("a~b", "a~0b"),
            ("~1", "~01"),
            ("/~", "~1~0"),
            ("agents.streamspace.io/bootstrap-token", "agents.streamspace.io~1bootstrap-token"),
        ],
    )
    def test_escapes_tilde_then_slash(self, key: str, escaped: str) -> None:
        """``~`` becomes ``~0`` before ``/`` becomes ``~1`` (RFC 6901 section 3)."""
        assert escape_pointer_token(key) == escaped

    @given(st.text())
    def test_pointer_decodes_back_to_the_key(self, key: str) -> None:
        """An RFC 6901 parser reads the annotation pointer back as metadata/annotations/key."""
        assert jsonpointer.JsonPointer(annotation_pointer(key)).parts == [
            "metadata",
            "annotations",
            key,
        ]


class TestSetAnnotation:
    def test_absent_annotations_adds_the_whole_map(self) -> None:
        """A pod with no annotation map gets one ``add /metadata/annotations`` with our key."""
        pod = streamspace_pod()
        assert "annotations" not in pod["metadata"]
        ops = set_annotation(pod, key=KEY, value=TOKEN)
        assert ops == [{"op": "add", "path": "/metadata/annotations", "value": {KEY: TOKEN}}]
        patched = apply(pod, ops)
        assert patched["metadata"]["annotations"] == {KEY: TOKEN}
        assert without_annotations(patched) == pod

    def test_null_annotations_adds_the_whole_map(self) -> None:
        """``annotations: null`` is replaced by a map holding only our key."""
        pod = streamspace_pod()
        pod["metadata"]["annotations"] = None
        ops = set_annotation(pod, key=KEY, value=TOKEN)
        assert ops == [{"op": "add", "path": "/metadata/annotations", "value": {KEY: TOKEN}}]
        assert apply(pod, ops)["metadata"]["annotations"] == {KEY: TOKEN}

    def test_existing_map_adds_one_escaped_key(self) -> None:
        """The ReplicaSet pod's existing annotation survives; ours is added by escaped path."""
        pod = load_json(REPLICASET_REVIEW)["request"]["object"]
        ops = set_annotation(pod, key=KEY, value=TOKEN)
        assert ops == [
            {
                "op": "add",
                "path": "/metadata/annotations/agents.streamspace.io~1bootstrap-token",
                "value": TOKEN,
            }
        ]
        patched = apply(pod, ops)
        assert patched["metadata"]["annotations"] == {
            "sidecar-injector.expedia.com/inject": "haystack-agent",
            KEY: TOKEN,
        }
        assert without_annotations(patched) == without_annotations(pod)

    def test_replaces_a_pre_set_value(self) -> None:
        """``add`` on an existing key replaces the value the pod came with (RFC 6902 4.1)."""
        pod = streamspace_pod(annotations={KEY: "planted", "other": "kept"})
        patched = apply(pod, set_annotation(pod, key=KEY, value=TOKEN))
        assert patched["metadata"]["annotations"] == {KEY: TOKEN, "other": "kept"}

    @pytest.mark.parametrize("key", ["a/b/c", "x~y", "~1/~0", "example.com/to~ken"])
    def test_keys_with_slash_and_tilde(self, key: str) -> None:
        """Keys with ``/`` and ``~`` land under exactly that key in the kubectl pod's map."""
        pod = load_json(KUBECTL_REVIEW)["request"]["object"]
        patched = apply(pod, set_annotation(pod, key=key, value="v"))
        assert patched["metadata"]["annotations"][key] == "v"
        assert len(patched["metadata"]["annotations"]) == 2

    def test_missing_metadata_adds_metadata(self) -> None:
        """An object without ``metadata`` gets ``add /metadata`` so the patch still applies."""
        ops = set_annotation({"spec": {}}, key=KEY, value=TOKEN)
        assert apply({"spec": {}}, ops) == {"spec": {}, "metadata": {"annotations": {KEY: TOKEN}}}

    def test_does_not_modify_the_input(self) -> None:
        """The builder reads the object only."""
        pod = streamspace_pod(annotations={"a": "b"})
        before = copy.deepcopy(pod)
        set_annotation(pod, key=KEY, value=TOKEN)
        assert pod == before


class TestRemoveAnnotation:
    def test_removes_only_our_key(self) -> None:
        """A pre-set token is removed and every other annotation stays."""
        pod = streamspace_pod(annotations={KEY: "planted", "other/key": "kept"})
        ops = remove_annotation(pod, key=KEY)
        assert ops == [
            {"op": "remove", "path": "/metadata/annotations/agents.streamspace.io~1bootstrap-token"}
        ]
        patched = apply(pod, ops)
        assert patched["metadata"]["annotations"] == {"other/key": "kept"}
        assert without_annotations(patched) == without_annotations(pod)

    def test_removes_a_real_key_with_a_slash(self) -> None:
        """kubectl's last-applied annotation (a key with ``/``) is removable by its escaped path."""
        pod = load_json(KUBECTL_REVIEW)["request"]["object"]
        key = "kubectl.kubernetes.io/last-applied-configuration"
        patched = apply(pod, remove_annotation(pod, key=key))
        assert patched["metadata"]["annotations"] == {}

    @pytest.mark.parametrize(
        "annotations", [None, {}, {"other": "x"}], ids=["null", "empty", "other-key"]
    )
    def test_nothing_to_remove_is_no_op(self, annotations: dict[str, str] | None) -> None:
        """No patch when the key is not there (a ``remove`` of a missing path would fail)."""
        pod = streamspace_pod()
        pod["metadata"]["annotations"] = annotations
        assert remove_annotation(pod, key=KEY) == []

    def test_absent_map_is_no_op(self) -> None:
        """No patch when the pod has no annotation map at all."""
        assert remove_annotation(streamspace_pod(), key=KEY) == []


class TestHasAnnotation:
    @pytest.mark.parametrize(
        ("annotations", "expected"),
        [(None, False), ({}, False), ({KEY: ""}, True), ({KEY: "x", "o": "p"}, True)],
    )
    def test_presence(self, annotations: dict[str, str] | None, expected: bool) -> None:
        """Presence of the key counts, whatever its value (even empty)."""
        pod = streamspace_pod()
        pod["metadata"]["annotations"] = annotations
        assert has_annotation(pod, key=KEY) is expected


# --- properties ----------------------------------------------------------------------------

# Annotation keys with the characters that need escaping, plus arbitrary text.
keys = st.one_of(
    st.text(alphabet=st.sampled_from("ab/~01.-"), min_size=1, max_size=12),
    st.text(min_size=1, max_size=20),
)
annotation_maps = st.dictionaries(keys, st.text(max_size=20), max_size=6)
# "absent" (no key at all), null, or a map.
annotation_states = st.one_of(st.just("absent"), st.none(), annotation_maps)


def pod_with(state: object) -> dict[str, Any]:
    pod = streamspace_pod()
    if state != "absent":
        pod["metadata"]["annotations"] = copy.deepcopy(state)
    return pod


class TestPatchProperties:
    @given(state=annotation_states, key=keys, value=st.text(max_size=40))
    def test_set_yields_old_map_plus_key(self, state: object, key: str, value: str) -> None:
        """Setting applies cleanly and yields the old annotations with ``key`` set to ``value``."""
        pod = pod_with(state)
        patched = apply(pod, set_annotation(pod, key=key, value=value))
        old = state if isinstance(state, dict) else {}
        assert patched["metadata"]["annotations"] == {**old, key: value}
        assert without_annotations(patched) == without_annotations(pod)

    @given(state=annotation_states, key=keys)
    def test_remove_yields_old_map_minus_key(self, state: object, key: str) -> None:
        """Removing applies cleanly, drops only ``key`` and is a no-op when it is absent."""
        pod = pod_with(state)
        ops = remove_annotation(pod, key=key)
        patched = apply(pod, ops)
        if isinstance(state, dict) and key in state:
            assert len(ops) == 1
            assert patched["metadata"]["annotations"] == {
                k: v for k, v in state.items() if k != key
            }
        else:
            assert ops == []
            assert patched == pod

    @given(state=annotation_maps.filter(bool), data=st.data())
    def test_remove_an_existing_key(self, state: dict[str, str], data: st.DataObject) -> None:
        """Any key drawn from the map (``/``, ``~`` and all) is removed by one op."""
        key = data.draw(st.sampled_from(sorted(state)))
        pod = pod_with(state)
        patched = apply(pod, remove_annotation(pod, key=key))
        assert key not in patched["metadata"]["annotations"]
        assert len(patched["metadata"]["annotations"]) == len(state) - 1
