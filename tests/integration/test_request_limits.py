"""Both services' ports over real TLS against slow and oversized requests (hardening issue,
items 3 and 4): a head or body that stalls gets 408, stalled connections are capped, and a
header over 8 KiB holding a real bootstrap token or a real admin bearer gets a JSON 431 with no
byte of it in the answer or in any log line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from approver.config import ApproverSettings
from approver.serve import serve
from bootstrap_token import SigningKey
from demo.stack import free_port
from tests.approver.helpers import AGENT_ID_PREFIX, TRUST, mint_token
from tests.conftest import Pki
from tests.webhook.conftest import serving
from webhook.config import WebhookSettings

ADMIN_TOKEN = "adm-" + "q7Zr9kWm2Xv4Lp8Tn6Yb3Hc5Jd1Fg0Se"


@pytest.fixture
async def approver_port(pki: Pki, tmp_path: Path, client_ssl: ssl.SSLContext) -> AsyncIterator[int]:
    tokens = tmp_path / "admin-tokens"
    tokens.write_text(f"ops:{ADMIN_TOKEN}\n")
    tokens.chmod(0o600)
    settings = ApproverSettings(
        auto_approve={"enabled": True},
        trust=TRUST,
        token={"jwks_file": pki.jwks},
        agent_id_prefix=AGENT_ID_PREFIX,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}",
        admin_tokens_file=tokens,
        tls_cert_file=pki.approver_cert,
        tls_key_file=pki.approver_key,
        host="127.0.0.1",
        port=free_port(),
        head_timeout_seconds=1,
        body_timeout_seconds=1,
        max_incomplete_connections=4,
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop=stop))
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as session:
        while True:
            if server.done():
                server.result()
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(
                    f"https://localhost:{settings.port}/healthz", ssl=client_ssl
                ) as response:
                    if response.status == 200:
                        break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    try:
        yield settings.port
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=10)


@pytest.fixture
async def webhook_port(pki: Pki) -> AsyncIterator[int]:
    settings = WebhookSettings.model_validate(
        {
            "trust": {"namespaces": ["streamspace"]},
            "signingKeyFile": pki.signing_key,
            "tlsCertFile": pki.webhook_cert,
            "tlsKeyFile": pki.webhook_key,
            "host": "127.0.0.1",
            "metricsPort": 0,
            "shutdownDelaySeconds": 0,
            "headTimeoutSeconds": 1,
            "maxIncompleteConnections": 4,
        }
    )
    async with serving(settings) as port:
        yield port


async def tls_connect(
    port: int, context: ssl.SSLContext, first: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    if first:
        writer.write(first)
        await writer.drain()
    return reader, writer


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    raw = b""
    with contextlib.suppress(ssl.SSLError, ConnectionResetError):
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), fields, body


PARTIAL = b"POST /api/v1/agents/register HTTP/1.1\r\nHost: localhost\r\nContent-Ty"


@pytest.fixture(params=["approver", "webhook"])
def port(request: pytest.FixtureRequest) -> int:
    """The HTTPS port of each service in turn."""
    return int(request.getfixturevalue(f"{request.param}_port"))


class TestStalledClients:
    async def test_a_stalled_head_gets_408(self, port: int, client_ssl: ssl.SSLContext) -> None:
        reader, writer = await tls_connect(port, client_ssl, PARTIAL)
        status, fields, body = await read_answer(reader)
        assert status == 408
        assert fields["connection"] == "close"
        assert json.loads(body)["error"] == "request_timeout"
        writer.close()

    async def test_stalled_connections_are_capped_and_service_goes_on(
        self, port: int, client_ssl: ssl.SSLContext
    ) -> None:
        """Ten stalled clients against a cap of four: let in while fresh (a burst of real
        clients looks the same), then, once stalled (a quarter of the 1 s head timeout), the
        oldest are closed with 503 when a real request comes, which gets its answer."""
        stalled = []
        for _ in range(10):
            stalled.append(await tls_connect(port, client_ssl, PARTIAL))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.35)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"https://localhost:{port}/healthz", ssl=client_ssl) as response,
        ):
            assert response.status == 200
        closed = 0
        for reader, _ in stalled[:7]:  # 10 + the real request over a cap of 4
            status, fields, _ = await read_answer(reader)
            assert (status, fields["retry-after"]) == (503, "1")
            closed += 1
        assert closed == 7
        for _, writer in stalled:
            writer.close()


async def test_approver_a_stalled_body_gets_408(
    approver_port: int, client_ssl: ssl.SSLContext
) -> None:
    head = (
        b"POST /api/v1/agents/register HTTP/1.1\r\nHost: localhost\r\n"
        b'Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{"agentId": '
    )
    reader, writer = await tls_connect(approver_port, client_ssl, head)
    status, _, body = await read_answer(reader)
    assert status == 408
    assert json.loads(body)["error"] == "request_timeout"
    writer.close()


@pytest.mark.parametrize("secret_kind", ["bootstrap token", "admin bearer"])
async def test_an_oversized_header_is_431_without_its_bytes(
    port: int,
    secret_kind: str,
    pki: Pki,
    client_ssl: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    if secret_kind == "bootstrap token":
        secret = mint_token(SigningKey.from_file(pki.signing_key), now=int(time.time()))
        field = b"X-Agent-API-Key: " + secret.encode()
    else:
        secret = ADMIN_TOKEN
        field = b"Authorization: Bearer " + secret.encode()
    padding = b"A" * 9000
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + field + padding + b"\r\n\r\n"
    with caplog.at_level(logging.DEBUG):
        reader, writer = await tls_connect(port, client_ssl, head)
        status, fields, body = await read_answer(reader)
        writer.close()
        await asyncio.sleep(0.05)
    assert status == 431
    assert fields["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "request_header_fields_too_large"
    printed = capfd.readouterr()
    everything = caplog.text + printed.out + printed.err + body.decode()
    # Not the secret, nor any 12 bytes of it, nor the padding that followed it.
    for start in range(0, len(secret) - 12, 6):
        assert secret[start : start + 12] not in everything
    assert "A" * 50 not in everything
    assert all(record.exc_info is None for record in caplog.records)
    assert any("content withheld" in record.getMessage() for record in caplog.records)


@pytest.fixture(params=["approver", "webhook"])
def body_target(request: pytest.FixtureRequest) -> tuple[int, str]:
    """Each service's port and the path where it reads a body."""
    path = {"approver": "/api/v1/agents/register", "webhook": "/mutate"}[request.param]
    return int(request.getfixturevalue(f"{request.param}_port")), path


