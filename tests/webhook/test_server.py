"""The aiohttp app: POST /mutate answers and refusals (400/408/413/415/503), /healthz, /metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer, TestClient

from bootstrap_token import KeySet, SigningKey, VerificationPolicy, verify
from bootstrap_token.metrics_http import create_metrics_app
from tests.conftest import Pki
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, NOW, RecordingSink, make_settings
from webhook.credentials import Credentials, SigningMaterial
from webhook.server import WebhookHttp, create_app
from webhook.tls import TlsFiles, TlsMaterial, load_tls

Client = TestClient[web.BaseRequest, None]
ClientFactory = Callable[[RawTestServer], Awaitable[Client]]

VERSIONS = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]


class WebhookTestServer(RawTestServer):
    """aiohttp's low-level test server running ``app.server()``, the server production runs."""

    def __init__(self, app: WebhookHttp) -> None:
        super().__init__(app)
        self.app = app

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> web.ServerRunner:
        # aiohttp's test servers cancel a handler whose client went away; production does not
        # (aiohttp's default, kept by webhook.run): test what production runs.
        kwargs["handler_cancellation"] = False
        return web.ServerRunner(self.app.server(debug=debug, **kwargs), debug=debug, **kwargs)


async def serve(aiohttp_client: ClientFactory, app: WebhookHttp) -> Client:
    """A test client of ``app``."""
    return await aiohttp_client(WebhookTestServer(app))


@pytest.fixture(name="app")
def app_fixture(tmp_path: Path, signing_key: SigningKey, audit: RecordingSink) -> WebhookHttp:
    """An app trusting ``streamspace``, clock fixed at NOW."""
    return create_app(
        make_settings(tmp_path),
        credentials=Credentials.with_key(signing_key),
        clock=lambda: float(NOW),
        audit=audit,
    )


@pytest.fixture
async def client(aiohttp_client: ClientFactory, app: WebhookHttp) -> Client:
    """A test client of ``app``."""
    return await serve(aiohttp_client, app)


@pytest.fixture
def tls_material(pki: Pki) -> TlsMaterial:
    """The certs-tooling webhook certificate, loaded."""
    return load_tls(TlsFiles(cert=pki.webhook_cert, key=pki.webhook_key))


async def post_json(client: Client, document: Any) -> Any:
    return await client.post(
        "/mutate", data=json.dumps(document), headers={"Content-Type": "application/json"}
    )


