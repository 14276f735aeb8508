"""``certs-tooling cluster-bootstrap``: create the installation's keys inside the cluster when
they are absent, then point the webhook's ``caBundle`` at the CA actually in use.

Run by the Helm chart's hook Jobs (and the kustomize base's Job) with the in-cluster
configuration, or from anywhere with ``--kubeconfig``. Through kubernetes-asyncio, in namespace
NS (core/v1 Secrets and ConfigMaps; the objects and keys of :mod:`certs_tooling.k8s`, the names
the chart mounts):

1. the CA Secret (``kubernetes.io/tls``: ``tls.crt``, ``tls.key``, ``ca.crt``; the shape of
   cert-manager's CA Secrets), made only when a serving certificate must be issued;
2. the webhook's and the approver's ``kubernetes.io/tls`` Secrets (``tls.crt``, ``tls.key``,
   ``ca.crt``, and ``signing.key`` in the webhook's unless ``--signing-secret`` names another),
   certificates for ``<svc>``, ``<svc>.<ns>``, ``<svc>.<ns>.svc``, ``<svc>.<ns>.svc.cluster.local``
   (:func:`certs_tooling.pki.service_dns_names`);
3. the Ed25519 signing key (in the webhook's Secret, or an ``Opaque`` Secret of its own);
4. the JWKS ConfigMap, built from the signing key actually stored (so a hand-made key gets its
   own JWKS);
5. with ``--webhook-configuration NAME``: ``webhooks[*].clientConfig.caBundle`` of that
   MutatingWebhookConfiguration (admissionregistration.k8s.io/v1), for every webhook whose
   ``clientConfig.service`` is the webhook's Service, set to the CA bundle read back from the
   Secrets: the webhook Secret's ``ca.crt`` when it signs the serving certificate, else the CA
   Secret's certificate when it does. The patch is a JSON patch (RFC 6902,
   ``application/json-patch+json``: what kubernetes-asyncio sends for a list body) with a
   ``test`` of each webhook's ``name`` before its ``add``, so a concurrent reorder fails instead
   of writing the wrong entry; such a conflict is retried from a fresh read.

Never overwritten: an object that exists is read and kept as it is, whoever made it. A create
answered ``409 AlreadyExists`` (Kubernetes API conventions: another run created it between our
read and our create) is followed by a read of theirs, which is used from then on. The CA Secret
is created before anything it signs, so two racing runs always agree on one CA.

Nothing printed or raised ever holds key material: messages name objects, certificate subjects,
fingerprints and dates. The flow is the one of ingress-nginx's kube-webhook-certgen (``create``
then ``patch``), with create-if-absent instead of its read-or-create of one Secret.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp
from cryptography import x509
from kubernetes_asyncio.client import (
    AdmissionregistrationV1Api,
    ApiClient,
    CoreV1Api,
)
from kubernetes_asyncio.client.exceptions import ApiException

from bootstrap_token import KeySet, SigningKey
from bootstrap_token.kube_client import KubernetesConfigError, open_api_client
from certs_tooling import k8s
from certs_tooling.certinfo import (
    common_name,
    issued_by,
    load_certs,
    load_issued,
    short_fingerprint,
    subject_alt_names,
)
from certs_tooling.errors import CertsToolingError
from certs_tooling.keyfolder import jwks_bytes
from certs_tooling.pki import CA_COMMON_NAME, Issued, make_ca, make_serving_cert, service_dns_names

#: Object name of the CA Secret (a name, not a secret value).
DEFAULT_CA_SECRET = "agent-bootstrap-serving-ca"  # noqa: S105
DEFAULT_WEBHOOK_SERVICE = "agent-bootstrap-webhook"
DEFAULT_APPROVER_SERVICE = "agent-bootstrap-approver"
#: Where a pod's service account namespace is mounted (Kubernetes "Accessing the Kubernetes API
#: from a Pod").
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Seconds one API request may take.
REQUEST_TIMEOUT = 30
#: Attempts of the read + JSON patch of the webhook configuration (a failed ``test`` is retried).
PATCH_ATTEMPTS = 3

#: Exit codes: everything is in place; a problem with the objects found (kept as they are);
#: usage; the API server refused or could not be reached.
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_API = 3


class KubeApiError(CertsToolingError):
    """The API server refused a request, or could not be reached. The message names the verb,
    the object, the HTTP code, the ``Status`` reason and message, and what to check; never a
    request body."""


@dataclass(frozen=True, slots=True)
class BootstrapOptions:
    """What to ensure, in which namespace, under which names.

    ``approver_secret`` None: the approver serves plain HTTP (no certificate). ``signing_secret``
    None: ``signing.key`` lives in the webhook's TLS Secret (certs-tooling's layout).
    ``serving_certs`` False: cert-manager makes the TLS Secrets; only the signing key and the
    JWKS are ensured (and no caBundle is patched: its CA injector does that).
    """

    namespace: str
    webhook_service: str = DEFAULT_WEBHOOK_SERVICE
    approver_service: str = DEFAULT_APPROVER_SERVICE
    ca_secret: str = DEFAULT_CA_SECRET
    webhook_secret: str = k8s.DEFAULT_WEBHOOK_SECRET
    approver_secret: str | None = k8s.DEFAULT_APPROVER_SECRET
    signing_secret: str | None = None
    jwks_configmap: str = k8s.DEFAULT_JWKS_CONFIGMAP
    serving_certs: bool = True
    webhook_configuration: str | None = None
    ca_days: int = 5 * 365
    leaf_days: int = 365

    def __post_init__(self) -> None:
        if not self.serving_certs and self.webhook_configuration is not None:
            raise ValueError("--webhook-configuration needs the serving certificates")
        if not self.serving_certs and self.signing_secret in (None, self.webhook_secret):
            raise ValueError(
                "--no-serving-certs needs --signing-secret naming a Secret of its own "
                "(the TLS Secret belongs to cert-manager)"
            )


@dataclass
class Outcome:
    """What a run did (``done``: one line per object) and what it found wrong (``problems``:
    each says what to do). Both are free of key material."""

    done: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_PROBLEM if self.problems else EXIT_OK


Data = dict[str, bytes]


def _decode(data: dict[str, str] | None) -> Data:
    out: Data = {}
    for key, value in (data or {}).items():
        try:
            out[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            out[key] = b""
    return out


def _status_text(exc: ApiException) -> str:
    """``<code> <reason>: <message>`` from the ``Status`` body of an API error (Kubernetes API
    conventions, "Response Status Kind"); the bare HTTP status when the body is not one."""
    reason, message = exc.reason or "", ""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
    text = f"{exc.status} {reason}".strip()
    return f"{text}: {message}"[:400] if message else text


_HINTS = {
    401: "the service account token was not accepted",
    403: "check the Job's Role/ClusterRole and their bindings (the chart renders them with the "
    "Job; resourceNames must list this object)",
}


def _api_error(verb: str, what: str, exc: ApiException) -> KubeApiError:
    hint = _HINTS.get(exc.status or 0)
    text = f"cannot {verb} {what}: {_status_text(exc)}"
    return KubeApiError(f"{text} ({hint})" if hint else text)


class _Cluster:
    """The API calls of one run, each turned into data or a :class:`KubeApiError`."""

    def __init__(self, api: ApiClient, namespace: str, outcome: Outcome) -> None:
        self.core = CoreV1Api(api)
        self.admission = AdmissionregistrationV1Api(api)
        self.namespace = namespace
        self.outcome = outcome

    def _what(self, kind: str, name: str) -> str:
        return f"{kind} {self.namespace}/{name}"

    async def get(self, kind: str, name: str) -> Data | None:
        """The object's ``data`` (Secret values base64-decoded, ConfigMap values UTF-8), or
        None on 404."""
        try:
            if kind == "Secret":
                secret = await self.core.read_namespaced_secret(
                    name, self.namespace, _request_timeout=REQUEST_TIMEOUT
                )
                return _decode(secret.data)
            cm = await self.core.read_namespaced_config_map(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
            return {k: v.encode() for k, v in (cm.data or {}).items()}
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _api_error("get", self._what(kind, name), exc) from None

    async def ensure(
        self, kind: str, name: str, build: Callable[[], Awaitable[dict[str, Any]]], what: str
    ) -> Data:
        """The object's data: the existing one (kept as it is), else one made by ``build`` and
        created; on 409 AlreadyExists, the one another run created meanwhile."""
        existing = await self.get(kind, name)
        if existing is not None:
            self.outcome.done.append(f"kept existing {self._what(kind, name)} ({what})")
            return existing
        # A dict body is sent as is (ApiClient.sanitize_for_serialization); the stubs want a model.
        body = await build()
        try:
            if kind == "Secret":
                await self.core.create_namespaced_secret(
                    self.namespace, cast(Any, body), _request_timeout=REQUEST_TIMEOUT
                )
            else:
                await self.core.create_namespaced_config_map(
                    self.namespace, cast(Any, body), _request_timeout=REQUEST_TIMEOUT
                )
        except ApiException as exc:
            if exc.status != 409:
                raise _api_error("create", self._what(kind, name), exc) from None
            theirs = await self.get(kind, name)
            if theirs is None:
                raise KubeApiError(
                    f"cannot create {self._what(kind, name)}: 409 AlreadyExists, yet it cannot "
                    "be read back (deleted meanwhile?); run again"
                ) from None
            self.outcome.done.append(
                f"kept {self._what(kind, name)} ({what}), created meanwhile by another run"
            )
            return theirs
        self.outcome.done.append(f"created {self._what(kind, name)} ({what})")
        if kind == "Secret":
            return _decode(body["data"])
        return {k: v.encode() for k, v in body["data"].items()}


def _describe(cert: x509.Certificate) -> str:
    until = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{common_name(cert)}, sha256 {short_fingerprint(cert)}, valid until {until}"


def _certs(pem: bytes | None) -> list[x509.Certificate]:
    if not pem:
        return []
    try:
        return load_certs(pem)
    except ValueError:
        return []


async def bootstrap(api: ApiClient, options: BootstrapOptions, *, now: datetime) -> Outcome:
    """Ensure the objects of the module docstring, then patch the caBundle when asked.

    Args:
        api: a kubernetes-asyncio client (in-cluster, a kubeconfig, or a test stand-in).
        options: names and validity.
        now: timezone-aware current time (notBefore/notAfter of what is issued).

    Returns:
        The :class:`Outcome`; its ``problems`` list what was found wrong (objects kept, not
        overwritten; the caBundle is then left alone).

    Raises:
        KubeApiError: the API server refused a request (401, 403, 404 on the webhook
            configuration, 5xx...) or could not be reached.
    """
    outcome = Outcome()
    cluster = _Cluster(api, options.namespace, outcome)
    ns = options.namespace
    signing_name = options.signing_secret or options.webhook_secret
    signing_in_tls = options.serving_certs and signing_name == options.webhook_secret
    new_signing: list[SigningKey] = []

    def signing_key() -> SigningKey:
        if not new_signing:
            new_signing.append(SigningKey.generate())
        return new_signing[0]

    webhook: Data = {}
    ca_data: Data | None = None
    if options.serving_certs:
        found_webhook = await cluster.get("Secret", options.webhook_secret)
        found_approver = (
            await cluster.get("Secret", options.approver_secret) if options.approver_secret else {}
        )
        ca: Issued | None = None
        if found_webhook is None or found_approver is None:

            async def build_ca() -> dict[str, Any]:
                issued = make_ca(common_name=CA_COMMON_NAME, valid_days=options.ca_days, now=now)
                return k8s.tls_secret(
                    options.ca_secret,
                    ns,
                    "certificates",
                    cert=issued.cert_pem,
                    key=issued.key_pem,
                    extra={"ca.crt": issued.cert_pem},
                )

            ca_data = await cluster.ensure("Secret", options.ca_secret, build_ca, "serving CA")
            try:
                ca = load_issued(ca_data.get("tls.crt", b""), ca_data.get("tls.key", b""))
            except ValueError:
                outcome.problems.append(
                    f"Secret {ns}/{options.ca_secret} has no usable CA certificate and key "
                    "(tls.crt, tls.key): cannot issue the missing serving certificate(s). Kept as "
                    "it is; delete it to have a new CA made, or create the serving Secrets "
                    "yourself (docs/certificates.md)"
                )
                return outcome

        def leaf(service: str) -> Issued:
            assert ca is not None
            return make_serving_cert(
                ca=ca,
                dns_names=service_dns_names(service, ns),
                valid_days=options.leaf_days,
                now=now,
            )

        async def build_webhook() -> dict[str, Any]:
            assert ca is not None
            issued = leaf(options.webhook_service)
            extra = {"ca.crt": ca.cert_pem}
            if signing_in_tls:
                extra["signing.key"] = signing_key().private_pem()
            return k8s.tls_secret(
                options.webhook_secret,
                ns,
                "webhook",
                cert=issued.cert_pem,
                key=issued.key_pem,
                extra=extra,
            )

        async def build_approver() -> dict[str, Any]:
            assert ca is not None
            assert options.approver_secret is not None
            issued = leaf(options.approver_service)
            return k8s.tls_secret(
                options.approver_secret,
                ns,
                "approver",
                cert=issued.cert_pem,
                key=issued.key_pem,
                extra={"ca.crt": ca.cert_pem},
            )

        what = "webhook serving certificate" + (" and token signing key" if signing_in_tls else "")
        if found_webhook is None:
            webhook = await cluster.ensure("Secret", options.webhook_secret, build_webhook, what)
        else:
            webhook = found_webhook
            outcome.done.append(f"kept existing Secret {ns}/{options.webhook_secret} ({what})")
        if options.approver_secret is not None:
            if found_approver is None:
                what = "approver serving certificate"
                await cluster.ensure("Secret", options.approver_secret, build_approver, what)
            else:
                outcome.done.append(
                    f"kept existing Secret {ns}/{options.approver_secret} "
                    "(approver serving certificate)"
                )

    # The token signing key, then the JWKS made from the key actually stored.
    if signing_in_tls:
        signing_pem = webhook.get("signing.key")
    else:

        async def build_signing() -> dict[str, Any]:
            return k8s.signing_key_secret(signing_name, ns, signing_key().private_pem())

        stored = await cluster.ensure("Secret", signing_name, build_signing, "token signing key")
        signing_pem = stored.get("signing.key")
    try:
        signing = SigningKey.from_pem(signing_pem or b"")
    except ValueError:
        outcome.problems.append(
            f"Secret {ns}/{signing_name} has no usable signing.key (an Ed25519 PEM private key): "
            "the webhook cannot sign tokens. Kept as it is; add signing.key "
            "(certs-tooling k8s-manifests) or delete the Secret to have one made"
        )
        return outcome

    async def build_jwks() -> dict[str, Any]:
        return k8s.jwks_configmap(
            options.jwks_configmap, ns, jwks_bytes(KeySet([signing.public_key]))
        )

    jwks = await cluster.ensure("ConfigMap", options.jwks_configmap, build_jwks, "JWKS")
    try:
        kids = set(KeySet.from_jwks(jwks.get("jwks.json", b"")))
    except ValueError:
        kids = set()
    if signing.kid not in kids:
        outcome.problems.append(
            f"ConfigMap {ns}/{options.jwks_configmap} does not publish the signing key "
            f"(kid {signing.kid}) of Secret {ns}/{signing_name}: the approver would refuse every "
            "token. Kept as it is; update its jwks.json (certs-tooling jwks) or delete it to "
            "have it made from the stored key"
        )

    if options.serving_certs:
        if ca_data is None:
            ca_data = await cluster.get("Secret", options.ca_secret)
        bundle = _check_serving(options, webhook, ca_data, outcome)
        if bundle is not None and options.webhook_configuration and not outcome.problems:
            await _patch_ca_bundle(cluster, options, options.webhook_configuration, bundle)
        elif options.webhook_configuration:
            outcome.problems.append(
                f"caBundle of MutatingWebhookConfiguration {options.webhook_configuration} left "
                "as it is (see above)"
            )
    return outcome


def _check_serving(
    options: BootstrapOptions, webhook: Data, ca_data: Data | None, outcome: Outcome
) -> bytes | None:
    """The PEM CA bundle that verifies the webhook's serving certificate (the Secret's own
    ``ca.crt`` first, then the CA Secret's certificate), or None with a problem recorded."""
    ns = options.namespace
    leaves = _certs(webhook.get("tls.crt"))
    if not leaves:
        outcome.problems.append(
            f"Secret {ns}/{options.webhook_secret} has no usable tls.crt. Kept as it is"
        )
        return None
    served = leaves[0]
    wanted = f"{options.webhook_service}.{ns}.svc"
    if wanted not in subject_alt_names(served).dns:
        outcome.problems.append(
            f"the webhook's certificate in Secret {ns}/{options.webhook_secret} does not name "
            f"{wanted} (the host the API server dials): the API server will refuse it. Kept as "
            "it is; re-issue it for this namespace (certs-tooling k8s-manifests --force) or "
            "delete the Secret"
        )
        return None
    own = webhook.get("ca.crt")
    ca_pem = None if ca_data is None else (ca_data.get("ca.crt") or ca_data.get("tls.crt"))
    for source, pem in (
        (f"Secret {ns}/{options.webhook_secret} ca.crt", own),
        (
            f"Secret {ns}/{options.ca_secret}",
            ca_pem,
        ),
    ):
        certs = _certs(pem)
        if any(issued_by(served, ca) for ca in certs):
            assert pem is not None
            outcome.done.append(f"webhook certificate {_describe(served)} verified by {source}")
            return pem
    if ca_pem is not None and _certs(ca_pem):
        ca_cert = _certs(ca_pem)[0]
        outcome.problems.append(
            f"Secret {ns}/{options.ca_secret} holds CA {_describe(ca_cert)}, but the webhook's "
            f"certificate in Secret {ns}/{options.webhook_secret} was issued by "
            f"{served.issuer.rfc4514_string()} (a Secret made or edited by hand?). Both kept as "
            f"they are. Add that CA as ca.crt to Secret {options.webhook_secret} (or set the "
            "chart's tls.caBundle), or delete both Secrets to have them made again"
        )
    else:
        outcome.problems.append(
            f"no CA found that signed the webhook's certificate in Secret {ns}/"
            f"{options.webhook_secret} (issuer {served.issuer.rfc4514_string()}): add the CA "
            "bundle to that Secret as ca.crt, or set the chart's tls.caBundle. Kept as it is"
        )
    return None


