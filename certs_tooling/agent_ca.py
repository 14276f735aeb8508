"""``certs-tooling agent-ca``: the CA the approver signs agents' TLS client certificates with.

The approver issues each approved agent a short-lived client certificate (extendedKeyUsage
``clientAuth`` only, a URI subjectAltName naming the agent) and its gate verifies the ones agents
present against a trust bundle. This module makes and rotates that CA. It is a **CA of its
own** (``agent-ca.*``), separate from the serving CA (``ca.*``) and from the API server's client
CA (``apiserver-client-ca.*``): the gate then trusts exactly the certificates the approver
minted for agents, and no serving or API server certificate can pass as an agent.

The approver reads ``agent-ca.crt`` + ``agent-ca.key`` to sign and ``agent-ca-bundle.crt`` to
trust, and re-reads them when they change. A rotation has an overlap, like ``rotate-ca``:

1. :func:`rotate`: new CA in ``agent-ca.crt``/``agent-ca.key`` (a distinct subject: the base CN
   plus the UTC time); the old certificate kept as ``agent-ca-previous.crt``;
   ``agent-ca-bundle.crt`` = old + new. From then on new agent certificates chain to the new CA,
   and those of the old one still verify against the bundle.
2. :func:`finish`: ``agent-ca-bundle.crt`` = current CA only, ``agent-ca-previous.crt`` deleted.
   Agent certificates live in the approver's database, not in this folder, so nothing here can
   say whether one signed by the old CA is still in use. What bounds them is their lifetime:
   ``finish`` refuses until the longest lifetime (``max_certificate_lifetime``) plus
   :data:`~certs_tooling.pki.CLOCK_SKEW` has passed since the rotation (the new CA's notBefore
   + ``CLOCK_SKEW``, since :func:`~certs_tooling.pki.make_ca` backdates it); ``force`` skips
   that wait.

The old CA's private key is not kept: during the overlap nothing is signed by it. Each file is
written atomically (:mod:`certs_tooling.files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs_tooling.certinfo import common_name
from certs_tooling.errors import AlreadyInitialised, RotationError
from certs_tooling.files import remove_file, write_file
from certs_tooling.k8s import DEFAULT_AGENT_CA_SECRET
from certs_tooling.layout import Layout
from certs_tooling.material import read_cert, read_issued
from certs_tooling.pki import CLOCK_SKEW, make_ca

#: CN of the agent CA ``init`` makes (``rotate`` appends the time).
AGENT_CA_COMMON_NAME = "agent-bootstrap-agent-ca"
#: Validity of a new agent CA (days): 5 years, like the serving CA.
DEFAULT_CA_DAYS = 5 * 365
#: The approver's default agent certificate lifetime (24 h): what ``finish`` waits for.
DEFAULT_MAX_CERTIFICATE_LIFETIME = timedelta(hours=24)
#: The Secret ``k8s-manifests`` prints the agent CA files in (``--agent-ca-secret``).
SECRET_NAME = DEFAULT_AGENT_CA_SECRET


def rotated_name(now: datetime) -> str:
    """The new agent CA's CN: the base name plus the UTC time, e.g.
    ``agent-bootstrap-agent-ca 20250102T030405Z``. A distinct subject keeps the two CAs of the
    overlap apart for every verifier (issuer lookup is by subject name, RFC 5280 section 6.1)."""
    return f"{AGENT_CA_COMMON_NAME} {now.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Initialised:
    """Result of :func:`init`: the new CA, and whether an existing agent CA was replaced."""

    ca: x509.Certificate
    replaced: bool


@dataclass(frozen=True, slots=True)
class Rotated:
    """Result of :func:`rotate`."""

    old_ca: x509.Certificate
    new_ca: x509.Certificate


@dataclass(frozen=True, slots=True)
class Finished:
    """Result of :func:`finish`: the CA left alone in the bundle, the moment from which no agent
    certificate of the previous CA can still be valid, and whether ``force`` finished before."""

    ca: x509.Certificate
    safe_at: datetime
    forced: bool


def init(
    layout: Layout, *, days: int = DEFAULT_CA_DAYS, now: datetime, force: bool = False
) -> Initialised:
    """A new agent CA (CN :data:`AGENT_CA_COMMON_NAME`, ECDSA P-256, ``pathlen=0``,
    keyCertSign + cRLSign): writes ``agent-ca.key``, ``agent-ca.crt`` and
    ``agent-ca-bundle.crt`` (= the CA), in that order.

    With ``force`` an existing agent CA is replaced without an overlap (agent certificates it
    signed fail the gate once the new bundle is read; :func:`rotate` keeps them valid) and a
    running rotation is abandoned (``agent-ca-previous.crt`` deleted).

    Raises:
        AlreadyInitialised: an agent CA file exists and ``force`` is false (nothing written).
        OSError: a write failed.
    """
    existing = [p for p in layout.agent_ca_files() if p.exists()]
    if existing and not force:
        raise AlreadyInitialised(
            f"{layout.root} already holds {', '.join(p.name for p in existing)}; use "
            "`agent-ca rotate` to replace the agent CA with an overlap, or --force to replace "
            "it at once (agent certificates it signed are then refused)"
        )
    ca = make_ca(common_name=AGENT_CA_COMMON_NAME, valid_days=days, now=now)
    write_file(layout.agent_ca_key, ca.key_pem, private=True)
    write_file(layout.agent_ca_cert, ca.cert_pem, private=False)
    write_file(layout.agent_ca_bundle, ca.cert_pem, private=False)
    remove_file(layout.agent_ca_previous)
    return Initialised(ca=ca.certificate, replaced=bool(existing))


def rotate(layout: Layout, *, days: int = DEFAULT_CA_DAYS, now: datetime) -> Rotated:
    """Begin an agent CA rotation (step 1 of the module docstring).

    The new CA is made first; files are then written in this order: ``agent-ca-previous.crt``,
    ``agent-ca-bundle.crt`` (old + new), ``agent-ca.key``, ``agent-ca.crt``. So a reader never
    meets a signing CA the bundle does not trust: the bundle trusts the new CA before its key and
    certificate are in place. Between the key and the certificate a reader sees the old
    certificate with the new key, a pair that does not match (refuse it and retry, as
    :mod:`certs_tooling.files` explains for serving pairs).

    Raises:
        RotationError: a rotation is already running (``agent-ca-previous.crt`` exists), there
            is no agent CA, or the new CA would have the current one's subject (a rotation
            within the same second as the last one).
        MaterialError: ``agent-ca.crt``/``agent-ca.key`` are unreadable or do not match.
        OSError: a write failed.
    """
    if layout.agent_ca_previous.exists():
        raise RotationError(
            f"an agent CA rotation is already running ({layout.agent_ca_previous.name} exists); "
            "finish it with `agent-ca finish` first"
        )
    if not layout.agent_ca_cert.exists():
        raise RotationError(
            f"no agent CA to rotate ({layout.agent_ca_cert.name} is missing in {layout.root}); "
            "make one with `agent-ca init`"
        )
    old = read_issued(layout.agent_ca_cert, layout.agent_ca_key)
    old_ca = old.certificate
    name = rotated_name(now)
    if common_name(old_ca) == name:
        raise RotationError(
            f"the new agent CA would have the current one's subject ({name}); try again in a second"
        )
    new = make_ca(common_name=name, valid_days=days, now=now)
    write_file(layout.agent_ca_previous, _pem(old_ca), private=False)
    write_file(layout.agent_ca_bundle, _pem(old_ca) + new.cert_pem, private=False)
    write_file(layout.agent_ca_key, new.key_pem, private=True)
    write_file(layout.agent_ca_cert, new.cert_pem, private=False)
    return Rotated(old_ca=old_ca, new_ca=new.certificate)


def rotated_at(ca: x509.Certificate) -> datetime:
    """When the CA was made: its notBefore plus the backdating of
    :func:`~certs_tooling.pki.make_ca`."""
    return ca.not_valid_before_utc + CLOCK_SKEW


def safe_to_finish_at(ca: x509.Certificate, max_certificate_lifetime: timedelta) -> datetime:
    """The first moment no agent certificate of the previous CA can still be valid: the
    rotation (:func:`rotated_at` of the current CA) + ``max_certificate_lifetime`` +
    ``CLOCK_SKEW`` (the verifier's clock may run behind the signer's)."""
    return rotated_at(ca) + max_certificate_lifetime + CLOCK_SKEW


def finish(
    layout: Layout,
    *,
    max_certificate_lifetime: timedelta = DEFAULT_MAX_CERTIFICATE_LIFETIME,
    now: datetime,
    force: bool = False,
) -> Finished:
    """End an agent CA rotation (step 2): ``agent-ca-bundle.crt`` = ``agent-ca.crt``, then
    ``agent-ca-previous.crt`` deleted.

    Args:
        max_certificate_lifetime: the longest lifetime of an agent certificate the approver
            issues (its default is 24 h).
        now: timezone-aware current time.
        force: finish even though agent certificates of the previous CA may still be valid
            (e.g. the previous CA key leaked); they fail the gate from then on.

    Raises:
        RotationError: no rotation is running, or (without ``force``) it is earlier than
            :func:`safe_to_finish_at`; the message says when it becomes safe.
        MaterialError, OSError.
    """
    if not layout.agent_ca_previous.exists():
        raise RotationError(
            f"no agent CA rotation is running (no {layout.agent_ca_previous.name}); "
            "nothing to finish"
        )
    ca = read_cert(layout.agent_ca_cert)
    safe_at = safe_to_finish_at(ca, max_certificate_lifetime)
    early = now < safe_at
    if early and not force:
        lifetime = int(max_certificate_lifetime.total_seconds())
        skew = int(CLOCK_SKEW.total_seconds())
        raise RotationError(
            f"too early to finish the agent CA rotation: an agent certificate signed by the "
            f"previous agent CA just before the rotation ({_fmt(rotated_at(ca))}) may be in use "
            f"until {_fmt(safe_at)} ({lifetime} s of --max-certificate-lifetime-seconds + {skew} "
            f"s clock skew); run `agent-ca finish` from {_fmt(safe_at)} on, or with --force to "
            "refuse such certificates now"
        )
    write_file(layout.agent_ca_bundle, _pem(ca), private=False)
    remove_file(layout.agent_ca_previous)
    return Finished(ca=ca, safe_at=safe_at, forced=early)


def _apply(out: Path) -> str:
    return f"     certs-tooling k8s-manifests --out {out} --namespace NS | kubectl apply -f -"


def init_steps(out: Path) -> list[str]:
    """The admin's numbered steps after :func:`init` (one string per step)."""
    return [
        f"Give the approver {out / 'agent-ca.crt'} and agent-ca.key (the CA it signs agent "
        "client certificates with) and agent-ca-bundle.crt (what its gate trusts), e.g. as the "
        f"Secret {SECRET_NAME} (keys ca.crt, ca.key, ca-bundle.crt):\n{_apply(out)}\n"
        "   The approver re-reads them when they change; no restart.",
    ]


