"""Handlers of the ``certs-tooling`` commands: parsed arguments in, output and exit code out.

Each handler calls the module that owns its logic and prints the result; errors propagate to
:func:`certs_tooling.cli.main`, which turns them into exit code 1. The parser is in
:mod:`certs_tooling.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from cryptography import x509

from bootstrap_token import KeySet, VerificationPolicy
from certs_tooling import (
    agent_ca,
    apiserver_client,
    check,
    check_files,
    k8s,
    keyfolder,
    namespaces,
    rotation,
    serving,
    token_inspect,
)
from certs_tooling.certinfo import common_name, short_fingerprint
from certs_tooling.errors import MaterialError
from certs_tooling.findings import Finding
from certs_tooling.init import InitOptions, run_init
from certs_tooling.keystore import KeyRecord, KeyStatus, tokens_valid_until
from certs_tooling.layout import Component, Layout
from certs_tooling.material import read_bytes

PROG = "certs-tooling"


def _fmt(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(args: argparse.Namespace) -> datetime:
    """``--now`` as an aware datetime, or the current time."""
    if getattr(args, "now", None) is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(args.now, UTC)


# --- handlers ------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """`init`: write a fresh folder (certs_tooling.init.run_init). Exit 0."""
    options = InitOptions(
        namespace=args.namespace,
        webhook_service=args.webhook_service,
        approver_service=args.approver_service,
        extra_dns=args.dns,
        extra_ips=args.ip,
        local=args.local,
        ca_days=args.ca_days,
        leaf_days=args.leaf_days,
    )
    layout = Layout(args.out)
    kid = run_init(layout, options, now=_now(args), force=args.force)
    print(f"wrote {len(layout.all_files()) + 1} files to {layout.root} (signing key kid {kid})")
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    """`renew-serving-cert`: new leaves from the same CA (certs_tooling.serving.renew). Exit 0."""
    components = list(Component) if args.component == "all" else [Component(args.component)]
    renewed = serving.renew(Layout(args.out), components, leaf_days=args.leaf_days, now=_now(args))
    for item in renewed:
        cert = item.certificate
        print(
            f"renewed {item.component} serving certificate: {common_name(cert)}, "
            f"serial {cert.serial_number:x}, valid until {_fmt(cert.not_valid_after_utc)}"
        )
    print("caBundle unchanged: same CA.")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    """`rotate-ca [--finish]`: start or end a CA rotation and print the admin's steps. Exit 0."""
    layout = Layout(args.out)
    if args.finish:
        ca = rotation.finish(layout)
        print(
            f"CA rotation finished: ca-bundle.crt now holds only {common_name(ca)} "
            f"(sha256 {short_fingerprint(ca)}); ca-previous.crt removed."
        )
        steps = rotation.finish_steps(layout.root)
    else:
        started = rotation.start(
            layout, ca_days=args.ca_days, leaf_days=args.leaf_days, now=_now(args)
        )
        print(
            f"CA rotation started: new CA {common_name(started.new_ca)} "
            f"(sha256 {short_fingerprint(started.new_ca)}, valid until "
            f"{_fmt(started.new_ca.not_valid_after_utc)}); previous CA kept as ca-previous.crt; "
            "ca-bundle.crt holds both; serving certificates re-issued from the new CA."
        )
        steps = rotation.start_steps(layout.root)
    print("Next steps:")
    for number, step in enumerate(steps, start=1):
        print(f"  {number}. {step}")
    return 0


def cmd_keys_add(args: argparse.Namespace) -> int:
    """`keys add`: a new pending key, published in jwks.json. Exit 0."""
    record = keyfolder.add(Layout(args.out), now=_now(args))
    print(f"added key {record.kid} (pending), published in jwks.json")
    print(
        "Roll jwks.json out to every approver and wait until they reload it, then run: "
        f"certs-tooling keys activate {record.kid} --out {args.out}"
    )
    return 0


