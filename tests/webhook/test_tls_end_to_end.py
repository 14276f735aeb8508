"""serve() on loopback with the certs-tooling PKI; the client trusts only the test CA."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonpatch
import pytest

from bootstrap_token import KeySet, VerificationPolicy, verify
from tests.conftest import Pki
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION, serving
from webhook.config import WebhookSettings


@pytest.fixture
async def webhook_port(pki: Pki) -> AsyncIterator[int]:
    """Run serve() on an ephemeral loopback port; cancel it afterwards."""
    settings = WebhookSettings.model_validate(
        {
            "trust": {"namespaces": ["streamspace"]},
            "cluster": "tls-test",
            "signingKeyFile": pki.signing_key,
            "tlsCertFile": pki.webhook_cert,
            "tlsKeyFile": pki.webhook_key,
            "host": "127.0.0.1",
            "metricsPort": 0,
            "shutdownDelaySeconds": 0,
        }
    )
    async with serving(settings) as port:
        yield port


async def post(port: int, review: dict[str, Any], context: ssl.SSLContext) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"https://localhost:{port}/mutate", json=review, ssl=context) as resp,
    ):
        assert resp.status == 200
        return await resp.json()


class TestOverTls:
    @pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
    async def test_stamps_over_tls(
        self, webhook_port: int, pki: Pki, client_ssl: ssl.SSLContext, api_version: str
    ) -> None:
        """Over real TLS the pod is stamped with a token the published JWKS verifies."""
        review = streamspace_agent_review(api_version=api_version, uid="uid-tls")
        answer = await post(webhook_port, review, client_ssl)
        assert answer["apiVersion"] == api_version
        response = answer["response"]
        assert response["uid"] == "uid-tls"
        pod = jsonpatch.apply_patch(
            review["request"]["object"], json.loads(base64.b64decode(response["patch"]))
        )
        token = pod["metadata"]["annotations"][ANNOTATION]
        claims = verify(
            token,
            KeySet.from_file(pki.jwks),
            VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver"),
            now=int(time.time()),
        )
        assert (claims.cluster, claims.namespace, claims.admission_uid) == (
            "tls-test",
            "streamspace",
            "uid-tls",
        )

    async def test_negotiates_tls_1_2_or_newer(
        self, webhook_port: int, client_ssl: ssl.SSLContext
    ) -> None:
        """The handshake verifies the server against the test CA and lands on TLS 1.2+."""
        _, writer = await asyncio.open_connection(
            "127.0.0.1", webhook_port, ssl=client_ssl, server_hostname="localhost"
        )
        try:
            version = writer.get_extra_info("ssl_object").version()
        finally:
            writer.close()
            await writer.wait_closed()
        assert version in ("TLSv1.2", "TLSv1.3")

    async def test_untrusted_client_refuses(self, webhook_port: int) -> None:
        """A client trusting only the system CAs refuses the webhook's certificate."""
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await post(webhook_port, streamspace_agent_review(), ssl.create_default_context())
