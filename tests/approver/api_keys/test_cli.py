"""The api-keys command line: create, list, revoke, rotate against a real SQLite file."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from approver.api_keys import KEY_PATTERN, generate_key
from approver.api_keys_cli import add_parser, main, parse_duration, run
from approver.store import Store

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A migrated SQLite database file's URL (the approver's whole schema: the CLI stores its
    audit events in the audit hash chain)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}"

    async def migrate() -> None:
        store = Store.open(url)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    return url


def stored_events(database: str) -> list[tuple[str, str | None]]:
    """(event, actor) of every event in the database's audit chain, in order."""
    engine = sa.create_engine(database.replace("+aiosqlite", ""))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event, actor FROM audit_events ORDER BY seq")).all()
    engine.dispose()
    return [(event, actor) for event, actor in rows]


def cli(database: str, *args: str) -> list[str]:
    return ["--database-url", database, *args]


class TestCli:
    def test_create_prints_the_key_alone(
        self, database: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """create prints only the key on stdout, the metadata and a warning on stderr."""
        code = main(
            cli(
                database,
                "create",
                "--name",
                "docker-hosts",
                "--platform",
                "docker",
                "--agent-id-pattern",
                "docker-*",
                "--max-agents",
                "5",
                "--expires-in",
                "90d",
            )
        )
        out, err = capsys.readouterr()
        assert code == 0
        key = out.strip()
        assert KEY_PATTERN.fullmatch(key)
        assert key not in err
        assert "not shown again" in err
        assert "platforms=docker" in err

    def test_list_revoke_rotate(self, database: str, capsys: pytest.CaptureFixture[str]) -> None:
        """list shows ids and states but no secret; revoke and rotate change them."""
        assert main(cli(database, "create", "--name", "a", "--json")) == 0
        created = json.loads(capsys.readouterr().out)
        key_id = created["apiKey"]["id"]
        assert main(cli(database, "create", "--name", "b")) == 0
        second = capsys.readouterr().out.strip()
        assert main(cli(database, "rotate", key_id, "--grace", "1h", "--json")) == 0
        rotated = json.loads(capsys.readouterr().out)
        assert rotated["replaced"]["state"] == "rotating"
        second_id = second.split("_")[1]
        assert main(cli(database, "revoke", second_id)) == 0
        assert "revoked" in capsys.readouterr().err
        assert main(cli(database, "list")) == 0
        listing = capsys.readouterr().out
        for secret in (created["key"], second, rotated["key"]):
            assert secret.split("_")[2] not in listing
        assert f"{key_id}  rotating" in listing
        assert f"{second_id}  revoked" in listing
        assert main(cli(database, "list", "--json")) == 0
        assert len(json.loads(capsys.readouterr().out)["apiKeys"]) == 3

    def test_exit_codes(
        self, database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """3: no such key; 4: cannot take the action; 2: bad input; 1: database not migrated."""
        assert main(cli(database, "revoke", generate_key().key_id)) == 3
        assert main(cli(database, "create", "--name", "a", "--json")) == 0
        key_id = json.loads(capsys.readouterr().out)["apiKey"]["id"]
        assert main(cli(database, "rotate", key_id)) == 0
        assert main(cli(database, "rotate", key_id)) == 4
        assert main(cli(database, "create", "--name", "a", "--max-agents", "0")) == 2
        empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        assert main(cli(empty, "list")) == 1
        assert "migrate" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            main(cli(database, "create"))  # --name is required

    @pytest.mark.parametrize(
        ("text", "seconds"), [("90d", 7776000), ("36h", 129600), ("30m", 1800), ("3600", 3600)]
    )
    def test_durations(self, text: str, seconds: int) -> None:
        """Durations take s/m/h/d units."""
        assert parse_duration(text) == seconds

    def test_python_m(self, database: str) -> None:
        """python -m approver.api_keys_cli works as a process, reading the URL from the env."""
        env = {**os.environ, "AGENT_BOOTSTRAP_APPROVER_DATABASE_URL": database}
        result = subprocess.run(
            [sys.executable, "-m", "approver.api_keys_cli", "create", "--name", "proc"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        key = result.stdout.strip()
        assert KEY_PATTERN.fullmatch(key)
        assert key not in result.stderr
        assert key.split("_")[2] not in result.stderr


def test_wiring_into_the_approver_parser(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """add_parser() registers 'api-keys' on another program's subcommands; run() executes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None)
    parser = argparse.ArgumentParser(prog="agent-bootstrap-approver", parents=[common])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", parents=[common])
    add_parser(commands, parents=[common])
    args = parser.parse_args(["api-keys", "create", "--name", "wired", "--max-agents", "2"])
    assert args.command == "api-keys"
    assert run(args, database_url=database, grace_seconds=3600) == 0
    assert KEY_PATTERN.fullmatch(capsys.readouterr().out.strip())


def test_each_change_is_stored_in_the_audit_chain_and_printed_only_when_asked(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14 item 4: the CLI's audit lines no longer go to the terminal by default, so they
    must not be lost: each change's event commits with it in the audit hash chain, as through
    the admin API; ``audit verify`` finds the chain intact."""
    assert main(cli(database, "create", "--name", "ci")) == 0
    key = capsys.readouterr().out.strip()
    assert main(cli(database, "list", "--json")) == 0
    listed = capsys.readouterr()
    assert '"event"' not in listed.err
    (meta,) = json.loads(listed.out)["apiKeys"]
    key_id = meta["id"]
    assert main(cli(database, "--print-audit", "revoke", key_id)) == 0
    err = capsys.readouterr().err
    printed = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [e["event"] for e in printed] == ["api_key.revoke"]
    assert key not in err
    events = stored_events(database)
    assert [event for event, _ in events] == ["api_key.create", "api_key.revoke"]
    assert all(actor is not None and actor.startswith("cli:") for _, actor in events)
