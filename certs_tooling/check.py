"""``certs-tooling check``: find what would break TLS or token verification. Pure: bytes in,
findings out (:mod:`certs_tooling.check_files` reads the files).

Each finding is one line, ``OK``/``WARN``/``FAIL``:

* expiry of every certificate: FAIL when expired or not yet valid, WARN under ``warn_days``
  (RFC 5280 section 4.1.2.5);
* ``ca.crt`` is a CA (basicConstraints cA + keyUsage keyCertSign, RFC 5280 4.2.1.9/4.2.1.3) and
  ``ca.key`` is its key; ``ca-bundle.crt`` contains ``ca.crt`` (and ``ca-previous.crt`` during a
  rotation, which is itself a WARN: it needs finishing);
* each serving certificate: a serverAuth leaf (RFC 5280 4.2.1.12) with subjectAltNames
  (RFC 5280 4.2.1.6; Go's TLS stack, hence the API server, ignores the CN), its key matches,
  issued by ``ca.crt``, chains to a CA in ``ca-bundle.crt`` (what the API server trusts), and
  the combined ``.pem`` file holds the same pair; with a namespace given, its Service names are
  in that namespace (FAIL otherwise: the API server dials ``svc.NS.svc``,
  :mod:`certs_tooling.namespaces`); serving certificates for different namespaces are a WARN;
* ``jwks.json`` holds public keys only (RFC 7517 section 5: no ``d``), loads as Ed25519 keys,
  and contains the kid of ``signing.key`` (else every token fails with ``unknown_kid``);
* ``keys/state.json`` agrees: its active key is ``signing.key``, and every pending/active/
  inactive key is in ``jwks.json``;
* the API server's client material, when present (:mod:`certs_tooling.check_client`);
* the agent CA, when present (:mod:`certs_tooling.check_agent_ca`);
* private files are not readable by group or others.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from pydantic import ValidationError

from bootstrap_token import KeyLoadError, KeySet, SigningKey
from certs_tooling.certinfo import (
    is_serving_leaf,
    issued_by,
    key_matches,
    load_cert,
    load_certs,
    load_private_key,
    subject_alt_names,
)
from certs_tooling.check_agent_ca import AgentCaInputs
from certs_tooling.check_agent_ca import run as agent_ca_checks
from certs_tooling.check_client import ClientInputs
from certs_tooling.check_client import run as client_checks
from certs_tooling.findings import (
    Finding,
    Level,
    Named,
    ca_findings,
    expiry,
    key_match,
    parse_cert,
)
from certs_tooling.keystore import KeyStatus, KeyStoreState
from certs_tooling.namespaces import namespace_problem, service_namespaces

DEFAULT_WARN_DAYS = 30
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@dataclass(frozen=True, slots=True)
class ServingInputs:
    """One serving certificate with its optional key and combined file."""

    cert: Named
    key: Named | None = None
    pair: Named | None = None


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything :func:`run` looks at; an absent input skips the checks that need it."""

    ca: Named | None = None
    ca_key: Named | None = None
    ca_bundle: Named | None = None
    ca_previous: Named | None = None
    serving: Sequence[ServingInputs] = ()
    signing_key: Named | None = None
    jwks: Named | None = None
    key_state: Named | None = None
    #: The ``apiserver-client`` files; None (no such files) adds no findings.
    apiserver_client: ClientInputs | None = None
    #: The ``agent-ca`` files; None (no ``agent-ca.crt``) adds no findings.
    agent_ca: AgentCaInputs | None = None
    #: (display name, permission bits) of files that must be private.
    private_modes: Sequence[tuple[str, int]] = ()
    #: The namespace the Services are installed in (``check --namespace``), or None.
    namespace: str | None = None


_Anchor = tuple[str, x509.Certificate]
_Bundle = tuple[str, list[x509.Certificate]]


def _ca_checks(
    inputs: Inputs, now: datetime, warn_days: int, out: list[Finding]
) -> tuple[_Anchor | None, _Bundle | None]:
    """CA, previous CA and caBundle checks; returns the parsed CA and bundle (None when absent
    or unparsable) for the serving-certificate checks."""
    ca = ca_findings(inputs.ca, inputs.ca_key, now=now, warn_days=warn_days, out=out)
    previous = parse_cert(inputs.ca_previous, out) if inputs.ca_previous else None
    if inputs.ca_previous and previous is not None:
        out.append(expiry(inputs.ca_previous.name, previous, now=now, warn_days=warn_days))
        out.append(
            Finding(
                Level.WARN,
                inputs.ca_previous.name,
                "CA rotation in progress: after the serving certificates are rolled out, "
                "run `rotate-ca --finish`",
            )
        )
    anchor = (inputs.ca.name, ca) if inputs.ca and ca is not None else None
    if inputs.ca_bundle is None:
        return anchor, None
    try:
        bundle = load_certs(inputs.ca_bundle.data)
    except ValueError:
        out.append(Finding(Level.FAIL, inputs.ca_bundle.name, "not a PEM certificate bundle"))
        return anchor, None
    for named, cert in ((inputs.ca, ca), (inputs.ca_previous, previous)):
        if named is None or cert is None:
            continue
        if cert in bundle:
            out.append(Finding(Level.OK, inputs.ca_bundle.name, f"contains {named.name}"))
        else:
            out.append(Finding(Level.FAIL, inputs.ca_bundle.name, f"does not contain {named.name}"))
    return anchor, (inputs.ca_bundle.name, bundle)


