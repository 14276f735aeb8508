"""The ``namespace:serviceaccount`` allow-list of the service-account path. Pure.

Entries are exact ``namespace:serviceaccount`` pairs, the form the bootstrap token's trust
policy uses (``trust.serviceAccounts``) and the one ``kubectl`` prints in
``system:serviceaccount:<namespace>:<name>``. No wildcards: each service account that may
approve agents on its own is named. An empty list approves nobody on its own; service-account
tokens then only count as the second factor next to a bootstrap token
(:func:`approver.service_accounts.check_pod_binding`).
"""

from __future__ import annotations

from bootstrap_token.names import is_dns1123_label, is_dns1123_subdomain


def validate_pair(pair: str) -> str:
    """Return ``pair`` when it is ``namespace:serviceaccount`` with valid Kubernetes names.

    Raises:
        ValueError: another shape (the message quotes the entry: it is configuration, not a
            secret).
    """
    namespace, sep, name = pair.partition(":")
    # A namespace is a DNS-1123 label, a service account name a DNS-1123 subdomain.
    if not sep or not is_dns1123_label(namespace) or not is_dns1123_subdomain(name):
        raise ValueError(f"{pair!r} is not of the form 'namespace:serviceaccount'")
    return pair


def allows(allow: frozenset[str], *, namespace: str, service_account: str) -> bool:
    """True when ``namespace:service_account`` is on the list."""
    return f"{namespace}:{service_account}" in allow