def cmd_keys_activate(args: argparse.Namespace) -> int:
    """`keys activate KID`: KID becomes the active key and signing.key. Exit 0."""
    record = keyfolder.activate(Layout(args.out), args.kid, now=_now(args))
    print(f"key {record.kid} is active since {_fmt(record.activated_at)}; signing.key replaced")
    return 0


def cmd_keys_retire(args: argparse.Namespace) -> int:
    """`keys retire KID`: KID leaves jwks.json; a forced retirement warns on stderr. Exit 0."""
    record, overridden = keyfolder.retire(
        Layout(args.out),
        args.kid,
        now=_now(args),
        max_token_ttl=args.max_token_ttl,
        leeway=args.leeway,
        force=args.force,
    )
    if overridden is not None:
        print(
            "WARNING: --force: retired although " + str(overridden) + ". Tokens signed by this "
            "key are rejected from now on with unknown_kid.",
            file=sys.stderr,
        )
    print(f"retired key {record.kid}: removed from jwks.json, private key deleted")
    return 0


def _retire_after(record: KeyRecord, args: argparse.Namespace) -> str:
    if record.state is not KeyStatus.INACTIVE:
        return "-"
    until = tokens_valid_until(record, max_token_ttl=args.max_token_ttl, leeway=args.leeway)
    return _fmt(until)


def _json_time(when: datetime | None) -> str | None:
    return None if when is None else _fmt(when)


def keys_json(records: list[KeyRecord], args: argparse.Namespace) -> dict[str, object]:
    """`keys list -o json`: ``{"keys": [{"kid", "state", "createdAt", "activatedAt",
    "deactivatedAt", "retiredAt", "retirableAt"}]}``, in the store's order. ``state`` is
    ``pending``, ``active``, ``inactive`` or ``retired``; times are RFC 3339 UTC
    (``2026-01-02T03:04:05Z``) or null; ``retirableAt`` (an inactive key only) is when its
    tokens can no longer be valid (``--max-token-ttl`` + ``--leeway`` after deactivation)."""
    return {
        "keys": [
            {
                "kid": r.kid,
                "state": str(r.state),
                "createdAt": _json_time(r.created_at),
                "activatedAt": _json_time(r.activated_at),
                "deactivatedAt": _json_time(r.deactivated_at),
                "retiredAt": _json_time(r.retired_at),
                "retirableAt": (
                    None if r.state is not KeyStatus.INACTIVE else _retire_after(r, args)
                ),
            }
            for r in records
        ]
    }


