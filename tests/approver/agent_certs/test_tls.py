"""Agent client certificates end to end (issue 16): the approver as it serves (``serve()``), over
real TLS with client certificates, on SQLite and PostgreSQL.

Issuance with the agent's key, renewal with its certificate, the refusals (wrong key, inactive
agent, another agent's certificate, revoked, superseded) and what the handshake itself refuses
(another CA, expired, serverAuth only). What a client sees is read from the answers and the
handshake; what the approver kept, from its admin API and its revocation lists.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.approver.agent_certs.pki import csr_pem, new_key, sign_leaf, write_ca
from tests.approver.agent_certs.serving import (
    LIFETIME,
    Served,
    admin,
    call,
    obtain,
    request_certificate,
    running_approver,
    served,
)
from tests.conftest import Pki

__all__ = ["served"]  # the fixture


class TestIssuance:
    async def test_issued_with_the_agents_key(self, served: Served) -> None:
        agent = served.agents["a"]
        body, key = await obtain(served)
        cert = x509.load_pem_x509_certificate(body["certificate"].encode())
        cert.verify_directly_issued_by(served.ca.certificate)
        assert body["caCertificate"].encode() == served.ca.issued.cert_pem
        assert cert.public_key() == key.public_key()
        uris = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier)
        assert uris == [
            f"agent-bootstrap://prod/ns/streamspace/pod/agent-aaaa/agent/{agent.agent_id}"
        ]
        assert body["serial"] == format(cert.serial_number, "x")
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime == timedelta(seconds=LIFETIME + 300)  # backdated 5 minutes
        renew = datetime.fromisoformat(body["renewAfter"])
        assert renew == cert.not_valid_before_utc + lifetime * 2 / 3
        status, listed = await call(
            served, "GET", f"/api/v1/admin/agents/{agent.agent_id}/certificates", headers=admin()
        )
        assert status == 200
        assert [c["serial"] for c in listed["certificates"]] == [body["serial"]]
        assert listed["certificates"][0]["issuedWith"] == "api_key"
        status, audit = await call(served, "GET", "/api/v1/audit?order=asc", headers=admin())
        assert status == 200
        stored = [(e["event"], e["decision"], e["actor"]) for e in audit["events"]]
        assert ("agent.certificate", "issued", agent.agent_id) in stored
        assert ("admin.certificates", "listed", "alice") in stored  # the read is audited too
        issued = next(e for e in audit["events"] if e["event"] == "agent.certificate")
        assert f"serial={body['serial']}" in issued["message"]
        assert agent.key not in str(audit)

    async def test_renewed_with_the_certificate_in_the_handshake(self, served: Served) -> None:
        agent = served.agents["a"]
        body, key = await obtain(served)
        mtls = served.context(body["certificate"], key)
        status, renewed = await request_certificate(
            served, agent.agent_id, new_key("p256"), context=mtls
        )
        assert status == 200, renewed
        assert renewed["serial"] != body["serial"]
        _, listed = await call(
            served, "GET", f"/api/v1/admin/agents/{agent.agent_id}/certificates", headers=admin()
        )
        assert [c["issuedWith"] for c in listed["certificates"]] == ["api_key", "certificate"]

    async def test_refusals(self, served: Served) -> None:
        a, b, gone = served.agents["a"], served.agents["b"], served.agents["gone"]
        cases = [
            (a.agent_id, None, 401, "missing_credential"),
            (a.agent_id, b.key, 403, "invalid_api_key"),
            (a.agent_id, "aga_" + "x" * 49, 403, "invalid_api_key"),
            (gone.agent_id, gone.key, 403, "agent_not_active"),
        ]
        for agent_id, api_key, status, code in cases:
            got, body = await request_certificate(served, agent_id, new_key(), api_key=api_key)
            assert (got, body["error"]) == (status, code), (agent_id, body)
        got, body = await request_certificate(served, a.agent_id, new_key("p384"), api_key=a.key)
        assert (got, body["error"]) == (400, "csr_not_allowed")
        _, listed = await call(
            served, "GET", f"/api/v1/admin/agents/{a.agent_id}/certificates", headers=admin()
        )
        assert listed["certificates"] == []

    async def test_another_agents_certificate_is_refused(self, served: Served) -> None:
        body, key = await obtain(served, "a")
        mtls = served.context(body["certificate"], key)
        status, answer = await request_certificate(
            served, served.agents["b"].agent_id, new_key(), context=mtls
        )
        assert (status, answer["error"]) == (403, "certificate_agent_mismatch")

    async def test_nothing_secret_in_logs(
        self, served: Served, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        await obtain(served, "a")
        await request_certificate(
            served, served.agents["a"].agent_id, new_key(), api_key=served.agents["b"].key
        )
        for agent in served.agents.values():
            assert agent.key not in caplog.text
        assert "agent.certificate" in caplog.text


class TestRevocation:
    async def test_revoked_certificate_stops_counting_and_is_listed(self, served: Served) -> None:
        body, key = await obtain(served)
        serial = body["serial"]
        status, revoked = await call(
            served, "POST", f"/api/v1/admin/agent-certificates/{serial}/revoke", headers=admin()
        )
        assert status == 200
        assert revoked["certificate"]["revokedReason"] == "revoked"
        assert revoked["certificate"]["revokedBy"] == "alice"
        mtls = served.context(body["certificate"], key)
        status, answer = await request_certificate(
            served, served.agents["a"].agent_id, new_key(), context=mtls
        )
        assert (status, answer["error"]) == (403, "certificate_not_live")
        status, listed = await call(served, "GET", "/api/v1/agent-certificates/revoked")
        assert status == 200
        assert [entry["serial"] for entry in listed["revoked"]] == [serial]
        status, der = await call(served, "GET", "/api/v1/agent-certificates/crl")
        assert status == 200
        crl = x509.load_der_x509_crl(der)
        assert crl.is_signature_valid(served.ca.certificate.public_key())  # type: ignore[arg-type]
        assert [format(r.serial_number, "x") for r in crl] == [serial]

    async def test_unknown_serial_is_404(self, served: Served) -> None:
        status, body = await call(
            served, "POST", "/api/v1/admin/agent-certificates/abc123/revoke", headers=admin()
        )
        assert (status, body["error"]) == (404, "certificate_not_found")
        status, body = await call(
            served, "POST", "/api/v1/admin/agent-certificates/xyz/revoke", headers=admin()
        )
        assert (status, body["error"]) == (400, "invalid_serial")

    async def test_a_third_certificate_supersedes_the_first(self, served: Served) -> None:
        first, first_key = await obtain(served)
        second, _ = await obtain(served)
        third, _ = await obtain(served)
        _, listed = await call(served, "GET", "/api/v1/agent-certificates/revoked")
        assert [entry["serial"] for entry in listed["revoked"]] == [first["serial"]]
        mtls = served.context(first["certificate"], first_key)
        status, answer = await request_certificate(
            served, served.agents["a"].agent_id, new_key(), context=mtls
        )
        assert (status, answer["error"]) == (403, "certificate_not_live")
        assert "superseded" in answer["message"]
        _, listed = await call(
            served,
            "GET",
            f"/api/v1/admin/agents/{served.agents['a'].agent_id}/certificates",
            headers=admin(),
        )
        assert [c["revokedReason"] for c in listed["certificates"]] == ["superseded", None, None]
        assert {c["serial"] for c in listed["certificates"]} == {
            first["serial"], second["serial"], third["serial"]
        }  # fmt: skip


class TestHandshake:
    """What the TLS layer refuses before any handler runs (OpenSSL, against the trust bundle)."""

    async def handshake(self, served: Served, context: ssl.SSLContext) -> int:
        status, _ = await call(served, "GET", "/healthz", context=context)
        return status

    async def test_without_a_certificate_is_fine(self, served: Served) -> None:
        assert await self.handshake(served, served.context()) == 200

    async def test_issued_certificate_is_accepted(self, served: Served) -> None:
        body, key = await obtain(served)
        assert await self.handshake(served, served.context(body["certificate"], key)) == 200

    @pytest.mark.parametrize("case", ["valid", "other_ca", "expired", "server_auth"])
    async def test_refused(self, served: Served, case: str) -> None:
        """A leaf of our own making: accepted as made ("valid", the control), refused when
        signed by another CA, expired, or for serverAuth only."""
        key = ed25519.Ed25519PrivateKey.generate()
        now = datetime.now(UTC)
        uri = f"agent-bootstrap://prod/ns/-/pod/-/agent/{served.agents['a'].agent_id}"
        ca = served.ca.issued
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
        not_before, not_after = now - timedelta(hours=1), now + timedelta(hours=1)
        if case == "other_ca":
            ca = write_ca(served.folder / "other-ca").issued
        elif case == "expired":
            not_before, not_after = now - timedelta(hours=2), now - timedelta(hours=1)
        elif case == "server_auth":
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        pem = sign_leaf(
            ca, key.public_key(), uri=uri, usage=usage, not_before=not_before, not_after=not_after
        )
        context = served.context(pem, key)
        if case == "valid":
            assert await self.handshake(served, context) == 200
            return
        with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
            await self.handshake(served, context)


class TestAdminSerials:
    async def test_openssls_spelling_of_a_serial(self, served: Served) -> None:
        """``openssl x509 -serial`` prints upper case with leading zeros; colon-separated
        spellings are common too: each names the stored serial."""
        for spelling in (
            lambda s: "0" + s.upper(),
            lambda s: ":".join(s.zfill(40)[i : i + 2] for i in range(0, 40, 2)),
        ):
            body, _ = await obtain(served)
            status, answer = await call(
                served,
                "POST",
                f"/api/v1/admin/agent-certificates/{spelling(body['serial'])}/revoke",
                headers=admin(),
            )
            assert status == 200, answer
            assert answer["certificate"]["serial"] == body["serial"]


async def test_rate_limited_reissue_over_http(database_url: str, pki: Pki, tmp_path: Path) -> None:
    async with running_approver(database_url, pki, tmp_path, min_reissue_seconds=60) as served:
        await obtain(served)
        agent = served.agents["a"]
        status, body, headers = await _post_certificate(served, agent.agent_id, agent.key)
        assert (status, body["error"]) == (429, "certificate_rate_limited")
        assert 50 <= int(headers["Retry-After"]) <= 60


async def _post_certificate(
    served: Served, agent_id: str, key: str
) -> tuple[int, Any, Mapping[str, str]]:
    connector = aiohttp.TCPConnector(ssl=served.context())
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(
            f"{served.url}/api/v1/agents/{agent_id}/certificate",
            json={"csr": csr_pem(new_key())},
            headers={"X-Agent-API-Key": key},
        ) as answer,
    ):
        return answer.status, await answer.json(), answer.headers


async def test_no_tls_1_3_session_tickets(served: Served) -> None:
    """A resumed session skips the chain check against the trust bundle in use now: the
    approver issues no TLS 1.3 tickets (TLS 1.2 session ids still resume within OpenSSL's
    cache; the gate's own issuer check covers those: test_rotation.py)."""
    context = served.context()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    assert not await asyncio.to_thread(_resumed, served.port, context)


def _resumed(port: int, context: ssl.SSLContext) -> bool:
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as first,
    ):
        first.sendall(request)
        while first.recv(4096):  # TLS 1.3 tickets come after the handshake
            pass
        session = first.session
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost", session=session) as second,
    ):
        return bool(second.session_reused)
