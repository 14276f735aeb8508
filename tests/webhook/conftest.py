"""Webhook test fixtures: keys, stamping config, settings, an audit recorder, a live server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrap_token import AuditEvent, AuditSink, KeySet, SigningKey, TrustPolicy
from tests.conftest import Pki
from tests.webhook.volumes import SecretVolume
from webhook.config import WebhookSettings
from webhook.credentials import Credentials
from webhook.run import Listening, serve
from webhook.signer import TokenSigner
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
def signer(signing_key: SigningKey) -> TokenSigner:
    """The hot-path signer of ``signing_key``."""
    return TokenSigner.for_key(signing_key)


@pytest.fixture
def credentials(signing_key: SigningKey) -> Credentials:
    """Credentials holding ``signing_key`` (no certificate: the app is tested without TLS)."""
    return Credentials.with_key(signing_key)


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
        "metricsPort": 0,
        "shutdownDelaySeconds": 0,
    }
    values.update(overrides)
    return WebhookSettings.model_validate(values)


@dataclass
class Live:
    port: int
    volume: SecretVolume
    audit: RecordingSink


@pytest.fixture
async def live(tmp_path: Path, pki: Pki) -> AsyncIterator[Live]:
    """serve() with its key and certificate in a Secret volume, re-read every 20 ms."""
    volume = SecretVolume(tmp_path / "secret")
    volume.write(
        {
            "signing.key": pki.signing_key.read_bytes(),
            "tls.crt": pki.webhook_cert.read_bytes(),
            "tls.key": pki.webhook_key.read_bytes(),
        }
    )
    settings = WebhookSettings.model_validate(
        {
            "trust": {"namespaces": ["streamspace"]},
            "injectEnv": {"enabled": True},
            "signingKeyFile": volume.path("signing.key"),
            "tlsCertFile": volume.path("tls.crt"),
            "tlsKeyFile": volume.path("tls.key"),
            "reloadIntervalSeconds": 0.02,
            "host": "127.0.0.1",
            "metricsPort": 0,
            "shutdownDelaySeconds": 0,
            "maxRequestBytes": 65536,
        }
    )
    audit = RecordingSink()
    async with serving(settings, audit=audit) as port:
        yield Live(port=port, volume=volume, audit=audit)


@contextlib.asynccontextmanager
async def serving(
    settings: WebhookSettings, *, audit: AuditSink | None = None
) -> AsyncIterator[int]:
    """Run :func:`webhook.run.serve` with ``settings`` for the block, on a port the OS picks;
    yields that HTTPS port.

    The port is set to 0 here, past validation (``model_copy``): ``port`` must be 1..65535 in a
    configuration (a Service cannot point at a random port), but a test wants a free one
    without racing for it."""
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_started(listening: Listening) -> None:
        started.set_result(listening.https[0][1])

    ephemeral = settings.model_copy(update={"port": 0})
    task = asyncio.create_task(serve(ephemeral, audit=audit, on_started=on_started))
    try:
        yield await asyncio.wait_for(started, timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
