"""The audit hash chain: canonical form, links, and verification naming the first broken link."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from approver.audit.chain import (
    FIELDS,
    GENESIS_HASH,
    ChainedEvent,
    ChainVerifier,
    canonical,
    link,
    verify_chain,
)
from bootstrap_token import AuditEvent

T0 = datetime(2025, 11, 30, 2, 0, tzinfo=UTC)


def event(n: int, **changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "time": T0 + timedelta(seconds=n),
        "component": "approver",
        "event": "agent.register",
        "decision": "approved",
        "reason": "bootstrap_token_accepted",
        "agent_id": f"agent-{n}",
        "message": "step=bootstrap_token effect=create; ünïcode",
    }
    values.update(changes)
    return AuditEvent.model_validate(values)


def chain(count: int) -> list[ChainedEvent]:
    links, prev = [], GENESIS_HASH
    for n in range(1, count + 1):
        item = link(event(n), seq=n, prev_hash=prev)
        links.append(item)
        prev = item.hash
    return links


class TestCanonical:
    def test_is_sorted_ascii_json_with_every_field(self) -> None:
        """The hashed bytes are sorted, compact, ASCII JSON holding every stored field."""
        data = canonical(event(1), seq=1, prev_hash=GENESIS_HASH)
        decoded = json.loads(data)
        assert list(decoded) == sorted(decoded)
        assert data.isascii()
        assert decoded["time"] == "2025-11-30T02:00:01.000000Z"
        assert (decoded["seq"], decoded["prev_hash"], decoded["v"]) == (1, GENESIS_HASH, 1)
        assert decoded["actor"] is None

    @given(
        texts=st.lists(st.text(max_size=30), min_size=4, max_size=4),
        printable=st.lists(
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
            min_size=2,
            max_size=2,
        ),
        security=st.booleans(),
        seq=st.integers(min_value=1, max_value=2**62),
    )
    @example(texts=["a b", "", "x", "j"], printable=["~", " "], security=True, seq=7)
    @example(texts=["\x7f", "é", "\n", "\x00"], printable=["", ""], security=False, seq=1)
    def test_bytes_are_the_definitions(
        self, texts: list[str], printable: list[str], security: bool, seq: int
    ) -> None:
        """Whatever the strings hold (quotes, backslashes, controls, DEL, non-ASCII, or plain
        printable ASCII, which takes the fast encoder), the bytes are the definition's: the
        standard library's sorted, compact, ASCII-escaped JSON."""
        e = event(
            seq % 1000,
            message=texts[0],
            pod=texts[1],
            agent_id=texts[2] + printable[0],
            jti=texts[3],
            namespace=printable[1],
            reason=printable[0] + '"\\',
            security=security,
        )
        expected: dict[str, object] = {name: getattr(e, name) for name in FIELDS}
        expected |= {
            "time": e.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "seq": seq,
            "prev_hash": GENESIS_HASH,
            "v": 1,
        }
        definition = json.dumps(expected, sort_keys=True, separators=(",", ":"))
        assert canonical(e, seq=seq, prev_hash=GENESIS_HASH) == definition.encode("ascii")

    def test_time_zone_does_not_change_the_hash(self) -> None:
        """The same instant in another zone is the same stored event."""
        local = event(1, time=(T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2))))
        assert link(local, seq=1, prev_hash=GENESIS_HASH).hash == chain(1)[0].hash


class TestVerify:
    def test_intact(self) -> None:
        """An untouched chain verifies, and its head matches."""
        links = chain(5)
        report = verify_chain(links, head=(5, links[-1].hash))
        assert (report.broken, report.checked, report.last_seq) == (None, 5, 5)

    def test_empty(self) -> None:
        """No events and the genesis head verify."""
        report = verify_chain([], head=(0, GENESIS_HASH))
        assert report.broken is None

    def test_edited_event(self) -> None:
        """An edited field breaks that event's own hash: the first broken link is named."""
        links = chain(5)
        edited = replace(links[2], event=links[2].event.model_copy(update={"decision": "pending"}))
        report = verify_chain([*links[:2], edited, *links[3:]], head=(5, links[-1].hash))
        assert report.broken is not None
        assert (report.broken.seq, report.broken.problem, report.checked) == (3, "hash", 2)

    def test_edited_and_rehashed_event(self) -> None:
        """Recomputing an edited event's hash breaks the next link instead."""
        links = chain(5)
        forged = link(links[2].event.model_copy(update={"decision": "pending"}), seq=3,
                      prev_hash=links[1].hash)  # fmt: skip
        report = verify_chain([*links[:2], forged, *links[3:]], head=(5, links[-1].hash))
        assert report.broken is not None
        assert (report.broken.seq, report.broken.problem) == (4, "prev_hash")

    def test_deleted_event(self) -> None:
        """A deleted event is a gap at its sequence number."""
        links = chain(5)
        report = verify_chain([*links[:1], *links[2:]], head=(5, links[-1].hash))
        assert report.broken is not None
        assert (report.broken.seq, report.broken.problem) == (2, "gap")

    def test_truncated_tail(self) -> None:
        """Deleting the last events is caught by the head."""
        links = chain(5)
        report = verify_chain(links[:3], head=(5, links[-1].hash))
        assert report.broken is not None
        assert (report.broken.seq, report.broken.problem) == (4, "head")

    def test_incremental_matches_whole(self) -> None:
        """Feeding page by page gives the same report."""
        links = chain(7)
        verifier = ChainVerifier()
        for item in links:
            assert verifier.feed(item)
        assert verifier.finish((7, links[-1].hash)) == verify_chain(links, head=(7, links[-1].hash))

    def test_naive_time_is_refused(self) -> None:
        """A naive time could be read back differently: it is refused."""
        with pytest.raises(ValueError, match="naive"):
            link(event(1, time=datetime(2025, 1, 1)), seq=1, prev_hash=GENESIS_HASH)
