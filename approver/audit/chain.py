"""The audit hash chain: canonical form of a stored audit event, its hash, and verification. Pure.

Every audit event the approver stores gets a sequence number ``seq`` (1, 2, 3, ... without
gaps) and two hashes:

* ``prev_hash``: the ``hash`` of event ``seq - 1`` (:data:`GENESIS_HASH`, 64 zeros, for ``seq``
  1);
* ``hash`` = SHA-256 hex of :func:`canonical` (the event's stored fields, ``seq`` and
  ``prev_hash``).

Changing, inserting or deleting any stored event changes its hash, which no longer matches the
next event's ``prev_hash``; :func:`verify_chain` walks the chain and names the first broken
link. (The chain shows *that* the log was edited, not who did it: whoever can rewrite the whole
table can also recompute every hash. Ship the JSON lines, or the latest ``hash``, somewhere the
database's writers cannot reach to close that gap.)

Canonical form, version 1: a JSON object with exactly the keys of :data:`FIELDS` (absent values
as ``null``), ``"v": 1``, keys sorted, no whitespace, non-ASCII escaped (``\\uXXXX``), the time
as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always six fraction digits). It depends only on what is
stored, so a verifier needs nothing but the table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from bootstrap_token import AuditEvent

GENESIS_HASH = "0" * 64
CHAIN_VERSION = 1

#: The stored event fields the hash covers (AuditEvent's, in their JSON spelling).
FIELDS: tuple[str, ...] = (
    "time",
    "component",
    "event",
    "decision",
    "reason",
    "security",
    "actor",
    "cluster",
    "namespace",
    "pod",
    "service_account",
    "jti",
    "kid",
    "admission_uid",
    "agent_id",
    "approval_method",
    "credential",
    "dry_run",
    "message",
)


def chain_time(value: datetime) -> datetime:
    """``value`` as stored: UTC, microsecond precision (what PostgreSQL and SQLite keep);
    ``value`` itself when it is already in UTC."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _time_text(value: datetime) -> str:
    return chain_time(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class ChainedEvent:
    """A stored audit event: its place in the chain and its hashes."""

    seq: int
    prev_hash: str
    hash: str
    event: AuditEvent


def canonical(event: AuditEvent, *, seq: int, prev_hash: str) -> bytes:
    """The bytes hashed for ``event`` at ``seq`` after ``prev_hash`` (format in the module
    docstring)."""
    data: dict[str, object] = {name: getattr(event, name) for name in FIELDS}
    data["time"] = _time_text(event.time)
    data["seq"] = seq
    data["prev_hash"] = prev_hash
    data["v"] = CHAIN_VERSION
    if all(_plain(value) for value in data.values()):
        # Printable ASCII strings only: the one escape either encoder writes is ``\"`` /
        # ``\\``, so orjson's bytes are the standard library's (tested), ten times faster.
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return _stdlib_canonical(data)


def _plain(value: object) -> bool:
    """True for None, a bool, an int, or a string of printable ASCII (``0x20``-``0x7e``)."""
    if isinstance(value, str):
        return value.isascii() and value.isprintable()
    return value is None or isinstance(value, bool | int)


def _stdlib_canonical(data: dict[str, object]) -> bytes:
    """The canonical bytes by the definition (any value, non-ASCII and controls escaped)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def event_hash(event: AuditEvent, *, seq: int, prev_hash: str) -> str:
    """SHA-256 hex of :func:`canonical`."""
    return hashlib.sha256(canonical(event, seq=seq, prev_hash=prev_hash)).hexdigest()


def link(event: AuditEvent, *, seq: int, prev_hash: str) -> ChainedEvent:
    """``event`` chained after ``prev_hash`` at ``seq`` (its time normalised as stored)."""
    at = chain_time(event.time)
    stored = event if at is event.time else event.model_copy(update={"time": at})
    return ChainedEvent(
        seq=seq,
        prev_hash=prev_hash,
        hash=event_hash(stored, seq=seq, prev_hash=prev_hash),
        event=stored,
    )


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first place the chain does not hold.

    Attributes:
        seq: the sequence number of the first event that fails (or that is missing).
        problem: ``gap`` (a sequence number is missing), ``prev_hash`` (the event does not point
            at its predecessor's hash), ``hash`` (the event's fields do not give its hash: it
            was edited) or ``head`` (the chain head disagrees with the last event).
        detail: a human sentence.
    """

    seq: int
    problem: str
    detail: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of :func:`verify_chain`: how many events were checked, the last hash, and the
    first broken link (None: intact)."""

    checked: int
    last_seq: int
    last_hash: str
    broken: BrokenLink | None


class ChainVerifier:
    """Incremental :func:`verify_chain`: :meth:`feed` events in ``seq`` order (a page at a
    time, so a long chain never has to fit in memory), then :meth:`finish`."""

    def __init__(self) -> None:
        self._expected = 1
        self._prev = GENESIS_HASH
        self._checked = 0
        self._broken: BrokenLink | None = None

    @property
    def broken(self) -> BrokenLink | None:
        return self._broken

    def feed(self, item: ChainedEvent) -> bool:
        """Check one event; False once the chain is broken (later events are not looked at)."""
        if self._broken is not None:
            return False
        seq = self._expected
        if item.seq != seq:
            detail = f"event {seq} is missing (the next stored is {item.seq})"
            self._broken = BrokenLink(seq, "gap", detail)
        elif item.prev_hash != self._prev:
            detail = f"event {seq} does not point at event {seq - 1}'s hash"
            self._broken = BrokenLink(seq, "prev_hash", detail)
        elif event_hash(item.event, seq=seq, prev_hash=item.prev_hash) != item.hash:
            detail = f"event {seq} does not hash to its stored hash: it was changed"
            self._broken = BrokenLink(seq, "hash", detail)
        if self._broken is not None:
            return False
        self._checked += 1
        self._prev = item.hash
        self._expected += 1
        return True

    def finish(self, head: tuple[int, str] | None = None) -> ChainReport:
        """The report; ``head`` (the stored chain head) is checked against the last event."""
        last_seq = self._expected - 1
        broken = self._broken
        if broken is None and head is not None and head != (last_seq, self._prev):
            broken = BrokenLink(
                min(head[0], last_seq + 1),
                "head",
                f"the chain head says event {head[0]} but the last stored event is {last_seq}",
            )
        return ChainReport(self._checked, last_seq, self._prev, broken)


def verify_chain(
    events: Iterable[ChainedEvent],
    *,
    head: tuple[int, str] | None = None,
) -> ChainReport:
    """Recompute the chain over ``events`` (ascending ``seq``, starting at 1).

    Args:
        events: every stored event in ``seq`` order.
        head: the stored chain head ``(seq, hash)``, checked against the last event.

    Returns:
        The report; ``broken`` names the first broken link, and checking stops there.
    """
    verifier = ChainVerifier()
    for item in events:
        if not verifier.feed(item):
            break
    return verifier.finish(head)
