"""Agent-CA rotation under load with no failed handshake (issue 16, item 6), over real TLS.

The files are made and replaced by certs-tooling itself (``agent_ca.init``, ``rotate``,
``finish``: atomic renames, in their order: previous, bundle, key, certificate). While the
approver re-reads them, clients holding a certificate of the old CA handshake again and again:
none may fail. After the rotation new certificates come from the new CA and are accepted too;
after the finish the old CA's certificates are refused.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from cryptography import x509

from certs_tooling import agent_ca
from certs_tooling.layout import Layout
from certs_tooling.pki import Issued
from tests.approver.agent_certs.pki import CaFiles, csr_pem, new_key
from tests.approver.agent_certs.serving import Served, call, request_certificate, running_approver
from tests.conftest import Pki

CLIENTS = 4


async def _issued(
    served: Served, context: ssl.SSLContext | None = None, *, name: str = "a"
) -> tuple[str, object]:
    agent = served.agents[name]
    key = new_key()
    status, body = await request_certificate(
        served, agent.agent_id, key, api_key=None if context else agent.key, context=context
    )
    assert status == 200, body
    return body["certificate"], key


class Load:
    """``CLIENTS`` loops, each a new TLS connection (full handshake) per request."""

    def __init__(self, served: Served, context: ssl.SSLContext) -> None:
        self.served = served
        self.context = context
        self.ok = 0
        self.failed: list[str] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(CLIENTS)]

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                status, _ = await call(self.served, "GET", "/healthz", context=self.context)
            except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
                self.failed.append(type(exc).__name__)
            else:
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append(str(status))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def _until(condition: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


async def test_rotation_under_load(pki: Pki, tmp_path: Path) -> None:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}"
    layout = Layout(tmp_path / "pki-agents")
    layout.root.mkdir()
    started = datetime.now(UTC)
    agent_ca.init(layout, days=30, now=started)
    old = Issued(layout.agent_ca_cert.read_bytes(), layout.agent_ca_key.read_bytes())
    ca_files = CaFiles(old, layout.agent_ca_cert, layout.agent_ca_key)
    async with running_approver(
        sqlite_url, pki, tmp_path, ca=ca_files, trust_bundle=layout.agent_ca_bundle
    ) as served:
        old_pem, old_key = await _issued(served)
        old_context = served.context(old_pem, old_key)  # type: ignore[arg-type]
        load = Load(served, old_context)
        await asyncio.sleep(0.3)

        new = agent_ca.rotate(layout, days=30, now=datetime.now(UTC)).new_ca

        async def signs_with_new() -> bool:
            pem, _ = await _issued(served, name="b")  # agent a's certificates stay live
            issuer = x509.load_pem_x509_certificate(pem.encode()).issuer
            return bool(issuer == new.subject)

        await _until(signs_with_new)
        new_pem, new_key_ = await _issued(served)
        new_context = served.context(new_pem, new_key_)  # type: ignore[arg-type]
        # a renewal authorized by the old CA's certificate works during the overlap
        renewed_pem, _ = await _issued(served, old_context)
        assert x509.load_pem_x509_certificate(renewed_pem.encode()).issuer == new.subject
        new_load = Load(served, new_context)
        await asyncio.sleep(0.5)
        await load.stop()
        await new_load.stop()
        assert load.failed == []
        assert new_load.failed == []
        assert load.ok >= 20
        assert new_load.ok >= 10

        # finish: the bundle holds the new CA only; the old CA's certificates are refused
        agent_ca.finish(layout, now=datetime.now(UTC), force=True)  # the test can't wait 24 h
        assert not layout.agent_ca_previous.exists()

        async def old_refused() -> bool:
            try:
                await call(served, "GET", "/healthz", context=old_context)
            except (aiohttp.ClientError, ssl.SSLError, OSError):
                return True
            return False

        await _until(old_refused)
        status, _ = await call(served, "GET", "/healthz", context=new_context)
        assert status == 200


async def test_a_resumed_session_after_the_finish_is_refused(pki: Pki, tmp_path: Path) -> None:
    """TLS 1.2 resumes a session from before the finish without checking the chain against
    the new bundle: the gate's own issuer check refuses the old CA's certificate there."""
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}"
    layout = Layout(tmp_path / "pki-agents")
    layout.root.mkdir()
    agent_ca.init(layout, days=30, now=datetime.now(UTC))
    old = Issued(layout.agent_ca_cert.read_bytes(), layout.agent_ca_key.read_bytes())
    async with running_approver(
        sqlite_url,
        pki,
        tmp_path,
        ca=CaFiles(old, layout.agent_ca_cert, layout.agent_ca_key),
        trust_bundle=layout.agent_ca_bundle,
    ) as served:
        pem, key = await _issued(served)
        context = served.context(pem, key)  # type: ignore[arg-type]
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        agent_id = served.agents["a"].agent_id
        session, status = await asyncio.to_thread(_renew, served.port, context, agent_id, None)
        assert status == 200
        agent_ca.rotate(layout, days=30, now=datetime.now(UTC))
        agent_ca.finish(layout, now=datetime.now(UTC), force=True)

        async def fresh_handshake_refused() -> bool:
            try:
                await call(served, "GET", "/healthz", context=context)
            except (aiohttp.ClientError, ssl.SSLError, OSError):
                return True
            return False

        await _until(fresh_handshake_refused)
        _, status = await asyncio.to_thread(_renew, served.port, context, agent_id, session)
        assert status == 403  # resumed or not: never a certificate for the dropped CA's holder


def _renew(
    port: int, context: ssl.SSLContext, agent_id: str, session: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, int]:
    """One renewal request on a new connection (resuming ``session`` when given); the
    connection's session and the answer's status (0: the handshake failed)."""
    body = json.dumps({"csr": csr_pem(new_key())}).encode()
    request = (
        f"POST /api/v1/agents/{agent_id}/certificate HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
        ):
            tls.sendall(request)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            return tls.session, int(answer.split(b" ", 2)[1])
    except (ssl.SSLError, OSError):
        return None, 0
