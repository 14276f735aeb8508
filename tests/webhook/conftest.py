"""Fixtures of the webhook tests: keys, stamping config, settings and an audit recorder."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap_token import AuditEvent, AuditSink, KeySet, SigningKey, TrustPolicy
from webhook.config import WebhookSettings
from webhook.stamp import StampConfig

ANNOTATION = "agents.streamspace.io/bootstrap-token"
#: A fixed "now" (2025-12-01T00:00:00Z) for pure decision tests.
NOW = 1_764_547_200


class RecordingSink(AuditSink):
    """An audit sink that keeps the events it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """A throwaway Ed25519 signing key."""
    return SigningKey.generate()


@pytest.fixture(scope="session")
def key_set(signing_key: SigningKey) -> KeySet:
    """The verification key set of ``signing_key``."""
    return KeySet([signing_key.public_key])


@pytest.fixture
def trust() -> TrustPolicy:
    """Trust namespace ``streamspace``, any service account, the default agent selector."""
    return TrustPolicy(namespaces=frozenset({"streamspace"}))


@pytest.fixture
def stamp_config(trust: TrustPolicy) -> StampConfig:
    """Stamping parameters as the defaults of the settings, cluster ``test-cluster``."""
    return StampConfig(
        trust=trust,
        annotation_key=ANNOTATION,
        issuer="agent-bootstrap-webhook",
        audience="agent-approver",
        cluster="test-cluster",
        ttl_seconds=3600,
    )


@pytest.fixture
def audit() -> RecordingSink:
    """Collects audit events."""
    return RecordingSink()


def make_settings(tmp: Path, **overrides: object) -> WebhookSettings:
    """Settings trusting ``streamspace``, with file paths under ``tmp`` (not read by create_app)."""
    values: dict[str, object] = {
        "trust": {"namespaces": ["streamspace"]},
        "cluster": "test-cluster",
        "signingKeyFile": tmp / "signing.key",
        "tlsCertFile": tmp / "tls.crt",
        "tlsKeyFile": tmp / "tls.key",
    }
    values.update(overrides)
    return WebhookSettings.model_validate(values)
