"""``certs-tooling init``: everything a fresh installation needs, in one folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bootstrap_token import KeySet, SigningKey
from certs_tooling.files import write_file
from certs_tooling.layout import Layout
from certs_tooling.pki import make_ca, make_serving_cert, service_dns_names

LOCAL_DNS = ("localhost",)
LOCAL_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class InitOptions:
    """What to issue. Days are calendar days from ``now``."""

    namespace: str = "agent-bootstrap"
    webhook_service: str = "agent-bootstrap-webhook"
    approver_service: str = "agent-bootstrap-approver"
    extra_dns: Sequence[str] = ()
    extra_ips: Sequence[str] = ()
    local: bool = False
    ca_days: int = 5 * 365
    leaf_days: int = 365


class AlreadyInitialised(Exception):
    """The folder already holds key material and ``--force`` was not given."""


def run_init(layout: Layout, options: InitOptions, *, now: datetime, force: bool) -> str:
    """Write CA, both serving certificates, the first signing key and the JWKS into ``layout``.

    Returns:
        The ``kid`` of the new signing key.

    Raises:
        AlreadyInitialised: a file of the layout exists and ``force`` is false (nothing written).
        ValueError: an ``--ip`` that is not an IP address.
    """
    existing = [p for p in layout.all_files() if p.exists()]
    if existing and not force:
        raise AlreadyInitialised(
            f"{layout.root} already holds {', '.join(p.name for p in existing)}; "
            "use --force to overwrite"
        )
    dns_extra = list(options.extra_dns) + (list(LOCAL_DNS) if options.local else [])
    ips = list(options.extra_ips) + (list(LOCAL_IPS) if options.local else [])
    ca = make_ca(common_name="agent-bootstrap-ca", valid_days=options.ca_days, now=now)
    webhook = make_serving_cert(
        ca=ca,
        dns_names=service_dns_names(options.webhook_service, options.namespace) + dns_extra,
        ip_addresses=ips,
        valid_days=options.leaf_days,
        now=now,
    )
    approver = make_serving_cert(
        ca=ca,
        dns_names=service_dns_names(options.approver_service, options.namespace) + dns_extra,
        ip_addresses=ips,
        valid_days=options.leaf_days,
        now=now,
    )
    signing = SigningKey.generate()
    jwks = json.dumps(KeySet([signing.public_key]).to_jwks(), indent=2).encode() + b"\n"
    write_file(layout.ca_key, ca.key_pem, private=True)
    write_file(layout.ca_cert, ca.cert_pem, private=False)
    write_file(layout.webhook_key, webhook.key_pem, private=True)
    write_file(layout.webhook_cert, webhook.cert_pem, private=False)
    write_file(layout.approver_key, approver.key_pem, private=True)
    write_file(layout.approver_cert, approver.cert_pem, private=False)
    write_file(layout.signing_key, signing.private_pem(), private=True)
    write_file(layout.jwks, jwks, private=False)
    return signing.kid
