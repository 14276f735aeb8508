"""Kubernetes name rules (bootstrap_token.names), shared by the webhook and the approver."""

from __future__ import annotations

import pytest

from bootstrap_token.names import is_dns1123_label, is_dns1123_subdomain


@pytest.mark.parametrize(
    ("value", "label", "subdomain"),
    [
        ("streamspace", True, True),
        ("k8s-agent", True, True),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("agents.streamspace.io", False, True),
        (".".join(["a" * 63] * 4)[:253], False, True),
        ("a" * 254, False, False),
        ("", False, False),
        ("-a", False, False),
        ("a-", False, False),
        ("A", False, False),
        ("a_b", False, False),
        ("a..b", False, False),
        ("abc\n", False, False),  # re.match with $ would accept this one
    ],
)
def test_rules(value: str, label: bool, subdomain: bool) -> None:
    """Labels and subdomains as Kubernetes "Object Names and IDs" defines them."""
    assert (is_dns1123_label(value), is_dns1123_subdomain(value)) == (label, subdomain)
