"""``certs-tooling apiserver-client``: a client certificate for the API server, so the webhook
can require it (webhook setting ``tlsClientCaFile``).

Kubernetes ("Dynamic Admission Control", "Authenticate apiservers"): kube-apiserver started with
``--admission-control-config-file`` reads an ``AdmissionConfiguration``
(``apiserver.config.k8s.io/v1``) whose ``MutatingAdmissionWebhook`` and
``ValidatingAdmissionWebhook`` plugins carry a ``WebhookAdmissionConfiguration``
(``apiserver.config.k8s.io/v1``) with a ``kubeConfigFile`` (an absolute path). In that kubeconfig
(``v1`` ``Config``) the ``users`` entry whose ``name`` is the webhook's host presents its
``client-certificate-data``/``client-key-data`` to the webhook. For a webhook behind a Service
the API server looks up ``<service>.<namespace>.svc:<port>``, then (port 443 only)
``<service>.<namespace>.svc`` (k8s.io/apiserver ``pkg/util/webhook/authentication.go``).

The client certificate is signed by a **client CA of its own** (``apiserver-client-ca.*``), not
by the serving CA (``ca.*``): the webhook's ``tlsClientCaFile`` then trusts exactly the
certificates minted for this purpose, and no serving certificate (signed by ``ca.key``) can ever
pass as the API server. Each file is written atomically (see :mod:`certs_tooling.files`); key
before certificate.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs_tooling.certinfo import issued_by, load_certs
from certs_tooling.errors import AlreadyInitialised, MaterialError, RotationError
from certs_tooling.files import write_file
from certs_tooling.layout import Layout
from certs_tooling.material import read_bytes, read_cert, read_issued
from certs_tooling.pki import Issued, make_ca, make_client_cert

#: CN of the API server's client certificate (informational: the webhook checks the chain).
CLIENT_COMMON_NAME = "kube-apiserver-admission"
#: CN of the client CA.
CLIENT_CA_COMMON_NAME = "agent-bootstrap-apiserver-client-ca"
#: Where the kubeconfig is expected on the control-plane nodes (``kubeConfigFile``).
DEFAULT_KUBECONFIG_PATH = "/etc/kubernetes/agent-bootstrap/apiserver-client.kubeconfig"
DEFAULT_DAYS = 365
DEFAULT_CA_DAYS = 5 * 365
#: ``clientConfig.service.port`` of the MutatingWebhookConfiguration (chart and kustomize).
DEFAULT_PORT = 443

ADMISSION_API_VERSION = "apiserver.config.k8s.io/v1"
ADMISSION_KIND = "AdmissionConfiguration"
WEBHOOK_ADMISSION_KIND = "WebhookAdmissionConfiguration"
#: The plugins that read ``kubeConfigFile``, in the order of the Kubernetes example.
WEBHOOK_PLUGINS = ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")

_HOST = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")


@dataclass(frozen=True, slots=True)
class Options:
    """What to issue and where the API server will find the kubeconfig."""

    namespace: str = "agent-bootstrap"
    webhook_service: str = "agent-bootstrap-webhook"
    port: int = DEFAULT_PORT
    extra_hosts: Sequence[str] = ()
    kubeconfig_path: str = DEFAULT_KUBECONFIG_PATH
    days: int = DEFAULT_DAYS
    ca_days: int = DEFAULT_CA_DAYS


@dataclass(frozen=True, slots=True)
class Written:
    """What ``run`` wrote: the client certificate, its CA, whether the CA is new, whether the
    bundle also holds the previous client CA, and the kubeconfig user names."""

    client: x509.Certificate
    ca: x509.Certificate
    new_ca: bool
    overlap: bool
    user_names: list[str]


def user_names(
    service: str, namespace: str, port: int = DEFAULT_PORT, extra: Sequence[str] = ()
) -> list[str]:
    """kubeconfig ``users`` names the API server looks up for the webhook Service.

    The API server looks up ``svc.ns.svc:PORT`` first (exactly, then ``*.``-prefixed entries)
    and, for port 443 only, ``svc.ns.svc`` after that. So both are written: the entry with the
    port wins even in a kubeconfig merged with wildcard entries, and the one without is what
    the Kubernetes page shows for port 443 (and what API servers before 1.16 use). Then
    ``extra`` (e.g. the ``host[:port]`` of a webhook configured with ``clientConfig.url``),
    without duplicates.

    Raises:
        ValueError: a name that is not ``host`` or ``host:port``.
    """
    base = f"{service}.{namespace}.svc"
    names = [f"{base}:{port}", base]
    for name in extra:
        if not _HOST.fullmatch(name):
            raise ValueError(f"not a host name or host:port: {name!r}")
        if name not in names:
            names.append(name)
    return names


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig(names: Sequence[str], cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    """The kubeconfig (``apiVersion: v1``, ``kind: Config``) with one ``users`` entry per name,
    each carrying the certificate and key (``*-data`` fields: base64 of the PEM)."""
    user = {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "users": [{"name": name, "user": dict(user)} for name in names],
    }


def admission_configuration(kubeconfig_path: str) -> dict[str, Any]:
    """The ``AdmissionConfiguration`` that points both webhook plugins at ``kubeconfig_path``.

    Raises:
        ValueError: ``kubeconfig_path`` is not absolute (the API server requires it).
    """
    if not PurePosixPath(kubeconfig_path).is_absolute():
        raise ValueError(f"kubeConfigFile must be an absolute path: {kubeconfig_path!r}")
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": ADMISSION_KIND,
        "plugins": [
            {
                "name": plugin,
                "configuration": {
                    "apiVersion": ADMISSION_API_VERSION,
                    "kind": WEBHOOK_ADMISSION_KIND,
                    "kubeConfigFile": kubeconfig_path,
                },
            }
            for plugin in WEBHOOK_PLUGINS
        ],
    }


def _yaml(header: str, document: dict[str, Any]) -> bytes:
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    return (header + body).encode("utf-8")


def render_kubeconfig(names: Sequence[str], client: Issued) -> bytes:
    """The kubeconfig file's bytes (holds the private key)."""
    header = (
        "# kube-apiserver's client certificate for the agent-bootstrap webhook\n"
        "# (written by certs-tooling apiserver-client). Holds a private key: mode 0600.\n"
    )
    return _yaml(header, kubeconfig(names, client.cert_pem, client.key_pem))


