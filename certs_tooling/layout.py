"""File names inside a certs-tooling folder: one place, read by the CLI, the demo and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Layout:
    """Paths of every file ``certs-tooling init`` writes into ``root``.

    Private keys (mode 0600): ``ca.key``, ``webhook-tls.key``, ``approver-tls.key``,
    ``signing.key``. Public (0644): ``ca.crt``, ``webhook-tls.crt``, ``approver-tls.crt``,
    ``jwks.json``.
    """

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def webhook_cert(self) -> Path:
        return self.root / "webhook-tls.crt"

    @property
    def webhook_key(self) -> Path:
        return self.root / "webhook-tls.key"

    @property
    def approver_cert(self) -> Path:
        return self.root / "approver-tls.crt"

    @property
    def approver_key(self) -> Path:
        return self.root / "approver-tls.key"

    @property
    def signing_key(self) -> Path:
        return self.root / "signing.key"

    @property
    def jwks(self) -> Path:
        return self.root / "jwks.json"

    def all_files(self) -> list[Path]:
        return [
            self.ca_cert,
            self.ca_key,
            self.webhook_cert,
            self.webhook_key,
            self.approver_cert,
            self.approver_key,
            self.signing_key,
            self.jwks,
        ]
