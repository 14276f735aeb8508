"""The ``certs-tooling`` command line: every key and certificate of agent-bootstrap.

Commands::

    init                 CA, caBundle, serving certificates, first signing key, JWKS
    renew-serving-cert   new serving certificate(s) from the same CA, same SANs
    rotate-ca            new CA with an overlap bundle; --finish drops the old CA
    keys add|activate|retire|list   the Ed25519 token signing keys and their JWKS
    jwks                 print the public JWKS
    token inspect        decode and verify a bootstrap token, check by check
    k8s-manifests        Secrets, ConfigMap and caBundle for kubectl apply -f -
    apiserver-client     the API server's client certificate for the webhook (tlsClientCaFile),
                         its kubeconfig and the AdmissionConfiguration
    agent-ca init|rotate|finish   the CA the approver signs agents' client certificates with
    check                expiry and mismatches, one OK/WARN/FAIL line per check
    cluster-bootstrap    in the cluster: create missing Secrets and the JWKS, patch the caBundle

Exit codes: 0 success; 1 refused, failed, or a problem found (message on stderr); 2 usage;
3 (cluster-bootstrap) the API server refused or could not be reached.
Commands that use the clock take a hidden ``--now EPOCH`` (seconds) for tests.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bootstrap_token import MAX_TTL_SECONDS
from bootstrap_token.version import version_text
from certs_tooling import (
    agent_ca,
    apiserver_client,
    check,
    cluster_bootstrap,
    commands,
    k8s,
    rotation,
    serving,
)
from certs_tooling.commands import PROG
from certs_tooling.errors import CertsToolingError
from certs_tooling.keystore import DEFAULT_LEEWAY_SECONDS, DEFAULT_MAX_TOKEN_TTL_SECONDS

#: The webhook's default ``iss`` and ``aud`` (webhook configuration ``issuer``/``audience``).
DEFAULT_ISSUER = "agent-bootstrap-webhook"
DEFAULT_AUDIENCE = "agent-approver"

Handler = Callable[[argparse.Namespace], int]


# --- argument types ------------------------------------------------------------------------------


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def _non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return number


def _epoch(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not seconds since the epoch: {value!r}") from None


def _port(value: str) -> int:
    number = _positive(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"not a port (1..65535): {value}")
    return number


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise argparse.ArgumentTypeError(f"must be an absolute path: {value!r}")
    return value


def _err(command: str, message: str) -> int:
    print(f"{PROG} {command}: {message}", file=sys.stderr)
    return 1


# --- parser --------------------------------------------------------------------------------------


def _out(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--out", type=Path, required=required, metavar="DIR", help="the certs-tooling folder"
    )


def _hidden_now(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", type=_epoch, default=None, help=argparse.SUPPRESS)


def _output_format(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help=f"text (default) or json, one object with stable keys: {what}",
    )


def _retire_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-token-ttl",
        type=_positive,
        default=DEFAULT_MAX_TOKEN_TTL_SECONDS,
        metavar="SECONDS",
        help="longest token lifetime the webhook may mint "
        f"(default {DEFAULT_MAX_TOKEN_TTL_SECONDS}, the minting bound)",
    )
    parser.add_argument(
        "--leeway",
        type=_non_negative,
        default=DEFAULT_LEEWAY_SECONDS,
        metavar="SECONDS",
        help="added to the window: verifier exp leeway + time for the webhook to load the new "
        f"signing.key (default {DEFAULT_LEEWAY_SECONDS})",
    )


def _add_init(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        help="write a CA, serving certificates, the first signing key and the JWKS",
        description="Write a new CA (and ca-bundle.crt), serving certificates for the webhook "
        "and approver Services, the first Ed25519 signing key (registered active in keys/) and "
        "its JWKS into a folder. Private keys get mode 0600.",
    )
    _out(p)
    p.add_argument("--namespace", default="agent-bootstrap", help="namespace of the Services")
    p.add_argument("--webhook-service", default="agent-bootstrap-webhook")
    p.add_argument("--approver-service", default="agent-bootstrap-approver")
    p.add_argument("--dns", action="append", default=[], help="extra DNS SAN (repeatable)")
    p.add_argument("--ip", action="append", default=[], help="extra IP SAN (repeatable)")
    p.add_argument(
        "--local",
        action="store_true",
        help="also add localhost, 127.0.0.1 and ::1 (for local runs and the demo)",
    )
    p.add_argument("--ca-days", type=_positive, default=5 * 365, help="CA validity (days)")
    p.add_argument("--leaf-days", type=_positive, default=365, help="leaf validity (days)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    _hidden_now(p)
    p.set_defaults(handler=commands.cmd_init)


def _add_renew(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "renew-serving-cert",
        help="new serving certificate(s) from the same CA, keeping the SANs",
        description="Issue new serving certificates from ca.crt/ca.key with the SANs of the "
        "current ones. The caBundle does not change. Each pair is replaced key first, then "
        "certificate, then the combined .pem (see docs/certificates.md).",
    )
    _out(p)
    p.add_argument(
        "--component", choices=["webhook", "approver", "all"], default="all", help="default all"
    )
    p.add_argument(
        "--leaf-days", type=_positive, default=serving.DEFAULT_LEAF_DAYS, help="validity (days)"
    )
    _hidden_now(p)
    p.set_defaults(handler=commands.cmd_renew)


def _add_rotate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "rotate-ca",
        help="start (or --finish) a CA rotation with an old+new caBundle overlap",
        description="Make a new CA, keep the old one as ca-previous.crt, write ca-bundle.crt "
        "with both, and re-issue the serving certificates from the new CA; print the steps. "
        "With --finish: ca-bundle.crt holds only the new CA and ca-previous.crt is removed.",
    )
    _out(p)
    p.add_argument("--finish", action="store_true", help="end the overlap: drop the old CA")
    p.add_argument(
        "--ca-days", type=_positive, default=rotation.DEFAULT_CA_DAYS, help="new CA validity"
    )
    p.add_argument(
        "--leaf-days", type=_positive, default=serving.DEFAULT_LEAF_DAYS, help="leaf validity"
    )
    _hidden_now(p)
    p.set_defaults(handler=commands.cmd_rotate)


def _add_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser(
        "keys",
        help="token signing keys: add, activate, retire, list",
        description="Manage the Ed25519 token signing keys in DIR/keys. jwks.json always holds "
        "every pending, active and inactive key; signing.key is the active one.",
    )
    ks = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    add = ks.add_parser(
        "add",
        help="new key, state pending, published in jwks.json at once",
        description="Generate a new Ed25519 key in state pending and publish it in jwks.json. "
        "Roll jwks.json out to the approvers before `keys activate`.",
    )
    _out(add)
    _hidden_now(add)
    add.set_defaults(handler=commands.cmd_keys_add)
    act = ks.add_parser(
        "activate",
        help="make KID the active key (replaces signing.key)",
        description="Make KID (or a unique prefix of at least 6 characters) the one active "
        "key: signing.key is replaced atomically; the previous active key becomes inactive "
        "with deactivated_at = now and stays in jwks.json.",
    )
    act.add_argument("kid", metavar="KID")
    _out(act)
    _hidden_now(act)
    act.set_defaults(handler=commands.cmd_keys_activate)
    ret = ks.add_parser(
        "retire",
        help="remove KID from jwks.json once its tokens cannot be valid",
        description="Remove KID from jwks.json and delete its private key. Refused for the "
        "active key, and while deactivated_at + --max-token-ttl + --leeway is in the future "
        "(tokens it signed may still be valid); --force overrides the latter only.",
    )
    ret.add_argument("kid", metavar="KID")
    _out(ret)
    _retire_window(ret)
    ret.add_argument(
        "--force",
        action="store_true",
        help="retire even though tokens signed by KID may still be valid (e.g. key compromise)",
    )
    _hidden_now(ret)
    ret.set_defaults(handler=commands.cmd_keys_retire)
    lst = ks.add_parser(
        "list",
        help="kid, state, created/activated/deactivated/retired times",
        description="List every key of the store with its state and times (UTC), and when an "
        "inactive key may be retired.",
    )
    _out(lst)
    _retire_window(lst)
    _output_format(lst, '{"keys": [{"kid", "state", "createdAt", ...}]}')
    _hidden_now(lst)
    lst.set_defaults(handler=commands.cmd_keys_list)


def _add_jwks(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "jwks",
        help="print the public JWKS (jwks.json)",
        description="Print DIR/jwks.json, checked to hold public Ed25519 keys only. For an "
        "approver that serves several clusters: --cluster ties this cluster's keys to its name "
        "(the approver then refuses their tokens for any other 'cluster' claim) and --merge adds "
        "the keys of other clusters' JWKS documents (docs/operations.md, 'Several clusters').",
    )
    _out(p)
    p.add_argument(
        "--cluster",
        type=_cluster_name,
        default=None,
        metavar="NAME",
        help="tie every key to cluster NAME (the webhook's 'cluster' setting)",
    )
    p.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also print the keys of this JWKS (another cluster's --cluster output); repeatable",
    )
    p.set_defaults(handler=commands.cmd_jwks)


def _cluster_name(value: str) -> str:
    if not value or value != value.strip() or len(value) > 253:
        raise argparse.ArgumentTypeError("a cluster name is 1..253 characters, no outer spaces")
    return value


def _add_token(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser(
        "token",
        help="bootstrap tokens: inspect",
        description="Work with bootstrap tokens (public keys only).",
    )
    ts = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = ts.add_parser(
        "inspect",
        help="decode and verify a token against a JWKS, check by check",
        description="Decode TOKEN (or read it from stdin with '-') and verify it with the "
        "approver's own code against the JWKS: print the header, the claims and each check "
        "(structure, alg, typ, kid, signature, claims, iss, aud, lifetime, nbf, exp) with "
        "PASS/FAIL and the reason code of the first failure. Exit 1 when the token is invalid. "
        "Needs no private key.",
    )
    p.add_argument("token", metavar="TOKEN", help="the compact JWT, or '-' for stdin")
    p.add_argument("--jwks", type=Path, required=True, metavar="FILE", help="JWKS (or PEM keys)")
    p.add_argument("--issuer", default=DEFAULT_ISSUER, help=f"required iss ({DEFAULT_ISSUER})")
    p.add_argument(
        "--audience", default=DEFAULT_AUDIENCE, help=f"required aud ({DEFAULT_AUDIENCE})"
    )
    p.add_argument("--now", type=_epoch, default=None, metavar="EPOCH", help="time to check at")
    p.add_argument(
        "--leeway", type=_non_negative, default=30, metavar="SECONDS", help="exp/nbf leeway"
    )
    p.add_argument(
        "--max-ttl",
        type=_positive,
        default=MAX_TTL_SECONDS,
        metavar="SECONDS",
        help=f"largest accepted exp - iat (default {MAX_TTL_SECONDS})",
    )
    p.set_defaults(handler=commands.cmd_token_inspect)


def _add_k8s(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "k8s-manifests",
        help="print Secrets, the JWKS ConfigMap and the caBundle as YAML",
        description="Print multi-document YAML for kubectl apply -f -: the webhook's "
        "kubernetes.io/tls Secret (tls.crt, tls.key, signing.key), the approver's TLS Secret "
        "and a ConfigMap with jwks.json, plus, when the folder holds an agent CA, an Opaque "
        "Secret with ca.crt, ca.key and ca-bundle.crt (agent-ca.*); the base64 caBundle comes "
        "first as a comment. The "
        "output contains private keys: pipe it, do not paste it. Serving certificates issued "
        "for another namespace than NS are refused (exit 1): the API server would fail their "
        "TLS check; --force re-issues them for NS.",
    )
    _out(p)
    p.add_argument("--namespace", required=True, metavar="NS")
    p.add_argument("--webhook-secret", default=k8s.DEFAULT_WEBHOOK_SECRET, metavar="NAME")
    p.add_argument("--approver-secret", default=k8s.DEFAULT_APPROVER_SECRET, metavar="NAME")
    p.add_argument("--jwks-configmap", default=k8s.DEFAULT_JWKS_CONFIGMAP, metavar="NAME")
    p.add_argument(
        "--agent-ca-secret",
        default=k8s.DEFAULT_AGENT_CA_SECRET,
        metavar="NAME",
        help="name of the agent CA Secret (printed only when the folder holds agent-ca.crt)",
    )
    p.add_argument(
        "--ca-bundle-only",
        action="store_true",
        help="print only the base64 caBundle (for clientConfig.caBundle)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="when the serving certificates were issued for another namespace than NS (refused "
        "without it), re-issue them for NS from ca.key first; the caBundle does not change",
    )
    _hidden_now(p)
    p.set_defaults(handler=commands.cmd_k8s)


def _add_apiserver_client(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "apiserver-client",
        help="client certificate, kubeconfig and AdmissionConfiguration for the API server",
        description="Issue the API server's client certificate for the webhook (EKU clientAuth, "
        f"CN {apiserver_client.CLIENT_COMMON_NAME}) from a client CA of its own, and write the "
        "CA bundle for the webhook's tlsClientCaFile, a kubeconfig for kube-apiserver (users "
        "named after the webhook Service, certificate and key embedded) and an "
        "AdmissionConfiguration for --admission-control-config-file. Private keys get mode "
        "0600 and are never printed. See docs/certificates.md.",
    )
    _out(p)
    p.add_argument(
        "--namespace", default="agent-bootstrap", metavar="NS", help="namespace of the Service"
    )
    p.add_argument("--webhook-service", default="agent-bootstrap-webhook", metavar="SVC")
    p.add_argument(
        "--port",
        type=_port,
        default=apiserver_client.DEFAULT_PORT,
        help="clientConfig.service.port of the webhook configuration (default "
        f"{apiserver_client.DEFAULT_PORT}; another port adds a users entry SVC.NS.svc:PORT)",
    )
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="extra users entry name, e.g. the host of a clientConfig.url (repeatable)",
    )
    p.add_argument(
        "--kubeconfig-path",
        type=_absolute,
        default=apiserver_client.DEFAULT_KUBECONFIG_PATH,
        metavar="PATH",
        help="absolute path of the kubeconfig on the control-plane nodes, written into the "
        f"AdmissionConfiguration (default {apiserver_client.DEFAULT_KUBECONFIG_PATH})",
    )
    p.add_argument(
        "--days",
        type=_positive,
        default=apiserver_client.DEFAULT_DAYS,
        metavar="N",
        help=f"client certificate validity (days, default {apiserver_client.DEFAULT_DAYS})",
    )
    p.add_argument(
        "--ca-days",
        type=_positive,
        default=apiserver_client.DEFAULT_CA_DAYS,
        metavar="N",
        help="client CA validity when a new one is made (days)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--force",
        action="store_true",
        help="replace the client certificate, kubeconfig and AdmissionConfiguration; an "
        "existing client CA is kept (tlsClientCaFile unchanged)",
    )
    mode.add_argument(
        "--new-ca",
        action="store_true",
        help="also replace the client CA; the bundle holds the new and the previous CA until "
        "--finish",
    )
    mode.add_argument(
        "--finish",
        action="store_true",
        help="end a --new-ca overlap: the bundle holds the current client CA only",
    )
    _hidden_now(p)
    p.set_defaults(handler=commands.cmd_apiserver_client)


def _add_agent_ca(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agent-ca",
        help="the CA the approver signs agents' TLS client certificates with: init, rotate, finish",
        description="Make and rotate the agent CA: the approver signs approved agents' "
        "short-lived TLS client certificates with agent-ca.crt/agent-ca.key and its gate trusts "
        "agent-ca-bundle.crt. A CA of its own, separate from ca.crt and the apiserver-client "
        "CA. See docs/certificates.md.",
    )
    actions = p.add_subparsers(dest="agent_ca_command", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        help="new agent CA: agent-ca.crt, agent-ca.key, agent-ca-bundle.crt",
        description=f"Make a new agent CA (CN {agent_ca.AGENT_CA_COMMON_NAME}, ECDSA P-256, "
        "pathlen 0) and write agent-ca.key (0600), agent-ca.crt and agent-ca-bundle.crt (the "
        "CA alone). Refused when the folder already holds agent CA files, unless --force.",
    )
    _out(init)
    init.add_argument(
        "--days",
        type=_positive,
        default=agent_ca.DEFAULT_CA_DAYS,
        metavar="N",
        help=f"agent CA validity (days, default {agent_ca.DEFAULT_CA_DAYS})",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace an existing agent CA at once, without an overlap: agent certificates it "
        "signed are refused once the new bundle is read (agent-ca rotate keeps them valid)",
    )
    _hidden_now(init)
    init.set_defaults(handler=commands.cmd_agent_ca_init)
    rotate = actions.add_parser(
        "rotate",
        help="start a rotation: new agent CA, bundle = previous + new",
        description="Make a new agent CA (CN with the UTC time), keep the current one as "
        "agent-ca-previous.crt, write agent-ca-bundle.crt with both, then replace agent-ca.key "
        "and agent-ca.crt; print the steps. Refused while a rotation is running or when there "
        "is no agent CA.",
    )
    _out(rotate)
    rotate.add_argument(
        "--days",
        type=_positive,
        default=agent_ca.DEFAULT_CA_DAYS,
        metavar="N",
        help=f"new agent CA validity (days, default {agent_ca.DEFAULT_CA_DAYS})",
    )
    _hidden_now(rotate)
    rotate.set_defaults(handler=commands.cmd_agent_ca_rotate)
    finish = actions.add_parser(
        "finish",
        help="end a rotation: bundle = current agent CA only",
        description="Write agent-ca-bundle.crt with the current agent CA only and remove "
        "agent-ca-previous.crt. Agent certificates live in the approver's database, not in "
        "the folder, so this waits out their lifetime: refused until "
        "--max-certificate-lifetime-seconds plus 5 minutes of clock skew have passed since the "
        "rotation; --force overrides that.",
    )
    _out(finish)
    default_lifetime = int(agent_ca.DEFAULT_MAX_CERTIFICATE_LIFETIME.total_seconds())
    finish.add_argument(
        "--max-certificate-lifetime-seconds",
        type=_positive,
        default=default_lifetime,
        metavar="N",
        help="longest lifetime of an agent certificate the approver issues (default "
        f"{default_lifetime}, the approver's default)",
    )
    finish.add_argument(
        "--force",
        action="store_true",
        help="finish even though agent certificates of the previous agent CA may still be in "
        "use (e.g. its key leaked): they are refused from then on",
    )
    _hidden_now(finish)
    finish.set_defaults(handler=commands.cmd_agent_ca_finish)


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="report expiry and mismatches, one OK/WARN/FAIL line each",
        description="Check certificate expiry, certificate/key pairs, serving chains against "
        "ca.crt and the caBundle, SANs (and their namespace, with --namespace), the JWKS "
        "against the active signing key, the key store, the apiserver-client and agent-ca "
        "files when present, and file permissions. Give --out DIR, or the files one by one. "
        "Exit 1 on any FAIL (and on WARN with --fail-on-warn).",
    )
    _out(p, required=False)
    for flag in (
        "ca",
        "ca-key",
        "ca-bundle",
        "webhook-cert",
        "webhook-key",
        "approver-cert",
        "approver-key",
        "signing-key",
        "jwks",
    ):
        p.add_argument(f"--{flag}", type=Path, metavar="FILE")
    p.add_argument(
        "--namespace",
        metavar="NS",
        help="the namespace the Services are installed in: FAIL when a serving certificate "
        "names Services in another one (the API server dials <service>.NS.svc)",
    )
    p.add_argument(
        "--warn-days",
        type=_non_negative,
        default=check.DEFAULT_WARN_DAYS,
        help=f"WARN when a certificate expires within this many days ({check.DEFAULT_WARN_DAYS})",
    )
    p.add_argument("--fail-on-warn", action="store_true", help="exit 1 on WARN too")
    _output_format(p, '{"result", "checks", "findings": [{"level", "subject", "message"}]}')
    _hidden_now(p)
    p.set_defaults(handler=commands.cmd_check)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (every command has ``--help``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Keys and certificates for agent-bootstrap: CA, serving certificates, "
        "Ed25519 signing keys, JWKS, token inspection, Kubernetes manifests, the API server's "
        "client certificate, the agent CA, checks.",
        epilog="Exit codes: 0 ok, 1 refused/failed/problem found, 2 usage.",
    )
    parser.add_argument("--version", action="version", version=version_text(PROG))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_init, _add_renew, _add_rotate, _add_keys, _add_jwks, _add_token, _add_k8s):
        add(sub)
    _add_apiserver_client(sub)
    _add_agent_ca(sub)
    _add_check(sub)
    cluster_bootstrap.add_parser(sub)
    return parser


# --- entry point ---------------------------------------------------------------------------------


_DASH_KID = re.compile(r"-[A-Za-z0-9_-]{5,42}")


def _escape_dash_kid(argv: list[str]) -> list[str]:
    """Let ``keys activate|retire KID`` take a kid that starts with ``-``.

    A kid is a base64url thumbprint, so about one in 32 starts with ``-`` and argparse would
    read it as an option. A token in the KID position that looks like a kid (or a kid prefix of
    6+ characters; with ``--`` only a full 43-character kid, since every option of these
    commands starts with ``--`` and is shorter) is moved behind ``--``.
    """
    if len(argv) >= 3 and argv[0] == "keys" and argv[1] in {"activate", "retire"}:
        token = argv[2]
        if _DASH_KID.fullmatch(token) and (not token.startswith("--") or len(token) == 43):
            return [*argv[:2], *argv[3:], "--", token]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``certs-tooling`` console script. Returns the exit code.

    Usage errors (and ``--help``) return argparse's code (2, or 0 for help) instead of raising
    ``SystemExit``, so tests and callers always get an int.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(_escape_dash_kid(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    handler: Handler = args.handler
    command = " ".join(
        part
        for part in (
            args.command,
            getattr(args, "keys_command", None),
            getattr(args, "token_command", None),
            getattr(args, "agent_ca_command", None),
        )
        if part
    )
    try:
        return handler(args)
    except (CertsToolingError, ValueError) as exc:  # ValueError includes KeyLoadError
        return _err(command, str(exc))
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return _err(command, f"{exc.strerror or type(exc).__name__}{where}")


if __name__ == "__main__":
    raise SystemExit(main())