def render_admission_configuration(kubeconfig_path: str) -> bytes:
    """The AdmissionConfiguration file's bytes, for ``--admission-control-config-file``."""
    header = (
        "# kube-apiserver --admission-control-config-file (written by certs-tooling\n"
        "# apiserver-client). If the API server already has one, merge these plugin entries.\n"
    )
    return _yaml(header, admission_configuration(kubeconfig_path))


def _bundle_certs(layout: Layout) -> list[x509.Certificate]:
    """The certificates of the existing client CA bundle (MaterialError if unreadable)."""
    try:
        return load_certs(read_bytes(layout.apiserver_client_ca_bundle))
    except ValueError as exc:
        raise MaterialError(f"{layout.apiserver_client_ca_bundle}: {exc}") from None


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _has_ca(layout: Layout) -> bool:
    return layout.apiserver_client_ca_cert.exists() and layout.apiserver_client_ca_key.exists()


def run(
    layout: Layout, options: Options, *, now: datetime, force: bool, new_ca: bool = False
) -> Written:
    """Write the client CA, the CA bundle, the client certificate and key, the kubeconfig and
    the AdmissionConfiguration into ``layout``.

    * First run (no client CA): a new client CA; the bundle holds it alone.
    * ``force``: an existing client CA (``apiserver-client-ca.crt`` + ``.key``) is kept and the
      bundle (the webhook's ``tlsClientCaFile``) is left as it is; only the client certificate,
      the kubeconfig and the AdmissionConfiguration are replaced.
    * ``new_ca``: a new client CA replaces the old one (whose key is not kept); the bundle holds
      the new CA followed by the old one, so the webhook accepts both while the API servers
      move over; :func:`finish` ends the overlap.

    Everything is made before the first write.

    Raises:
        AlreadyInitialised: a file of this command exists and neither ``force`` nor ``new_ca``
            is given (nothing written).
        RotationError: ``new_ca`` while the bundle still holds more than one CA.
        MaterialError: the kept CA or the bundle is unreadable or mismatched.
        ValueError: a bad extra host or a relative kubeconfig path (nothing written).
        OSError: a write failed.
    """
    existing = [p for p in layout.apiserver_client_files() if p.exists()]
    if existing and not (force or new_ca):
        raise AlreadyInitialised(
            f"{layout.root} already holds {', '.join(p.name for p in existing)}; use --force to "
            "issue a new client certificate (the client CA is kept), or --new-ca"
        )
    names = user_names(
        options.webhook_service, options.namespace, options.port, options.extra_hosts
    )
    admission = render_admission_configuration(options.kubeconfig_path)
    if new_ca and layout.apiserver_client_ca_bundle.exists():
        held = len(_bundle_certs(layout))
        if held > 1:
            raise RotationError(
                f"{layout.apiserver_client_ca_bundle.name} holds {held} client CAs: a client CA "
                "change is in progress; run apiserver-client --finish first"
            )
    bundle: list[x509.Certificate] | None = None  # None: leave the bundle file as it is
    if _has_ca(layout) and not new_ca:
        ca = read_issued(layout.apiserver_client_ca_cert, layout.apiserver_client_ca_key)
        made_ca = False
        if not layout.apiserver_client_ca_bundle.exists():
            bundle = [ca.certificate]
        elif ca.certificate not in _bundle_certs(layout):
            raise MaterialError(
                f"{layout.apiserver_client_ca_bundle} does not contain "
                f"{layout.apiserver_client_ca_cert.name}; remove it to have it written again"
            )
    else:
        ca = make_ca(common_name=CLIENT_CA_COMMON_NAME, valid_days=options.ca_days, now=now)
        made_ca = True
        bundle = [ca.certificate]
        if new_ca and layout.apiserver_client_ca_cert.exists():
            previous = read_cert(layout.apiserver_client_ca_cert)
            if previous != ca.certificate:
                bundle.append(previous)
    client = make_client_cert(
        ca=ca, common_name=CLIENT_COMMON_NAME, valid_days=options.days, now=now
    )
    if made_ca:
        write_file(layout.apiserver_client_ca_key, ca.key_pem, private=True)
        write_file(layout.apiserver_client_ca_cert, ca.cert_pem, private=False)
    if bundle is not None:
        write_file(layout.apiserver_client_ca_bundle, _pem(bundle), private=False)
    write_file(layout.apiserver_client_key, client.key_pem, private=True)
    write_file(layout.apiserver_client_cert, client.cert_pem, private=False)
    write_file(layout.apiserver_kubeconfig, render_kubeconfig(names, client), private=True)
    write_file(layout.admission_config, admission, private=False)
    return Written(
        client=client.certificate,
        ca=ca.certificate,
        new_ca=made_ca,
        overlap=bundle is not None and len(bundle) > 1,
        user_names=names,
    )