class TestMutate:
    @pytest.mark.parametrize("api_version", VERSIONS)
    async def test_stamps_in_request_version(
        self, client: Client, api_version: str, key_set: KeySet
    ) -> None:
        """A trusted agent pod is answered 200 in its apiVersion with a verifiable token patch."""
        review = streamspace_agent_review(api_version=api_version, uid="uid-http")
        resp = await post_json(client, review)
        assert resp.status == 200
        assert resp.content_type == "application/json"
        document = await resp.json()
        assert document["apiVersion"] == api_version
        assert document["kind"] == "AdmissionReview"
        response = document["response"]
        assert (response["uid"], response["allowed"], response["patchType"]) == (
            "uid-http",
            True,
            "JSONPatch",
        )
        pod = jsonpatch.apply_patch(
            review["request"]["object"], json.loads(base64.b64decode(response["patch"]))
        )
        claims = verify(
            pod["metadata"]["annotations"][ANNOTATION],
            key_set,
            VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver"),
            now=NOW,
        )
        assert claims.admission_uid == "uid-http"
        assert claims.namespace == "streamspace"
        assert claims.cluster == "test-cluster"
        assert response["auditAnnotations"]["jti"] == claims.jti

    async def test_charset_parameter_is_accepted(self, client: Client) -> None:
        """``application/json; charset=utf-8`` is JSON too."""
        resp = await client.post(
            "/mutate",
            data=json.dumps(streamspace_agent_review(uid="u-cs")).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert resp.status == 200
        assert (await resp.json())["response"]["uid"] == "u-cs"

    async def test_untrusted_pod_is_stripped(self, client: Client) -> None:
        """An untrusted pod with a planted token gets a remove patch and a warning."""
        review = streamspace_agent_review(namespace="sandbox", annotations={ANNOTATION: "x.y.z"})
        response = (await (await post_json(client, review)).json())["response"]
        assert response["auditAnnotations"] == {
            "decision": "stripped",
            "reason": "namespace_not_trusted",
        }
        pod = jsonpatch.apply_patch(
            review["request"]["object"], json.loads(base64.b64decode(response["patch"]))
        )
        assert pod["metadata"]["annotations"] == {}
        assert len(response["warnings"]) == 1

    async def test_internal_error_still_answers(
        self, aiohttp_client: ClientFactory, tmp_path: Path, signing_key: SigningKey
    ) -> None:
        """A failure inside the decision answers 200 allowed with the uid, counted in metrics."""

        def broken_clock() -> float:
            raise ValueError

        app = create_app(
            make_settings(tmp_path), credentials=Credentials.with_key(signing_key),
            clock=broken_clock, audit=RecordingSink(),
        )  # fmt: skip
        client = await serve(aiohttp_client, app)
        resp = await post_json(client, streamspace_agent_review(uid="uid-err"))
        assert resp.status == 200
        response = (await resp.json())["response"]
        assert response == {
            "uid": "uid-err",
            "allowed": True,
            "auditAnnotations": {"decision": "error", "reason": "internal_error"},
        }
        assert app.metrics.value(decision="error", reason="internal_error") == 1

    async def test_no_signing_key(self, aiohttp_client: ClientFactory, tmp_path: Path) -> None:
        """Without a signing key a trusted pod is admitted unstamped with a warning."""
        app = create_app(
            make_settings(tmp_path), credentials=Credentials.with_key(None), audit=RecordingSink()
        )
        client = await serve(aiohttp_client, app)
        response = (await (await post_json(client, streamspace_agent_review())).json())["response"]
        assert response["allowed"] is True
        assert "patch" not in response
        assert response["auditAnnotations"]["decision"] == "no_signing_key"
        assert response["warnings"][0].startswith("agent-bootstrap: no signing key")

    async def test_one_audit_event_per_review_without_token(
        self, client: Client, audit: RecordingSink, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each review writes one audit event; the token appears in no event and no log line."""
        caplog.set_level(logging.DEBUG)
        first = await post_json(client, streamspace_agent_review(uid="u1"))
        await post_json(client, streamspace_agent_review(uid="u2", namespace="sandbox"))
        await client.post("/mutate", data=b"{", headers={"Content-Type": "application/json"})
        response = (await first.json())["response"]
        token = json.loads(base64.b64decode(response["patch"]))[0]["value"][ANNOTATION]
        assert [(e.admission_uid, e.decision) for e in audit.events] == [
            ("u1", "stamped"),
            ("u2", "skipped"),
            (None, "malformed"),
        ]
        assert all(token not in e.to_json() for e in audit.events)
        assert all(token not in r.getMessage() for r in caplog.records)


class TestRefusals:
    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "request body is empty"),
            (b"{not json", "request body is not valid JSON"),
            (b"[]", "request body is not a JSON object"),
            (b'{"apiVersion": "v1", "kind": "Pod"}', "not an AdmissionReview"),
            (
                b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
                "request.uid",
            ),
        ],
        ids=["empty", "not-json", "array", "not-review", "no-uid"],
    )
    async def test_bad_request(
        self, client: Client, audit: RecordingSink, data: bytes, reason: str
    ) -> None:
        """A body that is not an AdmissionReview with a uid gets 400 and a JSON reason."""
        resp = await client.post("/mutate", data=data, headers={"Content-Type": "application/json"})
        assert resp.status == 400
        body = await resp.json()
        assert list(body) == ["error"]
        assert reason in body["error"]
        assert audit.events[0].decision == "malformed"

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
    async def test_wrong_content_type(
        self, client: Client, app: WebhookHttp, content_type: str
    ) -> None:
        """A body that is not declared application/json gets 415 with the reason."""
        resp = await client.post(
            "/mutate",
            data=json.dumps(streamspace_agent_review()),
            headers={"Content-Type": content_type},
        )
        assert resp.status == 415
        assert await resp.json() == {"error": "content type must be application/json"}
        assert app.metrics.value(decision="malformed", reason="unsupported_media_type") == 1

    async def test_missing_content_type(self, client: Client) -> None:
        """No content type at all is refused with 415 too."""
        resp = await client.post("/mutate", data=b'{"a": 1}', skip_auto_headers=["Content-Type"])
        assert resp.status == 415

    async def test_too_large_by_content_length(
        self, aiohttp_client: ClientFactory, tmp_path: Path, signing_key: SigningKey
    ) -> None:
        """A declared body over maxRequestBytes gets 413 with a JSON reason."""
        app = create_app(
            make_settings(tmp_path, maxRequestBytes=65536),
            credentials=Credentials.with_key(signing_key), audit=RecordingSink(),
        )  # fmt: skip
        client = await serve(aiohttp_client, app)
        review = streamspace_agent_review()
        review["request"]["object"]["metadata"]["annotations"] = {"big": "x" * 70000}
        resp = await post_json(client, review)
        assert resp.status == 413
        assert await resp.json() == {"error": "request body exceeds 65536 bytes"}
        assert app.metrics.value(decision="malformed", reason="too_large") == 1

    async def test_too_large_chunked(
        self, aiohttp_client: ClientFactory, tmp_path: Path, signing_key: SigningKey
    ) -> None:
        """A chunked body (no Content-Length) is cut off at maxRequestBytes with 413."""
        app = create_app(
            make_settings(tmp_path, maxRequestBytes=65536),
            credentials=Credentials.with_key(signing_key), audit=RecordingSink(),
        )  # fmt: skip
        client = await serve(aiohttp_client, app)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"x" * 8192

        resp = await client.post(
            "/mutate", data=chunks(), headers={"Content-Type": "application/json"}
        )
        assert resp.status == 413
        assert (await resp.json())["error"] == "request body exceeds 65536 bytes"

    async def test_default_limit_admits_a_big_pod(self, client: Client) -> None:
        """Under the default a 1.5 MiB review (over aiohttp's 1 MiB default) is answered."""
        review = streamspace_agent_review(uid="big")
        review["request"]["object"]["metadata"]["annotations"] = {"big": "x" * (1536 * 1024)}
        resp = await post_json(client, review)
        assert resp.status == 200
        assert (await resp.json())["response"]["uid"] == "big"

    async def test_get_not_allowed(self, client: Client) -> None:
        """Only POST is routed on /mutate: 405 naming the allowed method, JSON."""
        resp = await client.get("/mutate")
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert await resp.json() == {"error": "method GET not allowed"}

    async def test_post_to_probe_not_allowed(self, client: Client) -> None:
        """A POST to a probe is 405 with ``Allow: GET, HEAD``."""
        resp = await client.post("/healthz", data=b"{}")
        assert (resp.status, resp.headers["Allow"]) == (405, "GET, HEAD")

    async def test_expect_continue(self, client: Client) -> None:
        """A client sending ``Expect: 100-continue`` gets its 100 and then the answer."""
        resp = await client.post(
            "/mutate",
            data=json.dumps(streamspace_agent_review(uid="u-100")).encode(),
            headers={"Content-Type": "application/json"},
            expect100=True,
        )
        assert resp.status == 200
        assert (await resp.json())["response"]["uid"] == "u-100"

    async def test_unknown_expectation(self, client: Client, app: WebhookHttp) -> None:
        """Any other ``Expect`` value is 417 (RFC 9110 section 10.1.1), nothing reviewed."""
        resp = await client.post(
            "/mutate",
            data=json.dumps(streamspace_agent_review()).encode(),
            headers={"Content-Type": "application/json", "Expect": "something-else"},
        )
        assert resp.status == 417
        assert await resp.json() == {"error": "only Expect: 100-continue is supported"}
        assert app.metrics.value(decision="stamped", reason="trusted_agent_pod") == 0
        assert app.metrics.value(decision="malformed", reason="expectation_failed") == 1

    @pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP", "x-unknown"])
    async def test_compressed_body_refused(
        self, client: Client, app: WebhookHttp, audit: RecordingSink, encoding: str
    ) -> None:
        """A Content-Encoding other than identity is 415 before anything is decompressed."""
        resp = await client.post(
            "/mutate",
            data=b"\x1f\x8b not really gzip",
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert resp.status == 415
        assert await resp.json() == {"error": "content encoding must be identity"}
        assert app.metrics.value(decision="malformed", reason="unsupported_encoding") == 1
        assert [(e.decision, e.reason) for e in audit.events] == [
            ("malformed", "unsupported_encoding")
        ]

    async def test_identity_encoding_accepted(self, client: Client) -> None:
        """``Content-Encoding: identity`` is no encoding at all."""
        resp = await client.post(
            "/mutate",
            data=json.dumps(streamspace_agent_review(uid="u-id")).encode(),
            headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
        )
        assert resp.status == 200

    async def test_concurrent_reviews_each_get_their_own_answer(
        self, client: Client, app: WebhookHttp, key_set: KeySet
    ) -> None:
        """Reviews answered in one batch (webhook.batch) keep their own uid, token and jti."""
        uids = [f"uid-{i}" for i in range(40)]
        responses = await asyncio.gather(
            *(post_json(client, streamspace_agent_review(uid=uid)) for uid in uids)
        )
        answers = [(await r.json())["response"] for r in responses]
        assert [a["uid"] for a in answers] == uids
        policy = VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver")
        review = streamspace_agent_review()
        for uid, answer in zip(uids, answers, strict=True):
            pod = jsonpatch.apply_patch(
                review["request"]["object"], json.loads(base64.b64decode(answer["patch"]))
            )
            claims = verify(pod["metadata"]["annotations"][ANNOTATION], key_set, policy, now=NOW)
            assert claims.admission_uid == uid
            assert claims.jti == answer["auditAnnotations"]["jti"]
        assert len({a["auditAnnotations"]["jti"] for a in answers}) == len(uids)
        assert app.metrics.value(decision="stamped", reason="trusted_agent_pod") == len(uids)


async def open_raw(client: Client) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the test server, to send exactly the bytes a test wants."""
    return await asyncio.open_connection(client.server.host, client.server.port)


def head(length: int) -> bytes:
    return (
        b"POST /mutate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n\r\n"
    )


class TestSlowAndHostileBodies:
    @pytest.fixture
    def slow_app(
        self, tmp_path: Path, signing_key: SigningKey, audit: RecordingSink
    ) -> WebhookHttp:
        """Bodies of 64 KiB at most, two of them in flight at once, 1 s to arrive; a body
        without room waits 0.3 s for it."""
        return create_app(
            make_settings(
                tmp_path,
                maxRequestBytes=65536,
                maxInFlightBodyBytes=2 * 65536,
                bodyTimeoutSeconds=1,
                bodyBudgetWaitSeconds=0.3,
            ),
            credentials=Credentials.with_key(signing_key),
            audit=audit,
        )

    async def test_stalled_body_times_out(
        self, aiohttp_client: ClientFactory, slow_app: WebhookHttp, audit: RecordingSink
    ) -> None:
        """Headers, then part of the body, then nothing: 408 after bodyTimeoutSeconds, closed."""
        client = await serve(aiohttp_client, slow_app)
        reader, writer = await open_raw(client)
        writer.write(head(5000) + b'{"apiVersion": ')
        await writer.drain()
        async with asyncio.timeout(6):  # 1 s timeout + at most 2 s of lingering close
            status_line = await reader.readline()
            rest = await reader.read()  # until the server closes
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 408 ")
        assert b'{"error":"request body not received within 1 s"}' in rest
        assert slow_app.metrics.value(decision="malformed", reason="body_timeout") == 1
        assert [(e.decision, e.reason) for e in audit.events] == [("malformed", "body_timeout")]

    async def test_in_flight_budget(
        self, aiohttp_client: ClientFactory, slow_app: WebhookHttp, audit: RecordingSink
    ) -> None:
        """Two 64 KiB bodies arriving hold the whole budget: a third waits
        bodyBudgetWaitSeconds for room, then gets 503 Retry-After: 1, audited with its size and
        counted; once they finish, a new review is answered."""
        client = await serve(aiohttp_client, slow_app)
        held = [await open_raw(client) for _ in range(2)]
        for _, writer in held:
            writer.write(head(65536) + b"{")
            await writer.drain()
        await asyncio.sleep(0.1)  # both handlers are reading now
        reader, writer = await open_raw(client)
        writer.write(head(1000) + b"{")
        await writer.drain()
        started = time.monotonic()
        async with asyncio.timeout(5):
            answer = await reader.read(4096)  # sent at once, before the body is complete
        waited = time.monotonic() - started
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert 0.25 <= waited < 0.9  # the wait, well before the held bodies' 1 s timeout
        assert b"\r\nRetry-After: 1\r\n" in answer
        assert answer.endswith(b'{"error":"too many request bodies in flight"}')
        assert slow_app.metrics.value(decision="malformed", reason="overloaded") == 1
        assert slow_app.metrics.sample("body_budget_waits_total", {"result": "refused"}) == 1
        [event] = [e for e in audit.events if e.reason == "overloaded"]
        assert event.message == (
            "too many request bodies in flight: no room in maxInFlightBodyBytes within 0.3 s; "
            "body 1000 bytes"
        )
        for _, writer in held:
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.1)  # the held reads fail and give their budget back
        resp = await post_json(client, streamspace_agent_review(uid="after"))
        assert resp.status == 200
        assert (await resp.json())["response"]["uid"] == "after"
        assert slow_app.metrics.value(decision="malformed", reason="body_unreadable") == 2

    async def test_a_body_without_room_waits_for_it(
        self, aiohttp_client: ClientFactory, slow_app: WebhookHttp
    ) -> None:
        """Two bodies hold the whole budget; a review arriving then waits, in order, and is
        answered 200 once one of them gives its room back within bodyBudgetWaitSeconds."""
        client = await serve(aiohttp_client, slow_app)
        held = [await open_raw(client) for _ in range(2)]
        for _, held_writer in held:
            held_writer.write(head(65536) + b"{")
            await held_writer.drain()
        await asyncio.sleep(0.05)  # both handlers are reading now
        body = json.dumps(streamspace_agent_review(uid="waited")).encode()
        reader, writer = await open_raw(client)
        writer.write(head(len(body)) + body[:10])
        await writer.drain()
        await asyncio.sleep(0.05)  # waiting for room now
        assert slow_app.budget.waiting == 1
        held[0][1].close()  # that body can no longer be read: its room is given back
        writer.write(body[10:])
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            fields = {}
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                fields[name.lower()] = value.strip()
            answer = json.loads(await reader.readexactly(int(fields["content-length"])))
        writer.close()
        held[1][1].close()
        assert status_line.startswith(b"HTTP/1.1 200 ")
        assert answer["response"]["uid"] == "waited"
        assert slow_app.metrics.sample("body_budget_waits_total", {"result": "admitted"}) == 1
        assert slow_app.metrics.value(decision="malformed", reason="overloaded") == 0

    async def test_dropped_connection_is_one_quiet_event(
        self,
        aiohttp_client: ClientFactory,
        slow_app: WebhookHttp,
        audit: RecordingSink,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A client gone mid-body costs one audit event and a count, no traceback."""
        client = await serve(aiohttp_client, slow_app)
        _, writer = await open_raw(client)
        writer.write(head(5000) + b'{"apiVersion": ')
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await writer.wait_closed()
        for _ in range(50):
            if audit.events:
                break
            await asyncio.sleep(0.02)
        assert [(e.decision, e.reason) for e in audit.events] == [("malformed", "body_unreadable")]
        assert slow_app.metrics.value(decision="malformed", reason="body_unreadable") == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not [r for r in caplog.records if r.exc_info]


class TestProbes:
    async def test_healthz(self, client: Client) -> None:
        """GET /healthz answers 200 ok."""
        resp = await client.get("/healthz")
        assert resp.status == 200
        assert await resp.text() == "ok"

    async def test_metrics_not_on_the_review_port(self, client: Client) -> None:
        """The HTTPS port has no /metrics: metrics have their own plain-HTTP port."""
        resp = await client.get("/metrics")
        assert (resp.status, await resp.json()) == (404, {"error": "not found"})

    async def test_head_probes(self, client: Client) -> None:
        """HEAD is answered like GET on the probes (as aiohttp's router does), without a body."""
        resp = await client.head("/healthz")
        assert resp.status == 200
        assert await resp.read() == b""
        assert (await client.head("/readyz")).status == 503

    async def test_readyz_with_key_and_certificate(
        self, client: Client, app: WebhookHttp, tls_material: TlsMaterial
    ) -> None:
        """Ready once a signing key and a certificate are loaded."""
        app.credentials.tls = tls_material
        resp = await client.get("/readyz")
        assert (resp.status, await resp.text()) == (200, "ready")

    async def test_readyz_without_certificate(self, client: Client) -> None:
        """No certificate loaded: 503 naming it."""
        resp = await client.get("/readyz")
        assert (resp.status, await resp.text()) == (503, "not ready: no serving certificate loaded")

    async def test_readyz_before_and_after_key_load(
        self,
        aiohttp_client: ClientFactory,
        tmp_path: Path,
        signing_key: SigningKey,
        tls_material: TlsMaterial,
    ) -> None:
        """503 'no signing key' until a key is swapped in, then 200; draining makes it 503."""
        credentials = Credentials(tls=tls_material)
        app = create_app(make_settings(tmp_path), credentials=credentials, audit=RecordingSink())
        client = await serve(aiohttp_client, app)
        resp = await client.get("/readyz")
        assert (resp.status, await resp.text()) == (503, "not ready: no signing key loaded")
        credentials.signing = SigningMaterial.of(signing_key)
        assert (await client.get("/readyz")).status == 200
        app.lifecycle.draining = True
        resp = await client.get("/readyz")
        assert (resp.status, await resp.text()) == (503, "not ready: shutting down")
        assert (await client.get("/healthz")).status == 200


class TestMetricsPort:
    async def test_metrics_app_exposes_the_series(
        self,
        aiohttp_client: Callable[[web.Application], Awaitable[Any]],
        client: Client,
        app: WebhookHttp,
    ) -> None:
        """GET /metrics on the metrics app shows reviews by operation, decision and reason."""
        await post_json(client, streamspace_agent_review())
        metrics_client = await aiohttp_client(create_metrics_app(app.metrics.registry))
        resp = await metrics_client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
        series = (
            'reviews_total{decision="stamped",operation="CREATE",reason="trusted_agent_pod"} 1.0'
        )
        assert f"agent_bootstrap_webhook_{series}" in text
        assert "agent_bootstrap_webhook_review_duration_seconds_count 1.0" in text
        assert "agent_bootstrap_webhook_tokens_issued_total 1.0" in text


class TestCreateApp:
    def test_app_keys(self, tmp_path: Path, signing_key: SigningKey) -> None:
        """Settings, reviewer and metrics are stored under typed AppKeys."""
        settings = make_settings(tmp_path, maxRequestBytes=100_000)
        app = create_app(settings, credentials=Credentials.with_key(signing_key))
        assert app.settings is settings
        signing = app.reviewer.credentials.signing
        assert signing is not None
        assert signing.kid == signing_key.kid
        assert app.reviewer.config.cluster == "test-cluster"

    def test_apps_do_not_share_metrics(self, tmp_path: Path, signing_key: SigningKey) -> None:
        """Two apps in one process each get their own registry."""
        first = create_app(make_settings(tmp_path), credentials=Credentials.with_key(signing_key))
        second = create_app(make_settings(tmp_path), credentials=Credentials.with_key(signing_key))
        first.metrics.count(decision="stamped", reason="trusted_agent_pod")
        assert second.metrics.value(decision="stamped", reason="trusted_agent_pod") == 0
