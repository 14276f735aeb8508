"""Process logging (bootstrap_token.log_setup, issue 14 item 4): ``logFormat`` and ``logLevel``
for both services, libraries' INFO lines off, audit lines on stdout for a service and on a
command line's terminal only when asked."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap_token import AuditSink
from bootstrap_token.audit import AuditEvent
from bootstrap_token.log_setup import LogFormat, LogLevel, configure
from tests.webhook.conftest import make_settings
from webhook.process import configure_logging

ROOT = Path(__file__).resolve().parents[1]


def event() -> AuditEvent:
    return AuditEvent(
        component="approver", event="agent.register", decision="pending", reason="r", actor=None
    )


class TestJson:
    def test_one_object_per_line_with_the_usual_keys(self) -> None:
        out = io.StringIO()
        configure(log_format=LogFormat.JSON, stream=out)
        logging.getLogger("approver.store.health").warning("two\nlines \u202e reversed %d", 7)
        lines = out.getvalue().splitlines()
        assert len(lines) == 1
        assert "\u202e" not in lines[0]  # written as an escape: the line is terminal-safe
        line = json.loads(lines[0])
        assert set(line) == {"time", "level", "logger", "message"}
        assert line["level"] == "warning"
        assert line["logger"] == "approver.store.health"
        assert line["message"] == "two\nlines \u202e reversed 7"
        assert line["time"].endswith("Z")
        assert len(line["time"]) == len("2026-12-05T11:33:06.123Z")

    def test_a_traceback_is_one_field(self) -> None:
        out = io.StringIO()
        configure(log_format=LogFormat.JSON, stream=out)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("webhook").exception("failed")
        (line,) = out.getvalue().splitlines()
        parsed = json.loads(line)
        assert parsed["level"] == "error"
        assert parsed["exception"].startswith("Traceback (most recent call last):")
        assert parsed["exception"].endswith("ValueError: boom")

    def test_text_is_the_default(self) -> None:
        out = io.StringIO()
        configure(stream=out)
        logging.getLogger("approver").info("hello")
        assert out.getvalue().rstrip().endswith(" INFO approver: hello")


class TestLevels:
    def test_the_projects_level(self) -> None:
        out = io.StringIO()
        configure(level=LogLevel.WARNING, stream=out)
        logging.getLogger("approver.registration").info("not written")
        logging.getLogger("approver.registration").warning("written")
        assert out.getvalue().count("\n") == 1
        assert "written" in out.getvalue()

    def test_libraries_stay_at_warning_even_at_debug(self) -> None:
        out = io.StringIO()
        configure(level=LogLevel.DEBUG, stream=out)
        logging.getLogger("approver.store").debug("ours")
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
        logging.getLogger("sqlalchemy.engine").info("BEGIN")
        logging.getLogger("aiohttp.access").info("GET /healthz")
        logging.getLogger("alembic").warning("a library's warning")
        assert [line.split(" ", 3)[3] for line in out.getvalue().splitlines()] == [
            "approver.store: ours",
            "alembic: a library's warning",
        ]


class TestAuditLines:
    def test_a_service_writes_them_raw_on_its_audit_stream(self) -> None:
        audit, log = io.StringIO(), io.StringIO()
        configure(log_format=LogFormat.JSON, audit_stream=audit, stream=log)
        AuditSink().emit(event())
        assert json.loads(audit.getvalue())["event"] == "agent.register"
        assert log.getvalue() == ""

    def test_nowhere_unless_asked(self) -> None:
        log = io.StringIO()
        configure(audit_stream=None, stream=log)
        AuditSink().emit(event())
        assert log.getvalue() == ""


def test_webhook_settings_choose_format_and_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, logFormat="json", logLevel="debug")
    configure_logging(settings)
    logging.getLogger("webhook.server").debug("a detail")
    line = json.loads(capsys.readouterr().err.strip())
    assert (line["level"], line["message"]) == ("debug", "a detail")


def test_a_bad_value_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="logFormat"):
        make_settings(tmp_path, logFormat="xml")


def run_approver(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_BOOTSTRAP_")}
    environment["AGENT_BOOTSTRAP_APPROVER_DATABASE_URL"] = (
        f"sqlite+aiosqlite:///{tmp_path / 'approver.db'}"
    )
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "approver", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
        check=False,
    )


class TestApproverCommandLine:
    def test_migrate_prints_no_alembic_lines(self, tmp_path: Path) -> None:
        """Every start printed Alembic's seven INFO lines."""
        done = run_approver(tmp_path, "migrate")
        assert done.returncode == 0, done.stderr
        # One line: the command's own (Alembic's "Context impl", "Running upgrade" are gone).
        assert done.stderr.splitlines() == [
            f"agent-bootstrap-approver: database migrated (sqlite+aiosqlite:///"
            f"{tmp_path / 'approver.db'})"
        ]

    def test_json_lines_from_the_settings(self, tmp_path: Path) -> None:
        done = run_approver(
            tmp_path,
            "--config",
            str(tmp_path / "missing.yaml"),
            "migrate",
        )
        assert done.returncode == 2  # a bad configuration still says so plainly
        done = run_approver(
            tmp_path,
            "api-keys",
            "list",
            AGENT_BOOTSTRAP_APPROVER_LOG_FORMAT="json",
            AGENT_BOOTSTRAP_APPROVER_LOG_LEVEL="debug",
        )
        assert done.returncode == 1  # not migrated: the CLI says so on stderr
        assert "is the database migrated" in done.stderr

    def test_api_keys_print_no_audit_line_unless_asked(self, tmp_path: Path) -> None:
        """The api-keys CLI mixed audit JSON lines into its terminal output."""
        assert run_approver(tmp_path, "migrate").returncode == 0
        done = run_approver(tmp_path, "api-keys", "create", "--name", "ci")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().startswith("abk_")
        assert '"event"' not in done.stderr
        asked = run_approver(tmp_path, "--print-audit", "api-keys", "create", "--name", "ci2")
        assert asked.returncode == 0, asked.stderr
        key = asked.stdout.strip()
        events = [json.loads(line) for line in asked.stderr.splitlines() if line.startswith("{")]
        assert [e["event"] for e in events] == ["api_key.create"]
        assert key not in asked.stderr