def finish(layout: Layout) -> x509.Certificate:
    """End a ``--new-ca`` overlap: the bundle holds the current client CA only.

    Returns:
        The client CA now alone in the bundle.

    Raises:
        MaterialError: a file is missing, or ``apiserver-client.crt`` is not issued by
            ``apiserver-client-ca.crt`` (finishing would lock the API server out).
    """
    ca = read_cert(layout.apiserver_client_ca_cert)
    client = read_cert(layout.apiserver_client_cert)
    if not issued_by(client, ca):
        raise MaterialError(
            f"{layout.apiserver_client_cert.name} is not issued by "
            f"{layout.apiserver_client_ca_cert.name}; run apiserver-client --force first"
        )
    write_file(layout.apiserver_client_ca_bundle, _pem([ca]), private=False)
    return ca


def next_steps(layout: Layout, options: Options, written: Written) -> list[str]:
    """What the administrator does next, in a safe order.

    A first client CA: the API server first (a certificate it offers is simply not asked for
    until the webhook requires one), then the webhook's ``tlsClientCaFile``. A new client CA
    (overlap bundle): the webhook's bundle first (it accepts old and new), then the API
    servers, then ``--finish``.
    """
    folder = PurePosixPath(options.kubeconfig_path).parent
    admission_path = folder / layout.admission_config.name
    bundle = layout.apiserver_client_ca_bundle.name
    api_server = [
        f"Copy {layout.apiserver_kubeconfig.name} to {options.kubeconfig_path} (mode 0600) and "
        f"{layout.admission_config.name} to {admission_path} on every control-plane node. If "
        "kube-apiserver already has an --admission-control-config-file, add the two plugin "
        "entries to that file instead.",
        f"Run kube-apiserver with --admission-control-config-file={admission_path} (kubeadm: "
        "apiServer.extraArgs and an extraVolumes hostPath mount of the folder) and restart it.",
    ]
    webhook = (
        f"give the webhook {bundle} as tlsClientCaFile (AGENT_BOOTSTRAP_WEBHOOK_TLS_CLIENT_CA_FILE)"
    )
    if written.overlap:
        return [
            f"First {webhook}; it then accepts the old and the new client CA.",
            *api_server,
            f"When every API server has restarted: certs-tooling apiserver-client --out "
            f"{layout.root} --finish, and {webhook} again.",
        ]
    if written.new_ca:
        return [
            *api_server,
            f"Then {webhook}: from then on only a client with this certificate completes the "
            "TLS handshake.",
        ]
    return api_server