def _serving_checks(
    serving: ServingInputs,
    ca: _Anchor | None,
    bundle: _Bundle | None,
    now: datetime,
    warn_days: int,
    out: list[Finding],
    namespace: str | None = None,
) -> list[str]:
    """Append the findings of one serving certificate; returns the namespaces its Service names
    are in (empty when it has none, or does not parse)."""
    name = serving.cert.name
    cert = parse_cert(serving.cert, out)
    if cert is None:
        return []
    out.append(expiry(name, cert, now=now, warn_days=warn_days))
    if is_serving_leaf(cert):
        out.append(Finding(Level.OK, name, "is a serverAuth leaf"))
    else:
        out.append(Finding(Level.FAIL, name, "is not a serving leaf (CA, or no serverAuth EKU)"))
    sans = subject_alt_names(cert)
    if sans:
        out.append(Finding(Level.OK, name, f"SAN {', '.join(sans.dns + sans.ips)}"))
    else:
        out.append(Finding(Level.FAIL, name, "no DNS/IP subjectAltName (clients ignore the CN)"))
    if namespace is not None and service_namespaces(sans):
        problem = namespace_problem(sans, namespace)
        if problem is None:
            out.append(Finding(Level.OK, name, f"issued for namespace {namespace}"))
        else:
            out.append(
                Finding(
                    Level.FAIL,
                    name,
                    f"{problem}: the API server's TLS check fails and pods go unstamped; "
                    f"re-issue with `k8s-manifests --namespace {namespace} --force`",
                )
            )
    if serving.key:
        out.append(key_match(name, cert, serving.key))
    if ca is not None:
        if issued_by(cert, ca[1]):
            out.append(Finding(Level.OK, name, f"issued by {ca[0]}"))
        else:
            out.append(Finding(Level.FAIL, name, f"not issued by {ca[0]}"))
    if bundle is not None:
        if any(issued_by(cert, anchor) for anchor in bundle[1]):
            out.append(Finding(Level.OK, name, f"chains to a CA in {bundle[0]}"))
        else:
            out.append(Finding(Level.FAIL, name, f"chains to no CA in {bundle[0]} (caBundle)"))
    if serving.pair:
        out.append(_pair_check(serving.pair, cert))
    return service_namespaces(sans)


def _same_namespace(found: Sequence[tuple[str, list[str]]]) -> Finding | None:
    """WARN when the serving certificates name Services in different namespaces (the webhook
    and the approver are installed in one)."""
    spaces = {tuple(names) for _, names in found if names}
    if len(spaces) <= 1:
        return None
    listed = ", ".join(f"{name} in {'/'.join(names)}" for name, names in found if names)
    return Finding(
        Level.WARN, "namespaces", f"serving certificates for different namespaces: {listed}"
    )


def _pair_check(pair: Named, cert: x509.Certificate) -> Finding:
    try:
        pair_cert = load_cert(pair.data)
        pair_key = load_private_key(pair.data)
    except ValueError:
        return Finding(Level.FAIL, pair.name, "does not hold a certificate and a private key")
    if pair_cert != cert:
        return Finding(Level.FAIL, pair.name, "holds another certificate than the .crt file")
    if not key_matches(pair_cert, pair_key):
        return Finding(Level.FAIL, pair.name, "key does not belong to its certificate")
    return Finding(Level.OK, pair.name, "same certificate and matching key")


