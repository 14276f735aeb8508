"""The admin client (``agent-bootstrap-approver agents ...``, ``audit list``, ``kubectl-agents``)
against a real approver serving HTTPS (the test CA, SQLite, an admin tokens file), with agents
registered through ``POST /api/v1/agents/register`` (issue 14, item 5).

The approver runs in the test's event loop; each command line runs in a thread
(``asyncio.to_thread``), as it runs its own event loop, printing into pytest's capture.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from approver import __main__ as approver_main
from approver.cli import commands as client_commands
from approver.cli import kubectl
from approver.config import ApproverSettings
from approver.serve import serve
from bootstrap_token import SigningKey
from demo.stack import free_port
from tests.approver.helpers import (
    AGENT_ID_PREFIX,
    CLUSTER,
    GENERATE_NAME,
    OWNER_UID,
    REPLICASET,
    TRUST,
    mint_token,
    registration_body,
)
from tests.conftest import Pki

ADMIN_TOKEN = "adm-" + "Vq3Lx8Rt6Nw2Zp5Kc9Hs4Fb7Jm1Dg0Ye"
WRONG_TOKEN = "adm-" + "Wrong0Wrong1Wrong2Wrong3Wrong4Wrong5"
PROG = "agent-bootstrap-approver"
#: Two pods of the StreamSpace ReplicaSet (a token each: owner proven) and one that sent none.
FIRST = f"{AGENT_ID_PREFIX}-{GENERATE_NAME}aaaaa"
SECOND = f"{AGENT_ID_PREFIX}-{GENERATE_NAME}bbbbb"
STRANGER = "docker-host-7"


@dataclass
class Approver:
    """A running approver and a client config file that reaches it (context ``test``)."""

    port: int
    server: str
    config: Path
    token_file: Path
    tmp: Path
    pki: Pki
    client_ssl: ssl.SSLContext

    async def register(self, agent_id: str, *, token: bool = True) -> int:
        headers = {}
        if token:
            key = SigningKey.from_file(self.pki.signing_key)
            headers["X-Agent-API-Key"] = mint_token(key, now=int(time.time()))
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.server}/api/v1/agents/register",
                json=registration_body(agent_id),
                headers=headers,
                ssl=self.client_ssl,
            ) as response,
        ):
            return response.status


def write_secret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def write_config(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No client configuration from the machine running the tests."""
    monkeypatch.delenv("AGENT_BOOTSTRAP_CLIENT_CONFIG", raising=False)
    monkeypatch.delenv("AGENT_BOOTSTRAP_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
async def approver(
    pki: Pki, tmp_path: Path, client_ssl: ssl.SSLContext, client_env: None
) -> AsyncIterator[Approver]:
    tokens = write_secret(tmp_path / "admin-tokens", f"ops:{ADMIN_TOKEN}\n")
    settings = ApproverSettings(
        trust=TRUST,  # autoApprove off: every agent waits, a token's owner recorded
        token={"jwks_file": pki.jwks, "clusters": [CLUSTER]},
        agent_id_prefix=AGENT_ID_PREFIX,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}",
        admin_tokens_file=tokens,
        tls_cert_file=pki.approver_cert,
        tls_key_file=pki.approver_key,
        host="127.0.0.1",
        port=free_port(),
    )
    server = f"https://localhost:{settings.port}"
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop))
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as session:
        while True:
            if task.done():
                task.result()
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(f"{server}/healthz", ssl=client_ssl) as response:
                    if response.status == 200:
                        break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    token_file = write_secret(tmp_path / "admin.token", ADMIN_TOKEN + "\n")
    config = write_config(
        tmp_path / "config.yaml",
        {
            "current-context": "test",
            "contexts": [
                {
                    "name": "test",
                    "server": server,
                    "certificate-authority": str(pki.ca_cert),
                    "token-file": "admin.token",  # relative to the config file
                }
            ],
        },
    )
    try:
        yield Approver(settings.port, server, config, token_file, tmp_path, pki, client_ssl)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


@pytest.fixture
async def registered(approver: Approver) -> Approver:
    """FIRST and SECOND (tokens of the ReplicaSet's pods) and STRANGER (no token), all pending
    (autoApprove is off), registered in this order."""
    for agent_id, token in ((FIRST, True), (SECOND, True), (STRANGER, False)):
        assert await approver.register(agent_id, token=token) == 202
    return approver


async def cli(approver: Approver, *argv: str) -> int:
    """``agent-bootstrap-approver ARGV --config-file <the fixture's>`` in a thread."""
    return await asyncio.to_thread(
        approver_main.main, [*argv, "--config-file", str(approver.config)]
    )


