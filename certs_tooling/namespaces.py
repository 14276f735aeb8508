"""The namespace a serving certificate was issued for, read back from its Service DNS names.

``certs-tooling init --namespace NS`` issues each serving certificate for ``svc``, ``svc.NS``,
``svc.NS.svc`` and ``svc.NS.svc.cluster.local`` (:func:`certs_tooling.pki.service_dns_names`).
The API server dials a webhook Service as ``svc.NS.svc`` and checks that name against the
certificate; a folder issued for another namespace fails that check, and every pod is admitted
unstamped. ``k8s-manifests`` refuses such a folder (or re-issues it with ``--force``, through
:func:`retarget`) and ``check --namespace`` reports it.

Only the names ending in ``.svc`` or ``.svc.cluster.local`` tell a namespace; a certificate
without one (only extra names or IP addresses, e.g. a webhook reached by ``clientConfig.url``)
is for no namespace in particular and is never refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from certs_tooling.certinfo import SubjectNames, subject_alt_names
from certs_tooling.files import write_serving_pair
from certs_tooling.layout import Component, Layout
from certs_tooling.material import read_cert, read_issued
from certs_tooling.pki import Issued, make_serving_cert
from certs_tooling.serving import Renewed

_SUFFIXES = (("svc",), ("svc", "cluster", "local"))


def _service_name(dns: str) -> tuple[str, str] | None:
    """``(service, namespace)`` of ``svc.ns.svc`` or ``svc.ns.svc.cluster.local``, else None."""
    parts = dns.lower().split(".")
    if len(parts) >= 3 and tuple(parts[2:]) in _SUFFIXES and parts[0] and parts[1]:
        return parts[0], parts[1]
    return None


def service_namespaces(names: SubjectNames) -> list[str]:
    """The namespaces the certificate's Service DNS names are in, sorted; empty when it has no
    ``svc.ns.svc`` name."""
    found = {pair[1] for pair in map(_service_name, names.dns) if pair is not None}
    return sorted(found)


def namespace_problem(names: SubjectNames, namespace: str) -> str | None:
    """``issued for namespace a (svc.a.svc), not b`` when the certificate with ``names`` names
    Services only in other namespaces than ``namespace``; None when it names one in
    ``namespace``, or none at all."""
    found = service_namespaces(names)
    if not found or namespace.lower() in found:
        return None
    example = next(d for d in names.dns if _service_name(d) is not None)
    plural = "s" if len(found) > 1 else ""
    return f"issued for namespace{plural} {', '.join(found)} ({example}), not {namespace}"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A serving certificate of the folder issued for other namespaces than the one asked for."""

    component: Component
    file: str
    #: :func:`namespace_problem`'s text.
    problem: str

    def describe(self) -> str:
        """``webhook-tls.crt is issued for namespace a (svc.a.svc), not b``."""
        return f"{self.file} is {self.problem}"


def mismatches(layout: Layout, namespace: str) -> list[Mismatch]:
    """The serving certificates of ``layout`` not issued for ``namespace``.

    Raises:
        MaterialError: a serving certificate is missing or unreadable.
    """
    out = []
    for component in Component:
        path = layout.serving(component).cert
        problem = namespace_problem(subject_alt_names(read_cert(path)), namespace)
        if problem is not None:
            out.append(Mismatch(component, path.name, problem))
    return out


def moved_dns_names(names: SubjectNames, namespace: str) -> list[str]:
    """``names.dns`` with every Service name moved to ``namespace``: ``svc.old``,
    ``svc.old.svc`` and ``svc.old.svc.cluster.local`` of each Service the certificate names;
    other names (``localhost``, ``--dns`` extras) unchanged, duplicates dropped."""
    services = {pair for pair in map(_service_name, names.dns) if pair is not None}
    moved: list[str] = []
    for dns in names.dns:
        parts = dns.split(".")
        if len(parts) >= 2 and (parts[0].lower(), parts[1].lower()) in services:
            parts[1] = namespace
        name = ".".join(parts)
        if name not in moved:
            moved.append(name)
    return moved


def retarget(
    layout: Layout,
    components: Iterable[Component],
    namespace: str,
    *,
    leaf_days: int,
    now: datetime,
) -> list[Renewed]:
    """Re-issue the serving certificates of ``components`` from ``ca.crt``/``ca.key`` for
    ``namespace`` (:func:`moved_dns_names`; IP addresses kept), new keys, valid ``leaf_days``
    days from ``now``. The caBundle does not change. Every certificate is made before any file
    is written.

    Raises:
        MaterialError: the CA or a current certificate is missing, unreadable or mismatched.
        OSError: a write failed.
    """
    ca = read_issued(layout.ca_cert, layout.ca_key)
    made: list[tuple[Component, Issued]] = []
    for component in components:
        names = subject_alt_names(read_cert(layout.serving(component).cert))
        issued = make_serving_cert(
            ca=ca,
            dns_names=moved_dns_names(names, namespace),
            ip_addresses=names.ips,
            valid_days=leaf_days,
            now=now,
        )
        made.append((component, issued))
    for component, issued in made:
        files = layout.serving(component)
        write_serving_pair(
            cert_path=files.cert,
            key_path=files.key,
            pair_path=files.pair,
            cert_pem=issued.cert_pem,
            key_pem=issued.key_pem,
        )
    return [Renewed(component, issued.certificate) for component, issued in made]
