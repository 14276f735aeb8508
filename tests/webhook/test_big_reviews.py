"""Hardening issue 13, item 11: every review the API server can send is answered.

The API server writes an AdmissionReview with Go's JSON encoder, which escapes each ``&``, ``<``
and ``>`` as six bytes (``\\u0026``, ``\\u003c``, ``\\u003e``). A valid pod near etcd's 1.5 MiB
limit with ``args`` full of ``&`` becomes a review of about 9 MiB; under the old 3 MiB
``maxRequestBytes`` it was refused with 413 and, with ``failurePolicy: Ignore``, admitted
unchanged (a planted token kept, no env injection). Concurrent large reviews over the in-flight
budget were refused with 503 the same way; now they wait for room. Every refusal that is left
names its reason and size in the audit line and is counted.

These tests post over real TLS to :func:`webhook.run.serve`, the production server, with the
review built from the captured fixture (:func:`tests.payloads.streamspace_agent_review`) and
encoded the way Go encodes it.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import ssl
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import pytest

from bootstrap_token import KeySet, SigningKey, VerificationPolicy, verify
from tests.conftest import Pki
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, RecordingSink, make_settings, serving
from tests.webhook.test_server import ClientFactory, head, open_raw, serve
from webhook.budget import ByteBudget
from webhook.config import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_UNESCAPED_REQUEST_BYTES,
    GO_JSON_ESCAPE_FACTOR,
    MAX_OBJECT_BYTES,
    REVIEW_ENVELOPE_BYTES,
    WebhookSettings,
)
from webhook.credentials import Credentials
from webhook.server import create_app, unescaped_size
from webhook.stamp import MAX_OBJECT_BYTES as STAMP_MAX_OBJECT_BYTES

#: What Go's encoding/json writes for the characters it escapes in strings by default
#: (HTMLEscape: <, >, &; and the two JavaScript line terminators).
GO_ESCAPES = {"&": "\\u0026", "<": "\\u003c", ">": "\\u003e", "\u2028": "\\u2028"}
GO_ESCAPES["\u2029"] = "\\u2029"

POLICY = VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver")


def go_json(document: Any) -> bytes:
    """``document`` as the API server writes it: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    for char, escape in GO_ESCAPES.items():
        text = text.replace(char, escape)  # these never occur outside strings in JSON
    return text.encode()


