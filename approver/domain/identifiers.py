"""The rules for identity strings that reach the approver from the network. Pure.

An agent id is the primary key of an agent's record: an unauthenticated registration creates a
row under it, administrators see it in listings and type it into URL paths
(``/api/v1/admin/agents/{agentId}``), and it is copied into every audit event. So it is checked
at every HTTP boundary where it enters, with one rule (:func:`agent_id_problem`):

* 1..253 characters;
* only ASCII letters, digits, ``.``, ``_``, ``-`` and ``:``;
* the first character is a letter or a digit.

Why this rule: StreamSpace's k8s-agent registers as ``$(AGENT_ID_PREFIX)-$(POD_NAME)``
(its chart, ``tests/fixtures/streamspace``), e.g.
``k8s-prod-cluster-streamspace-k8s-agent-7d9f8b6c5-bb9n5``: a pod name is a DNS-1123 subdomain
(lowercase letters, digits, ``-``, ``.``, at most 253 characters) and a prefix is a cluster name
of the same kind. Upper case, ``_`` and ``:`` are allowed on top for ids that are not built from
a pod name (``cluster:pod``, ``agent_1``), since StreamSpace's server stores the id as free text.
Nothing else is: no control characters or escape sequences (they reached the admin API and
terminals as sent), no space, no ``/``, ``%``, ``?`` or ``#`` (the id is a URL path segment), no
non-ASCII (look-alike letters). A first letter or digit keeps out ``.`` and ``..``, which URL
clients and proxies collapse as dot segments. 253 is the Kubernetes name limit and the length
the approver always accepted.

A namespace filter of the admin API follows :func:`is_namespace_name` (a DNS-1123 label: what
Kubernetes accepts as a namespace name, so nothing else can match a stored namespace).

``platform`` and ``region`` of the registration body follow :func:`label_problem`: the same
character class, at most 64 and 128 characters (StreamSpace sends ``kubernetes`` and
``default``).
"""

from __future__ import annotations

import re

from bootstrap_token.names import (
    DNS1123_LABEL_MAX_LENGTH,
    DNS1123_SUBDOMAIN_MAX_LENGTH,
    is_dns1123_label,
    is_dns1123_subdomain,
)

#: Longest agent id (the Kubernetes object name limit).
AGENT_ID_MAX_LENGTH = 253
#: The characters of an agent id, platform or region, as documented in the module docstring.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def _id_rule(max_length: int) -> str:
    return (
        f"must be 1..{max_length} characters of ASCII letters, digits, '.', '_', '-' or ':', "
        "starting with a letter or a digit"
    )


#: The rule, in the words of the 400 answer (which never repeats the value).
AGENT_ID_RULE = _id_rule(AGENT_ID_MAX_LENGTH)

#: A pod name is a DNS-1123 subdomain, a namespace a DNS-1123 label (bootstrap_token.names).
POD_NAME_MAX_LENGTH = DNS1123_SUBDOMAIN_MAX_LENGTH
NAMESPACE_MAX_LENGTH = DNS1123_LABEL_MAX_LENGTH
#: The namespace rule, in the words of a 400 answer (which never repeats the value).
NAMESPACE_RULE = (
    f"must be a DNS-1123 label: 1..{NAMESPACE_MAX_LENGTH} lowercase letters, digits or '-', "
    "starting and ending with a letter or a digit"
)


def agent_id_problem(value: str) -> str | None:
    """Check an agent id against the rule of the module docstring.

    Args:
        value: the agent id as received (a registration body's ``agentId``, a URL path
            segment, a query parameter).

    Returns:
        None when the id is acceptable, else the rule it breaks (:data:`AGENT_ID_RULE`), for a
        400 answer; never the value itself.
    """
    return label_problem(value, max_length=AGENT_ID_MAX_LENGTH)


def label_problem(value: str, *, max_length: int) -> str | None:
    """Check a short free-text label of the registration body (``platform``, ``region``).

    Returns:
        None when ``value`` is 1..``max_length`` characters of the agent id's class (module
        docstring), else the rule it breaks (never the value).
    """
    if len(value) > max_length or _ID_RE.fullmatch(value) is None:
        return _id_rule(max_length)
    return None


def is_pod_name(value: str) -> bool:
    """True when ``value`` can be a Pod's name: a DNS-1123 subdomain of at most 253 characters
    (Kubernetes documentation, "Object Names and IDs")."""
    return is_dns1123_subdomain(value)


#: The rule of a namespaced object's name (a Deployment's), in the words of a 400 answer.
OBJECT_NAME_RULE = (
    f"must be a DNS-1123 subdomain: 1..{POD_NAME_MAX_LENGTH} lowercase letters, digits, '-' or "
    "'.', starting and ending with a letter or a digit"
)


def is_object_name(value: str) -> bool:
    """True when ``value`` can be a Deployment's (or a ReplicaSet's) name: a DNS-1123
    subdomain of at most 253 characters."""
    return is_dns1123_subdomain(value)


def is_namespace_name(value: str) -> bool:
    """True when ``value`` can be a Namespace's name: a DNS-1123 label of at most 63
    characters (Kubernetes documentation, "Object Names and IDs")."""
    return is_dns1123_label(value)
