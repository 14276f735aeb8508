"""Issue 13, item 11 (visibility): refusals the connection guard makes before a whole request
exists (a head too slow, an oversized head) leave a pod unchanged if they were the API
server's, so they are counted and audited like every other transport refusal, without a byte
of what was sent."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from tests.conftest import Pki
from tests.webhook.conftest import RecordingSink, serving
from tests.webhook.test_big_reviews import tls_settings

SECRET = "Bearer sk-never-in-an-audit-line-0123456789"


async def _exchange(port: int, client_ssl: ssl.SSLContext, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("data", "status", "kind"),
    [
        (b"POST /mutate HTTP/1.1\r\nHost: webhook\r\n", b"408", "request_timeout"),
        (
            b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nAuthorization: "
            + SECRET.encode()
            + b"x" * 9000
            + b"\r\n\r\n",
            b"431",
            "request_header_fields_too_large",
        ),
    ],
    ids=["slow-head", "oversized-header"],
)
async def test_guard_refusals_are_counted_and_audited(
    pki: Pki, client_ssl: ssl.SSLContext, data: bytes, status: bytes, kind: str
) -> None:
    audit = RecordingSink()
    async with serving(tls_settings(pki, headTimeoutSeconds=1), audit=audit) as port:
        answer = await _exchange(port, client_ssl, data)
    assert answer.split(b" ", 2)[1] == status
    [event] = [e for e in audit.events if e.reason == kind]
    assert (event.decision, event.security) == ("malformed", False)
    assert "before a whole request arrived" in (event.message or "")
    assert SECRET not in "".join(e.model_dump_json() for e in audit.events)