def ampersand_review(object_bytes: int, *, uid: str, planted: bool = True) -> dict[str, Any]:
    """The fixture's agent review whose pod, as compact JSON, is ``object_bytes`` long, most of
    it one ``args`` entry of ``&`` (with some ``<`` and ``>``); with ``planted``, the pod comes
    with a token annotation of its own."""
    review = streamspace_agent_review(
        uid=uid, annotations={ANNOTATION: "planted.token.value"} if planted else None
    )
    pod = review["request"]["object"]
    container = pod["spec"]["containers"][0]
    container["args"] = ["--filter="]
    size = len(json.dumps(pod, ensure_ascii=False, separators=(",", ":")).encode())
    filler = object_bytes - size
    container["args"] = ["--filter=" + ("&&<>" * (filler // 4 + 1))[:filler]]
    assert len(json.dumps(pod, ensure_ascii=False, separators=(",", ":")).encode()) == object_bytes
    return review


#: A pod as large as can still be stamped within etcd's limit (the token and the injected env
#: var need about 1 KiB; webhook.stamp leaves a pod over 1.5 MiB unstamped).
LARGEST_STAMPABLE = MAX_OBJECT_BYTES - 4096


def check_stamped(review: dict[str, Any], answer: dict[str, Any], key_set: KeySet) -> None:
    """The answer stamps the pod: a token over the planted one, verified, env injected."""
    response = answer["response"]
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is True
    assert response["auditAnnotations"]["decision"] == "stamped"
    pod = jsonpatch.apply_patch(
        review["request"]["object"], json.loads(base64.b64decode(response["patch"]))
    )
    token = pod["metadata"]["annotations"][ANNOTATION]
    claims = verify(token, key_set, POLICY, now=int(time.time()))
    assert claims.admission_uid == review["request"]["uid"]
    [agent] = [c for c in pod["spec"]["containers"] if c["name"] == "k8s-agent"]
    [variable] = [e for e in agent["env"] if e["name"] == "AGENT_API_KEY"]
    assert variable["valueFrom"]["fieldRef"]["fieldPath"] == (
        f"metadata.annotations['{ANNOTATION}']"
    )


def tls_settings(pki: Pki, **overrides: object) -> WebhookSettings:
    """The production server's settings (limits at their defaults unless overridden)."""
    values: dict[str, object] = {
        "trust": {"namespaces": ["streamspace"]},
        "injectEnv": {"enabled": True},
        "signingKeyFile": pki.signing_key,
        "tlsCertFile": pki.webhook_cert,
        "tlsKeyFile": pki.webhook_key,
        "host": "127.0.0.1",
        "metricsPort": 0,
        "shutdownDelaySeconds": 0,
    }
    values.update(overrides)
    return WebhookSettings.model_validate(values)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The result of every wait for room in the in-flight budget (True: admitted)."""
    results: list[bool] = []
    reserve = ByteBudget.reserve

    async def spy(self: ByteBudget, size: int) -> None:
        try:
            await reserve(self, size)
        except BaseException:
            results.append(False)
            raise
        results.append(True)

    monkeypatch.setattr(ByteBudget, "reserve", spy)
    return results


async def post_body(
    session: aiohttp.ClientSession, port: int, body: bytes, context: ssl.SSLContext
) -> tuple[int, Any]:
    """POST ``body`` as the API server does (``?timeout=`` from ``timeoutSeconds``)."""
    async with session.post(
        f"https://localhost:{port}/mutate?timeout=10s",
        data=body,
        headers={"Content-Type": "application/json"},
        ssl=context,
    ) as response:
        return response.status, await response.json()


class TestTheDefaultLimit:
    def test_is_derived_from_the_api_servers_limits(self) -> None:
        """10 MiB = etcd's 1.5 MiB object x 6 bytes per Go escape + 1 MiB of envelope; the
        stamping policy's object limit is the same figure."""
        assert MAX_OBJECT_BYTES == STAMP_MAX_OBJECT_BYTES == 1_572_864
        assert len("\\u0026") == GO_JSON_ESCAPE_FACTOR
        assert DEFAULT_MAX_REQUEST_BYTES == 1_572_864 * 6 + REVIEW_ENVELOPE_BYTES == 10_485_760

    def test_the_largest_review_fits_both_limits(self) -> None:
        """A pod of 1.5 MiB of nothing but ``&``, Go-encoded, in the fixture's envelope: within
        maxRequestBytes, and within maxUnescapedRequestBytes once its escapes are decoded."""
        body = go_json(ampersand_review(MAX_OBJECT_BYTES, uid="largest"))
        assert 9_000_000 < len(body) <= DEFAULT_MAX_REQUEST_BYTES
        assert unescaped_size(body) == len(json.dumps(json.loads(body), separators=(",", ":")))
        assert unescaped_size(body) <= DEFAULT_MAX_UNESCAPED_REQUEST_BYTES


class TestOverTls:
    async def test_a_pod_of_1_5_mib_of_ampersands_is_stamped(
        self, pki: Pki, client_ssl: ssl.SSLContext
    ) -> None:
        """The largest stampable pod, args full of ``&``, Go-encoded (about 9.4 MB): 200 with
        the stamp patch (planted token replaced, env injected), with default settings."""
        review = ampersand_review(LARGEST_STAMPABLE, uid="uid-escaped")
        body = go_json(review)
        assert len(body) > 9_000_000  # about three times the old 3 MiB limit
        audit = RecordingSink()
        async with (
            serving(tls_settings(pki), audit=audit) as port,
            aiohttp.ClientSession() as session,
        ):
            status, answer = await post_body(session, port, body, client_ssl)
        assert status == 200
        check_stamped(review, answer, KeySet.from_file(pki.jwks))
        assert [(e.decision, e.reason) for e in audit.events] == [("stamped", "trusted_agent_pod")]

    async def test_concurrent_largest_reviews_wait_for_the_budget(
        self, pki: Pki, client_ssl: ssl.SSLContext, waits: list[bool]
    ) -> None:
        """Six reviews of about 9.4 MB at once against the default 32 MiB budget (three fit):
        the others wait for room, and every one is answered 200 with its stamp."""
        reviews = [ampersand_review(LARGEST_STAMPABLE, uid=f"uid-max-{i}") for i in range(6)]
        bodies = [go_json(review) for review in reviews]
        assert sum(map(len, bodies)) > 32 * 1024 * 1024
        audit = RecordingSink()
        async with (
            serving(tls_settings(pki), audit=audit) as port,
            aiohttp.ClientSession() as session,
        ):
            results = await asyncio.gather(
                *(post_body(session, port, body, client_ssl) for body in bodies)
            )
        key_set = KeySet.from_file(pki.jwks)
        assert [status for status, _ in results] == [200] * 6
        for review, (_, answer) in zip(reviews, results, strict=True):
            check_stamped(review, answer, key_set)
        assert sorted(e.decision for e in audit.events) == ["stamped"] * 6
        assert waits  # some waited for room...
        assert all(waits)  # ...and every one got it

    async def test_reviews_beyond_the_budget_wait_rather_than_503(
        self, pki: Pki, client_ssl: ssl.SSLContext, waits: list[bool]
    ) -> None:
        """The issue's pod (576 KB of ``&``, a 3.4 MB review) eight times at once against a
        budget of two such bodies: nobody is refused, all are stamped."""
        reviews = [ampersand_review(576_000, uid=f"uid-576-{i}") for i in range(8)]
        bodies = [go_json(review) for review in reviews]
        assert all(3_400_000 < len(body) < 3_500_000 for body in bodies)
        settings = tls_settings(pki, maxRequestBytes=3_500_000, maxInFlightBodyBytes=2 * 3_500_000)
        audit = RecordingSink()
        async with serving(settings, audit=audit) as port, aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(post_body(session, port, body, client_ssl) for body in bodies)
            )
        assert [status for status, _ in results] == [200] * 8
        key_set = KeySet.from_file(pki.jwks)
        for review, (_, answer) in zip(reviews, results, strict=True):
            check_stamped(review, answer, key_set)
        assert not [e for e in audit.events if e.decision == "malformed"]
        assert waits
        assert all(waits)


async def test_a_body_is_not_kept_once_answered(
    aiohttp_client: ClientFactory, tmp_path: Path, signing_key: SigningKey
) -> None:
    """aiohttp keeps the last request of a kept-alive connection until the next one arrives;
    the body must not be cached on it (``BaseRequest.read`` does), or every connection the API
    server keeps open holds a review of up to 10 MiB outside the in-flight budget."""
    app = create_app(
        make_settings(tmp_path),
        credentials=Credentials.with_key(signing_key),
        audit=RecordingSink(),
    )
    client = await serve(aiohttp_client, app)
    body = go_json(ampersand_review(576_000, uid="uid-kept"))
    tracemalloc.start(25)
    try:
        resp = await client.post("/mutate", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 200
        await resp.read()
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    server_side = snapshot.filter_traces(
        [
            tracemalloc.Filter(True, "*/aiohttp/web_request.py", all_frames=True),
            tracemalloc.Filter(True, "*/webhook/server.py", all_frames=True),
        ]
    )
    held = sum(stat.size for stat in server_side.statistics("filename"))
    assert held < len(body) // 4, f"{held} bytes still held after the answer"


class TestRefusalsAreVisible:
    async def test_a_body_over_the_limit_is_counted_and_audited_with_its_size(
        self,
        aiohttp_client: ClientFactory,
        tmp_path: Path,
        signing_key: SigningKey,
        audit: RecordingSink,
    ) -> None:
        """A declared length over maxRequestBytes (10 MiB by default): 413 before reading,
        ``errors_total{kind="too_large"}``, one audit line naming the reason and the size."""
        app = create_app(
            make_settings(tmp_path), credentials=Credentials.with_key(signing_key), audit=audit
        )
        client = await serve(aiohttp_client, app)
        reader, writer = await open_raw(client)
        writer.write(head(DEFAULT_MAX_REQUEST_BYTES + 1) + b'{"apiVersion":')
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read(4096)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert answer.endswith(b'{"error":"request body exceeds 10485760 bytes"}')
        assert app.metrics.sample("errors_total", {"kind": "too_large"}) == 1
        assert app.metrics.value(decision="malformed", reason="too_large") == 1
        [event] = audit.events
        assert (event.decision, event.reason) == ("malformed", "too_large")
        assert event.message == "request body exceeds 10485760 bytes: body 10485761 bytes"

    async def test_structure_beyond_the_unescaped_limit_is_refused(
        self,
        aiohttp_client: ClientFactory,
        tmp_path: Path,
        signing_key: SigningKey,
        audit: RecordingSink,
    ) -> None:
        """A 4 MiB body of nothing but JSON structure (no escapes to discount) is over
        maxUnescapedRequestBytes: 413 before it is parsed (it would decode to about 30 times its
        size), counted and audited with its size."""
        app = create_app(
            make_settings(tmp_path), credentials=Credentials.with_key(signing_key), audit=audit
        )
        client = await serve(aiohttp_client, app)
        review = streamspace_agent_review(uid="uid-structure")
        review["request"]["object"]["spec"]["volumes"] = [{}] * (4 * 1024 * 1024 // 3)
        body = go_json(review)
        resp = await client.post("/mutate", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 413
        assert await resp.json() == {
            "error": "request body exceeds 3145728 bytes with its escapes decoded"
        }
        assert app.metrics.sample("errors_total", {"kind": "too_large"}) == 1
        [event] = audit.events
        assert event.reason == "too_large"
        assert event.message is not None
        assert event.message.endswith(f": body {len(body)} bytes")

    async def test_a_malformed_body_is_audited_with_its_size(
        self, aiohttp_client: ClientFactory, tmp_path: Path, signing_key: SigningKey
    ) -> None:
        """400 for a body that is not JSON: the audit line gives its size, not its bytes."""
        audit = RecordingSink()
        app = create_app(
            make_settings(tmp_path), credentials=Credentials.with_key(signing_key), audit=audit
        )
        client = await serve(aiohttp_client, app)
        resp = await client.post(
            "/mutate", data=b"{not json &secret", headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400
        [event] = audit.events
        assert event.message == "request body is not valid JSON: body 17 bytes"


def test_unescaped_size_counts_each_escape_as_one_byte() -> None:
    assert unescaped_size(b'{"a":"\\u0026\\u003c\\u003e"}') == len(b'{"a":"&<>"}')
    assert unescaped_size(b'{"a":"\\\\u0026"}') == len(b'{"a":"\\\\u0026"}') - 5
    assert unescaped_size(b"[{},{},{}]") == 10
