"""What the admin client prints, from the admin API's JSON. Pure: no I/O, the time is passed in.

Every field comes from the approver, and many from a pod (agent id, names, reasons), so nothing
reaches the terminal as received: table cells keep printable ASCII and escape every other
character as Python's :func:`ascii` does (``\\x1b``, ``\\u202e``); JSON is ASCII-only
(``\\uXXXX``) and passed through :func:`bootstrap_token.audit.terminal_safe`; YAML is
ASCII-only too (PyYAML's double-quoted escapes).

Tables are kubectl's: a header of capitals, columns padded to the widest cell and three spaces
apart, the last column not padded, ``<none>`` for an empty cell.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import yaml

from bootstrap_token.audit import terminal_safe

NONE = "<none>"
GAP = "   "
AGENT_COLUMNS = ("AGENT ID", "STATUS", "NAMESPACE", "METHOD", "OWNER", "AGE")
WIDE_COLUMNS = (*AGENT_COLUMNS, "DEPLOYMENT", "CLUSTER", "SERVICE ACCOUNT", "REASON")
AUDIT_COLUMNS = ("SEQ", "TIME", "EVENT", "DECISION", "REASON", "ACTOR", "AGENT ID")


def human_age(seconds: float) -> str:
    """kubectl's ``HumanDuration`` (k8s.io/apimachinery duration): ``45s``, ``5m30s``, ``5m``,
    ``3h``, ``5h20m``, ``2d3h``, ``12d``, ``2y30d``; ``0s`` for up to a second in the future
    (clock skew), ``<invalid>`` beyond."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def safe_text(value: object) -> str:
    """``value`` as one terminal-safe cell: printable ASCII kept (``\\`` doubled), anything else
    escaped as :func:`ascii` writes it; ``<none>`` for None or an empty string."""
    if value is None or value == "":
        return NONE
    text = str(value)
    return "".join(
        "\\\\" if ch == "\\" else ch if " " <= ch <= "~" else ascii(ch)[1:-1] for ch in text
    )


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    widths: Sequence[int] | None = None,
    header: bool = True,
) -> list[str]:
    """Aligned lines: the header (unless ``header`` is false), then ``rows``; each column as
    wide as its widest cell (and at least ``widths[i]``), :data:`GAP` apart, the last column
    unpadded, trailing spaces stripped. Cells are printed as given (make them with
    :func:`safe_text`)."""
    sized = column_widths(headers, rows, widths)
    lines = [headers] if header else []
    out: list[str] = []
    for row in [*lines, *rows]:
        cells = [cell.ljust(sized[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        out.append(GAP.join(cells).rstrip())
    return out


def column_widths(
    headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int] | None = None
) -> list[int]:
    """The width of each column of :func:`table`."""
    base = list(widths) if widths is not None else [0] * len(headers)
    return [max(base[i], len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]


def parse_time(text: str) -> datetime:
    """An RFC 3339 time of the API (``...Z``). Raises ValueError when it is not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _owner(agent: Mapping[str, Any]) -> str | None:
    owner = agent.get("owner")
    if not isinstance(owner, dict) or not owner.get("name"):
        return None
    return f"{owner.get('kind') or '?'}/{owner['name']}"


def _deployment(agent: Mapping[str, Any]) -> str | None:
    owner = agent.get("owner")
    deployment = owner.get("deployment") if isinstance(owner, dict) else None
    return deployment.get("name") if isinstance(deployment, dict) else None


def agent_row(agent: Mapping[str, Any], *, now: datetime, wide: bool = False) -> list[str]:
    """One agent's cells for :data:`AGENT_COLUMNS` (:data:`WIDE_COLUMNS` with ``wide``); AGE
    from ``createdAt`` to ``now`` (``<unknown>`` when absent or not a time)."""
    try:
        age = human_age((now - parse_time(str(agent["createdAt"]))).total_seconds())
    except (KeyError, ValueError, TypeError):
        age = "<unknown>"
    cells = [
        agent.get("agentId"),
        agent.get("status"),
        agent.get("namespace"),
        agent.get("approvalMethod"),
        _owner(agent),
    ]
    row = [safe_text(c) for c in cells] + [age]
    if wide:
        row += [
            safe_text(c)
            for c in (
                _deployment(agent),
                agent.get("cluster"),
                agent.get("serviceAccount"),
                agent.get("reason"),
            )
        ]
    return row


def agents_table(
    agents: Sequence[Mapping[str, Any]], *, now: datetime, wide: bool = False
) -> list[str]:
    """The ``agents list``/``get`` table; ``No resources found.`` style line when empty is the
    caller's (this returns the header alone)."""
    headers = WIDE_COLUMNS if wide else AGENT_COLUMNS
    return table(headers, [agent_row(a, now=now, wide=wide) for a in agents])


def audit_table(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``audit list`` table (:data:`AUDIT_COLUMNS`)."""
    rows = [
        [
            safe_text(e.get("seq")),
            safe_text(e.get("time")),
            safe_text(e.get("event")),
            safe_text(e.get("decision")),
            safe_text(e.get("reason")),
            safe_text(e.get("actor")),
            safe_text(e.get("agent_id")),
        ]
        for e in events
    ]
    return table(AUDIT_COLUMNS, rows)


def agent_name(agent_id: object) -> str:
    """``-o name``: ``agent/<agentId>`` (escaped as a cell)."""
    return f"agent/{safe_text(agent_id)}"


def to_json(document: object) -> str:
    """Indented ASCII-only JSON, terminal-safe (module docstring)."""
    return terminal_safe(json.dumps(document, indent=2, ensure_ascii=True))


def json_line(document: object) -> str:
    """Compact ASCII-only JSON on one line (``--watch -o json``), terminal-safe."""
    return terminal_safe(json.dumps(document, ensure_ascii=True, separators=(",", ":")))


def to_yaml(document: object) -> str:
    """Block-style ASCII-only YAML, keys in the API's order, without a trailing newline."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=False).rstrip("\n")
