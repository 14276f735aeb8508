"""``certs-tooling check`` on the API server's client material (``apiserver-client``): optional,
reported like the serving material, and every mismatch is caught."""

from __future__ import annotations

import base64
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs_tooling import check_client
from certs_tooling.cli import main
from certs_tooling.findings import Level, Named
from certs_tooling.layout import Layout
from tests.certs_tooling.certs import DAY, load, run_cli
from tests.certs_tooling.test_check import NOW, check, problems

CLIENT_PREFIXES = ("apiserver-client", "admission-config")


@pytest.fixture
def served(tmp_path: Path) -> Layout:
    """A folder after ``init`` only."""
    assert main(["init", "--out", str(tmp_path / "pki"), "--local"]) == 0
    return Layout(tmp_path / "pki")


@pytest.fixture
def folder(served: Layout) -> Layout:
    """A folder after ``init`` and ``apiserver-client``."""
    assert main(["apiserver-client", "--out", str(served.root)]) == 0
    return served


def issue(folder: Layout, *extra: str) -> None:
    assert main(["apiserver-client", "--out", str(folder.root), "--force", *extra]) == 0


def stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TestOptional:
    def test_init_only_has_no_client_findings(
        self, served: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without the apiserver-client files the report is the one of an init folder."""
        code, lines = check(capsys, "--out", str(served.root))
        assert code == 0
        subjects = {line.split()[1].rstrip(":") for line in lines[:-1]}
        assert not [s for s in subjects if s.startswith(CLIENT_PREFIXES)]
        assert "OK    permissions: 7 private files are owner-only" in lines
        assert lines[-1] == "24 checks: OK"

    def test_after_apiserver_client_everything_ok(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """After apiserver-client every client check is there and OK (exit 0)."""
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 0
        assert problems(lines) == []
        client = [line for line in lines if " apiserver-client" in line]
        assert client == [
            f"OK    apiserver-client-ca.crt: {client[0].split(': ', 1)[1]}",
            "OK    apiserver-client-ca.crt: is a CA (cA, keyCertSign)",
            "OK    apiserver-client-ca.key: matches apiserver-client-ca.crt",
            "OK    apiserver-client-ca-bundle.crt: contains apiserver-client-ca.crt",
            f"OK    apiserver-client.crt: {client[4].split(': ', 1)[1]}",
            "OK    apiserver-client.crt: is a clientAuth leaf",
            "OK    apiserver-client.key: matches apiserver-client.crt",
            "OK    apiserver-client.crt: issued by apiserver-client-ca.crt",
            "OK    apiserver-client.crt: chains to a CA in apiserver-client-ca-bundle.crt",
            "OK    apiserver-client.kubeconfig: embeds apiserver-client.crt and its key (2 users)",
        ]
        assert client[0].startswith("OK    apiserver-client-ca.crt: valid until ")
        assert client[4].startswith("OK    apiserver-client.crt: valid until ")
        assert "OK    permissions: 10 private files are owner-only" in lines
        assert lines[-1] == "34 checks: OK"

    def test_real_subprocess_run(self, folder: Layout) -> None:
        """`python -m certs_tooling check` exits 0 with the client files, 1 once one is stale."""
        assert run_cli("check", "--out", str(folder.root)).returncode == 0
        shutil.copy(folder.webhook_key, folder.apiserver_client_key)
        broken = run_cli("check", "--out", str(folder.root))
        assert broken.returncode == 1
        assert (
            "FAIL  apiserver-client.key: does not belong to apiserver-client.crt" in broken.stdout
        )


class TestExpiry:
    def test_expired_client_cert(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """A client certificate issued with a past --now and one day of validity is a FAIL."""
        past = NOW - 10 * DAY
        issue(folder, "--days", "1", "--now", str(past))
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [
            f"FAIL  apiserver-client.crt: expired at {stamp(past + DAY)} (9 days ago)"
        ]
        assert lines[-1].endswith("checks: FAIL")

    @pytest.mark.parametrize(
        ("warn_days", "fail_on_warn", "code", "level"),
        [(30, False, 0, "WARN"), (30, True, 1, "WARN"), (5, True, 0, "OK")],
    )
    def test_client_cert_near_expiry(
        self,
        folder: Layout,
        capsys: pytest.CaptureFixture[str],
        warn_days: int,
        fail_on_warn: bool,
        code: int,
        level: str,
    ) -> None:
        """10 days left warns under --warn-days 30 (exit 1 only with --fail-on-warn) and is OK
        under --warn-days 5."""
        issue(folder, "--days", "10", "--now", str(NOW))
        args = ["--out", str(folder.root), "--warn-days", str(warn_days), "--now", str(NOW + DAY)]
        got, lines = check(capsys, *args, *(["--fail-on-warn"] if fail_on_warn else []))
        assert got == code
        assert problems(lines) == (
            [f"WARN  apiserver-client.crt: expires at {stamp(NOW + 10 * DAY)} (in 9 days)"]
            if level == "WARN"
            else []
        )

    def test_client_ca_near_expiry(
        self, served: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A client CA with 10 days left warns, and so does the certificate capped at it."""
        args = ["--ca-days", "10", "--now", str(NOW)]
        assert main(["apiserver-client", "--out", str(served.root), *args]) == 0
        code, lines = check(capsys, "--out", str(served.root), "--now", str(NOW + DAY))
        assert code == 0
        until = stamp(NOW + 10 * DAY)
        assert problems(lines) == [
            f"WARN  apiserver-client-ca.crt: expires at {until} (in 9 days)",
            f"WARN  apiserver-client.crt: expires at {until} (in 9 days)",
        ]

    def test_new_ca_overlap_is_a_warning(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The two-CA bundle of --new-ca warns (exit 0) until --finish."""
        assert main(["apiserver-client", "--out", str(folder.root), "--new-ca"]) == 0
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 0
        assert problems(lines) == [
            "WARN  apiserver-client-ca-bundle.crt: holds 2 client CAs: after every API server "
            "has the new kubeconfig, run `apiserver-client --finish`",
        ]
        assert main(["apiserver-client", "--out", str(folder.root), "--finish"]) == 0
        _, lines = check(capsys, "--out", str(folder.root))
        assert problems(lines) == []


class TestMismatches:
    def test_bundle_without_the_issuing_ca(
        self, folder: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Another client CA's bundle: the webhook would refuse the API server (FAIL, exit 1)."""
        other = Layout(tmp_path / "other")
        assert main(["apiserver-client", "--out", str(other.root)]) == 0
        shutil.copy(other.apiserver_client_ca_bundle, folder.apiserver_client_ca_bundle)
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [
            "FAIL  apiserver-client-ca-bundle.crt: does not contain apiserver-client-ca.crt",
            "FAIL  apiserver-client.crt: chains to no CA in apiserver-client-ca-bundle.crt "
            "(tlsClientCaFile)",
        ]

    def test_kubeconfig_with_another_certificate(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A kubeconfig left from before a renewal embeds a stale certificate: FAIL."""
        stale = folder.apiserver_kubeconfig.read_bytes()
        issue(folder)
        folder.apiserver_kubeconfig.write_bytes(stale)
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        users = "agent-bootstrap-webhook.agent-bootstrap.svc:443, "
        users += "agent-bootstrap-webhook.agent-bootstrap.svc"
        assert problems(lines) == [
            f"FAIL  apiserver-client.kubeconfig: embeds another certificate than "
            f"apiserver-client.crt (users {users}): the API server would present it; run "
            "`apiserver-client --force`"
        ]

    def test_swapped_key(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """A serving key in place of the client key is a FAIL."""
        shutil.copy(folder.webhook_key, folder.apiserver_client_key)
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [
            "FAIL  apiserver-client.key: does not belong to apiserver-client.crt"
        ]

    @pytest.mark.parametrize(
        "name", ["apiserver-client.key", "apiserver-client-ca.key", "apiserver-client.kubeconfig"]
    )
    def test_world_readable_private_file(
        self, folder: Layout, capsys: pytest.CaptureFixture[str], name: str
    ) -> None:
        """A client key or the kubeconfig with mode 0644 is a FAIL of the permissions check."""
        (folder.root / name).chmod(0o644)
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [f"FAIL  permissions: readable by others: {name} (0644)"]

    def test_missing_file_once_client_material_exists(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With the client files in use, a missing kubeconfig is a FAIL; a missing client CA key
        is not (the certificate can still be checked)."""
        folder.apiserver_kubeconfig.unlink()
        folder.apiserver_client_ca_key.unlink()
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == ["FAIL  apiserver-client.kubeconfig: missing"]


class TestPure:
    def test_serving_certificate_as_client_certificate(self, folder: Layout) -> None:
        """A serverAuth certificate from the serving CA is neither a client leaf nor trusted."""
        inputs = check_client.ClientInputs(
            cert=Named("client.crt", folder.webhook_cert.read_bytes()),
            ca=Named("client-ca.crt", folder.apiserver_client_ca_cert.read_bytes()),
            bundle=Named("bundle.crt", folder.apiserver_client_ca_bundle.read_bytes()),
        )
        findings = check_client.run(inputs, now=datetime.now(UTC), warn_days=30)
        assert [(f.subject, f.message) for f in findings if f.level is Level.FAIL] == [
            ("client.crt", "is not a client leaf (CA, or no clientAuth EKU)"),
            ("client.crt", "not issued by client-ca.crt"),
            ("client.crt", "chains to no CA in bundle.crt (tlsClientCaFile)"),
        ]

    @pytest.mark.parametrize("data", [b": not yaml: [", b"apiVersion: v1\nusers: []\n"])
    def test_unreadable_kubeconfig(self, folder: Layout, data: bytes) -> None:
        """A kubeconfig without users entries is a FAIL, not a crash."""
        finding = check_client.kubeconfig_check(
            Named("kc", data), load(folder.apiserver_client_cert), "client.crt"
        )
        assert (finding.level, finding.message) == (
            Level.FAIL,
            "not a kubeconfig with users entries",
        )

    def test_kubeconfig_key_of_another_certificate(self, folder: Layout) -> None:
        """The right certificate with another key in client-key-data is a FAIL."""
        other = folder.webhook_key.read_bytes()
        text = folder.apiserver_kubeconfig.read_text()
        key_b64 = base64.b64encode(folder.apiserver_client_key.read_bytes()).decode()
        text = text.replace(key_b64, base64.b64encode(other).decode())
        finding = check_client.kubeconfig_check(
            Named("kc", text.encode()), load(folder.apiserver_client_cert), "client.crt"
        )
        assert finding.level is Level.FAIL
        assert finding.message.startswith("client-key-data does not belong to client.crt")
