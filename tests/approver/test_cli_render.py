"""The admin client's rendering (approver.cli.render): kubectl's ages and tables, and nothing
from a pod reaching the terminal as received."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from approver.cli import render

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "age"),
    [
        # k8s.io/apimachinery/pkg/util/duration HumanDuration's own cases.
        (-2, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (1, "1s"),
        (119, "119s"),
        (120, "2m"),
        (121, "2m1s"),
        (9 * 60 + 59, "9m59s"),
        (10 * 60, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (7 * 3600 + 59 * 60, "7h59m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 59 * 60, "47h"),
        (48 * 3600, "2d"),
        (48 * 3600 + 3600, "2d1h"),
        (8 * 86400, "8d"),
        (367 * 86400, "367d"),
        (2 * 365 * 86400, "2y"),
        (2 * 365 * 86400 + 86400, "2y1d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_human_age_is_kubectls(seconds: int, age: str) -> None:
    assert render.human_age(seconds) == age


def test_table_aligns_three_spaces_apart() -> None:
    lines = render.table(("A", "LONGER", "LAST"), [["xyz", "1", "tail"], ["q", "22", ""]])
    assert lines == [
        "A     LONGER   LAST",
        "xyz   1        tail",
        "q     22",
    ]


def test_safe_text_escapes_what_a_terminal_acts_on() -> None:
    hostile = "a\x1b[2Jb\u202etxt.exe\x9b\nc\\d\u00e9"
    assert render.safe_text(hostile) == "a\\x1b[2Jb\\u202etxt.exe\\x9b\\nc\\\\d\\xe9"
    assert render.safe_text(None) == render.safe_text("") == "<none>"
    assert render.safe_text(42) == "42"


AGENT = {
    "agentId": "evil\x1b]0;pwned\x07",
    "status": "pending",
    "namespace": "ns",
    "approvalMethod": None,
    "owner": {
        "kind": "ReplicaSet",
        "name": "rs\u202e",
        "uid": "u",
        "deployment": {"name": "web", "uid": "d"},
        "evidence": "token",
    },
    "cluster": "c",
    "serviceAccount": "sa",
    "reason": "r",
    "createdAt": (NOW - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
}


def test_agent_rows_are_escaped_and_aged() -> None:
    assert render.agent_row(AGENT, now=NOW) == [
        "evil\\x1b]0;pwned\\x07",
        "pending",
        "ns",
        "<none>",
        "ReplicaSet/rs\\u202e",
        "5m",
    ]
    assert render.agent_row(AGENT, now=NOW, wide=True)[6:] == ["web", "c", "sa", "r"]
    assert render.agent_row({"agentId": "x"}, now=NOW)[-1] == "<unknown>"
    assert render.agent_name(AGENT["agentId"]) == "agent/evil\\x1b]0;pwned\\x07"


@pytest.mark.parametrize("dump", [render.to_json, render.json_line, render.to_yaml])
def test_documents_are_ascii_and_decode_to_the_same_values(dump: object) -> None:
    assert callable(dump)
    text = dump({"agent": AGENT})
    assert text.isascii()
    assert not any(ch < " " and ch != "\n" for ch in text)
    loaded = yaml.safe_load(text) if dump is render.to_yaml else json.loads(text)
    assert loaded == {"agent": AGENT}


def test_audit_table() -> None:
    """Events as the admin API sends them: the shared audit schema's names (``agent_id``), as
    ``audit_json`` dumps them (a first version read ``agentId`` and showed ``<none>``)."""
    events = [
        {
            "seq": 7,
            "time": "2026-01-02T03:04:05Z",
            "event": "admin.approve",
            "decision": "approved",
            "reason": "manual",
            "actor": "ops",
            "agent_id": "a-1",
        }
    ]
    assert render.audit_table(events) == [
        "SEQ   TIME                   EVENT           DECISION   REASON   ACTOR   AGENT ID",
        "7     2026-01-02T03:04:05Z   admin.approve   approved   manual   ops     a-1",
    ]
