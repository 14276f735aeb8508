"""Agent client certificates: the identity they carry, the CSRs accepted, the certificates
issued, the CRL. Pure (``cryptography`` objects in, ``cryptography`` objects out; no I/O).

**Identity.** An agent certificate names its agent in exactly one URI subjectAltName::

    agent-bootstrap://<cluster>/ns/<namespace>/pod/<pod>/agent/<agent id>

``<namespace>`` and ``<pod>`` are ``-`` when the agent is bound to no pod (an API-key agent
registered from outside the cluster); ``-`` is never a Kubernetes name (DNS-1123 names start
with a letter or digit), so it cannot be confused with one. The agent id is the last segment:
1..253 characters of letters, digits, ``.``, ``_``, ``-`` and ``:``
(:mod:`approver.domain.identifiers`), all of them path characters of RFC 3986 section 3.3, so
no percent-encoding is ever needed. Not a SPIFFE ID on purpose: SPIFFE path segments may not hold
``:``, which agent ids may. The subject CN is the agent id only when it fits X.509's 64-character
limit for CommonName (RFC 5280 Appendix A, ``ub-common-name``); verifiers read the URI, never the
CN.

**Profile** (RFC 5280 section 4.2; every flag chosen):

| extension | value | critical |
|---|---|---|
| BasicConstraints | ca=False | yes |
| KeyUsage | digitalSignature | yes |
| ExtendedKeyUsage | clientAuth only | no |
| SubjectAltName | the one URI above | yes when the subject is empty, else no |
| SubjectKeyIdentifier / AuthorityKeyIdentifier | from the keys | no |

**CSRs accepted** (PKCS #10, RFC 2986): PEM; the signature verifies with the CSR's own public
key (proof of possession of the private key, RFC 2986 section 3); an Ed25519 or ECDSA P-256 key;
a subject that is empty or exactly ``CN=<agent id>``; no attribute but ``extensionRequest``, and
in it nothing but a subjectAltName equal to the one URI the approver would issue. Anything else is
refused with what was refused (:class:`CsrRefused`): a CSR asks, the approver decides, and a
request for more (another name, serverAuth, a CA bit) is an error, not silently dropped.

**Renewal** starts at two thirds of a certificate's life (kubelet's certificate manager renews
at 70-90%; :func:`renew_after`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from approver.domain.identifiers import agent_id_problem
from bootstrap_token.x509_profiles import LEAF_KEY_USAGE

#: The URI scheme of agent identities.
URI_SCHEME = "agent-bootstrap"
#: The segment of a namespace or pod the agent is not bound to.
UNBOUND = "-"
#: X.509's upper bound for a CommonName (RFC 5280 Appendix A, ``ub-common-name``).
CN_MAX_LENGTH = 64
#: Backdating of notBefore, so a verifier whose clock runs a little behind still accepts.
CLOCK_SKEW = timedelta(minutes=5)
#: PKCS #9 extensionRequest (RFC 2985 section 5.4.2), the one CSR attribute accepted.
EXTENSION_REQUEST = ObjectIdentifier("1.2.840.113549.1.9.14")
#: Largest CSR accepted, PEM bytes (an Ed25519/P-256 CSR is about 400-600).
MAX_CSR_BYTES = 8 * 1024

_SEGMENT = r"[A-Za-z0-9._:-]+"
_URI = re.compile(
    rf"{URI_SCHEME}://(?P<cluster>{_SEGMENT})/ns/(?P<ns>{_SEGMENT})/pod/(?P<pod>{_SEGMENT})"
    rf"/agent/(?P<agent>{_SEGMENT})"
)


class CsrRefused(ValueError):
    """A CSR the approver does not sign. ``code`` is the stable error code (``invalid_csr``,
    ``csr_not_allowed``); the message says what was refused, never the CSR's bytes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """What an agent certificate names (module docstring). ``namespace``/``pod`` None: not
    bound to a pod."""

    cluster: str
    namespace: str | None
    pod: str | None
    agent_id: str

    @property
    def uri(self) -> str:
        """The URI subjectAltName (module docstring)."""
        return (
            f"{URI_SCHEME}://{self.cluster}/ns/{self.namespace or UNBOUND}"
            f"/pod/{self.pod or UNBOUND}/agent/{self.agent_id}"
        )


def is_segment(value: str) -> bool:
    """True when ``value`` can stand as one segment of the identity URI as it is (the
    characters of an agent id; Kubernetes names always can)."""
    return re.fullmatch(_SEGMENT, value) is not None


def identity_of(certificate: x509.Certificate) -> AgentIdentity | None:
    """The agent a certificate names: its one URI subjectAltName, parsed; None when it has no
    subjectAltName, more than one URI, or a URI that is not an agent identity."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        return None
    match = _URI.fullmatch(uris[0])
    if match is None or agent_id_problem(match["agent"]) is not None:
        return None
    return AgentIdentity(
        cluster=match["cluster"],
        namespace=None if match["ns"] == UNBOUND else match["ns"],
        pod=None if match["pod"] == UNBOUND else match["pod"],
        agent_id=match["agent"],
    )


SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
CsrKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def check_csr(pem: str, identity: AgentIdentity) -> CsrKey:
    """The public key of a CSR the approver may sign for ``identity`` (rules: module docstring).

    Args:
        pem: the CSR, PEM (``-----BEGIN CERTIFICATE REQUEST-----``).
        identity: what the certificate will name.

    Returns:
        The CSR's public key (Ed25519 or P-256).

    Raises:
        CsrRefused: ``invalid_csr`` (not a PEM CSR, too large, or its signature does not verify:
            no proof of possession); ``csr_not_allowed`` (another key type or curve, a subject
            other than empty or ``CN=<agent id>``, an attribute or extension it may not ask for).
    """
    data = pem.encode("utf-8", errors="replace")
    if len(data) > MAX_CSR_BYTES:
        raise CsrRefused("invalid_csr", f"the CSR is larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(data)
        key = csr.public_key()
        signed = csr.is_signature_valid
        subject = csr.subject
        attributes = list(csr.attributes)
    except (
        ValueError,
        TypeError,
        InvalidSignature,
        UnsupportedAlgorithm,
        x509.UnsupportedGeneralNameType,
    ):
        # cryptography parses lazily: an unknown key algorithm, a subject that is not valid
        # UTF-8 or an attribute of the wrong shape surfaces here, not at load.
        raise CsrRefused("invalid_csr", "not a PEM PKCS #10 certificate request") from None
    if not signed:
        raise CsrRefused(
            "invalid_csr", "the CSR's signature does not verify with its own key (no proof of "
            "possession, RFC 2986 section 3)"
        )  # fmt: skip
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise CsrRefused(
                "csr_not_allowed", f"ECDSA curve {key.curve.name}: only P-256 is signed"
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CsrRefused(
            "csr_not_allowed", f"{type(key).__name__}: only Ed25519 and ECDSA P-256 keys are signed"
        )
    _check_subject(subject, identity)
    _check_requests(csr, attributes, identity)
    return key


def _check_subject(subject: x509.Name, identity: AgentIdentity) -> None:
    attributes = list(subject)
    if not attributes:
        return
    if (
        len(attributes) == 1
        and attributes[0].oid == NameOID.COMMON_NAME
        and attributes[0].value == identity.agent_id
    ):
        return
    raise CsrRefused(
        "csr_not_allowed", "the subject must be empty or exactly CN=<agent id> (the approver "
        "names the agent itself)"
    )  # fmt: skip


def _check_requests(
    csr: x509.CertificateSigningRequest, attributes: list[x509.Attribute], identity: AgentIdentity
) -> None:
    for attribute in attributes:
        if attribute.oid != EXTENSION_REQUEST:
            raise CsrRefused(
                "csr_not_allowed",
                f"attribute {attribute.oid.dotted_string}: only extensionRequest may be present",
            )
    if len(attributes) > 1:
        # cryptography reads the first extensionRequest only: a second one must not slip by.
        raise CsrRefused("csr_not_allowed", "more than one extensionRequest attribute")
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise CsrRefused("invalid_csr", "the CSR's extensionRequest does not parse") from None
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.SubjectAlternativeName) and list(value) == [
            x509.UniformResourceIdentifier(identity.uri)
        ]:
            continue
        raise CsrRefused(
            "csr_not_allowed",
            f"extension {extension.oid.dotted_string}: a CSR may request no extension but a "
            "subjectAltName holding exactly the agent's URI (the approver sets the rest)",
        )


@dataclass(frozen=True, slots=True)
class Lifetime:
    """A certificate's validity: ``not_before`` (backdated by :data:`CLOCK_SKEW`),
    ``not_after``, and when its holder should renew it."""

    not_before: datetime
    not_after: datetime
    renew_after: datetime


def renew_after(not_before: datetime, not_after: datetime) -> datetime:
    """Two thirds into ``not_before``..``not_after`` (module docstring)."""
    return not_before + (not_after - not_before) * 2 / 3


def lifetime(*, now: datetime, seconds: int, ca_not_after: datetime) -> Lifetime:
    """The validity of a certificate issued at ``now`` for ``seconds``, never past the CA's
    own notAfter (RFC 5280 section 6.1.3: a chain is valid only while every certificate is)."""
    not_before = now - CLOCK_SKEW
    not_after = min(now + timedelta(seconds=seconds), ca_not_after)
    return Lifetime(not_before, not_after, renew_after(not_before, not_after))


def build_certificate(
    *,
    identity: AgentIdentity,
    public_key: CsrKey,
    ca_certificate: x509.Certificate,
    ca_key: SigningKey,
    serial: int,
    validity: Lifetime,
) -> x509.Certificate:
    """The agent's certificate (profile: module docstring), signed by the agent CA.

    Raises:
        ValueError: ``serial`` is not a positive integer of at most 159 bits (RFC 5280
            section 4.1.2.2: at most 20 octets, positive).
    """
    if not 0 < serial < 2**159:
        raise ValueError("serial must be positive and at most 159 bits")
    names = (
        [x509.NameAttribute(NameOID.COMMON_NAME, identity.agent_id)]
        if len(identity.agent_id) <= CN_MAX_LENGTH
        else []
    )
    subject = x509.Name(names)
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            LEAF_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=not names,  # RFC 5280 section 4.2.1.6: critical with an empty subject
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, algorithm)
    )


