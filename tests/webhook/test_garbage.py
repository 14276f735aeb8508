"""Garbage in: every body gets a clean answer, nothing escapes, and the server stays up.

Two levels: the pure path (``parse_review`` raises only ``MalformedReview``; ``Reviewer.answer``
never raises and always answers allowed with the uid) under hypothesis-generated JSON and
mutations of the real review; and a real TLS server that is sent empty, huge, non-UTF-8,
wrongly typed and wrongly kinded bodies, then still stamps a real review.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
import ssl
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap_token import SigningKey
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import Live, RecordingSink
from tests.webhook.test_handler import make_reviewer
from webhook.errors import MalformedReview
from webhook.review import parse_review
from webhook.stamp import StampConfig

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def mutated(seed: int, value: Any) -> dict[str, Any]:
    """The real review with the node at a seeded random path replaced by ``value``."""
    review = streamspace_agent_review(uid="uid-mutated")
    choices = [p for p in paths(review) if p]
    where = random.Random(seed).choice(choices)
    node: Any = review
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = copy.deepcopy(value)
    return review


def check_answer(reviewer: Any, body: bytes) -> None:
    try:
        review = parse_review(body)
    except MalformedReview as exc:
        reason = exc.reason
        assert reason in {"empty_body", "invalid_json", "not_admission_review"}
        return
    document = reviewer.answer(review)
    assert document["response"]["allowed"] is True
    assert document["response"]["uid"] == review.request.uid
    assert document["apiVersion"] == review.api_version
    json.dumps(document)  # always serialisable


class TestPurePath:
    @settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(document=JSON)
    def test_any_json(
        self, document: Any, stamp_config: StampConfig, signing_key: SigningKey
    ) -> None:
        """Any JSON document: refused as malformed or answered allowed; nothing else escapes."""
        reviewer = make_reviewer(stamp_config, signing_key, RecordingSink())
        check_answer(reviewer, json.dumps(document).encode())

    @settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(seed=st.integers(0, 2**32), value=JSON)
    def test_mutated_real_review(
        self, seed: int, value: Any, stamp_config: StampConfig, signing_key: SigningKey
    ) -> None:
        """The real review with any node replaced by any JSON value still gets a clean answer."""
        reviewer = make_reviewer(stamp_config, signing_key, RecordingSink())
        check_answer(reviewer, json.dumps(mutated(seed, value)).encode())

    @settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=st.binary(max_size=200))
    def test_any_bytes(
        self, body: bytes, stamp_config: StampConfig, signing_key: SigningKey
    ) -> None:
        """Any bytes at all (non-UTF-8 included) are refused cleanly or answered."""
        check_answer(make_reviewer(stamp_config, signing_key, RecordingSink()), body)


def review_bytes(**changes: Any) -> bytes:
    review = streamspace_agent_review(uid="uid-garbage")
    review["request"].update(changes)
    return json.dumps(review).encode()


GARBAGE: list[tuple[str, bytes, str, set[int]]] = [
    ("empty", b"", "application/json", {400}),
    ("whitespace", b"   \n", "application/json", {400}),
    ("not-utf8", b"\xff\xfe\x00{", "application/json", {400}),
    ("latin1", '{"apiVersion": "é"}'.encode("latin-1"), "application/json", {400}),
    ("truncated", review_bytes()[:-40], "application/json", {400}),
    ("array", b"[1, 2, 3]", "application/json", {400}),
    ("number", b"42", "application/json", {400}),
    ("null", b"null", "application/json", {400}),
    ("wrong-kind", b'{"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {}}',
     "application/json", {400}),
    ("token-review", b'{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}',
     "application/json", {400}),
    ("uid-number", review_bytes(uid=7), "application/json", {400}),
    ("object-string", review_bytes(object="pod"), "application/json", {400}),
    ("labels-string", review_bytes(object={"metadata": {"labels": "x"}}), "application/json",
     {200}),
    ("containers-map", review_bytes(object={
        "metadata": {"generateName": "a-", "labels": {"app.kubernetes.io/component": "k8s-agent"}},
        "spec": {"containers": {}}}),
     "application/json", {200}),
    ("huge", b'{"a": "' + b"x" * 70_000 + b'"}', "application/json", {413}),
    ("form", b"a=b", "application/x-www-form-urlencoded", {415}),
    ("text", review_bytes(), "text/plain", {415}),
]  # fmt: skip


class TestLiveServer:
    async def test_garbage_then_a_real_review(self, live: Live, client_ssl: ssl.SSLContext) -> None:
        """Every garbage body gets its clean status and JSON reason; then a review is stamped."""
        url = f"https://localhost:{live.port}/mutate"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session:
            for name, body, content_type, statuses in GARBAGE:
                async with session.post(
                    url, data=body, headers={"Content-Type": content_type}
                ) as resp:
                    assert resp.status in statuses, name
                    answer = await resp.json()
                if resp.status == 200:
                    assert answer["response"]["allowed"] is True, name
                    assert answer["response"]["auditAnnotations"]["decision"] == "error", name
                else:
                    assert list(answer) == ["error"], name
            # Random binary bodies, seeded.
            rng = random.Random(6)
            for _ in range(30):
                body = rng.randbytes(rng.randrange(1, 4000))
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    assert resp.status == 400
            async with session.post(url, json=streamspace_agent_review(uid="after")) as resp:
                assert resp.status == 200
                response = (await resp.json())["response"]
        assert response["uid"] == "after"
        assert response["auditAnnotations"]["decision"] == "stamped"

    async def test_abrupt_clients(self, live: Live, client_ssl: ssl.SSLContext) -> None:
        """Clients that hang up mid-body or mid-handshake do not take the server down."""
        for cut in (0, 10, 200):
            _, writer = await asyncio.open_connection(
                "127.0.0.1", live.port, ssl=client_ssl, server_hostname="localhost"
            )
            body = review_bytes()
            writer.write(
                b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:cut]
            )
            await writer.drain()
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await writer.wait_closed()
        _, raw_writer = await asyncio.open_connection("127.0.0.1", live.port)
        raw_writer.write(b"\x16\x03\x01\x00\x05hello")  # a broken ClientHello
        await raw_writer.drain()
        raw_writer.close()
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session,
            session.get(f"https://localhost:{live.port}/healthz") as resp,
        ):
            assert (resp.status, await resp.text()) == (200, "ok")
