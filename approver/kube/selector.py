"""A ``metav1.LabelSelector`` as the ``labelSelector`` query parameter of a list or watch. Pure.

Syntax (Kubernetes "Labels and Selectors"): comma-separated requirements, ``key=value`` for
``matchLabels``, ``key in (a,b)``, ``key notin (a,b)``, ``key`` (Exists), ``!key``
(DoesNotExist) for ``matchExpressions``. Values are sorted so the string is stable.
"""

from __future__ import annotations

from bootstrap_token import LabelSelector
from bootstrap_token.policy import SelectorOperator


def selector_string(selector: LabelSelector) -> str:
    """The query string for ``selector``; empty for the empty selector (every pod)."""
    parts = [f"{key}={value}" for key, value in sorted(selector.match_labels.items())]
    for req in selector.match_expressions:
        values = ",".join(sorted(req.values))
        match req.operator:
            case SelectorOperator.IN:
                parts.append(f"{req.key} in ({values})")
            case SelectorOperator.NOT_IN:
                parts.append(f"{req.key} notin ({values})")
            case SelectorOperator.EXISTS:
                parts.append(req.key)
            case SelectorOperator.DOES_NOT_EXIST:
                parts.append(f"!{req.key}")
    return ",".join(parts)
