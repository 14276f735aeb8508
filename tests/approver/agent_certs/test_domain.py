"""The pure rules of agent certificates (approver.domain.agent_certificates): identity URI, CSR
checks, the certificate profile, lifetimes, the CRL."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID

from approver.domain.agent_certificates import (
    AgentIdentity,
    CsrRefused,
    RevokedSerial,
    build_certificate,
    build_crl,
    check_csr,
    identity_of,
    is_segment,
    lifetime,
    renew_after,
)
from certs_tooling.pki import make_ca
from tests.approver.agent_certs import der
from tests.approver.agent_certs.pki import csr_pem, new_key

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
BOUND = AgentIdentity("prod", "streamspace", "agent-7d9f-bb9n5", "k8s-prod-agent-7d9f-bb9n5")
LONG_ID = "a" + ":b" * 126  # 253 characters, with ':' (allowed in agent ids)


CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@pytest.fixture(scope="module")
def ca() -> CA:
    issued = make_ca(common_name="agent-ca", valid_days=30, now=NOW)
    return issued.certificate, issued.private_key()


def issue(
    ca: CA,
    identity: AgentIdentity = BOUND,
    *,
    seconds: int = 86400,
) -> x509.Certificate:
    key = ed25519.Ed25519PrivateKey.generate()
    return build_certificate(
        identity=identity,
        public_key=key.public_key(),
        ca_certificate=ca[0],
        ca_key=ca[1],
        serial=12345,
        validity=lifetime(now=NOW, seconds=seconds, ca_not_after=ca[0].not_valid_after_utc),
    )


class TestIdentity:
    def test_uri_names_cluster_namespace_pod_agent(self) -> None:
        assert BOUND.uri == (
            "agent-bootstrap://prod/ns/streamspace/pod/agent-7d9f-bb9n5"
            "/agent/k8s-prod-agent-7d9f-bb9n5"
        )

    def test_unbound_agent_has_dashes(self) -> None:
        identity = AgentIdentity("default", None, None, "agent_1")
        assert identity.uri == "agent-bootstrap://default/ns/-/pod/-/agent/agent_1"

    def test_round_trip_through_a_certificate(self, ca: tuple) -> None:  # type: ignore[type-arg]
        for identity in (BOUND, AgentIdentity("default", None, None, LONG_ID)):
            assert identity_of(issue(ca, identity)) == identity

    def test_certificate_without_agent_uri_names_nobody(self, ca: tuple) -> None:  # type: ignore[type-arg]
        cert = issue(ca)
        other = (
            x509.CertificateBuilder()
            .subject_name(cert.subject)
            .issuer_name(cert.issuer)
            .public_key(cert.public_key())
            .serial_number(1)
            .not_valid_before(NOW)
            .not_valid_after(NOW + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier("spiffe://prod/ns/a/sa/b")]
                ),
                critical=False,
            )
            .sign(ca[1], hashes.SHA256())
        )
        assert identity_of(other) is None


def test_uri_segments() -> None:
    assert is_segment("k8s-prod-cluster")
    assert is_segment("a:b.c_d")
    for bad in ("", "prod cluster", "a/b", "ä", "a%2F"):
        assert not is_segment(bad)


class TestProfile:
    def test_extensions(self, ca: tuple) -> None:  # type: ignore[type-arg]
        cert = issue(ca)
        ext = cert.extensions
        basic = ext.get_extension_for_class(x509.BasicConstraints)
        assert basic.critical
        assert basic.value.ca is False
        usage = ext.get_extension_for_class(x509.KeyUsage)
        assert usage.critical
        assert usage.value.digital_signature
        assert not usage.value.key_cert_sign
        assert not usage.value.key_encipherment
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        san = ext.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.critical is False
        assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [BOUND.uri]
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == BOUND.agent_id
        cert.verify_directly_issued_by(ca[0])

    def test_long_agent_id_gets_no_cn_and_a_critical_san(self, ca: tuple) -> None:  # type: ignore[type-arg]
        """RFC 5280: CN at most 64 characters; an empty subject makes the SAN critical."""
        cert = issue(ca, AgentIdentity("default", None, None, LONG_ID))
        assert list(cert.subject) == []
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical

    def test_64_character_id_still_has_a_cn(self, ca: tuple) -> None:  # type: ignore[type-arg]
        agent = "a" * 64
        cert = issue(ca, AgentIdentity("default", None, None, agent))
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == agent

    def test_lifetime_and_backdating(self, ca: tuple) -> None:  # type: ignore[type-arg]
        cert = issue(ca, seconds=3600)
        assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
        assert cert.not_valid_after_utc == NOW + timedelta(hours=1)

    def test_never_past_the_ca(self, ca: tuple) -> None:  # type: ignore[type-arg]
        cert = issue(ca, seconds=90 * 86400)
        assert cert.not_valid_after_utc == ca[0].not_valid_after_utc

    def test_renewal_at_two_thirds(self) -> None:
        start = NOW
        assert renew_after(start, start + timedelta(hours=24)) == start + timedelta(hours=16)
        validity = lifetime(now=NOW, seconds=3000, ca_not_after=NOW + timedelta(days=1))
        assert validity.renew_after == validity.not_before + timedelta(seconds=2200)

    def test_serial_bounds(self, ca: tuple) -> None:  # type: ignore[type-arg]
        key = ed25519.Ed25519PrivateKey.generate()
        validity = lifetime(now=NOW, seconds=60, ca_not_after=NOW + timedelta(days=1))
        for bad in (0, -1, 2**159):
            with pytest.raises(ValueError, match="serial"):
                build_certificate(
                    identity=BOUND, public_key=key.public_key(), ca_certificate=ca[0],
                    ca_key=ca[1], serial=bad, validity=validity,
                )  # fmt: skip


class TestCsr:
    @pytest.mark.parametrize("kind", ["ed25519", "p256"])
    @pytest.mark.parametrize("cn", [None, BOUND.agent_id])
    def test_accepted(self, kind: str, cn: str | None) -> None:
        key = new_key(kind)
        public = check_csr(csr_pem(key, cn=cn), BOUND)
        assert public == key.public_key()

    def test_san_equal_to_the_agent_uri_is_accepted(self) -> None:
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(BOUND.uri)])
        check_csr(csr_pem(new_key(), extensions=[(san, False)]), BOUND)

    @pytest.mark.parametrize("kind", ["p384", "rsa"])
    def test_other_keys_refused(self, kind: str) -> None:
        with pytest.raises(CsrRefused) as refused:
            check_csr(csr_pem(new_key(kind)), BOUND)
        assert refused.value.code == "csr_not_allowed"

    def test_another_cn_refused(self) -> None:
        with pytest.raises(CsrRefused, match="subject") as refused:
            check_csr(csr_pem(new_key(), cn="someone-else"), BOUND)
        assert refused.value.code == "csr_not_allowed"

    @pytest.mark.parametrize(
        "extension",
        [
            x509.BasicConstraints(ca=True, path_length=None),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            x509.SubjectAlternativeName([x509.DNSName("approver.example")]),
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(BOUND.uri.replace("bb9n5", "other"))]
            ),
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(BOUND.uri),
                    x509.UniformResourceIdentifier("agent-bootstrap://x/ns/-/pod/-/agent/y"),
                ]
            ),
        ],
    )
    def test_asking_for_more_is_refused(self, extension: x509.ExtensionType) -> None:
        with pytest.raises(CsrRefused, match="extension") as refused:
            check_csr(csr_pem(new_key(), extensions=[(extension, False)]), BOUND)
        assert refused.value.code == "csr_not_allowed"

    def test_challenge_password_attribute_refused(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_attribute(AttributeOID.CHALLENGE_PASSWORD, b"secret")
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        with pytest.raises(CsrRefused, match="attribute") as refused:
            check_csr(pem, BOUND)
        assert refused.value.code == "csr_not_allowed"

    def test_forged_signature_refused(self) -> None:
        """Proof of possession: a CSR whose signature does not verify with its own key."""
        pem = csr_pem(new_key("p256"))
        body = "".join(pem.strip().splitlines()[1:-1])
        der = bytearray(base64.b64decode(body))
        der[-3] ^= 0x01  # inside the signature value
        forged = (
            "-----BEGIN CERTIFICATE REQUEST-----\n"
            + base64.encodebytes(bytes(der)).decode()
            + "-----END CERTIFICATE REQUEST-----\n"
        )
        with pytest.raises(CsrRefused) as refused:
            check_csr(forged, BOUND)
        assert refused.value.code == "invalid_csr"

    @pytest.mark.parametrize(
        "text", ["", "hello", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE"]
    )
    def test_not_a_csr(self, text: str) -> None:
        with pytest.raises(CsrRefused) as refused:
            check_csr(text, BOUND)
        assert refused.value.code == "invalid_csr"

    def test_oversized(self) -> None:
        with pytest.raises(CsrRefused, match="larger") as refused:
            check_csr("x" * 9000, BOUND)
        assert refused.value.code == "invalid_csr"


def test_crl_lists_the_serials_and_verifies(ca: tuple) -> None:  # type: ignore[type-arg]
    crl = build_crl(
        revoked=[RevokedSerial(7, NOW), RevokedSerial(3, NOW - timedelta(hours=1))],
        ca_certificate=ca[0],
        ca_key=ca[1],
        now=NOW,
        next_update=timedelta(minutes=10),
        number=1234,
    )
    assert crl.is_signature_valid(ca[0].public_key())
    assert [r.serial_number for r in crl] == [3, 7]
    assert crl.get_revoked_certificate_by_serial_number(7) is not None
    assert crl.next_update_utc == NOW + timedelta(minutes=10)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1234
    assert crl.issuer == ca[0].subject


class TestHandMadeCsr:
    """CSRs no library writes (tests/approver/agent_certs/der.py): refused with a 400 code,
    never an exception from the parser (a 500)."""

    def test_the_builder_makes_an_accepted_csr(self) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        assert check_csr(der.csr(key), BOUND) == key.public_key()
        assert check_csr(der.csr(key, subject=der.cn(BOUND.agent_id.encode())), BOUND)

    @pytest.mark.parametrize(
        "build",
        [
            lambda k: der.csr(k, subject=der.cn(b"\xff\xfe")),  # CN not UTF-8
            lambda k: der.csr(k, subject=der.cn(b"\x05", tag=0x02)),  # CN an INTEGER
            lambda k: der.csr(k, attributes=der.seq(der.oid(der.EXTENSION_REQUEST), der.set_of())),
            lambda k: der.csr(
                k, spki=der.seq(der.seq(der.oid("1.3.101.127")), der.tlv(0x03, b"\x00" * 33))
            ),  # an unknown key algorithm
        ],
        ids=["cn-not-utf8", "cn-integer", "empty-extension-request", "unknown-key-algorithm"],
    )
    def test_malformed_is_invalid_csr(self, build: Any) -> None:
        with pytest.raises(CsrRefused) as refused:
            check_csr(build(ed25519.Ed25519PrivateKey.generate()), BOUND)
        assert refused.value.code == "invalid_csr"

    def test_a_second_extension_request_is_refused(self) -> None:
        """cryptography reads the first extensionRequest only; a CA bit asked for in a second
        one must not slip by."""
        ca_bit = der.extension("2.5.29.19", der.seq(der.tlv(0x01, b"\xff")), critical=True)
        pem = der.csr(
            ed25519.Ed25519PrivateKey.generate(),
            attributes=der.extension_request() + der.extension_request(ca_bit),
        )
        with pytest.raises(CsrRefused, match="more than one extensionRequest") as refused:
            check_csr(pem, BOUND)
        assert refused.value.code == "csr_not_allowed"
