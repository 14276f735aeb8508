"""``certs-tooling init``: everything a fresh installation needs, in one folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bootstrap_token import SigningKey
from certs_tooling import keyfolder
from certs_tooling.errors import AlreadyInitialised
from certs_tooling.files import remove_file, write_file, write_serving_pair
from certs_tooling.keystore import add_key
from certs_tooling.layout import Component, Layout
from certs_tooling.pki import (
    CA_COMMON_NAME,
    Issued,
    make_ca,
    make_serving_cert,
    service_dns_names,
)

__all__ = ["AlreadyInitialised", "InitOptions", "run_init"]

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


def run_init(layout: Layout, options: InitOptions, *, now: datetime, force: bool) -> str:
    """Write CA, caBundle, both serving certificates, the first signing key (registered
    ``active`` in the key store) and the JWKS into ``layout``.

    With ``force``, an existing folder is started over: ``ca-previous.crt`` and every
    ``keys/<kid>.key`` of the old store are deleted.

    Returns:
        The ``kid`` of the new signing key.

    Raises:
        AlreadyInitialised: a file of the layout exists and ``force`` is false (nothing written).
        ValueError: an ``--ip`` that is not an IP address (nothing written).
        OSError: a write failed.
    """
    existing = [p for p in layout.all_files() if p.exists()]
    if existing and not force:
        raise AlreadyInitialised(
            f"{layout.root} already holds {', '.join(p.name for p in existing)}; "
            "use --force to overwrite"
        )
    dns_extra = list(options.extra_dns) + (list(LOCAL_DNS) if options.local else [])
    ips = list(options.extra_ips) + (list(LOCAL_IPS) if options.local else [])
    ca = make_ca(common_name=CA_COMMON_NAME, valid_days=options.ca_days, now=now)
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
    store = keyfolder.empty(layout)
    store.state = add_key(store.state, signing.kid, now=now)
    store.new_keys[signing.kid] = signing
    write_file(layout.ca_key, ca.key_pem, private=True)
    write_file(layout.ca_cert, ca.cert_pem, private=False)
    write_file(layout.ca_bundle, ca.cert_pem, private=False)
    remove_file(layout.ca_previous)
    serving: dict[Component, Issued] = {Component.WEBHOOK: webhook, Component.APPROVER: approver}
    for component, issued in serving.items():
        files = layout.serving(component)
        write_serving_pair(
            cert_path=files.cert,
            key_path=files.key,
            pair_path=files.pair,
            cert_pem=issued.cert_pem,
            key_pem=issued.key_pem,
        )
    keyfolder.remove_unknown_key_files(layout, keep={signing.kid})
    keyfolder.commit(store)
    return signing.kid
