"""Binding a token to the live pod: the rules, in order, as a table."""

from __future__ import annotations

from typing import Any

import pytest

from approver.domain.binding import (
    LivePod,
    PodCheck,
    check_live_pod,
    pod_namespace_mismatch,
)
from approver.domain.requests import RegistrationRequest
from bootstrap_token import OwnerRef
from tests.approver.helpers import NAMESPACE, OWNER, POD_NAME, registration_body

TOKEN = "header.payload.signature"
ANNOTATION = "agents.streamspace.io/bootstrap-token"
OWNER_REF = OwnerRef(**OWNER)


def pod(**changes: Any) -> LivePod:
    values: dict[str, Any] = {
        "namespace": NAMESPACE,
        "name": POD_NAME,
        "uid": "pod-uid-1",
        "annotations": {ANNOTATION: TOKEN},
        "controller": OWNER_REF,
    }
    values.update(changes)
    return LivePod(**values)


@pytest.mark.parametrize(
    ("live", "owner", "check", "uid"),
    [
        (pod(), OWNER_REF, PodCheck.OK, "pod-uid-1"),
        (None, OWNER_REF, PodCheck.NOT_FOUND, None),
        (pod(terminating=True), OWNER_REF, PodCheck.TERMINATING, "pod-uid-1"),
        (pod(annotations={}), OWNER_REF, PodCheck.TOKEN_MISMATCH, "pod-uid-1"),
        (
            pod(annotations={ANNOTATION: TOKEN + "x"}),
            OWNER_REF,
            PodCheck.TOKEN_MISMATCH,
            "pod-uid-1",
        ),
        (pod(controller=None), OWNER_REF, PodCheck.OWNER_MISMATCH, "pod-uid-1"),
        (
            pod(controller=OwnerRef(kind="ReplicaSet", name=OWNER["name"], uid="other")),
            OWNER_REF,
            PodCheck.OWNER_MISMATCH,
            "pod-uid-1",
        ),
        (pod(controller=None), None, PodCheck.OK, "pod-uid-1"),
        (pod(), None, PodCheck.OWNER_MISMATCH, "pod-uid-1"),
    ],
    ids=[
        "all good",
        "no such pod",
        "terminating",
        "no annotation",
        "another token",
        "no controller",
        "another controller",
        "bare pod, bare token",
        "adopted after admission",
    ],
)
def test_live_pod(
    live: LivePod | None, owner: OwnerRef | None, check: PodCheck, uid: str | None
) -> None:
    """Exists, not terminating, carries this token, controller as in the token: in that order."""
    evidence = check_live_pod(live, token=TOKEN, annotation=ANNOTATION, owner=owner)
    assert (evidence.check, evidence.uid) == (check, uid)


def test_only_a_foreign_token_is_security_relevant() -> None:
    """Only a token that is not the pod's own, or not presented from its address, is evidence
    of a copy (403)."""
    assert [c for c in PodCheck if c.security_relevant] == [
        PodCheck.TOKEN_MISMATCH,
        PodCheck.ADDRESS_MISMATCH,
    ]


@pytest.mark.parametrize(
    ("addresses", "source", "bind", "check"),
    [
        (frozenset({"10.1.2.3"}), "10.1.2.3", True, PodCheck.OK),
        (frozenset({"10.1.2.3", "fd00::3"}), "fd00::3", True, PodCheck.OK),
        (frozenset({"10.1.2.3"}), "10.9.9.9", True, PodCheck.ADDRESS_MISMATCH),
        (frozenset({"10.1.2.3"}), None, True, PodCheck.ADDRESS_MISMATCH),
        (frozenset(), "10.1.2.3", True, PodCheck.ADDRESS_MISMATCH),
        (frozenset({"10.1.2.3"}), "10.9.9.9", False, PodCheck.OK),
    ],
    ids=["its address", "its IPv6 address", "another address", "address unknown",
         "pod without address", "binding off"],
)  # fmt: skip
def test_source_address(
    addresses: frozenset[str], source: str | None, bind: bool, check: PodCheck
) -> None:
    """Rule 5: the request comes from one of the pod's addresses (status.podIP/podIPs)."""
    evidence = check_live_pod(
        pod(addresses=addresses),
        token=TOKEN,
        annotation=ANNOTATION,
        owner=OWNER_REF,
        source_address=source,
        bind_source_address=bind,
    )
    assert evidence.check is check


@pytest.mark.parametrize(
    ("metadata", "mismatch"),
    [
        ({"namespace": "sessions"}, False),
        ({"podNamespace": NAMESPACE}, False),
        ({"podNamespace": "other"}, True),
        ({}, False),
    ],
    ids=["session namespace ignored", "podNamespace equal", "podNamespace differs", "none"],
)
def test_pod_namespace(metadata: dict[str, Any], mismatch: bool) -> None:
    """Only metadata.podNamespace is compared; metadata.namespace is the session namespace."""
    request = RegistrationRequest.model_validate(registration_body(metadata=metadata))
    assert pod_namespace_mismatch(request, namespace=NAMESPACE) is mismatch
