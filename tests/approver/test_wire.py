"""The registration body a control plane receives."""

from __future__ import annotations

import json

from approver.domain.requests import forwarded_body
from tests.payloads import streamspace_registration_body


def test_forwarded_body_keeps_what_streamspace_reads() -> None:
    """StreamSpace's agent's own body is forwarded with the same members and values."""
    sent = streamspace_registration_body()
    assert json.loads(forwarded_body(json.loads(sent))) == json.loads(sent)


def test_forwarded_body_drops_what_streamspace_does_not_read() -> None:
    """Members StreamSpace's AgentRegistrationRequest does not have are left out; the ones it
    has keep any JSON type the agent sent."""
    data = {
        "agentId": "a-1",
        "platform": "kubernetes",
        "region": 7,
        "capacity": [1],
        "future": {"x": 1},
        "apiKey": "not-forwarded",
    }
    assert json.loads(forwarded_body(data)) == {
        "agentId": "a-1",
        "platform": "kubernetes",
        "region": 7,
        "capacity": [1],
    }
