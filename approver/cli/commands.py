"""``agents ...`` and ``audit list``: the admin client's subcommands (argparse) and their runs.

They talk to a **running approver** over HTTPS (:mod:`approver.cli.client`), configured by
:mod:`approver.cli.config`; ``serve``, ``migrate``, ``audit verify`` and ``api-keys`` work on the
database instead (:mod:`approver.__main__`)::

    agents list [--status S] [-n NS] [--method M] [--owner UID] [--deployment NAME]
                [--deployment-uid UID] [--expired true|false] [--limit N]
                [-o wide|json|yaml|name] [-w [--interval SECONDS]]
    agents get AGENT_ID [-o wide|json|yaml|name]
    agents approve|reject|revoke AGENT_ID... [-o json|yaml|name]
    agents delete AGENT_ID...
    agents bulk-approve (--owner UID | --deployment-uid UID | --deployment NAME -n NS) [-n NS]
                        [-o json|yaml|name]
    audit list [--event E] [--agent-id ID] [--actor A] [--reason R] [--security true|false]
               [--since T] [--until T] [--order asc|desc] [--limit N] [-o json|yaml]

Every one takes the connection flags ``--config-file``, ``--context``, ``--server``,
``--certificate-authority``, ``--insecure-skip-tls-verify``, ``--token-file``.

Output: a kubectl-like table (:mod:`approver.cli.render`); ``-o json``/``yaml`` the API's
objects (``list``: ``{"agents": [...]}``, ``get``: the agent, actions: ``{"agents": [...]}``,
``bulk-approve``: ``{"approved": [...], "count": n}``, ``audit list``: ``{"events": [...]}``);
``-o name`` one ``agent/<agentId>`` a line. ``--watch`` prints the list, then a row for each
agent that appears or changes (one JSON object a line with ``-o json``), polling every
``--interval`` seconds, until Ctrl-C (exit 0).

Exit codes (:data:`EXIT_CODES`): 0 done; 1 the approver could not be reached (connection, TLS,
timeout), answered 5xx or 429, or not as the API does; 2 usage or configuration (a flag, the
config file, a refused token file, or the approver's 400: a filter it refuses); 3 not found
(404: no such agent); 4 refused (409: the transition is not allowed, and other 4xx); 5 the
token was refused (401/403). Messages go to standard error, never with the token.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from approver.cli import render
from approver.cli.client import AdminClient, ApiError, Unreachable
from approver.cli.config import ClientConfigError, Overrides, resolve

EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_UNAUTHORIZED = (
    0,
    1,
    2,
    3,
    4,
    5,
)
#: Exit code -> meaning, for the help text and the docs.
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_UNAVAILABLE: "the approver could not be reached, or answered 5xx/429",
    EXIT_USAGE: "usage or configuration error (also the approver's 400)",
    EXIT_NOT_FOUND: "no such agent (404)",
    EXIT_CONFLICT: "refused: the transition is not allowed (409) or another 4xx",
    EXIT_UNAUTHORIZED: "the token was refused (401/403)",
}
EPILOG = "exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())
AGENT_STATUSES = ("pending", "active", "inactive", "rejected")
APPROVAL_METHODS = ("manual", "namespace", "api_key", "service_account")
ACTIONS = {"approve": "approved", "reject": "rejected", "revoke": "revoked"}

Clock = Callable[[], datetime]
StopHook = Callable[[], bool]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _boolean(text: str) -> str:
    if text not in ("true", "false"):
        raise argparse.ArgumentTypeError("give true or false")
    return text


def connection_parent() -> argparse.ArgumentParser:
    """The connection flags (defaults suppressed, so that they may stand before or after the
    subcommand)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection to a running approver")
    group.add_argument(
        "--config-file",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="client config file (default: $AGENT_BOOTSTRAP_CLIENT_CONFIG, else "
        "~/.config/agent-bootstrap/config.yaml)",
    )
    group.add_argument("--context", default=argparse.SUPPRESS, help="context of the config file")
    group.add_argument(
        "--server", default=argparse.SUPPRESS, metavar="URL", help="https://host:port"
    )
    group.add_argument(
        "--certificate-authority",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="PEM CA the approver's certificate chains to (default: the system's)",
    )
    group.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        default=argparse.SUPPRESS,
        help="do not verify the approver's certificate (never with a CA)",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="file holding the admin bearer token (mode 0600)",
    )
    return parent


def _output(parser: argparse.ArgumentParser, choices: Sequence[str]) -> None:
    parser.add_argument(
        "-o", "--output", choices=choices, default=None, help="output format (default: a table)"
    )


