"""Audit lines: the fast writer's line equals the shared AuditEvent's, batched per loop turn."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bootstrap_token import AuditEvent, SigningKey
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import NOW, RecordingSink
from webhook import audit as audit_module
from webhook.audit import FIELDS, BatchingAuditSink, audit_line, emitter
from webhook.credentials import Credentials
from webhook.handler import Reviewer
from webhook.metrics import WebhookMetrics
from webhook.review import parse_review
from webhook.stamp import StampConfig

TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.sampled_from(['"', "\\", "\n", "\r", "\t", "\x00", "\x1f", "é", "😀"]),
        st.sampled_from(["\x7f", "\x9b", "\u2028", "\u202e", "\u2066", "\u200f", "\u061c"]),
    ),
    max_size=30,
)
OPTIONAL = [
    "actor", "cluster", "namespace", "pod", "service_account", "jti", "kid", "admission_uid",
    "agent_id", "approval_method", "credential", "message",
]  # fmt: skip
MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "component": draw(st.sampled_from(["webhook", "approver", "certs-tooling"])),
        "event": draw(TEXT),
        "decision": draw(TEXT),
        "reason": draw(TEXT),
    }
    if draw(st.booleans()):
        fields["security"] = draw(st.booleans())
    for name in OPTIONAL:
        value = draw(st.none() | TEXT)
        if value is not None or draw(st.booleans()):
            fields[name] = value
    dry_run = draw(st.none() | st.booleans())
    if dry_run is not None:
        fields["dry_run"] = dry_run
    return fields


class TestAuditLine:
    @given(fields=events(), now=MOMENTS)
    def test_equals_the_model_line(self, fields: dict[str, Any], now: datetime) -> None:
        """For any event, the fast line is byte for byte AuditEvent(...).to_json()."""
        assert audit_line(fields, now=now) == AuditEvent(time=now, **fields).to_json()

    @given(fields=events(), now=MOMENTS)
    def test_equals_the_model_line_without_orjson(
        self, fields: dict[str, Any], now: datetime
    ) -> None:
        """The standard-library path writes the same line."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(audit_module, "orjson", None)
            assert audit_line(fields, now=now) == AuditEvent(time=now, **fields).to_json()

    @given(fields=events(), now=MOMENTS)
    def test_schema_ordered_fields_take_the_same_line(
        self, fields: dict[str, Any], now: datetime
    ) -> None:
        """Fields in schema order with ``security`` (the webhook's own events: no defaults to
        fill in, no reordering) give the model's line too."""
        fields.setdefault("security", False)
        ordered = {name: fields[name] for name in FIELDS if name in fields}
        assert audit_line(ordered, now=now) == AuditEvent(time=now, **ordered).to_json()

    def test_out_of_order_fields_are_reordered(self) -> None:
        """Keys given out of schema order still come out in it."""
        fields = {"reason": "r", "component": "webhook", "security": False, "event": "e",
                  "decision": "d", "message": "m", "dry_run": True}  # fmt: skip
        line = audit_line(fields)
        assert list(json.loads(line)) == [
            "time", "component", "event", "decision", "reason", "security", "dry_run", "message"
        ]  # fmt: skip

    def test_unknown_field_is_refused(self) -> None:
        """A field the schema does not have (a token, say) cannot be written."""
        with pytest.raises(KeyError, match="token"):
            audit_line({"component": "webhook", "event": "e", "decision": "d", "reason": "r",
                        "token": "x"})  # fmt: skip

    def test_required_field_missing(self) -> None:
        """A missing required field is refused as the model would."""
        with pytest.raises(KeyError, match="reason"):
            audit_line({"component": "webhook", "event": "e", "decision": "d"})

    def test_field_order_is_the_schema(self) -> None:
        """Keys come out in the model's declaration order."""
        every = {name: "x" for name in OPTIONAL} | {
            "component": "webhook", "event": "e", "decision": "d", "reason": "r",
            "security": True, "dry_run": True,
        }  # fmt: skip
        assert list(json.loads(audit_line(every))) == list(FIELDS)