def body_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n{{"
    ).encode()


class TestSlowAndVanishingBodies:
    """Second outside attack: 300 connections that trickled a body locked every genuine
    newcomer out of the approver (503), and a client that went away mid-body left an ERROR
    traceback per connection (1.65 MB/s of log)."""

    async def test_trickled_bodies_give_way_and_service_goes_on(
        self,
        body_target: tuple[int, str],
        client_ssl: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        port, path = body_target
        trickling = []
        with caplog.at_level(logging.INFO):
            for _ in range(10):  # a cap of four
                trickling.append(await tls_connect(port, client_ssl, body_head(path, 400)))
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.35)  # past a quarter of the 1 s head timeout: stalled
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.get(
                        f"https://localhost:{port}/healthz", ssl=client_ssl
                    ) as response:
                        assert response.status == 200
            statuses = [(await read_answer(reader))[0] for reader, _ in trickling[:4]]
            for _, writer in trickling:
                writer.close()
            await asyncio.sleep(0.1)
        assert statuses == [503] * 4  # the oldest trickles were closed to make room
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    async def test_a_client_leaving_mid_body_leaves_no_error(
        self,
        body_target: tuple[int, str],
        client_ssl: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        port, path = body_target
        with caplog.at_level(logging.DEBUG):
            for _ in range(3):
                _, writer = await tls_connect(port, client_ssl, body_head(path, 400))
                await asyncio.sleep(0.05)
                writer.transport.abort()
            await asyncio.sleep(0.2)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"https://localhost:{port}/healthz", ssl=client_ssl) as response,
            ):
                assert response.status == 200
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert all(record.exc_info is None for record in caplog.records)
