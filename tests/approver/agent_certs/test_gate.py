"""The agent gate with client certificates (approver.gate): a presented certificate must name
the request's agent and be live; ``requireAtGate`` refuses requests without one; an open
connection's recheck notices a revoked certificate. On a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from approver.admin import AdminService
from approver.agent_certificates import AgentCertificates, CertificatePolicy, RateLimited
from approver.agent_certs.ca_files import SigningCa
from approver.agent_certs.records import RevokedReason
from approver.domain.agent_certificates import identity_of
from approver.domain.agent_keys import key_digest, new_agent_key
from approver.domain.records import AgentStatus, ControlPlaneState
from approver.gate import AgentGate, GateRefusal
from approver.store import Store
from bootstrap_token.reload import MaterialError, ReloadResult
from tests.approver.agent_certs.pki import csr_pem, new_key, write_ca
from tests.approver.helpers import RecordingSink, agent_record

A, B = "k8s-prod-agent-aaaa", "k8s-prod-agent-bbbb"


async def _agents(store: Store) -> dict[str, str]:
    keys = {}
    async with store.transaction() as tx:
        for agent_id in (A, B):
            key = new_agent_key()
            await tx.insert_agent(
                agent_record(
                    AgentStatus.ACTIVE,
                    id=uuid.uuid4(),
                    agent_id=agent_id,
                    api_key_hash=key_digest(key),
                    control_plane=ControlPlaneState.APPROVED,
                    reason="approved_by_admin",
                )
            )
            keys[agent_id] = key
    return keys


@pytest.fixture
async def setup(store: Store, tmp_path: Path) -> tuple[AgentCertificates, dict[str, str]]:
    ca = write_ca(tmp_path / "ca")
    certificates = AgentCertificates(
        store=store,
        ca=SigningCa(ca.cert, ca.key),
        audit=RecordingSink(),
        policy=CertificatePolicy(control_plane=True),
        clock=time.time,
    )
    return certificates, await _agents(store)


async def _issue(certificates: AgentCertificates, agent_id: str, key: str) -> x509.Certificate:
    issued = await certificates.issue(
        agent_id=agent_id, csr_pem=csr_pem(new_key()), api_key=key, peer=None
    )
    return x509.load_pem_x509_certificate(issued.certificate_pem.encode())


async def test_certificate_and_key_of_the_agent_pass(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    gate = AgentGate(store=store, certificates=certificates)
    granted = await gate.authorize(agent_id=A, api_key=keys[A], certificate=cert)
    assert granted.serial == format(cert.serial_number, "x")
    assert granted.record.agent_id == A


async def test_another_agents_certificate_is_refused_even_with_the_right_key(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    certificates, keys = setup
    cert_b = await _issue(certificates, B, keys[B])
    gate = AgentGate(store=store, certificates=certificates)
    with pytest.raises(GateRefusal) as refused:
        await gate.authorize(agent_id=A, api_key=keys[A], certificate=cert_b)
    assert (refused.value.status, refused.value.code) == (403, "certificate_agent_mismatch")


async def test_required_certificate(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    certificates, keys = setup
    gate = AgentGate(store=store, certificates=certificates, require_certificate=True)
    with pytest.raises(GateRefusal) as refused:
        await gate.authorize(agent_id=A, api_key=keys[A])
    assert (refused.value.status, refused.value.code) == (401, "client_certificate_required")
    lenient = AgentGate(store=store, certificates=certificates)
    assert (await lenient.authorize(agent_id=A, api_key=keys[A])).serial is None


async def test_recheck_notices_a_revoked_certificate(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    gate = AgentGate(store=store, certificates=certificates)
    granted = await gate.authorize(agent_id=A, api_key=keys[A], certificate=cert)
    digest = key_digest(keys[A])
    assert await gate.still_authorized(A, digest, granted.serial)
    await certificates.revoke(serial=granted.serial or "", actor="alice")
    assert not await gate.still_authorized(A, digest, granted.serial)
    assert await gate.still_authorized(A, digest, None)  # the key alone still counts
    with pytest.raises(GateRefusal) as refused:
        await gate.authorize(agent_id=A, api_key=keys[A], certificate=cert)
    assert refused.value.code == "certificate_not_live"


async def test_inactive_agent_gets_no_certificate_and_its_certificates_are_listed(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    """An agent whose pod is gone: no issuance, and its live certificates show as revoked."""
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    async with store.transaction() as tx:
        record = await tx.get_agent(A, lock=True)
        assert record is not None
        await tx.update_agent(replace(record, status=AgentStatus.INACTIVE, reason="pod_deleted"))
    with pytest.raises(GateRefusal) as refused:
        await _issue(certificates, A, keys[A])
    assert refused.value.code == "agent_not_active"
    assert [serial for serial, _ in await certificates.revoked()] == [
        format(cert.serial_number, "x")
    ]


async def test_a_cluster_claim_that_cannot_stand_in_the_uri_gives_way(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    """The token's cluster claim is free text; the certificate names the configured cluster
    instead, and the gate reads the agent back from it."""
    certificates, keys = setup
    async with store.transaction() as tx:
        record = await tx.get_agent(A, lock=True)
        assert record is not None
        await tx.update_agent(replace(record, cluster="prod cluster/eu"))
    cert = await _issue(certificates, A, keys[A])
    identity = identity_of(cert)
    assert identity is not None
    assert (identity.cluster, identity.agent_id) == ("default", A)
    gate = AgentGate(store=store, certificates=certificates)
    assert (await gate.authorize(agent_id=A, api_key=keys[A], certificate=cert)).serial


async def test_leaving_active_revokes_certificates_for_good(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    """An administrator revokes the agent, then approves it again: its old certificate stays
    revoked (agent_inactive), as a replaced key never comes back."""
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    admin = AdminService(store=store, audit=RecordingSink(), clock=time.time)
    await admin.revoke(agent_id=A, actor="alice")
    rows = await certificates.certificates(A, actor="alice")
    assert [(r.revoked_reason, r.revoked_by) for r in rows] == [
        (RevokedReason.AGENT_INACTIVE, "alice")
    ]
    await admin.approve(agent_id=A, actor="alice")
    with pytest.raises(GateRefusal) as refused:
        await certificates.check_certificate(agent_id=A, certificate=cert)
    assert refused.value.code == "certificate_not_live"
    assert "agent_inactive" in refused.value.message
    assert [s for s, _ in await certificates.revoked()] == [format(cert.serial_number, "x")]


async def test_a_deleted_agents_certificates_never_count_again(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    """Deleted, then a new record under the same agent id (a StatefulSet pod recreated with
    its name): the old certificate is refused."""
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    admin = AdminService(store=store, audit=RecordingSink(), clock=time.time)
    await admin.delete(agent_id=A, actor="alice")
    async with store.transaction() as tx:
        await tx.insert_agent(
            agent_record(
                AgentStatus.ACTIVE,
                id=uuid.uuid4(),
                agent_id=A,
                api_key_hash=key_digest(keys[A]),
                control_plane=ControlPlaneState.APPROVED,
                reason="approved_by_admin",
            )
        )
    with pytest.raises(GateRefusal) as refused:
        await certificates.check_certificate(agent_id=A, certificate=cert)
    assert "agent_deleted" in refused.value.message


async def test_reissue_is_rate_limited_while_a_live_certificate_is_held(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    with pytest.raises(RateLimited) as limited:
        await _issue(certificates, A, keys[A])
    assert (limited.value.status, limited.value.code) == (429, "certificate_rate_limited")
    assert 50 <= limited.value.retry_after <= 60
    # without a live certificate (this one revoked) the agent gets a new one at once
    await certificates.revoke(serial=format(cert.serial_number, "x"), actor="alice")
    assert (await _issue(certificates, A, keys[A])).serial_number != cert.serial_number


async def test_a_ca_dropped_from_the_bundle_is_refused_by_the_gate_too(
    store: Store, tmp_path: Path
) -> None:
    """After a rotation's finish the old CA's certificates are refused by the gate itself, not
    only by a fresh handshake (a resumed TLS session skips the chain check)."""
    old, new = write_ca(tmp_path / "old"), write_ca(tmp_path / "new", name="agent-ca-2")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(old.issued.cert_pem)
    ca = SigningCa(old.cert, old.key, bundle)
    certificates = AgentCertificates(
        store=store, ca=ca, audit=RecordingSink(), policy=CertificatePolicy(), clock=time.time
    )
    keys = await _agents(store)
    cert = await _issue(certificates, A, keys[A])
    bundle.write_bytes(old.issued.cert_pem + new.issued.cert_pem)
    old.cert.write_bytes(new.issued.cert_pem)
    old.key.write_bytes(new.issued.key_pem)
    assert ca.check() is ReloadResult.SUCCESS
    assert (await certificates.check_certificate(agent_id=A, certificate=cert)).agent_id == A
    bundle.write_bytes(new.issued.cert_pem)  # finish
    assert ca.check() is ReloadResult.SUCCESS
    with pytest.raises(GateRefusal, match="no longer in the trust bundle"):
        await certificates.check_certificate(agent_id=A, certificate=cert)
    assert not await certificates.is_live(agent_id=A, serial=format(cert.serial_number, "x"))


def test_a_bundle_without_the_signing_ca_is_refused(tmp_path: Path) -> None:
    ca, other = write_ca(tmp_path / "ca"), write_ca(tmp_path / "other")
    with pytest.raises(MaterialError, match="does not hold the agent CA"):
        SigningCa(ca.cert, ca.key, other.cert)


async def test_crl_is_cached_until_a_revocation(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    first = await certificates.crl()
    assert await certificates.crl() is first
    await certificates.revoke(serial=format(cert.serial_number, "x"), actor="alice")
    listed = x509.load_der_x509_crl(await certificates.crl())
    assert [r.serial_number for r in listed] == [cert.serial_number]


async def test_revoked_lists_follow_every_revocation_path(
    store: Store, setup: tuple[AgentCertificates, dict[str, str]]
) -> None:
    """The lists are cached, but against the table's revocations: one made by the agent's
    lifecycle (not by this service) shows at the next request, in the CRL too."""
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    assert await certificates.revoked() == []
    assert list(x509.load_der_x509_crl(await certificates.crl())) == []
    await AdminService(store=store, audit=RecordingSink(), clock=time.time).revoke(
        agent_id=A, actor="alice"
    )
    assert [s for s, _ in await certificates.revoked()] == [format(cert.serial_number, "x")]
    crl = x509.load_der_x509_crl(await certificates.crl())
    assert [r.serial_number for r in crl] == [cert.serial_number]


async def test_a_renewal_rechecks_the_presented_certificate_under_the_lock(
    store: Store,
    setup: tuple[AgentCertificates, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revocation of the presented certificate that commits between the first check and the
    issuing transaction wins (the first check is made to miss it here)."""
    certificates, keys = setup
    cert = await _issue(certificates, A, keys[A])
    await certificates.revoke(serial=format(cert.serial_number, "x"), actor="alice")

    async def stale_check(*, agent_id: str, certificate: x509.Certificate) -> None:
        return None

    monkeypatch.setattr(certificates, "check_certificate", stale_check)
    with pytest.raises(GateRefusal, match="revoked meanwhile"):
        await certificates.issue(agent_id=A, csr_pem=csr_pem(new_key()), api_key=None, peer=cert)
