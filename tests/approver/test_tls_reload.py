"""The approver serves a renewed certificate without a restart (issue 14, item 2), over real TLS.

The certificate files are laid out as a mounted Secret (``..data`` symlink to a timestamped
folder, ``tls.crt`` -> ``..data/tls.crt``) and renewed the way the kubelet does it, one rename of
``..data`` (Kubernetes "Mounted Secrets are updated automatically"). What a client sees is read
from the handshake itself: the peer certificate's serial and SHA-256 fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from approver.config import ApproverSettings, ConfigError
from approver.resources import serving_certificate
from approver.serve import serve
from bootstrap_token.reload import ReloadCounts
from demo.stack import free_port
from tests.conftest import Pki
from tests.webhook.volumes import SecretVolume, issue_serving_cert

INTERVAL = 0.1  # tlsReloadIntervalSeconds in these tests
SEEN_WITHIN = 20 * INTERVAL  # generous for a loaded machine; a reload takes one interval
LOGGER = "approver.files.serving_tls"


@dataclass
class Running:
    """An approver serving HTTPS from ``volume``, counting its reloads in ``counts``."""

    port: int
    volume: SecretVolume
    counts: ReloadCounts
    client: ssl.SSLContext


async def connect(
    port: int, client: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="localhost")


def peer_certificate(writer: asyncio.StreamWriter) -> x509.Certificate:
    """The certificate the server presented on this connection."""
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()


async def served(running: Running) -> x509.Certificate:
    """The certificate a new handshake gets now."""
    _, writer = await connect(running.port, running.client)
    try:
        return peer_certificate(writer)
    finally:
        await close(writer)


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, *, last: bool = False
) -> int:
    """One HTTP/1.1 GET on an open connection; the status (the body is read and dropped)."""
    connection = "close" if last else "keep-alive"
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: {connection}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if line)}
    await asyncio.wait_for(reader.readexactly(int(fields.get("content-length", "0"))), 5)
    return int(lines[0].split()[1])


async def eventually(condition: Callable[[], bool], *, within: float = SEEN_WITHIN) -> None:
    """Wait until ``condition()`` holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


async def serial_served(running: Running, serial: int, *, within: float = SEEN_WITHIN) -> float:
    """Wait until new handshakes get the certificate ``serial``; the seconds it took."""
    start = time.monotonic()
    while (await served(running)).serial_number != serial:
        assert time.monotonic() - start < within, f"serial {serial:x} not served in {within}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def fingerprint(cert_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()


def key_lines(key_pem: bytes) -> list[str]:
    """The base64 lines of a PEM key (any of them in a log line would be a leak)."""
    return [line for line in key_pem.decode().splitlines() if line and not line.startswith("-")]


@pytest.fixture
async def running(pki: Pki, tmp_path: Path, client_ssl: ssl.SSLContext) -> AsyncIterator[Running]:
    volume = SecretVolume(tmp_path / "approver-tls")
    volume.write(
        {"tls.crt": pki.approver_cert.read_bytes(), "tls.key": pki.approver_key.read_bytes()}
    )
    settings = ApproverSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}",
        tls_cert_file=volume.path("tls.crt"),
        tls_key_file=volume.path("tls.key"),
        tls_reload_interval_seconds=INTERVAL,
        host="127.0.0.1",
        port=free_port(),
    )
    counts = ReloadCounts()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop=stop, tls_reloads=counts))
    deadline = time.monotonic() + 10
    while True:
        if server.done():
            server.result()  # raises what stopped it
        try:
            _, writer = await connect(settings.port, client_ssl)
        except OSError:
            assert time.monotonic() < deadline, "the approver did not start"
            await asyncio.sleep(0.05)
        else:
            await close(writer)
            break
    try:
        yield Running(port=settings.port, volume=volume, counts=counts, client=client_ssl)
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=10)


