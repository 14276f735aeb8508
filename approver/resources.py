"""What the settings name, opened: the key set, the tokens files, the serving certificate, the
store, the Kubernetes client, the control plane's connector. Each failure is a :class:`ConfigError`
naming the field where the operator set it (:meth:`ApproverSettings.describe_field`).
"""

from __future__ import annotations

import logging
import ssl

from kubernetes_asyncio.client import ApiClient

from approver.agent_certs.ca_files import SigningCa
from approver.config import ApproverSettings, ConfigError
from approver.connectors.streamspace import from_settings as streamspace_from_settings
from approver.domain.control_plane import ControlPlane, ControlPlaneUnavailable
from approver.files.jwks import FileKeySet
from approver.files.serving_tls import ServingCertificate
from approver.files.tokens import AdminTokensError, TokenFile
from approver.store import Store
from bootstrap_token import KeyLoadError, KeySet
from bootstrap_token.kube_client import KubernetesConfigError, open_api_client
from bootstrap_token.reload import MaterialError, ReloadCounts
from bootstrap_token.tls import TlsFiles

log = logging.getLogger(__name__)


def where_set(settings: ApproverSettings, *loc: str) -> str:
    """A field named where the operator set it (:meth:`ApproverSettings.describe_field`)."""
    return settings.describe_field(*loc)


def load_key_set(settings: ApproverSettings) -> KeySet:
    """The verification keys from ``token.jwksFile`` (JWKS or PEM), or an empty set when unset.

    Raises:
        ConfigError: the file cannot be read or holds no usable Ed25519 public key.
    """
    path = settings.token.jwks_file
    if path is None:
        return KeySet()
    try:
        # Followed without a restart: keys added, activated or retired by certs-tooling (or a
        # ConfigMap update) are seen within a second (approver/files/jwks.py).
        key_set: KeySet = FileKeySet(path)
    except (KeyLoadError, OSError) as exc:
        raise ConfigError(f"{where_set(settings, 'token', 'jwksFile')}: {exc}") from None
    if not key_set:
        raise ConfigError(f"{where_set(settings, 'token', 'jwksFile')}: holds no key")
    return key_set


def token_file(settings: ApproverSettings, key: str) -> TokenFile:
    path = settings.admin_tokens_file if key == "adminTokensFile" else settings.review_tokens_file
    try:
        return TokenFile(path, setting=where_set(settings, key))
    except AdminTokensError as exc:
        raise ConfigError(f"{where_set(settings, key)}: {exc}") from None


def serving_certificate(
    settings: ApproverSettings, *, counts: ReloadCounts | None = None
) -> ServingCertificate | None:
    """The serving certificate of ``tlsCertFile``/``tlsKeyFile``, followed on disk
    (:mod:`approver.files.serving_tls`), or None for plain HTTP.

    Args:
        settings: the settings naming the files.
        counts: where reload outcomes are counted (default: a new one).

    Raises:
        ConfigError: the certificate or key cannot be loaded, or they do not match; the
            message names the field where it was set and the path, never key bytes.
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    certificates = settings.agent_certificates
    trust = certificates.trust_bundle if certificates.enabled else None
    files = TlsFiles(
        cert=settings.tls_cert_file,
        key=settings.tls_key_file,
        cert_field=where_set(settings, "tlsCertFile"),
        key_field=where_set(settings, "tlsKeyFile"),
        # Agents' client certificates (approver.agent_certificates): asked for, verified
        # against the agent CAs when presented, optional (registrations come without one).
        client_ca=trust,
        client_ca_optional=True,
        client_ca_field=where_set(
            settings,
            "agentCertificates",
            "trustBundleFile" if certificates.trust_bundle_file else "caCertFile",
        ),
    )
    try:
        return ServingCertificate(files, counts=counts)
    except MaterialError as exc:
        raise ConfigError(str(exc)) from None


def signing_ca(settings: ApproverSettings) -> SigningCa | None:
    """The agent CA of ``agentCertificates.caCertFile``/``caKeyFile``, followed on disk
    (:mod:`approver.agent_certs.ca_files`), or None when ``agentCertificates`` is off.

    Raises:
        ConfigError: the files cannot be used; the message names the field where it was set
            and the path, never key bytes.
    """
    certificates = settings.agent_certificates
    if not certificates.enabled:
        return None
    assert certificates.ca_cert_file is not None
    assert certificates.ca_key_file is not None
    try:
        return SigningCa(
            certificates.ca_cert_file,
            certificates.ca_key_file,
            certificates.trust_bundle_file,
            cert_field=where_set(settings, "agentCertificates", "caCertFile"),
            key_field=where_set(settings, "agentCertificates", "caKeyFile"),
            bundle_field=where_set(settings, "agentCertificates", "trustBundleFile"),
        )
    except MaterialError as exc:
        raise ConfigError(str(exc)) from None


def open_store(settings: ApproverSettings) -> Store:
    """The store of ``databaseUrl``. Raises ConfigError for an unsupported URL."""
    try:
        return Store.open(
            settings.database_url,
            pool_size=settings.database_pool_size,
            stall_seconds=settings.database_stall_seconds,
        )
    except ValueError as exc:
        raise ConfigError(f"{where_set(settings, 'databaseUrl')}: {exc}") from None


async def open_kube(settings: ApproverSettings) -> ApiClient | None:
    """The Kubernetes client when ``kubernetes.enabled`` or ``serviceAccountTokens`` uses
    TokenReview, else None. Raises ConfigError."""
    if not settings.uses_kubernetes_api:
        return None
    try:
        return await open_api_client(kubeconfig=settings.kubernetes.kubeconfig)
    except KubernetesConfigError as exc:
        raise ConfigError(f"{where_set(settings, 'kubernetes', 'kubeconfig')}: {exc}") from None


def open_control_plane(settings: ApproverSettings) -> ControlPlane:
    """The adapter of ``controlPlane`` (StreamSpace). Raises ConfigError naming the field."""
    section = settings.control_plane
    if section.streamspace is None:
        raise ConfigError(f"{where_set(settings, 'controlPlane', 'streamspace')}: required")
    try:
        return streamspace_from_settings(
            section.streamspace,
            budget_seconds=section.budget_seconds,
            request_timeout_seconds=section.request_timeout_seconds,
        )
    except ControlPlaneUnavailable as exc:
        raise ConfigError(f"{where_set(settings, 'controlPlane', 'streamspace')}: {exc}") from None
    except (ssl.SSLError, OSError) as exc:
        field = where_set(settings, "controlPlane", "streamspace", "caFile")
        raise ConfigError(f"{field}: cannot load: {type(exc).__name__}") from None
