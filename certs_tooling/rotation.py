"""``certs-tooling rotate-ca``: replace the CA without a moment in which the API server
distrusts the webhook.

The API server verifies the webhook's serving certificate against the ``caBundle`` of the
MutatingWebhookConfiguration (Kubernetes "Dynamic Admission Control", "Contacting the webhook").
A caBundle may hold several PEM certificates, and a certificate chaining to any of them is
accepted, so the rotation has an overlap:

1. ``rotate-ca``: new CA in ``ca.crt``/``ca.key``; the old certificate kept as
   ``ca-previous.crt``; ``ca-bundle.crt`` = old + new; both serving certificates re-issued from
   the new CA with their current SANs. The admin applies the bundle first (the old leaves still
   chain to the old CA in it), then rolls out the new leaves (they chain to the new CA in it).
2. ``rotate-ca --finish``: once every pod serves a new leaf, ``ca-bundle.crt`` = new CA only and
   ``ca-previous.crt`` is deleted. Refused while a serving certificate in the folder does not
   chain to the new CA.

The old CA's private key is not kept: during the overlap nothing is signed by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from certs_tooling.certinfo import issued_by
from certs_tooling.errors import MaterialError, RotationError
from certs_tooling.files import remove_file, write_file, write_serving_pair
from certs_tooling.layout import Component, Layout
from certs_tooling.material import read_bytes, read_cert, read_issued
from certs_tooling.pki import CA_COMMON_NAME, Issued, make_ca
from certs_tooling.serving import reissue

DEFAULT_CA_DAYS = 5 * 365


def rotated_ca_name(now: datetime) -> str:
    """The new CA's CN: the base name plus the UTC time, e.g.
    ``agent-bootstrap-ca 20250102T030405Z``. A distinct subject keeps the two CAs of the
    overlap apart for every verifier (issuer lookup is by subject name, RFC 5280 section 6.1)."""
    return f"{CA_COMMON_NAME} {now:%Y%m%dT%H%M%SZ}"


@dataclass(frozen=True, slots=True)
class Started:
    """Result of :func:`start`."""

    old_ca: x509.Certificate
    new_ca: x509.Certificate
    leaves: dict[Component, x509.Certificate]


def start(layout: Layout, *, ca_days: int, leaf_days: int, now: datetime) -> Started:
    """Begin a CA rotation (step 1 of the module docstring).

    Everything is built in memory first; files are then written in this order: ``ca-previous.crt``,
    ``ca-bundle.crt`` (old + new), ``ca.key``, ``ca.crt``, then each serving pair
    (:func:`certs_tooling.files.write_serving_pair`). The bundle comes before the new leaves,
    so a server re-reading the folder never serves a leaf the bundle does not trust.

    Raises:
        RotationError: a rotation is already running (``ca-previous.crt`` exists).
        MaterialError: the CA or a serving certificate is missing, unreadable or has no SAN.
        OSError: a write failed.
    """
    if layout.ca_previous.exists():
        raise RotationError(
            f"a CA rotation is already running ({layout.ca_previous.name} exists); "
            "finish it with `rotate-ca --finish` first"
        )
    old = read_issued(layout.ca_cert, layout.ca_key)
    new = make_ca(common_name=rotated_ca_name(now), valid_days=ca_days, now=now)
    leaves: dict[Component, Issued] = {}
    for component in Component:
        path = layout.serving(component).cert
        try:
            leaves[component] = reissue(
                ca=new, current=read_cert(path), valid_days=leaf_days, now=now
            )
        except ValueError as exc:
            raise MaterialError(f"{path}: {exc}") from None
    write_file(layout.ca_previous, old.cert_pem, private=False)
    write_file(layout.ca_bundle, old.cert_pem + new.cert_pem, private=False)
    write_file(layout.ca_key, new.key_pem, private=True)
    write_file(layout.ca_cert, new.cert_pem, private=False)
    for component, issued in leaves.items():
        files = layout.serving(component)
        write_serving_pair(
            cert_path=files.cert,
            key_path=files.key,
            pair_path=files.pair,
            cert_pem=issued.cert_pem,
            key_pem=issued.key_pem,
        )
    return Started(
        old_ca=old.certificate,
        new_ca=new.certificate,
        leaves={c: i.certificate for c, i in leaves.items()},
    )


def finish(layout: Layout) -> x509.Certificate:
    """End a CA rotation (step 2): ``ca-bundle.crt`` = ``ca.crt``, ``ca-previous.crt`` deleted.

    Returns the CA that remains.

    Raises:
        RotationError: no rotation is running, or a serving certificate in the folder is not
            issued by the current CA (dropping the old CA would break it).
        MaterialError, OSError.
    """
    if not layout.ca_previous.exists():
        raise RotationError("no CA rotation is running (no ca-previous.crt); nothing to finish")
    ca_pem = read_bytes(layout.ca_cert)
    ca = read_cert(layout.ca_cert)
    for component in Component:
        path = layout.serving(component).cert
        if not issued_by(read_cert(path), ca):
            raise RotationError(
                f"{path.name} is not issued by the current CA; run "
                f"`renew-serving-cert --component {component}` before finishing"
            )
    write_file(layout.ca_bundle, ca_pem, private=False)
    remove_file(layout.ca_previous)
    return ca


def start_steps(out: Path) -> list[str]:
    """The admin's numbered steps after :func:`start` (one string per step)."""
    return [
        f"Apply {out / 'ca-bundle.crt'} (old + new CA) as the caBundle of the "
        "MutatingWebhookConfiguration, and wherever clients trust the approver's CA:\n"
        f"     certs-tooling k8s-manifests --out {out} --namespace NS --ca-bundle-only",
        "Roll out the new serving certificates (Secrets), then wait until every webhook and "
        "approver pod serves them:\n"
        f"     certs-tooling k8s-manifests --out {out} --namespace NS | kubectl apply -f -",
        f"After the rollout: certs-tooling rotate-ca --out {out} --finish  (drops the old CA "
        "from the bundle), then apply the bundle again as in step 1.",
    ]


def finish_steps(out: Path) -> list[str]:
    """The admin's numbered steps after :func:`finish`."""
    return [
        f"Apply {out / 'ca-bundle.crt'} (new CA only) as the caBundle again:\n"
        f"     certs-tooling k8s-manifests --out {out} --namespace NS --ca-bundle-only",
    ]