class TestRenewal:
    async def test_new_handshakes_get_the_renewed_certificate(
        self, running: Running, pki: Pki, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A ``..data`` swap to a renewed certificate (new serial, same CA) is served to new
        handshakes within the interval; a connection opened before keeps working on the old
        one; one INFO line names the new certificate, and a success is counted."""
        caplog.set_level(logging.INFO, logger=LOGGER)
        old = await served(running)
        assert (
            old.serial_number
            == x509.load_pem_x509_certificate(pki.approver_cert.read_bytes()).serial_number
        )
        reader, writer = await connect(running.port, running.client)
        try:
            assert await get(reader, writer, "/healthz") == 200

            cert, key, serial = issue_serving_cert(pki.ca_cert, pki.ca_key)
            running.volume.write({"tls.crt": cert, "tls.key": key})
            await serial_served(running, serial)

            new = await served(running)
            assert new.fingerprint(hashes.SHA256()).hex() == fingerprint(cert)
            # The connection accepted before the swap goes on, on the certificate it began with.
            assert await get(reader, writer, "/healthz", last=True) == 200
            assert peer_certificate(writer).serial_number == old.serial_number
        finally:
            await close(writer)
        assert (running.counts.success, running.counts.failure) == (1, 0)
        [line] = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
        message = line.getMessage()
        assert message.startswith("reloaded tls: subject=CN=rotated-webhook notAfter=")
        assert f"serial={serial:x}" in message
        assert f"sha256={fingerprint(cert)[:16]}" in message
        assert f"(was subject={old.subject.rfc4514_string()}" in message

    async def test_same_content_again_is_not_a_reload(self, running: Running, pki: Pki) -> None:
        """The kubelet re-projecting the same bytes (new folder, new inodes) swaps nothing."""
        before = await served(running)
        running.volume.write(
            {"tls.crt": pki.approver_cert.read_bytes(), "tls.key": pki.approver_key.read_bytes()}
        )
        await asyncio.sleep(3 * INTERVAL)
        assert (await served(running)).serial_number == before.serial_number
        assert (running.counts.success, running.counts.failure) == (0, 0)


class TestUnusableFiles:
    @pytest.mark.parametrize("broken", ["mismatched", "half-written key"])
    async def test_old_certificate_stays_served(
        self, running: Running, pki: Pki, caplog: pytest.LogCaptureFixture, broken: str
    ) -> None:
        """A renewed certificate with the old key, or a key cut in half, is refused: the old
        certificate stays served, one failure is counted and one ERROR line names the field
        and the path, with no byte of either key in any log line; the same files are not
        tried again, and the next good pair is served."""
        caplog.set_level(logging.DEBUG)
        old = await served(running)
        cert, key, serial = issue_serving_cert(pki.ca_cert, pki.ca_key)
        old_key = pki.approver_key.read_bytes()
        if broken == "mismatched":
            running.volume.write({"tls.crt": cert, "tls.key": old_key})
            field, words = "tlsKeyFile", "does not match the certificate in tlsCertFile"
        else:
            running.volume.write({"tls.crt": cert, "tls.key": key[: len(key) // 2]})
            field, words = "tlsKeyFile", "not an unencrypted PEM private key"

        await eventually(lambda: running.counts.failure == 1)
        assert (await served(running)).serial_number == old.serial_number
        await asyncio.sleep(3 * INTERVAL)  # a few more looks at the same files
        assert (running.counts.success, running.counts.failure) == (0, 1)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        message = errors[0].getMessage()
        assert errors[0].name == LOGGER
        # The field as the operator set it, e.g. "tlsKeyFile (env AGENT_..._TLS_KEY_FILE)".
        assert f"{field} (" in message
        assert f"{running.volume.path('tls.key')}: {words}" in message
        assert f"keeping subject={old.subject.rfc4514_string()}" in message
        assert "PRIVATE KEY" not in caplog.text
        for line in key_lines(old_key) + key_lines(key):
            assert line not in caplog.text
        assert (await served(running)).serial_number == old.serial_number

        running.volume.write({"tls.crt": cert, "tls.key": key})
        await serial_served(running, serial)
        assert (running.counts.success, running.counts.failure) == (1, 1)


class TestSettings:
    def test_interval_default_and_bounds(self) -> None:
        """tlsReloadIntervalSeconds: 10 s by default, 0 (never) to 3600."""
        assert ApproverSettings().tls_reload_interval_seconds == 10
        never = ApproverSettings.model_validate({"tlsReloadIntervalSeconds": 0})
        assert never.tls_reload_interval_seconds == 0
        for bad in (-1, 3601):
            with pytest.raises(ValueError, match="tlsReloadIntervalSeconds"):
                ApproverSettings.model_validate({"tlsReloadIntervalSeconds": bad})

    def test_mismatched_pair_at_start_names_the_field(self, pki: Pki) -> None:
        """At start a pair that does not match stops the approver with a ConfigError naming
        tlsKeyFile and its path, never key bytes."""
        settings = ApproverSettings(tls_cert_file=pki.approver_cert, tls_key_file=pki.webhook_key)
        with pytest.raises(ConfigError, match=r"^tlsKeyFile .*: does not match") as info:
            serving_certificate(settings)
        assert str(pki.webhook_key) in str(info.value)
        assert "PRIVATE KEY" not in str(info.value)
