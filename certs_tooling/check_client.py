"""``certs-tooling check`` for the API server's client material (written by
``apiserver-client``; optional, so a folder without it gets none of these findings). Pure.

* expiry of ``apiserver-client-ca.crt`` and ``apiserver-client.crt`` (as every certificate);
* the client CA is a CA and ``apiserver-client-ca.key`` is its key;
  ``apiserver-client-ca-bundle.crt`` (the webhook's ``tlsClientCaFile``) contains it, and a
  second CA in the bundle is a WARN (a ``--new-ca`` overlap that needs ``--finish``);
* ``apiserver-client.crt`` is a clientAuth leaf (RFC 5280 4.2.1.12), its key matches, it is
  issued by the client CA and chains to a CA in the bundle (else the webhook refuses the API
  server's handshake);
* every ``users`` entry of ``apiserver-client.kubeconfig`` embeds ``apiserver-client.crt`` and
  its key: the API server presents what the kubeconfig holds, so a stale one is a FAIL.

File permissions are part of the common permissions check (:mod:`certs_tooling.check_files`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from certs_tooling.certinfo import (
    is_client_leaf,
    issued_by,
    key_matches,
    load_cert,
    load_certs,
    load_private_key,
)
from certs_tooling.findings import (
    Finding,
    Level,
    Named,
    ca_findings,
    expiry,
    key_match,
    parse_cert,
)


@dataclass(frozen=True, slots=True)
class ClientInputs:
    """The ``apiserver-client`` files; an absent one skips the checks that need it."""

    cert: Named | None = None
    key: Named | None = None
    ca: Named | None = None
    ca_key: Named | None = None
    bundle: Named | None = None
    kubeconfig: Named | None = None


def _ca_checks(
    inputs: ClientInputs, now: datetime, warn_days: int, out: list[Finding]
) -> tuple[x509.Certificate | None, list[x509.Certificate] | None]:
    """Client CA and bundle findings; returns the parsed CA and bundle (None when absent)."""
    ca = ca_findings(inputs.ca, inputs.ca_key, now=now, warn_days=warn_days, out=out)
    if inputs.bundle is None:
        return ca, None
    name = inputs.bundle.name
    try:
        bundle = load_certs(inputs.bundle.data)
    except ValueError:
        out.append(Finding(Level.FAIL, name, "not a PEM certificate bundle"))
        return ca, None
    if inputs.ca and ca is not None:
        if ca in bundle:
            out.append(Finding(Level.OK, name, f"contains {inputs.ca.name}"))
        else:
            out.append(Finding(Level.FAIL, name, f"does not contain {inputs.ca.name}"))
    if len(bundle) > 1:
        out.append(
            Finding(
                Level.WARN,
                name,
                f"holds {len(bundle)} client CAs: after every API server has the new "
                "kubeconfig, run `apiserver-client --finish`",
            )
        )
    return ca, bundle


def _cert_checks(
    inputs: ClientInputs,
    ca: x509.Certificate | None,
    bundle: list[x509.Certificate] | None,
    now: datetime,
    warn_days: int,
    out: list[Finding],
) -> x509.Certificate | None:
    if inputs.cert is None:
        return None
    name = inputs.cert.name
    cert = parse_cert(inputs.cert, out)
    if cert is None:
        return None
    out.append(expiry(name, cert, now=now, warn_days=warn_days))
    if is_client_leaf(cert):
        out.append(Finding(Level.OK, name, "is a clientAuth leaf"))
    else:
        out.append(Finding(Level.FAIL, name, "is not a client leaf (CA, or no clientAuth EKU)"))
    if inputs.key:
        out.append(key_match(name, cert, inputs.key))
    if inputs.ca and ca is not None:
        if issued_by(cert, ca):
            out.append(Finding(Level.OK, name, f"issued by {inputs.ca.name}"))
        else:
            out.append(Finding(Level.FAIL, name, f"not issued by {inputs.ca.name}"))
    if inputs.bundle and bundle is not None:
        where = inputs.bundle.name
        if any(issued_by(cert, anchor) for anchor in bundle):
            out.append(Finding(Level.OK, name, f"chains to a CA in {where}"))
        else:
            out.append(Finding(Level.FAIL, name, f"chains to no CA in {where} (tlsClientCaFile)"))
    return cert


def _users(data: bytes) -> list[tuple[str, dict[str, Any]]] | None:
    """(name, user) of every kubeconfig ``users`` entry; None when it is no such kubeconfig."""
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError:
        return None
    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, list) or not users:
        return None
    entries = []
    for entry in users:
        if not isinstance(entry, dict) or not isinstance(entry.get("user"), dict):
            return None
        entries.append((str(entry.get("name", "")), entry["user"]))
    return entries


def _embedded(user: dict[str, Any]) -> tuple[x509.Certificate, PrivateKeyTypes] | None:
    """The certificate and key of ``client-certificate-data``/``client-key-data``."""
    try:
        cert_pem = base64.b64decode(str(user["client-certificate-data"]), validate=True)
        key_pem = base64.b64decode(str(user["client-key-data"]), validate=True)
        return load_cert(cert_pem), load_private_key(key_pem)
    except (KeyError, binascii.Error, ValueError):
        return None


def kubeconfig_check(kubeconfig: Named, cert: x509.Certificate, cert_name: str) -> Finding:
    """OK when every ``users`` entry embeds ``cert`` and its key."""
    users = _users(kubeconfig.data)
    if users is None:
        return Finding(Level.FAIL, kubeconfig.name, "not a kubeconfig with users entries")
    unreadable, stale, mismatched = [], [], []
    for user_name, user in users:
        embedded = _embedded(user)
        if embedded is None:
            unreadable.append(user_name)
        elif embedded[0] != cert:
            stale.append(user_name)
        elif not key_matches(embedded[0], embedded[1]):
            mismatched.append(user_name)
    if unreadable:
        return Finding(
            Level.FAIL,
            kubeconfig.name,
            f"no PEM client-certificate-data/client-key-data in users {', '.join(unreadable)}",
        )
    if stale:
        return Finding(
            Level.FAIL,
            kubeconfig.name,
            f"embeds another certificate than {cert_name} (users {', '.join(stale)}): the API "
            "server would present it; run `apiserver-client --force`",
        )
    if mismatched:
        return Finding(
            Level.FAIL,
            kubeconfig.name,
            f"client-key-data does not belong to {cert_name} (users {', '.join(mismatched)})",
        )
    return Finding(
        Level.OK, kubeconfig.name, f"embeds {cert_name} and its key ({len(users)} users)"
    )


def run(inputs: ClientInputs, *, now: datetime, warn_days: int) -> list[Finding]:
    """Every check of the module docstring that ``inputs`` allows: client CA, bundle, client
    certificate, kubeconfig. Never raises for bad file contents (those are FAIL findings)."""
    out: list[Finding] = []
    ca, bundle = _ca_checks(inputs, now, warn_days, out)
    cert = _cert_checks(inputs, ca, bundle, now, warn_days, out)
    if inputs.kubeconfig and inputs.cert and cert is not None:
        out.append(kubeconfig_check(inputs.kubeconfig, cert, inputs.cert.name))
    return out


__all__ = ["ClientInputs", "kubeconfig_check", "run"]