def cmd_keys_list(args: argparse.Namespace) -> int:
    """`keys list`: one row per key with state and UTC times (``-o json``:
    :func:`keys_json`). Exit 0."""
    state = keyfolder.load(Layout(args.out)).state
    if getattr(args, "output", "text") == "json":
        print(json.dumps(keys_json(list(state.keys), args), indent=2))
        return 0
    columns = ("KID", "STATE", "CREATED", "ACTIVATED", "DEACTIVATED", "RETIRED", "RETIRABLE")
    rows = [
        (
            r.kid,
            str(r.state),
            _fmt(r.created_at),
            _fmt(r.activated_at),
            _fmt(r.deactivated_at),
            _fmt(r.retired_at),
            _retire_after(r, args),
        )
        for r in state.keys
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    for row in (columns, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_jwks(args: argparse.Namespace) -> int:
    """`jwks`: print jwks.json after checking it holds public keys only; with ``--cluster``
    each key tied to that cluster (its JWK's ``cluster`` member, which the approver enforces);
    with ``--merge FILE`` (repeatable) the union with other clusters' JWKS documents, each key
    keeping its tie. Exit 0.

    Raises:
        KeyLoadError: a document is not a public Ed25519 JWKS, or one key is tied to two
            clusters.
        MaterialError: a file cannot be read.
    """
    path = Layout(args.out).jwks
    key_set = KeySet.from_jwks(read_bytes(path))
    if args.cluster is not None:
        key_set = key_set.tied_to(args.cluster)
    for other in args.merge:
        key_set = key_set.merged(KeySet.from_jwks(read_bytes(other)))
    print(json.dumps(key_set.to_jwks(), indent=2))
    return 0


def cmd_token_inspect(args: argparse.Namespace) -> int:
    """`token inspect`: print the report of certs_tooling.token_inspect. Exit 0 when
    the token is valid, 1 when not."""
    reading_stdin = args.token == "-"  # noqa: S105 - "-" means stdin, not a secret
    token = sys.stdin.read() if reading_stdin else args.token
    key_set = KeySet.from_file(args.jwks)
    policy = VerificationPolicy(
        issuer=args.issuer,
        audience=args.audience,
        leeway_seconds=args.leeway,
        max_ttl_seconds=args.max_ttl,
    )
    now = args.now if args.now is not None else int(datetime.now(UTC).timestamp())
    report = token_inspect.inspect_token(token.strip(), key_set, policy, now=now)
    sys.stdout.write(token_inspect.render(report))
    return 0 if report.ok else 1


def _serving_for_namespace(layout: Layout, args: argparse.Namespace) -> None:
    """Refuse serving certificates issued for another namespace than ``--namespace`` (the API
    server's TLS check would fail and pods go unstamped), or re-issue them with ``--force``.

    Raises:
        MaterialError: a mismatch without ``--force`` (the message names each file, the
            namespace it is for and what to do).
    """
    wrong = namespaces.mismatches(layout, args.namespace)
    if not wrong:
        return
    ns = args.namespace
    if not args.force:
        found = "; ".join(m.describe() for m in wrong)
        raise MaterialError(
            f"{found}: the API server dials <service>.{ns}.svc and would fail the TLS check, "
            "leaving pods unstamped. Give the namespace the folder was issued for, or --force "
            f"to re-issue the serving certificates for {ns} from ca.key"
        )
    renewed = namespaces.retarget(
        layout,
        [m.component for m in wrong],
        ns,
        leaf_days=serving.DEFAULT_LEAF_DAYS,
        now=_now(args),
    )
    for item, before in zip(renewed, wrong, strict=True):
        print(
            f"{PROG} k8s-manifests: --force: {before.describe()}; re-issued it for {ns} "
            f"(serial {item.certificate.serial_number:x}, valid until "
            f"{_fmt(item.certificate.not_valid_after_utc)}); the caBundle is unchanged",
            file=sys.stderr,
        )


def _agent_ca_material(layout: Layout) -> k8s.AgentCa | None:
    """The agent CA files when ``agent-ca.crt`` exists (then the key and the bundle must too:
    MaterialError otherwise), else None."""
    if not layout.agent_ca_cert.exists():
        return None
    return k8s.AgentCa(
        cert=read_bytes(layout.agent_ca_cert),
        key=read_bytes(layout.agent_ca_key),
        bundle=read_bytes(layout.agent_ca_bundle),
    )


def cmd_k8s(args: argparse.Namespace) -> int:
    """`k8s-manifests`: print the Secrets and ConfigMap as YAML, or only the base64 caBundle.
    Serving certificates issued for another namespace are refused (exit 1), or re-issued for
    ``--namespace`` with ``--force`` first. Exit 0."""
    layout = Layout(args.out)
    bundle_path = layout.ca_bundle if layout.ca_bundle.exists() else layout.ca_cert
    if args.ca_bundle_only:
        print(k8s.ca_bundle_b64(read_bytes(bundle_path)))
        return 0
    _serving_for_namespace(layout, args)
    material = k8s.Material(
        ca_bundle=read_bytes(bundle_path),
        webhook_cert=read_bytes(layout.webhook_cert),
        webhook_key=read_bytes(layout.webhook_key),
        signing_key=read_bytes(layout.signing_key),
        approver_cert=read_bytes(layout.approver_cert),
        approver_key=read_bytes(layout.approver_key),
        jwks=read_bytes(layout.jwks),
        agent_ca=_agent_ca_material(layout),
    )
    names = k8s.Names(
        namespace=args.namespace,
        webhook_secret=args.webhook_secret,
        approver_secret=args.approver_secret,
        jwks_configmap=args.jwks_configmap,
        agent_ca_secret=args.agent_ca_secret,
    )
    sys.stdout.write(k8s.render(material, names))
    if sys.stdout.isatty():
        print(f"{PROG}: the output above holds private keys", file=sys.stderr)
    return 0


def cmd_apiserver_client(args: argparse.Namespace) -> int:
    """`apiserver-client [--force | --new-ca | --finish]`: the API server's client certificate,
    kubeconfig and AdmissionConfiguration (certs_tooling.apiserver_client); prints the next
    steps. Exit 0."""
    layout = Layout(args.out)
    bundle = layout.apiserver_client_ca_bundle.name
    if args.finish:
        ca = apiserver_client.finish(layout)
        print(
            f"client CA change finished: {bundle} now holds only {common_name(ca)} "
            f"(sha256 {short_fingerprint(ca)}). Give it to the webhook again as tlsClientCaFile."
        )
        return 0
    options = apiserver_client.Options(
        namespace=args.namespace,
        webhook_service=args.webhook_service,
        port=args.port,
        extra_hosts=args.host,
        kubeconfig_path=args.kubeconfig_path,
        days=args.days,
        ca_days=args.ca_days,
    )
    written = apiserver_client.run(
        layout, options, now=_now(args), force=args.force, new_ca=args.new_ca
    )
    client, ca = written.client, written.ca
    print(
        f"wrote the API server's client certificate to {layout.root}: {common_name(client)}, "
        f"serial {client.serial_number:x}, valid until {_fmt(client.not_valid_after_utc)}"
    )
    print(
        f"client CA {common_name(ca)} (sha256 {short_fingerprint(ca)}): "
        + (
            f"new; {bundle} holds it and the previous client CA"
            if written.overlap
            else f"new, in {bundle}"
            if written.new_ca
            else f"kept, {bundle} unchanged"
        )
    )
    print(f"kubeconfig users: {', '.join(written.user_names)}")
    print("Next steps:")
    for number, step in enumerate(apiserver_client.next_steps(layout, options, written), start=1):
        print(f"  {number}. {step}")
    return 0


def _agent_ca_line(ca: x509.Certificate) -> str:
    return (
        f"{common_name(ca)} (sha256 {short_fingerprint(ca)}, valid until "
        f"{_fmt(ca.not_valid_after_utc)})"
    )


def _print_steps(steps: list[str]) -> None:
    print("Next steps:")
    for number, step in enumerate(steps, start=1):
        print(f"  {number}. {step}")


def cmd_agent_ca_init(args: argparse.Namespace) -> int:
    """`agent-ca init [--force]`: a new agent CA (certs_tooling.agent_ca.init); a forced
    replacement warns on stderr. Exit 0."""
    layout = Layout(args.out)
    made = agent_ca.init(layout, days=args.days, now=_now(args), force=args.force)
    if made.replaced:
        print(
            "WARNING: --force: the previous agent CA was replaced without an overlap; agent "
            "certificates it signed are refused once the approvers read the new bundle.",
            file=sys.stderr,
        )
    print(
        f"agent CA created: {_agent_ca_line(made.ca)}; wrote {layout.agent_ca_key.name}, "
        f"{layout.agent_ca_cert.name} and {layout.agent_ca_bundle.name} to {layout.root}"
    )
    _print_steps(agent_ca.init_steps(layout.root))
    return 0


def cmd_agent_ca_rotate(args: argparse.Namespace) -> int:
    """`agent-ca rotate`: start an agent CA rotation and print the admin's steps. Exit 0."""
    layout = Layout(args.out)
    rotated = agent_ca.rotate(layout, days=args.days, now=_now(args))
    print(
        f"agent CA rotation started: new agent CA {_agent_ca_line(rotated.new_ca)}; previous "
        f"agent CA {common_name(rotated.old_ca)} (sha256 {short_fingerprint(rotated.old_ca)}) "
        f"kept as {layout.agent_ca_previous.name}; {layout.agent_ca_bundle.name} holds both."
    )
    _print_steps(agent_ca.rotate_steps(layout.root))
    return 0


def cmd_agent_ca_finish(args: argparse.Namespace) -> int:
    """`agent-ca finish [--force]`: end an agent CA rotation; a forced early finish warns on
    stderr. Exit 0."""
    layout = Layout(args.out)
    finished = agent_ca.finish(
        layout,
        max_certificate_lifetime=timedelta(seconds=args.max_certificate_lifetime_seconds),
        now=_now(args),
        force=args.force,
    )
    if finished.forced:
        print(
            "WARNING: --force: finished although agent certificates signed by the previous "
            f"agent CA may be in use until {_fmt(finished.safe_at)}; they are refused once the "
            "approvers read the new bundle.",
            file=sys.stderr,
        )
    ca = finished.ca
    print(
        f"agent CA rotation finished: {layout.agent_ca_bundle.name} now holds only "
        f"{common_name(ca)} (sha256 {short_fingerprint(ca)}); "
        f"{layout.agent_ca_previous.name} removed."
    )
    _print_steps(agent_ca.finish_steps(layout.root))
    return 0


def check_json(findings: list[Finding]) -> dict[str, object]:
    """`check -o json`: ``{"result": "OK" | "WARN" | "FAIL", "checks": n, "findings":
    [{"level": "OK" | "WARN" | "FAIL", "subject": str, "message": str}]}``, the findings in
    the text report's order; ``result`` is the worst level."""
    return {
        "result": str(check.worst(findings)),
        "checks": len(findings),
        "findings": [
            {"level": str(f.level), "subject": f.subject, "message": f.message} for f in findings
        ],
    }


def cmd_check(args: argparse.Namespace) -> int:
    """`check`: one OK/WARN/FAIL line per check (``-o json``: :func:`check_json`). Exit 1 on
    FAIL (or WARN with ``--fail-on-warn``), 2 when neither ``--out`` nor file flags (or both)
    are given."""
    paths = check_files.Paths(
        ca=args.ca,
        ca_key=args.ca_key,
        ca_bundle=args.ca_bundle,
        webhook_cert=args.webhook_cert,
        webhook_key=args.webhook_key,
        approver_cert=args.approver_cert,
        approver_key=args.approver_key,
        signing_key=args.signing_key,
        jwks=args.jwks,
    )
    if args.out is not None and paths.given():
        return _usage("check", "give --out DIR or file flags, not both")
    if args.out is None and not paths.given():
        return _usage("check", "give --out DIR or at least one file flag")
    if args.out is not None:
        inputs, problems = check_files.from_folder(Layout(args.out), namespace=args.namespace)
    else:
        inputs, problems = check_files.from_paths(paths, namespace=args.namespace)
    findings = problems + check.run(inputs, now=_now(args), warn_days=args.warn_days)
    level = check.worst(findings)
    if getattr(args, "output", "text") == "json":
        print(json.dumps(check_json(findings), indent=2))
    else:
        for finding in findings:
            print(finding.line())
        print(f"{len(findings)} checks: {level}")
    if level is check.Level.FAIL or (level is check.Level.WARN and args.fail_on_warn):
        return 1
    return 0


def _usage(command: str, message: str) -> int:
    print(f"usage error: {PROG} {command}: {message}", file=sys.stderr)
    return 2
