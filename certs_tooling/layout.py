"""File names inside a certs-tooling folder: one place, read by the CLI, the demo and the tests.

Folder layout (private files mode 0600, public 0644, folders 0700)::

    ca.crt             0644  current CA certificate
    ca.key             0600  current CA key (signs serving certificates)
    ca-bundle.crt      0644  the caBundle: the current CA, plus the previous one during rotate-ca
    ca-previous.crt    0644  the CA being rotated out (only between rotate-ca and --finish)
    webhook-tls.crt    0644  webhook serving certificate
    webhook-tls.key    0600  its key
    webhook-tls.pem    0600  certificate + key in one file, replaced with a single rename
    approver-tls.crt   0644  approver serving certificate
    approver-tls.key   0600  its key
    approver-tls.pem   0600  certificate + key in one file
    signing.key        0600  the active Ed25519 token signing key (a copy of keys/<kid>.key)
    jwks.json          0644  public keys of every pending, active and not yet retired key
    keys/              0700  the signing-key store
      state.json       0644  kid, state and times of every key (no key material)
      <kid>.key        0600  one Ed25519 private key per non-retired key

Written by ``apiserver-client`` only (the API server's client certificate for the webhook)::

    apiserver-client-ca.crt         0644  client CA (separate from ca.crt: signs clients only)
    apiserver-client-ca.key         0600  its key
    apiserver-client-ca-bundle.crt  0644  the webhook's tlsClientCaFile
    apiserver-client.crt            0644  the API server's client certificate (clientAuth)
    apiserver-client.key            0600  its key
    apiserver-client.kubeconfig     0600  kubeconfig for the API server, cert and key embedded
    admission-config.yaml           0644  AdmissionConfiguration naming that kubeconfig

Written by ``agent-ca`` only (the CA the approver signs agents' TLS client certificates with)::

    agent-ca.crt            0644  current agent CA (separate from ca.crt: signs agent clients only)
    agent-ca.key            0600  its key (the approver's signing key for agent certificates)
    agent-ca-bundle.crt     0644  what the approver's gate trusts: the current agent CA, plus the
                                  previous one during a rotation
    agent-ca-previous.crt   0644  the agent CA being rotated out (only between ``agent-ca rotate``
                                  and ``agent-ca finish``)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

#: An RFC 7638 SHA-256 thumbprint, base64url without padding: exactly 43 characters.
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")


class Component(StrEnum):
    """A service with a serving certificate."""

    WEBHOOK = "webhook"
    APPROVER = "approver"


@dataclass(frozen=True, slots=True)
class ServingFiles:
    """The three files of one serving certificate."""

    cert: Path
    key: Path
    pair: Path


@dataclass(frozen=True, slots=True)
class Layout:
    """Paths of every file certs-tooling writes into ``root`` (see the module docstring)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def ca_bundle(self) -> Path:
        return self.root / "ca-bundle.crt"

    @property
    def ca_previous(self) -> Path:
        return self.root / "ca-previous.crt"

    @property
    def webhook_cert(self) -> Path:
        return self.root / "webhook-tls.crt"

    @property
    def webhook_key(self) -> Path:
        return self.root / "webhook-tls.key"

    @property
    def webhook_pair(self) -> Path:
        return self.root / "webhook-tls.pem"

    @property
    def approver_cert(self) -> Path:
        return self.root / "approver-tls.crt"

    @property
    def approver_key(self) -> Path:
        return self.root / "approver-tls.key"

    @property
    def approver_pair(self) -> Path:
        return self.root / "approver-tls.pem"

    @property
    def signing_key(self) -> Path:
        return self.root / "signing.key"

    @property
    def jwks(self) -> Path:
        return self.root / "jwks.json"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def key_state(self) -> Path:
        return self.keys_dir / "state.json"

    @property
    def apiserver_client_ca_cert(self) -> Path:
        return self.root / "apiserver-client-ca.crt"

    @property
    def apiserver_client_ca_key(self) -> Path:
        return self.root / "apiserver-client-ca.key"

    @property
    def apiserver_client_ca_bundle(self) -> Path:
        return self.root / "apiserver-client-ca-bundle.crt"

    @property
    def apiserver_client_cert(self) -> Path:
        return self.root / "apiserver-client.crt"

    @property
    def apiserver_client_key(self) -> Path:
        return self.root / "apiserver-client.key"

    @property
    def apiserver_kubeconfig(self) -> Path:
        return self.root / "apiserver-client.kubeconfig"

    @property
    def admission_config(self) -> Path:
        return self.root / "admission-config.yaml"

    @property
    def agent_ca_cert(self) -> Path:
        return self.root / "agent-ca.crt"

    @property
    def agent_ca_key(self) -> Path:
        return self.root / "agent-ca.key"

    @property
    def agent_ca_bundle(self) -> Path:
        return self.root / "agent-ca-bundle.crt"

    @property
    def agent_ca_previous(self) -> Path:
        return self.root / "agent-ca-previous.crt"

    def agent_ca_files(self) -> list[Path]:
        """Every file ``certs-tooling agent-ca`` writes (``agent-ca-previous.crt`` only during a
        rotation)."""
        return [
            self.agent_ca_cert,
            self.agent_ca_key,
            self.agent_ca_bundle,
            self.agent_ca_previous,
        ]

    def apiserver_client_files(self) -> list[Path]:
        """Every file ``certs-tooling apiserver-client`` writes."""
        return [
            self.apiserver_client_ca_cert,
            self.apiserver_client_ca_key,
            self.apiserver_client_ca_bundle,
            self.apiserver_client_cert,
            self.apiserver_client_key,
            self.apiserver_kubeconfig,
            self.admission_config,
        ]

    def key_file(self, kid: str) -> Path:
        """``keys/<kid>.key``.

        Raises:
            ValueError: ``kid`` is not a 43-character base64url thumbprint (so a kid can never
                name a path outside ``keys/``).
        """
        if not KID_PATTERN.fullmatch(kid):
            raise ValueError(f"not a key id (43 base64url characters): {kid!r}")
        return self.keys_dir / f"{kid}.key"

    def serving(self, component: Component) -> ServingFiles:
        """The certificate, key and combined files of ``component``."""
        if component is Component.WEBHOOK:
            return ServingFiles(self.webhook_cert, self.webhook_key, self.webhook_pair)
        return ServingFiles(self.approver_cert, self.approver_key, self.approver_pair)

    def private_files(self) -> list[Path]:
        """Every fixed-name file that must be mode 0600 (``keys/<kid>.key`` come on top)."""
        return [
            self.ca_key,
            self.webhook_key,
            self.webhook_pair,
            self.approver_key,
            self.approver_pair,
            self.signing_key,
        ]

    def all_files(self) -> list[Path]:
        """Every fixed-name file ``certs-tooling init`` writes (not ``ca-previous.crt``)."""
        return [
            self.ca_cert,
            self.ca_key,
            self.ca_bundle,
            self.webhook_cert,
            self.webhook_key,
            self.webhook_pair,
            self.approver_cert,
            self.approver_key,
            self.approver_pair,
            self.signing_key,
            self.jwks,
            self.key_state,
        ]
