"""Kubernetes object name rules, shared by both services. Pure.

Source: Kubernetes documentation, "Object Names and IDs", and apimachinery's
``validation.IsDNS1123Label`` / ``IsDNS1123Subdomain``:

* a **DNS-1123 label** (namespaces, container names): 1..63 characters, lowercase letters,
  digits and ``-``, starting and ending with a letter or digit;
* a **DNS-1123 subdomain** (pod and service account names, annotation key prefixes): 1..253
  characters, such labels joined by ``.``.

``fullmatch`` on purpose: ``re.match`` with ``$`` would also accept a trailing newline.
"""

from __future__ import annotations

import re

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def is_dns1123_label(value: str) -> bool:
    """True when ``value`` is a DNS-1123 label (at most 63 characters)."""
    return len(value) <= DNS1123_LABEL_MAX_LENGTH and _DNS1123_LABEL.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    """True when ``value`` is a DNS-1123 subdomain (at most 253 characters)."""
    return (
        len(value) <= DNS1123_SUBDOMAIN_MAX_LENGTH
        and _DNS1123_SUBDOMAIN.fullmatch(value) is not None
    )
