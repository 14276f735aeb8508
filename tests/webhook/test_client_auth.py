"""tlsClientCaFile: only a client with a certificate from the configured CA gets an answer.

Real TLS on loopback: serve() with the certs-tooling serving certificate, client certificates
issued here by throwaway CAs (as a cluster admin would issue the API server's, Kubernetes
"Dynamic Admission Control", "Authenticate apiservers").
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from certs_tooling.pki import Issued, make_ca, make_client_cert
from tests.conftest import Pki
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import serving
from webhook.config import WebhookSettings
from webhook.tls import MaterialError, TlsFiles, load_tls

NOW = datetime.now(UTC)


def client_cert(ca: Issued, common_name: str) -> Issued:
    """A client certificate (``clientAuth``) signed by ``ca``, as certs-tooling issues it."""
    return make_client_cert(ca=ca, common_name=common_name, valid_days=1, now=NOW)


def client_context(pki: Pki, tmp: Path, identity: Issued | None) -> ssl.SSLContext:
    """Trusts the test CA; presents ``identity`` when given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca_cert))
    if identity is not None:
        cert = tmp / f"client-{os.urandom(4).hex()}.pem"
        cert.write_bytes(identity.cert_pem + identity.key_pem)
        context.load_cert_chain(cert)
    return context


def swap(path: Path, data: bytes) -> None:
    staged = path.with_suffix(".tmp")
    staged.write_bytes(data)
    staged.replace(path)


@pytest.fixture(scope="module")
def apiserver_ca() -> Issued:
    return make_ca(common_name="apiserver-client-ca", valid_days=1, now=NOW)


@pytest.fixture(scope="module")
def other_ca() -> Issued:
    return make_ca(common_name="someone-else", valid_days=1, now=NOW)


@pytest.fixture
async def webhook(
    pki: Pki, tmp_path: Path, apiserver_ca: Issued
) -> AsyncIterator[tuple[int, Path]]:
    """serve() requiring client certificates from ``apiserver_ca``; (port, CA file)."""
    ca_file = tmp_path / "client-ca.crt"
    ca_file.write_bytes(apiserver_ca.cert_pem)
    settings = WebhookSettings.model_validate(
        {
            "trust": {"namespaces": ["streamspace"]},
            "cluster": "client-auth",
            "signingKeyFile": pki.signing_key,
            "tlsCertFile": pki.webhook_cert,
            "tlsKeyFile": pki.webhook_key,
            "tlsClientCaFile": ca_file,
            "reloadIntervalSeconds": 0.1,
            "host": "127.0.0.1",
            "metricsPort": 0,
            "shutdownDelaySeconds": 0,
        }
    )
    async with serving(settings) as port:
        yield port, ca_file


async def review_status(port: int, context: ssl.SSLContext) -> int:
    """The HTTP status of one review, or raise what the TLS layer raised."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://localhost:{port}/mutate",
            json=streamspace_agent_review(),
            ssl=context,
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp,
    ):
        return resp.status


class TestClientCertificates:
    async def test_the_api_servers_certificate_is_answered(
        self, webhook: tuple[int, Path], pki: Pki, tmp_path: Path, apiserver_ca: Issued
    ) -> None:
        """A client certificate from the configured CA gets the review answered."""
        port, _ = webhook
        identity = client_cert(apiserver_ca, "kube-apiserver")
        assert await review_status(port, client_context(pki, tmp_path, identity)) == 200

    async def test_no_certificate_is_refused(
        self, webhook: tuple[int, Path], pki: Pki, tmp_path: Path
    ) -> None:
        """Without a client certificate the handshake fails: no review is read."""
        port, _ = webhook
        with pytest.raises((aiohttp.ClientConnectionError, ssl.SSLError)):
            await review_status(port, client_context(pki, tmp_path, None))

    async def test_certificate_from_another_ca_is_refused(
        self, webhook: tuple[int, Path], pki: Pki, tmp_path: Path, other_ca: Issued
    ) -> None:
        """A client certificate from any other CA fails the handshake."""
        port, _ = webhook
        identity = client_cert(other_ca, "kube-apiserver")
        with pytest.raises((aiohttp.ClientConnectionError, ssl.SSLError)):
            await review_status(port, client_context(pki, tmp_path, identity))

    async def test_ca_rotation_without_restart(
        self,
        webhook: tuple[int, Path],
        pki: Pki,
        tmp_path: Path,
        apiserver_ca: Issued,
        other_ca: Issued,
    ) -> None:
        """Replacing the CA file swaps which clients are accepted, without a restart."""
        port, ca_file = webhook
        old_client = client_context(pki, tmp_path, client_cert(apiserver_ca, "old"))
        new_client = client_context(pki, tmp_path, client_cert(other_ca, "new"))
        assert await review_status(port, old_client) == 200
        swap(ca_file, other_ca.cert_pem)
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            try:
                if await review_status(port, new_client) == 200:
                    break
            except (aiohttp.ClientConnectionError, ssl.SSLError):
                pass
            assert asyncio.get_running_loop().time() < deadline, "new CA never accepted"
            await asyncio.sleep(0.1)
        with pytest.raises((aiohttp.ClientConnectionError, ssl.SSLError)):
            await review_status(port, old_client)


class TestLoading:
    def test_bad_bundle_is_refused(self, pki: Pki, tmp_path: Path) -> None:
        """A client CA file that holds no PEM certificate is a clear error naming the field."""
        bad = tmp_path / "ca.crt"
        bad.write_text("not a certificate\n")
        files = TlsFiles(cert=pki.webhook_cert, key=pki.webhook_key, client_ca=bad)
        with pytest.raises(MaterialError, match=r"^tlsClientCaFile .*: not a PEM certificate"):
            load_tls(files)

    def test_bundle_change_changes_the_digest(
        self, pki: Pki, tmp_path: Path, apiserver_ca: Issued, other_ca: Issued
    ) -> None:
        """The CA bundle is part of the material: a new bundle is a reload."""
        ca = tmp_path / "ca.crt"
        ca.write_bytes(apiserver_ca.cert_pem)
        files = TlsFiles(cert=pki.webhook_cert, key=pki.webhook_key, client_ca=ca)
        first = load_tls(files)
        assert first.context.verify_mode == ssl.CERT_REQUIRED
        ca.write_bytes(other_ca.cert_pem)
        assert load_tls(files).digest != first.digest
        assert ca in files.paths

    def test_without_bundle_no_certificate_is_asked(self, pki: Pki) -> None:
        """Unset (the default), clients are not asked for a certificate."""
        material = load_tls(TlsFiles(cert=pki.webhook_cert, key=pki.webhook_key))
        assert material.context.verify_mode == ssl.CERT_NONE
