"""Request bytes stay out of aiohttp's error log lines (bootstrap_token.http_log)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bootstrap_token import http_log

SECRET = "abk_7h3s3cr3tv4lu3th4tmustn3v3r4pp34r"


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def send_raw(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    answer = await reader.read(4096)
    writer.close()
    return answer


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Agent-API-Key : " + SECRET.encode() + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + SECRET.encode() * 400
        + b"\r\n\r\n",
    ],
    ids=["space before the colon", "header over 8 KiB"],
)
async def test_malformed_request_is_logged_without_its_bytes(
    port: int, head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's 'Error handling request' (which quotes the raw header) becomes one WARNING
    naming the exception's class, with no traceback and no byte of the value."""
    http_log.install()
    with caplog.at_level(logging.DEBUG, logger=http_log.SERVER_LOGGER):
        await send_raw(port, head)
        await asyncio.sleep(0.05)
    records = [r for r in caplog.records if r.name == http_log.SERVER_LOGGER]
    assert records
    for record in records:
        assert record.levelno == logging.WARNING
        assert record.exc_info is None
        assert "content withheld" in record.getMessage()
    assert SECRET not in caplog.text
    assert SECRET[:12] not in caplog.text
