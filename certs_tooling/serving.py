"""``certs-tooling renew-serving-cert``: a new serving certificate from the same CA.

The new leaf keeps the subjectAltName entries of the current one (read back from it), so the
names the API server dials stay valid, and it is signed by the CA already in the caBundle, so
the MutatingWebhookConfiguration needs no change. Files are replaced in the order of
:func:`certs_tooling.files.write_serving_pair`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from certs_tooling.certinfo import subject_alt_names
from certs_tooling.errors import MaterialError
from certs_tooling.files import write_serving_pair
from certs_tooling.layout import Component, Layout
from certs_tooling.material import read_cert, read_issued
from certs_tooling.pki import Issued, make_serving_cert

DEFAULT_LEAF_DAYS = 365


def reissue(*, ca: Issued, current: x509.Certificate, valid_days: int, now: datetime) -> Issued:
    """A new serving certificate (new key) signed by ``ca`` with ``current``'s DNS and IP SANs.

    Pure. ``valid_days`` counts from ``now`` and is capped at the CA's notAfter.

    Raises:
        ValueError: ``current`` carries no DNS or IP subjectAltName.
    """
    names = subject_alt_names(current)
    if not names:
        raise ValueError("the current certificate has no DNS or IP subjectAltName to keep")
    return make_serving_cert(
        ca=ca, dns_names=names.dns, ip_addresses=names.ips, valid_days=valid_days, now=now
    )


@dataclass(frozen=True, slots=True)
class Renewed:
    """What was written for one component."""

    component: Component
    certificate: x509.Certificate


def renew(
    layout: Layout, components: Iterable[Component], *, leaf_days: int, now: datetime
) -> list[Renewed]:
    """Renew the serving certificates of ``components`` from ``ca.crt``/``ca.key``.

    Every new certificate is made before any file is written, so a failure writes nothing.

    Raises:
        MaterialError: the CA or a current certificate is missing, unreadable, mismatched, or
            has no SAN.
        OSError: a write failed.
    """
    ca = read_issued(layout.ca_cert, layout.ca_key)
    made: list[tuple[Component, Issued]] = []
    for component in components:
        files = layout.serving(component)
        current = read_cert(files.cert)
        try:
            made.append((component, reissue(ca=ca, current=current, valid_days=leaf_days, now=now)))
        except ValueError as exc:
            raise MaterialError(f"{files.cert}: {exc}") from None
    for component, issued in made:
        files = layout.serving(component)
        write_serving_pair(
            cert_path=files.cert,
            key_path=files.key,
            pair_path=files.pair,
            cert_pem=issued.cert_pem,
            key_pem=issued.key_pem,
        )
    return [Renewed(component, issued.certificate) for component, issued in made]