@dataclass(frozen=True, slots=True)
class RevokedSerial:
    """One CRL entry: the serial (an int) and when it stopped counting."""

    serial: int
    revoked_at: datetime


def build_crl(
    *,
    revoked: list[RevokedSerial],
    ca_certificate: x509.Certificate,
    ca_key: SigningKey,
    now: datetime,
    next_update: timedelta,
    number: int,
) -> x509.CertificateRevocationList:
    """A CRL (RFC 5280 section 5) of ``revoked``, signed by the agent CA.

    ``number`` is the cRLNumber (section 5.2.3: monotonically increasing; the caller passes the
    seconds since the epoch of ``now``), ``next_update`` how long a relying party may cache it.
    """
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    number_ext = x509.CRLNumber(number)
    key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    entries = [
        x509.RevokedCertificateBuilder()
        .serial_number(entry.serial)
        .revocation_date(entry.revoked_at)
        .build()
        for entry in sorted(revoked, key=lambda e: e.serial)
    ]
    # Every entry given to the constructor at once: add_revoked_certificate copies the list on
    # each call, which made a CRL of n entries cost O(n^2).
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=ca_certificate.subject,
        last_update=now - CLOCK_SKEW,
        next_update=now + next_update,
        extensions=[
            x509.Extension(number_ext.oid, False, number_ext),
            x509.Extension(key_id.oid, False, key_id),
        ],
        revoked_certificates=entries,
    )
    return builder.sign(ca_key, algorithm)
