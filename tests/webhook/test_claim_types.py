"""The minting side of issue 13, item 1: whatever JSON value a review holds where a claim comes
from, the webhook either refuses the review as malformed or mints a token whose every claim has
its exact JSON type, one the strict verifier accepts. Never a token the approver would refuse
as malformed, and never a converted value (a number for a name, a string for a time)."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap_token import KeySet, VerificationPolicy, verify
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, NOW
from webhook.errors import MalformedReview
from webhook.review import parse_review
from webhook.signer import TokenSigner
from webhook.stamp import Outcome, StampConfig, decide

#: Where each claim comes from in the review (a path from the review's root) and its claim.
SOURCES: list[tuple[tuple[Any, ...], tuple[str, ...]]] = [
    (("request", "uid"), ("admissionUid",)),
    (("request", "namespace"), ("namespace",)),
    (("request", "object", "spec", "serviceAccountName"), ("serviceAccount",)),
    (("request", "object", "metadata", "generateName"), ("pod", "generateName")),
    (("request", "object", "metadata", "name"), ("pod", "name")),
    (("request", "object", "metadata", "ownerReferences", 0, "kind"), ("owner", "kind")),
    (("request", "object", "metadata", "ownerReferences", 0, "name"), ("owner", "name")),
    (("request", "object", "metadata", "ownerReferences", 0, "uid"), ("owner", "uid")),
    (("request", "object", "metadata", "ownerReferences", 0, "controller"), ()),
]

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["streamspace", "streamspace-agent", "x-", "0", "1796000000"]),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=5), inner, max_size=2)
    ),
    max_leaves=4,
)


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    document[path[-1]] = value


def _claim(payload: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = payload
    for step in path:
        value = value[step]
    return value


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(source=st.sampled_from(SOURCES), value=JSON_VALUES)
def test_refused_or_minted_with_exact_types(
    source: tuple[tuple[Any, ...], tuple[str, ...]],
    value: Any,
    stamp_config: StampConfig,
    signer: TokenSigner,
    key_set: KeySet,
) -> None:
    path, claim = source
    review = streamspace_agent_review(uid="uid-types")
    _set(review, path, value)
    try:
        request = parse_review(json.dumps(review).encode()).request
        decision = decide(request, config=stamp_config, signer=signer, now=NOW)
    except MalformedReview:
        return
    if decision.decision is not Outcome.STAMPED:
        return
    patched = jsonpatch.apply_patch(review["request"]["object"], decision.patch)
    token = patched["metadata"]["annotations"][ANNOTATION]
    policy = VerificationPolicy(issuer=stamp_config.issuer, audience=stamp_config.audience)
    claims = verify(token, key_set, policy, now=NOW)  # strict: raises on any other type
    payload: dict[str, Any] = dict(claims.to_payload())
    if claim and claim[0] in payload and (len(claim) == 1 or claim[1] in payload[claim[0]]):
        minted = _claim(payload, claim)
        assert isinstance(minted, str)
        if isinstance(value, str) and value:
            assert minted == value