def _jwks_checks(inputs: Inputs, out: list[Finding]) -> tuple[set[str] | None, str | None]:
    """Returns (kids in the JWKS or None, kid of signing.key or None)."""
    signing_kid = None
    if inputs.signing_key:
        try:
            signing_kid = SigningKey.from_pem(inputs.signing_key.data).kid
            out.append(
                Finding(Level.OK, inputs.signing_key.name, f"Ed25519 key, kid {signing_kid}")
            )
        except KeyLoadError as exc:
            out.append(Finding(Level.FAIL, inputs.signing_key.name, str(exc)))
    if inputs.jwks is None:
        return None, signing_kid
    name = inputs.jwks.name
    try:
        document = json.loads(inputs.jwks.data)
    except ValueError:
        out.append(Finding(Level.FAIL, name, "not valid JSON"))
        return None, signing_kid
    keys = document.get("keys") if isinstance(document, dict) else None
    leaked = sorted(
        {m for jwk in keys or [] if isinstance(jwk, dict) for m in _PRIVATE_JWK_MEMBERS if m in jwk}
    )
    if leaked:
        out.append(
            Finding(Level.FAIL, name, f"holds private key material (members {', '.join(leaked)})")
        )
        return None, signing_kid
    out.append(Finding(Level.OK, name, "public keys only"))
    try:
        kids = set(KeySet.from_jwks(document))
    except KeyLoadError as exc:
        out.append(Finding(Level.FAIL, name, str(exc)))
        return None, signing_kid
    if signing_kid is not None:
        if signing_kid in kids:
            out.append(Finding(Level.OK, name, f"contains the active signing key {signing_kid}"))
        else:
            out.append(
                Finding(
                    Level.FAIL,
                    name,
                    f"lacks the active signing key {signing_kid}: every new token would fail "
                    "with unknown_kid",
                )
            )
    return kids, signing_kid


def _store_checks(
    state_file: Named, jwks_kids: set[str] | None, signing_kid: str | None, out: list[Finding]
) -> None:
    name = state_file.name
    try:
        state = KeyStoreState.model_validate_json(state_file.data)
    except ValidationError:
        out.append(Finding(Level.FAIL, name, "not a valid key store"))
        return
    active = state.active
    if active is None:
        out.append(Finding(Level.FAIL, name, "no active key"))
    elif signing_kid is not None and active.kid != signing_kid:
        out.append(
            Finding(
                Level.FAIL, name, f"active key is {active.kid} but signing.key is {signing_kid}"
            )
        )
    else:
        out.append(Finding(Level.OK, name, f"active key {active.kid}"))
    if jwks_kids is None:
        return
    missing = [r.kid for r in state.published if r.kid not in jwks_kids]
    if missing:
        out.append(Finding(Level.FAIL, name, f"keys missing from the JWKS: {', '.join(missing)}"))
    else:
        out.append(
            Finding(Level.OK, name, f"all {len(state.published)} published keys in the JWKS")
        )
    retired = [r.kid for r in state.keys if r.state is KeyStatus.RETIRED and r.kid in jwks_kids]
    if retired:
        out.append(
            Finding(Level.WARN, name, f"retired keys still in the JWKS: {', '.join(retired)}")
        )


def _mode_check(modes: Sequence[tuple[str, int]]) -> Finding:
    loose = [f"{n} ({m:04o})" for n, m in modes if m & 0o077]
    if loose:
        return Finding(Level.FAIL, "permissions", f"readable by others: {', '.join(loose)}")
    return Finding(Level.OK, "permissions", f"{len(modes)} private files are owner-only")


def run(inputs: Inputs, *, now: datetime, warn_days: int = DEFAULT_WARN_DAYS) -> list[Finding]:
    """Every check of the module docstring that ``inputs`` allows, in a stable order.

    Args:
        inputs: file names and bytes; absent ones skip their checks.
        now: timezone-aware current time.
        warn_days: WARN when a certificate expires within this many days.

    Returns:
        Findings in order: CA, caBundle, each serving certificate, signing key, JWKS, key
        store, the API server's client material, the agent CA, permissions. Never raises for
        bad file contents (those are FAIL findings).
    """
    out: list[Finding] = []
    ca, bundle = _ca_checks(inputs, now, warn_days, out)
    found = [
        (
            serving.cert.name,
            _serving_checks(serving, ca, bundle, now, warn_days, out, inputs.namespace),
        )
        for serving in inputs.serving
    ]
    spread = _same_namespace(found)
    if spread is not None:
        out.append(spread)
    jwks_kids, signing_kid = _jwks_checks(inputs, out)
    if inputs.key_state:
        _store_checks(inputs.key_state, jwks_kids, signing_kid, out)
    if inputs.apiserver_client is not None:
        out += client_checks(inputs.apiserver_client, now=now, warn_days=warn_days)
    if inputs.agent_ca is not None:
        out += agent_ca_checks(inputs.agent_ca, now=now, warn_days=warn_days)
    if inputs.private_modes:
        out.append(_mode_check(inputs.private_modes))
    return out


def worst(findings: Sequence[Finding]) -> Level:
    """The most severe level among ``findings`` (OK when empty)."""
    levels = {f.level for f in findings}
    if Level.FAIL in levels:
        return Level.FAIL
    return Level.WARN if Level.WARN in levels else Level.OK


__all__ = [
    "DEFAULT_WARN_DAYS",
    "AgentCaInputs",
    "ClientInputs",
    "Finding",
    "Inputs",
    "Level",
    "Named",
    "ServingInputs",
    "expiry",
    "key_match",
    "run",
    "worst",
]
