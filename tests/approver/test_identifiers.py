"""The agent id rule and its neighbours (approver.domain.identifiers): tables and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approver.domain.identifiers import (
    AGENT_ID_RULE,
    agent_id_problem,
    is_namespace_name,
    is_pod_name,
    label_problem,
)
from tests.approver.helpers import AGENT_ID, POD_NAME, SECOND_AGENT_ID

#: A DNS-1123 label, what a Kubernetes pod name and a cluster name are made of.
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"


class TestAgentId:
    @pytest.mark.parametrize(
        "agent_id",
        [AGENT_ID, SECOND_AGENT_ID, POD_NAME,
         "k8s-prod-cluster-streamspace-k8s-agent-7d9f8b6c5-bb9n5",
         "prod-eu-1:streamspace-k8s-agent-7d9f8b6c5-bb9n5", "Agent_1.example",
         "custom-agent-name", "anything", "a", "0", "a" * 253],
    )  # fmt: skip
    def test_accepted(self, agent_id: str) -> None:
        """Real StreamSpace ids, the ids the tests and the demo use, and the documented
        characters up to 253 are accepted."""
        assert agent_id_problem(agent_id) is None

    @pytest.mark.parametrize(
        "agent_id",
        ["", "a" * 254, ".", "..", "-a", "_a", ":a", "a b", "a\tb", "a\nb", "a\rb", "a\x00b",
         "a\x1b[31m", "a\x7f", "a/b", "a%2F", "a?b", "a#b", "a@b", "a\u0430", "a\u200bb"],
    )  # fmt: skip
    def test_refused(self, agent_id: str) -> None:
        """Empty, too long, a leading non-alphanumeric, space, control characters, URL
        delimiters and non-ASCII are refused with the rule, which never holds the value."""
        assert agent_id_problem(agent_id) == AGENT_ID_RULE

    @given(
        prefix=st.from_regex(_LABEL, fullmatch=True),
        pod=st.from_regex(rf"{_LABEL}(\.{_LABEL})?", fullmatch=True),
    )
    def test_every_streamspace_id_is_accepted(self, prefix: str, pod: str) -> None:
        """$(AGENT_ID_PREFIX)-$(POD_NAME) with DNS names is accepted when 253 or shorter."""
        agent_id = f"{prefix}-{pod}"
        assert (agent_id_problem(agent_id) is None) == (len(agent_id) <= 253)

    @given(st.text(min_size=1, max_size=40))
    def test_accepted_ids_are_printable_ascii(self, agent_id: str) -> None:
        """Whatever is accepted is printable ASCII without space, '/', '%' or a leading dot."""
        if agent_id_problem(agent_id) is None:
            assert agent_id.isascii()
            assert agent_id.isprintable()
            assert not set(agent_id) & set(" /%?#\\")
            assert agent_id[0].isalnum()


class TestLabel:
    def test_bounds(self) -> None:
        """platform/region: the same characters, 1..max_length."""
        assert label_problem("kubernetes", max_length=64) is None
        assert label_problem("k" * 64, max_length=64) is None
        assert label_problem("k" * 65, max_length=64) is not None
        assert label_problem("", max_length=64) is not None
        assert label_problem("eu west", max_length=64) is not None


class TestPodName:
    @pytest.mark.parametrize(
        ("name", "ok"),
        [(POD_NAME, True), ("a", True), ("a.b-c", True), ("A", False), ("a_b", False),
         ("-a", False), ("a-", False), (POD_NAME + "\x1b[2J", False), ("a" * 254, False)],
    )  # fmt: skip
    def test_dns_subdomain(self, name: str, ok: bool) -> None:
        """A pod name is a DNS-1123 subdomain of at most 253 characters."""
        assert is_pod_name(name) is ok


class TestNamespaceName:
    @pytest.mark.parametrize(
        ("name", "ok"),
        [("streamspace", True), ("a", True), ("kube-system", True), ("a" * 63, True),
         ("", False), ("a" * 64, False), ("A", False), ("a.b", False), ("a_b", False),
         ("-a", False), ("a-", False), ("a b", False), ("a\n", False), ("\u202ea", False),
         ("streamspace\x1b[2J", False)],
    )  # fmt: skip
    def test_dns_label(self, name: str, ok: bool) -> None:
        """A namespace name is a DNS-1123 label of at most 63 characters."""
        assert is_namespace_name(name) is ok
