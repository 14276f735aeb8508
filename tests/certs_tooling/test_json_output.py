"""``certs-tooling check -o json`` and ``keys list -o json``: one JSON document with the
documented, stable keys (certs_tooling.commands.check_json and keys_json), the same facts as the
text output and the same exit codes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs_tooling.cli import main
from certs_tooling.layout import Layout

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    assert main(["init", "--out", str(tmp_path / "pki"), "--local"]) == 0
    return Layout(tmp_path / "pki")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


class TestCheck:
    def test_clean_folder(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        code, text = run(capsys, "check", "--out", str(folder.root))
        json_code, out = run(capsys, "check", "--out", str(folder.root), "-o", "json")
        report = json.loads(out)
        assert (code, json_code) == (0, 0)
        assert list(report) == ["result", "checks", "findings"]
        assert (report["result"], report["checks"]) == ("OK", len(report["findings"]))
        assert all(list(f) == ["level", "subject", "message"] for f in report["findings"])
        # The same findings as the text report, line for line.
        lines = text.splitlines()
        assert lines[-1] == f"{report['checks']} checks: OK"
        assert [f"{f['level']:<4}  {f['subject']}: {f['message']}" for f in report["findings"]] == (
            lines[:-1]
        )

    def test_a_failure_is_in_the_document_and_the_exit_code(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        folder.webhook_key.write_bytes(folder.approver_key.read_bytes())
        code, out = run(capsys, "check", "--out", str(folder.root), "--output", "json")
        report = json.loads(out)
        assert code == 1
        assert report["result"] == "FAIL"
        failed = [f for f in report["findings"] if f["level"] == "FAIL"]
        assert [(f["subject"], f["message"]) for f in failed] == [
            (folder.webhook_key.name, f"does not belong to {folder.webhook_cert.name}")
        ]

    def test_unknown_format_is_a_usage_error(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(capsys, "check", "--out", str(folder.root), "-o", "xml")[0] == 2


class TestKeysList:
    def test_keys(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["keys", "add", "--out", str(folder.root)]) == 0
        code, out = run(capsys, "keys", "list", "--out", str(folder.root), "-o", "json")
        assert code == 0
        keys = json.loads(out)["keys"]
        assert [k["state"] for k in keys] == ["active", "pending"]
        for key in keys:
            assert list(key) == [
                "kid",
                "state",
                "createdAt",
                "activatedAt",
                "deactivatedAt",
                "retiredAt",
                "retirableAt",
            ]
            assert RFC3339.fullmatch(key["createdAt"])
            assert (key["deactivatedAt"], key["retiredAt"], key["retirableAt"]) == (
                None,
                None,
                None,
            )
        assert RFC3339.fullmatch(keys[0]["activatedAt"])
        assert keys[1]["activatedAt"] is None
        text = run(capsys, "keys", "list", "--out", str(folder.root))[1].splitlines()
        assert [line.split()[0] for line in text[1:]] == [k["kid"] for k in keys]

    def test_an_inactive_key_has_its_retirable_time(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["keys", "add", "--out", str(folder.root)]) == 0
        _, out = run(capsys, "keys", "list", "--out", str(folder.root), "-o", "json")
        pending = json.loads(out)["keys"][1]["kid"]
        assert main(["keys", "activate", pending, "--out", str(folder.root)]) == 0
        _, out = run(capsys, "keys", "list", "--out", str(folder.root), "-o", "json")
        old = json.loads(out)["keys"][0]
        assert old["state"] == "inactive"
        deactivated = datetime.fromisoformat(old["deactivatedAt"].replace("Z", "+00:00"))
        retirable = datetime.fromisoformat(old["retirableAt"].replace("Z", "+00:00"))
        assert retirable > deactivated >= datetime(2026, 1, 1, tzinfo=UTC)