async def _patch_ca_bundle(
    cluster: _Cluster, options: BootstrapOptions, name: str, bundle: bytes
) -> None:
    """Set ``clientConfig.caBundle`` (base64 of ``bundle``) on every webhook of configuration
    ``name`` whose ``clientConfig.service`` is the webhook's Service in the namespace.

    Raises:
        KubeApiError: the configuration cannot be read or patched (404: not installed; 403:
            RBAC), or names no webhook of this Service.
    """
    value = k8s.ca_bundle_b64(bundle)
    what = f"MutatingWebhookConfiguration {name}"
    for attempt in range(1, PATCH_ATTEMPTS + 1):
        try:
            config_ = await cluster.admission.read_mutating_webhook_configuration(
                name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            error = _api_error("get", what, exc)
            if exc.status == 404:
                error = KubeApiError(
                    f"{error}; it is created by the chart (or kubectl apply -k) with the "
                    "webhook: run this after it exists"
                )
            raise error from None
        ops: list[dict[str, Any]] = []
        ours = 0
        for index, hook in enumerate(config_.webhooks or []):
            service = hook.client_config.service if hook.client_config else None
            if service is None or (service.name, service.namespace) != (
                options.webhook_service,
                options.namespace,
            ):
                continue
            ours += 1
            if hook.client_config.ca_bundle == value:
                continue
            ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": hook.name})
            ops.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": value}
            )
        if not ours:
            raise KubeApiError(
                f"{what} has no webhook calling Service {options.namespace}/"
                f"{options.webhook_service}: nothing to patch (check --webhook-service)"
            )
        if not ops:
            cluster.outcome.done.append(f"caBundle of {what} already current ({ours} webhook(s))")
            return
        try:
            await cluster.admission.patch_mutating_webhook_configuration(
                name, ops, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status in (409, 422) and attempt < PATCH_ATTEMPTS:
                continue  # changed between read and patch: read again
            raise _api_error("patch", what, exc) from None
        cluster.outcome.done.append(f"patched caBundle of {what} ({len(ops) // 2} webhook(s))")
        return


# --- command line --------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``cluster-bootstrap`` subcommand (its handler is :func:`run`)."""
    p = sub.add_parser(
        "cluster-bootstrap",
        help="in the cluster: create missing Secrets and the JWKS, then patch the caBundle",
        description="Inside the cluster (in-cluster configuration, or --kubeconfig): create the "
        "CA, the webhook's and the approver's serving certificates, the Ed25519 signing key and "
        "the JWKS ConfigMap in NS when they are absent (never overwriting an existing object), "
        "then, with --webhook-configuration, set the webhook's caBundle to the CA read back "
        "from the Secrets. Private keys are never printed. Exit codes: 0 everything in place; "
        "1 an existing object is unusable or does not match (kept as it is, caBundle left "
        "alone); 2 usage; 3 the API server refused (RBAC) or could not be reached.",
    )
    p.add_argument(
        "--namespace",
        metavar="NS",
        help="the release namespace (default: $POD_NAMESPACE, else the pod's service account "
        "namespace)",
    )
    p.add_argument("--kubeconfig", type=Path, metavar="FILE", help="default: in-cluster")
    p.add_argument("--webhook-service", default=DEFAULT_WEBHOOK_SERVICE, metavar="SVC")
    p.add_argument("--approver-service", default=DEFAULT_APPROVER_SERVICE, metavar="SVC")
    p.add_argument("--ca-secret", default=DEFAULT_CA_SECRET, metavar="NAME")
    p.add_argument("--webhook-secret", default=k8s.DEFAULT_WEBHOOK_SECRET, metavar="NAME")
    p.add_argument("--approver-secret", default=k8s.DEFAULT_APPROVER_SECRET, metavar="NAME")
    p.add_argument(
        "--no-approver-tls",
        action="store_true",
        help="the approver serves plain HTTP: no approver certificate",
    )
    p.add_argument(
        "--signing-secret",
        metavar="NAME",
        help="an Opaque Secret of its own for signing.key (default: in the webhook's Secret)",
    )
    p.add_argument("--jwks-configmap", default=k8s.DEFAULT_JWKS_CONFIGMAP, metavar="NAME")
    p.add_argument(
        "--no-serving-certs",
        action="store_true",
        help="cert-manager makes the TLS Secrets: ensure only the signing key and the JWKS",
    )
    p.add_argument(
        "--webhook-configuration",
        metavar="NAME",
        help="MutatingWebhookConfiguration whose caBundle to set (default: none is patched)",
    )
    p.add_argument("--ca-days", type=int, default=5 * 365, metavar="N", help="new CA validity")
    p.add_argument("--leaf-days", type=int, default=365, metavar="N", help="leaf validity")
    p.add_argument("--now", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=run)


def _namespace(given: str | None) -> str | None:
    if given:
        return given
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


async def _open(kubeconfig: Path | None) -> ApiClient:
    try:
        return await open_api_client(kubeconfig=kubeconfig)
    except KubernetesConfigError as exc:
        raise KubeApiError(f"cannot use {exc}") from None


#: kubernetes-asyncio logs every response body at DEBUG (``kubernetes_asyncio.client.rest``):
#: the Secrets' private keys. Held at INFO whatever the root logger's level.
_BODY_LOGGER = "kubernetes_asyncio.client.rest"


async def _run(options: BootstrapOptions, kubeconfig: Path | None, now: datetime) -> Outcome:
    rest_log = logging.getLogger(_BODY_LOGGER)
    if rest_log.getEffectiveLevel() < logging.INFO:
        rest_log.setLevel(logging.INFO)
    api = await _open(kubeconfig)
    try:
        return await bootstrap(api, options, now=now)
    except (aiohttp.ClientError, TimeoutError) as exc:
        host = api.configuration.host
        raise KubeApiError(f"cannot reach the API server at {host}: {type(exc).__name__}") from None
    finally:
        await api.close()


def run(args: argparse.Namespace) -> int:
    """Handler of ``cluster-bootstrap``: one line per object on stdout, problems on stderr.

    Returns:
        :data:`EXIT_OK`, :data:`EXIT_PROBLEM`, :data:`EXIT_USAGE` or :data:`EXIT_API`.
    """
    prog = "certs-tooling cluster-bootstrap"
    namespace = _namespace(args.namespace)
    if namespace is None:
        print(f"{prog}: no namespace: give --namespace or set POD_NAMESPACE", file=sys.stderr)
        return EXIT_USAGE
    if args.ca_days <= 0 or args.leaf_days <= 0:
        print(f"{prog}: --ca-days and --leaf-days must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        options = BootstrapOptions(
            namespace=namespace,
            webhook_service=args.webhook_service,
            approver_service=args.approver_service,
            ca_secret=args.ca_secret,
            webhook_secret=args.webhook_secret,
            approver_secret=None if args.no_approver_tls else args.approver_secret,
            signing_secret=args.signing_secret,
            jwks_configmap=args.jwks_configmap,
            serving_certs=not args.no_serving_certs,
            webhook_configuration=args.webhook_configuration,
            ca_days=args.ca_days,
            leaf_days=args.leaf_days,
        )
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    now = datetime.now(UTC) if args.now is None else datetime.fromtimestamp(args.now, UTC)
    try:
        outcome = asyncio.run(_run(options, args.kubeconfig, now))
    except KubeApiError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_API
    for line in outcome.done:
        print(line)
    for problem in outcome.problems:
        print(f"{prog}: {problem}", file=sys.stderr)
    return outcome.exit_code