def three_hours_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ages counted to 3 h 30 s after now: every AGE of an agent registered in the next 30 s
    reads ``3h`` (kubectl prints 3h0m30s as ``3h``)."""
    later = datetime.now(UTC) + timedelta(hours=3, seconds=30)
    monkeypatch.setattr(client_commands, "_utcnow", lambda: later)


OWNER = f"ReplicaSet/{REPLICASET}"


class TestList:
    async def test_table(
        self,
        registered: Approver,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        three_hours_later(monkeypatch)
        assert await cli(registered, "agents", "list") == 0
        out, err = capsys.readouterr()
        width = len(FIRST)
        owner = f"{'OWNER':<{len(OWNER)}}"
        assert out.splitlines() == [
            f"{'AGENT ID':<{width}}   STATUS    NAMESPACE     METHOD   {owner}   AGE",
            f"{FIRST}   pending   streamspace   <none>   {OWNER}   3h",
            f"{SECOND}   pending   streamspace   <none>   {OWNER}   3h",
            f"{STRANGER:<{width}}   pending   <none>        <none>   {'<none>':<{len(OWNER)}}   3h",
        ]
        assert err == ""

    async def test_wide_adds_columns(
        self,
        registered: Approver,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        three_hours_later(monkeypatch)
        assert await cli(registered, "agents", "list", "-o", "wide", "-n", "streamspace") == 0
        lines = capsys.readouterr().out.splitlines()
        owner = f"{'OWNER':<{len(OWNER)}}"
        assert lines[0] == (
            f"{'AGENT ID':<{len(FIRST)}}   STATUS    NAMESPACE     METHOD   {owner}   AGE   "
            f"DEPLOYMENT   CLUSTER     SERVICE ACCOUNT     REASON"
        )
        assert lines[1] == (
            f"{FIRST}   pending   streamspace   <none>   {OWNER}   3h    <none>       prod-eu-1   "
            "streamspace-agent   auto_approve_disabled"
        )
        assert len(lines) == 3

    async def test_json_and_filters(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert await cli(registered, "agents", "list", "-o", "json") == 0
        listed = json.loads(capsys.readouterr().out)
        assert [a["agentId"] for a in listed["agents"]] == [FIRST, SECOND, STRANGER]
        assert {a["status"] for a in listed["agents"]} == {"pending"}
        assert listed["agents"][0]["owner"]["uid"] == OWNER_UID
        assert await cli(registered, "agents", "list", "-n", "streamspace", "-o", "name") == 0
        assert capsys.readouterr().out.splitlines() == [f"agent/{FIRST}", f"agent/{SECOND}"]
        assert await cli(registered, "agents", "list", "--limit", "1", "-o", "yaml") == 0
        assert [a["agentId"] for a in yaml.safe_load(capsys.readouterr().out)["agents"]] == [FIRST]

    async def test_a_filter_the_api_refuses_is_a_usage_error(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--deployment`` without ``-n``: the approver's 400 ``invalid_filter``, exit 2."""
        assert await cli(registered, "agents", "list", "--deployment", "web") == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            f"{PROG}: 400 invalid_filter: deployment: needs namespace (names are per namespace)\n"
        )

    async def test_nothing_found(
        self, approver: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert await cli(approver, "agents", "list") == 0
        assert capsys.readouterr() == ("", "No agents found.\n")


class TestActions:
    async def test_approve_changes_the_status(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert await cli(registered, "agents", "approve", STRANGER) == 0
        assert capsys.readouterr() == (f"agent/{STRANGER} approved\n", "")
        assert await cli(registered, "agents", "get", STRANGER, "-o", "json") == 0
        agent = json.loads(capsys.readouterr().out)
        assert (agent["status"], agent["approvalMethod"], agent["approvedBy"]) == (
            "active",
            "manual",
            "ops",
        )
        assert await cli(registered, "agents", "list", "--status", "pending", "-o", "name") == 0
        assert capsys.readouterr().out.splitlines() == [f"agent/{FIRST}", f"agent/{SECOND}"]

    async def test_reject_revoke_and_conflict(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Revoking a pending agent is refused (409, exit 4); reject works; -o json."""
        assert await cli(registered, "agents", "revoke", FIRST) == 4
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(f"{PROG}: 409 transition_not_allowed: ")
        assert err.endswith(f"(agent/{FIRST})\n")
        assert await cli(registered, "agents", "reject", FIRST, "-o", "json") == 0
        answer = json.loads(capsys.readouterr().out)
        assert [(a["agentId"], a["status"]) for a in answer["agents"]] == [(FIRST, "rejected")]

    async def test_bulk_approve_by_owner(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert await cli(registered, "agents", "bulk-approve", "--owner", OWNER_UID) == 0
        assert capsys.readouterr() == (
            f"agent/{FIRST} approved\nagent/{SECOND} approved\n2 agent(s) approved\n",
            "",
        )
        assert await cli(registered, "agents", "list", "-o", "json") == 0
        statuses = {
            a["agentId"]: a["status"] for a in json.loads(capsys.readouterr().out)["agents"]
        }
        assert statuses == {FIRST: "active", SECOND: "active", STRANGER: "pending"}

    async def test_delete(self, registered: Approver, capsys: pytest.CaptureFixture[str]) -> None:
        assert await cli(registered, "agents", "delete", STRANGER, "no-such-agent") == 3
        out, err = capsys.readouterr()
        assert out == f"agent/{STRANGER} deleted\n"
        assert (
            err == f"{PROG}: 404 agent_not_found: no agent has this agentId (agent/no-such-agent)\n"
        )

    async def test_get_of_an_unknown_agent_exits_3(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert await cli(registered, "agents", "get", "no-such-agent") == 3
        assert capsys.readouterr() == (
            "",
            f"{PROG}: 404 agent_not_found: no agent has this agentId (agent/no-such-agent)\n",
        )

    async def test_get_table(
        self,
        registered: Approver,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        three_hours_later(monkeypatch)
        assert await cli(registered, "agents", "get", STRANGER) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"{'AGENT ID':<{len(STRANGER)}}   STATUS    NAMESPACE   METHOD   OWNER    AGE",
            f"{STRANGER}   pending   <none>      <none>   <none>   3h",
        ]


class TestAudit:
    async def test_audit_list_sees_the_approval(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert await cli(registered, "agents", "approve", STRANGER) == 0
        capsys.readouterr()
        assert await cli(registered, "audit", "list", "--agent-id", STRANGER, "-o", "json") == 0
        events = json.loads(capsys.readouterr().out)["events"]
        assert [e["event"] for e in events][-1] == "admin.approve"
        assert events[-1]["actor"] == "ops"
        assert await cli(registered, "audit", "list", "--order", "desc", "--limit", "2") == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == [
            "SEQ",
            "TIME",
            "EVENT",
            "DECISION",
            "REASON",
            "ACTOR",
            "AGENT",
            "ID",
        ]
        assert len(lines) == 3
        assert int(lines[1].split()[0]) > int(lines[2].split()[0])


class TestConnection:
    async def test_unreachable_server_exits_1(
        self, approver: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead = f"https://localhost:{free_port()}"
        assert await cli(approver, "agents", "list", "--server", dead) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(f"{PROG}: the approver could not be reached: {dead}: cannot connect")

    async def test_untrusted_certificate_exits_1(
        self, approver: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without the CA (the system's trust store) the test CA's certificate is refused."""
        config = write_config(
            approver.tmp / "no-ca.yaml",
            {
                "current-context": "x",
                "contexts": [{"name": "x", "server": approver.server, "token-file": "admin.token"}],
            },
        )
        assert (
            await asyncio.to_thread(
                approver_main.main, ["agents", "list", "--config-file", str(config)]
            )
            == 1
        )
        assert "TLS certificate not trusted" in capsys.readouterr().err

    async def test_bad_token_exits_5_without_the_token(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        wrong = write_secret(registered.tmp / "wrong.token", WRONG_TOKEN)
        assert await cli(registered, "agents", "list", "--token-file", str(wrong)) == 5
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            f"{PROG}: 401 unauthorized: the bearer token is not one of the configured tokens\n"
        )
        assert WRONG_TOKEN not in out + err
        assert ADMIN_TOKEN not in out + err

    async def test_token_file_readable_by_others_is_refused(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        loose = write_secret(registered.tmp / "loose.token", ADMIN_TOKEN, mode=0o644)
        assert await cli(registered, "agents", "list", "--token-file", str(loose)) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            f"{PROG}: token file {loose} has mode 0644: open to users other than its owner; "
            "refused (chmod 600 it)\n"
        )
        assert ADMIN_TOKEN not in err

    async def test_contexts_and_flags(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """current-context picks a context; --context another; --server and --token-file win
        over the context's."""
        dead = f"https://localhost:{free_port()}"
        wrong = write_secret(registered.tmp / "wrong.token", WRONG_TOKEN)
        config = write_config(
            registered.tmp / "two.yaml",
            {
                "current-context": "dead",
                "contexts": [
                    {
                        "name": "dead",
                        "server": dead,
                        "certificate-authority": str(registered.pki.ca_cert),
                        "token-file": str(registered.token_file),
                    },
                    {
                        "name": "live",
                        "server": registered.server,
                        "certificate-authority": str(registered.pki.ca_cert),
                        "token-file": str(registered.token_file),
                    },
                ],
            },
        )

        async def run(*argv: str) -> int:
            code = await asyncio.to_thread(
                approver_main.main,
                ["agents", "list", "-o", "name", "--config-file", str(config), *argv],
            )
            capsys.readouterr()
            return code

        assert await run() == 1  # current-context: dead
        assert await run("--context", "live") == 0
        assert await run("--server", registered.server) == 0  # dead's CA and token, live server
        assert await run("--context", "live", "--token-file", str(wrong)) == 5
        assert await run("--context", "nope") == 2

    async def test_the_config_file_from_the_environment(
        self,
        registered: Approver,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("AGENT_BOOTSTRAP_CLIENT_CONFIG", str(registered.config))
        code = await asyncio.to_thread(approver_main.main, ["agents", "list", "-o", "name"])
        assert code == 0
        assert capsys.readouterr().out.splitlines()[0] == f"agent/{FIRST}"

    async def test_no_configuration_at_all_exits_2(
        self, approver: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert await asyncio.to_thread(approver_main.main, ["agents", "list"]) == 2
        assert "no server" in capsys.readouterr().err


class TestWatch:
    async def test_watch_prints_a_newly_pending_agent(
        self, registered: Approver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        three_hours_later(monkeypatch)
        args = approver_main._parser().parse_args(
            [
                "agents",
                "list",
                "--status",
                "pending",
                "--watch",
                "--interval",
                "0.05",
                "--config-file",
                str(registered.config),
            ]
        )
        out = io.StringIO()
        done = threading.Event()
        late = f"{AGENT_ID_PREFIX}-{GENERATE_NAME}ccccc"
        watch = asyncio.create_task(
            asyncio.to_thread(
                client_commands.run, args, prog=PROG, out=out, err=sys.stderr, stop=done.is_set
            )
        )
        await wait_for(lambda: len(out.getvalue().splitlines()) == 4)
        assert await registered.register(late) == 202
        await wait_for(lambda: late in out.getvalue())
        # An agent that leaves the selection is printed with its new status.
        assert (
            await asyncio.to_thread(
                approver_main.main,
                ["agents", "approve", STRANGER, "--config-file", str(registered.config)],
            )
            == 0
        )
        await wait_for(lambda: len(out.getvalue().splitlines()) == 6)
        done.set()
        assert await asyncio.wait_for(watch, 10) == 0
        lines = out.getvalue().splitlines()
        width = len(FIRST)
        assert lines[0].startswith(f"{'AGENT ID':<{width}}   STATUS ")
        assert lines[4] == f"{late}   pending   streamspace   <none>   {OWNER}   3h"
        assert lines[5] == (
            f"{STRANGER:<{width}}   active    <none>        manual   {'<none>':<{len(OWNER)}}   3h"
        )

    async def test_ctrl_c_ends_the_watch_with_0(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        args = approver_main._parser().parse_args(
            ["agents", "list", "-w", "--interval", "0.05", "--config-file", str(registered.config)]
        )
        polls = 0

        def interrupt() -> bool:
            nonlocal polls
            polls += 1
            if polls == 3:
                raise KeyboardInterrupt
            return False

        code = await asyncio.to_thread(client_commands.run, args, prog=PROG, stop=interrupt)
        assert (code, polls) == (0, 3)
        out, err = capsys.readouterr()
        assert len(out.splitlines()) == 4
        assert err == ""


async def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


class TestCompletionAndPlugin:
    @pytest.mark.parametrize("shell", ["bash", "zsh"])
    def test_completion_names_the_subcommands(
        self, shell: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert approver_main.main(["completion", shell]) == 0
        script = capsys.readouterr().out
        for word in ("agents", "bulk-approve", "approve", "api-keys", "migrate", "--watch"):
            assert word in script
        assert ("complete" in script) if shell == "bash" else script.startswith("#compdef")

    def test_kubectl_agents_completion(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert kubectl.main(["completion", "bash"]) == 0
        script = capsys.readouterr().out
        assert "kubectl-agents" in script
        assert "bulk-approve" in script

    async def test_kubectl_agents_main(
        self, registered: Approver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = await asyncio.to_thread(
            kubectl.main, ["list", "-o", "name", "--config-file", str(registered.config)]
        )
        assert code == 0
        assert capsys.readouterr().out.splitlines() == [
            f"agent/{FIRST}",
            f"agent/{SECOND}",
            f"agent/{STRANGER}",
        ]

    async def test_installed_console_script(self, registered: Approver) -> None:
        """``kubectl-agents`` as installed by pyproject's [project.scripts] (what kubectl runs
        as ``kubectl agents``)."""
        script = Path(sys.executable).parent / "kubectl-agents"
        assert script.is_file(), "pip install -e . puts kubectl-agents beside python"
        process = await asyncio.create_subprocess_exec(
            str(script),
            "get",
            FIRST,
            "-o",
            "json",
            "--config-file",
            str(registered.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "AGENT_BOOTSTRAP_CLIENT_CONFIG": ""},
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err
        assert json.loads(out)["agentId"] == FIRST