class TestTerminalSafety:
    """What a terminal would reorder or act on is escaped like the control characters JSON
    escapes (issue 17: a pod's U+202E went into the line raw)."""

    @pytest.mark.parametrize(
        "char",
        [*"\u202e\u202a\u2066\u2069\u200e\u200f\u061c", *"\x7f\x85\x9b\u2028\u2029"],
    )
    def test_escaped_in_both_writers(self, char: str) -> None:
        """The fast line and the model's line write the character as a \\uXXXX escape, and
        the line still decodes to the value the pod sent."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        fields = {
            "component": "webhook", "event": "admission.review", "decision": "stamped",
            "reason": "trusted_agent_pod", "pod": f"agent-{char}exe.txt",
            "service_account": f"sa{char}", "message": f"\\{char}",
        }  # fmt: skip
        line = audit_line(fields, now=now)
        assert line == AuditEvent(time=now, **fields).to_json()
        assert char not in line
        assert line.count(f"\\u{ord(char):04x}") == 3
        decoded = json.loads(line)
        assert (decoded["pod"], decoded["service_account"], decoded["message"]) == (
            f"agent-{char}exe.txt",
            f"sa{char}",
            f"\\{char}",
        )

    def test_other_text_is_untouched(self) -> None:
        """Printable non-ASCII text stays as it is (only what acts or reorders is escaped)."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        fields = {"component": "webhook", "event": "e", "decision": "d", "reason": "r"}
        line = audit_line({**fields, "pod": "agent-é-😀-א"}, now=now)
        assert '"pod":"agent-é-😀-א"' in line

    def test_a_reviewed_pod_name(self, stamp_config: StampConfig, signing_key: SigningKey) -> None:
        """A review whose pod's generateName carries U+202E writes an audit line without it."""
        stream = io.StringIO()
        reviewer = Reviewer(
            config=stamp_config,
            credentials=Credentials.with_key(signing_key),
            clock=lambda: float(NOW),
            audit=BatchingAuditSink(stream),
            metrics=WebhookMetrics(registry=CollectorRegistry()),
        )
        raw = streamspace_agent_review(uid="uid-bidi")
        raw["request"]["object"]["metadata"]["generateName"] = "agent-\u202etxt.exe-"
        reviewer.answer(parse_review(json.dumps(raw).encode()))
        line = stream.getvalue()
        assert "\u202e" not in line
        assert '"pod":"agent-\\u202etxt.exe-"' in line


class TestBatchingAuditSink:
    def test_without_a_loop_writes_at_once(self) -> None:
        """Outside an event loop every event is written and flushed immediately."""
        stream = io.StringIO()
        sink = BatchingAuditSink(stream)
        sink.emit_fields({"component": "webhook", "event": "e", "decision": "d", "reason": "r"})
        assert json.loads(stream.getvalue())["decision"] == "d"

    async def test_batches_one_loop_turn(self) -> None:
        """Events of one loop iteration go out together, after it, one line each."""
        stream = io.StringIO()
        sink = BatchingAuditSink(stream, asyncio.get_running_loop())
        for n in range(5):
            sink.emit_fields(
                {"component": "webhook", "event": "e", "decision": str(n), "reason": "r"}
            )
        sink.emit(AuditEvent(component="webhook", event="e", decision="model", reason="r"))
        assert stream.getvalue() == ""
        await asyncio.sleep(0)
        lines = stream.getvalue().splitlines()
        assert [json.loads(line)["decision"] for line in lines] == [
            "0",
            "1",
            "2",
            "3",
            "4",
            "model",
        ]

    async def test_flush_writes_what_is_queued(self) -> None:
        """flush() (at shutdown) writes the queue at once."""
        stream = io.StringIO()
        sink = BatchingAuditSink(stream, asyncio.get_running_loop())
        sink.emit_fields({"component": "webhook", "event": "e", "decision": "d", "reason": "r"})
        sink.flush()
        assert stream.getvalue().count("\n") == 1
        await asyncio.sleep(0)
        assert stream.getvalue().count("\n") == 1

    def test_broken_stream_is_logged_not_raised(self, caplog: pytest.LogCaptureFixture) -> None:
        """A closed stdout is logged; the review path does not fail over its audit line."""
        stream = io.StringIO()
        stream.close()
        with caplog.at_level(logging.ERROR, logger="webhook.audit"):
            BatchingAuditSink(stream).emit_fields(
                {"component": "webhook", "event": "e", "decision": "d", "reason": "r"}
            )
        assert "cannot write audit lines" in caplog.text


class TestEmitter:
    def test_other_sinks_get_validated_events(self) -> None:
        """Any other AuditSink receives a real AuditEvent built from the fields."""
        sink = RecordingSink()
        emitter(sink)({"component": "webhook", "event": "e", "decision": "d", "reason": "r"})
        assert sink.events[0] == AuditEvent(
            time=sink.events[0].time, component="webhook", event="e", decision="d", reason="r"
        )