def rotate_steps(out: Path) -> list[str]:
    """The admin's numbered steps after :func:`rotate`."""
    bundle = out / "agent-ca-bundle.crt"
    return [
        f"Give every approver {bundle} (old + new agent CA) first, and wait until each has "
        "re-read it (a mounted Secret: the kubelet's sync, a minute or two):\n"
        f"     kubectl -n NS patch secret {SECRET_NAME} --type merge -p "
        f'"{{\\"data\\":{{\\"ca-bundle.crt\\":\\"$(base64 -w0 {bundle})\\"}}}}"',
        "Then give them the new signing CA (agent-ca.crt, agent-ca.key) with the whole "
        f"Secret:\n{_apply(out)}\n"
        "   New agent certificates chain to the new agent CA; those of the previous one stay "
        "trusted until step 3.",
        "When the longest agent certificate lifetime (24 h by default) plus 5 minutes has "
        f"passed since step 2: certs-tooling agent-ca finish --out {out} "
        "[--max-certificate-lifetime-seconds N] (drops the previous agent CA from the bundle), "
        "then apply the Secret again as in step 2.",
    ]


def finish_steps(out: Path) -> list[str]:
    """The admin's numbered steps after :func:`finish`."""
    return [
        f"Give the approvers {out / 'agent-ca-bundle.crt'} (new agent CA only) again:\n"
        f"{_apply(out)}\n"
        "   From then on agent certificates signed by the previous agent CA are refused.",
    ]