def configure_agents(parser: argparse.ArgumentParser) -> None:
    """Add ``list``/``get``/``approve``/``reject``/``revoke``/``delete``/``bulk-approve`` to
    ``parser`` (the approver's ``agents`` subcommand, or ``kubectl-agents`` itself)."""
    connection = connection_parent()
    commands = parser.add_subparsers(
        dest="agents_command",
        metavar="{list,get,approve,reject,revoke,delete,bulk-approve}",
        required=True,
    )
    listing = commands.add_parser(
        "list",
        parents=[connection],
        help="list agents (oldest first), filtered",
        epilog=EPILOG,
    )
    listing.add_argument("--status", choices=AGENT_STATUSES, help="only agents in this status")
    listing.add_argument("-n", "--namespace", help="only agents of this namespace")
    listing.add_argument("--method", choices=APPROVAL_METHODS, help="only this approval method")
    listing.add_argument("--owner", metavar="UID", help="only agents of this controller owner UID")
    listing.add_argument(
        "--deployment", metavar="NAME", help="only agents of this Deployment (needs -n)"
    )
    listing.add_argument("--deployment-uid", metavar="UID", help="only agents of this Deployment")
    listing.add_argument(
        "--expired", type=_boolean, metavar="true|false", help="only (not) expired agents"
    )
    listing.add_argument("--limit", type=_positive_int, metavar="N", help="at most N agents")
    _output(listing, ("wide", "json", "yaml", "name"))
    listing.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="after the list, print each agent that appears or changes, until Ctrl-C",
    )
    listing.add_argument(
        "--interval",
        type=_interval,
        default=2.0,
        metavar="SECONDS",
        help="poll interval of --watch (default: 2)",
    )
    get = commands.add_parser("get", parents=[connection], help="show one agent", epilog=EPILOG)
    get.add_argument("agent_id", metavar="AGENT_ID")
    _output(get, ("wide", "json", "yaml", "name"))
    for action, done in ACTIONS.items():
        sub = commands.add_parser(
            action,
            parents=[connection],
            help=f"{action} agents (each is {done} or the command says why not)",
            epilog=EPILOG,
        )
        sub.add_argument("agent_ids", nargs="+", metavar="AGENT_ID")
        _output(sub, ("json", "yaml", "name"))
    delete = commands.add_parser(
        "delete", parents=[connection], help="delete agents' records", epilog=EPILOG
    )
    delete.add_argument("agent_ids", nargs="+", metavar="AGENT_ID")
    bulk = commands.add_parser(
        "bulk-approve",
        parents=[connection],
        help="approve every pending agent of one proven owner or Deployment",
        epilog=EPILOG,
    )
    selector = bulk.add_mutually_exclusive_group(required=True)
    selector.add_argument("--owner", metavar="UID", help="the controller owner's UID")
    selector.add_argument("--deployment-uid", metavar="UID", help="the Deployment's UID")
    selector.add_argument("--deployment", metavar="NAME", help="the Deployment's name (needs -n)")
    bulk.add_argument("-n", "--namespace", help="only agents of this namespace")
    _output(bulk, ("json", "yaml", "name"))


def add_agents_parser(commands: Any) -> None:
    """Register ``agents`` on the approver's subcommands (``parser.add_subparsers()``)."""
    parser = commands.add_parser(
        "agents",
        parents=[connection_parent()],
        help="(running approver) list, approve, reject, revoke, delete agents",
        description="Manage agents through a running approver's admin API (HTTPS).",
        epilog=EPILOG,
    )
    configure_agents(parser)


def add_audit_list_parser(audit_commands: Any) -> None:
    """Register ``list`` on the approver's ``audit`` subcommands."""
    parser = audit_commands.add_parser(
        "list",
        parents=[connection_parent()],
        help="(running approver) list stored audit events through the admin API",
        epilog=EPILOG,
    )
    parser.add_argument("--event", help="e.g. agent.register, admin.approve")
    parser.add_argument("--agent-id", metavar="AGENT_ID")
    parser.add_argument("--actor")
    parser.add_argument("--reason")
    parser.add_argument("--security", type=_boolean, metavar="true|false")
    parser.add_argument("--since", metavar="RFC3339")
    parser.add_argument("--until", metavar="RFC3339")
    parser.add_argument("--order", choices=("asc", "desc"), default=None)
    parser.add_argument(
        "--limit", type=_positive_int, default=100, metavar="N", help="at most N (100)"
    )
    _output(parser, ("json", "yaml"))


def is_client_command(args: argparse.Namespace) -> bool:
    """Whether ``args`` (the approver's parsed command line) is one of this module's."""
    return args.command == "agents" or (
        args.command == "audit" and getattr(args, "audit_command", None) == "list"
    )


def overrides(args: argparse.Namespace) -> Overrides:
    """The connection flags of ``args``."""
    return Overrides(
        config_file=getattr(args, "config_file", None),
        context=getattr(args, "context", None),
        server=getattr(args, "server", None),
        certificate_authority=getattr(args, "certificate_authority", None),
        insecure_skip_tls_verify=getattr(args, "insecure_skip_tls_verify", False),
        token_file=getattr(args, "token_file", None),
    )


def _query(pairs: Mapping[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in pairs.items() if value is not None}


def agent_filters(args: argparse.Namespace) -> dict[str, str]:
    """The admin API's query of ``agents list``."""
    return _query(
        {
            "status": args.status,
            "namespace": args.namespace,
            "method": args.method,
            "owner": args.owner,
            "deployment": args.deployment,
            "deploymentUid": args.deployment_uid,
            "expired": args.expired,
        }
    )


def audit_filters(args: argparse.Namespace) -> dict[str, str]:
    """The admin API's query of ``audit list``."""
    return _query(
        {
            "event": args.event,
            "agentId": args.agent_id,
            "actor": args.actor,
            "reason": args.reason,
            "security": args.security,
            "since": args.since,
            "until": args.until,
            "order": args.order,
        }
    )


def exit_code(error: ApiError) -> int:
    """The exit code of an API error (module docstring)."""
    if error.status in (401, 403):
        return EXIT_UNAUTHORIZED
    if error.status == 404:
        return EXIT_NOT_FOUND
    if error.status in (400, 413, 415, 422):
        return EXIT_USAGE
    if error.status == 429 or error.status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_CONFLICT


class Runner:
    """One client command: parsed ``args`` in, lines on ``out``/``err``, an exit code out."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        prog: str,
        out: TextIO,
        err: TextIO,
        clock: Clock,
        stop: StopHook | None,
    ) -> None:
        self.args = args
        self.prog = prog
        self.out = out
        self.err = err
        self.clock = clock
        self.stop = stop

    def print(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def fail(self, message: str) -> None:
        print(f"{self.prog}: {message}", file=self.err, flush=True)

    def api_failure(self, error: ApiError, subject: str | None = None) -> int:
        about = f" ({render.agent_name(subject)})" if subject is not None else ""
        self.fail(
            f"{error.status} {render.safe_text(error.code)}: {render.safe_text(error.message)}"
            + about
        )
        return exit_code(error)

    def document(self, body: object) -> None:
        """``-o json`` or ``-o yaml`` of ``body``."""
        fmt = self.args.output
        self.print(render.to_json(body) if fmt == "json" else render.to_yaml(body))

    async def run(self, client: AdminClient) -> int:
        command = self.args.agents_command if self.args.command != "audit" else "audit"
        if command == "list":
            return await self.list(client)
        if command == "get":
            return await self.get(client)
        if command in ACTIONS:
            return await self.act(client, command)
        if command == "delete":
            return await self.delete(client)
        if command == "bulk-approve":
            return await self.bulk_approve(client)
        return await self.audit(client)

    def agent_lines(self, agents: Sequence[Mapping[str, Any]]) -> list[str]:
        if self.args.output == "name":
            return [render.agent_name(a.get("agentId")) for a in agents]
        return render.agents_table(agents, now=self.clock(), wide=self.args.output == "wide")

    async def list(self, client: AdminClient) -> int:
        filters = agent_filters(self.args)
        agents = await client.list_agents(filters, limit=self.args.limit)
        if self.args.output in ("json", "yaml"):
            if not self.args.watch:
                self.document({"agents": agents})
            else:
                for agent in agents:
                    self.print(render.json_line(agent))
        elif agents:
            for line in self.agent_lines(agents):
                self.print(line)
        else:
            print("No agents found.", file=self.err, flush=True)
        if self.args.watch:
            return await self.watch(client, filters, agents)
        return EXIT_OK

    async def watch(
        self, client: AdminClient, filters: Mapping[str, str], agents: Sequence[Mapping[str, Any]]
    ) -> int:
        """Poll the list; print each agent that appears, changes, or leaves the selection (its
        current state, ``deleted`` when gone). Returns when ``stop`` says so (tests) or on
        Ctrl-C (:func:`run` turns KeyboardInterrupt into exit 0)."""
        wide = self.args.output == "wide"
        headers = render.WIDE_COLUMNS if wide else render.AGENT_COLUMNS
        rows = [render.agent_row(a, now=self.clock(), wide=wide) for a in agents]
        widths = render.column_widths(headers, rows)
        known = {str(a.get("agentId")): dict(a) for a in agents}
        while self.stop is None or not self.stop():
            await asyncio.sleep(self.args.interval)
            current = {
                str(a.get("agentId")): a
                for a in await client.list_agents(filters, limit=self.args.limit)
            }
            changed = [a for key, a in current.items() if _version(known.get(key)) != _version(a)]
            for key in [k for k in known if k not in current]:
                try:
                    changed.append(await client.get_agent(key))
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    changed.append({**known[key], "status": "deleted"})
            for agent in changed:
                self.watch_line(agent, headers, widths, wide)
            known = {str(k): dict(a) for k, a in current.items()}
        return EXIT_OK

    def watch_line(
        self,
        agent: Mapping[str, Any],
        headers: Sequence[str],
        widths: Sequence[int],
        wide: bool,
    ) -> None:
        if self.args.output in ("json", "yaml"):
            self.print(render.json_line(agent))
        elif self.args.output == "name":
            self.print(render.agent_name(agent.get("agentId")))
        else:
            row = render.agent_row(agent, now=self.clock(), wide=wide)
            self.print(render.table(headers, [row], widths=widths, header=False)[0])

    async def get(self, client: AdminClient) -> int:
        try:
            agent = await client.get_agent(self.args.agent_id)
        except ApiError as exc:
            return self.api_failure(exc, self.args.agent_id)
        if self.args.output in ("json", "yaml"):
            self.document(agent)
        else:
            for line in self.agent_lines([agent]):
                self.print(line)
        return EXIT_OK

    async def act(self, client: AdminClient, action: str) -> int:
        code = EXIT_OK
        done: list[dict[str, Any]] = []
        for agent_id in self.args.agent_ids:
            try:
                agent = await client.act(agent_id, action)
            except ApiError as exc:
                code = code or self.api_failure(exc, agent_id)
                continue
            done.append(agent)
            if self.args.output == "name":
                self.print(render.agent_name(agent.get("agentId")))
            elif self.args.output is None:
                self.print(f"{render.agent_name(agent.get('agentId'))} {ACTIONS[action]}")
        if self.args.output in ("json", "yaml"):
            self.document({"agents": done})
        return code

    async def delete(self, client: AdminClient) -> int:
        code = EXIT_OK
        for agent_id in self.args.agent_ids:
            try:
                answer = await client.delete_agent(agent_id)
            except ApiError as exc:
                code = code or self.api_failure(exc, agent_id)
                continue
            note = (
                " (not deregistered in the control plane)"
                if answer.get("controlPlane") == "not_removed"
                else ""
            )
            self.print(f"{render.agent_name(answer.get('deleted'))} deleted{note}")
        return code

    async def bulk_approve(self, client: AdminClient) -> int:
        selector = _query(
            {
                "ownerUid": self.args.owner,
                "deploymentUid": self.args.deployment_uid,
                "deployment": self.args.deployment,
                "namespace": self.args.namespace,
            }
        )
        answer = await client.bulk_approve(selector)
        approved = [str(a) for a in answer.get("approved", [])]
        if self.args.output in ("json", "yaml"):
            self.document(answer)
        elif self.args.output == "name":
            for agent_id in approved:
                self.print(render.agent_name(agent_id))
        else:
            for agent_id in approved:
                self.print(f"{render.agent_name(agent_id)} approved")
            self.print(f"{len(approved)} agent(s) approved")
        return EXIT_OK

    async def audit(self, client: AdminClient) -> int:
        events = await client.list_audit(audit_filters(self.args), limit=self.args.limit)
        if self.args.output in ("json", "yaml"):
            self.document({"events": events})
        elif events:
            for line in render.audit_table(events):
                self.print(line)
        else:
            print("No audit events found.", file=self.err, flush=True)
        return EXIT_OK


def _version(agent: Mapping[str, Any] | None) -> tuple[object, ...] | None:
    if agent is None:
        return None
    return (agent.get("status"), agent.get("updatedAt"), agent.get("approvalMethod"))


def run(
    args: argparse.Namespace,
    *,
    prog: str,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Clock | None = None,
    stop: StopHook | None = None,
) -> int:
    """Run a parsed client command against the approver its flags and config file name.

    Returns the exit code (module docstring); never raises for a refused configuration, an
    unreachable approver or an API error (each is a message on ``err``). ``clock`` gives the
    time ages are counted to (default: now, UTC). ``stop`` is asked
    before each ``--watch`` poll (a test's way to end it); Ctrl-C ends a watch with 0 and any
    other command with 130.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    runner = Runner(args, prog=prog, out=out, err=err, clock=clock or _utcnow, stop=stop)
    try:
        target = resolve(overrides(args))
    except ClientConfigError as exc:
        runner.fail(str(exc))
        return EXIT_USAGE

    async def go() -> int:
        async with AdminClient(target) as client:
            return await runner.run(client)

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return EXIT_OK if getattr(args, "watch", False) else 130
    except ClientConfigError as exc:
        runner.fail(str(exc))
        return EXIT_USAGE
    except Unreachable as exc:
        runner.fail(f"the approver could not be reached: {exc}")
        return EXIT_UNAVAILABLE
    except ApiError as exc:
        return runner.api_failure(exc)
