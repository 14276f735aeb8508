"""``certs-tooling check``: one OK/WARN/FAIL line per check, and every mismatch is caught."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs_tooling import keyfolder
from certs_tooling.certinfo import SubjectNames
from certs_tooling.cli import main
from certs_tooling.keystore import KeyStatus
from certs_tooling.layout import Component, Layout
from certs_tooling.namespaces import namespace_problem, retarget, service_namespaces
from tests.certs_tooling.certs import DAY, run_cli

NOW = int(datetime.now(UTC).timestamp())


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    assert main(["init", "--out", str(tmp_path / "pki"), "--local"]) == 0
    return Layout(tmp_path / "pki")


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["check", *args])
    return code, capsys.readouterr().out.splitlines()


def problems(lines: list[str]) -> list[str]:
    """The WARN and FAIL lines (the summary line excluded)."""
    return [line for line in lines[:-1] if not line.startswith("OK")]


class TestCleanFolder:
    def test_everything_ok(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """A fresh init folder passes every check with exit 0, one OK line per check."""
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 0
        assert problems(lines) == []
        assert lines[-1] == f"{len(lines) - 1} checks: OK"
        assert "OK    webhook-tls.key: matches webhook-tls.crt" in lines
        assert "OK    approver-tls.crt: chains to a CA in ca-bundle.crt" in lines
        assert "OK    permissions: 7 private files are owner-only" in lines
        kid = keyfolder.load(folder).state.keys[0].kid
        assert f"OK    jwks.json: contains the active signing key {kid}" in lines

    def test_rotation_in_progress_is_a_warning(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """During a CA rotation check warns (exit 0) and confirms both CAs are in the bundle."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 0
        assert problems(lines) == [
            "WARN  ca-previous.crt: CA rotation in progress: after the serving certificates "
            "are rolled out, run `rotate-ca --finish`"
        ]
        assert "OK    ca-bundle.crt: contains ca-previous.crt" in lines


class TestMismatches:
    def test_swapped_key(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """The approver's key in place of the webhook's is a FAIL (exit 1)."""
        shutil.copy(folder.approver_key, folder.webhook_key)
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [
            "FAIL  webhook-tls.key: does not belong to webhook-tls.crt",
        ]
        assert lines[-1].endswith("checks: FAIL")

    def test_cert_from_another_ca(
        self, folder: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A serving pair issued by another CA fails both the CA and the caBundle checks."""
        other = Layout(tmp_path / "other")
        assert main(["init", "--out", str(other.root), "--local"]) == 0
        for name in ("webhook-tls.crt", "webhook-tls.key", "webhook-tls.pem"):
            shutil.copy(other.root / name, folder.root / name)
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [
            "FAIL  webhook-tls.crt: not issued by ca.crt",
            "FAIL  webhook-tls.crt: chains to no CA in ca-bundle.crt (caBundle)",
        ]

    def test_expired_leaf(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """A leaf renewed with a past --now and one day of validity is reported expired."""
        past = NOW - 10 * DAY
        renew = ["renew-serving-cert", "--out", str(folder.root), "--component", "approver"]
        assert main([*renew, "--leaf-days", "1", "--now", str(past)]) == 0
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        expired_at = datetime.fromtimestamp(past + DAY, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert problems(lines) == [f"FAIL  approver-tls.crt: expired at {expired_at} (9 days ago)"]

    @pytest.mark.parametrize(
        ("warn_days", "fail_on_warn", "code", "level"),
        [(30, False, 0, "WARN"), (30, True, 1, "WARN"), (5, True, 0, "OK")],
    )
    def test_expiry_warning(
        self,
        folder: Layout,
        capsys: pytest.CaptureFixture[str],
        warn_days: int,
        fail_on_warn: bool,
        code: int,
        level: str,
    ) -> None:
        """A leaf with 10 days left warns under --warn-days 30 (exit 1 only with
        --fail-on-warn) and is OK under --warn-days 5."""
        renew = ["renew-serving-cert", "--out", str(folder.root), "--component", "webhook"]
        assert main([*renew, "--leaf-days", "10", "--now", str(NOW)]) == 0
        args = ["--out", str(folder.root), "--warn-days", str(warn_days)]
        args += ["--fail-on-warn"] if fail_on_warn else []
        got, lines = check(capsys, *args, "--now", str(NOW + DAY))
        assert got == code
        expiry = next(line for line in lines if line.startswith(f"{level:<4}  webhook-tls.crt: "))
        assert "(in 9 days)" in expiry or "(9 days left)" in expiry

    def test_jwks_missing_the_active_kid(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A jwks.json without the active signing key's kid is a FAIL (every token would fail
        with unknown_kid), and the key store notices the missing key too."""
        assert main(["keys", "add", "--out", str(folder.root)]) == 0
        state = keyfolder.load(folder).state
        active = state.active
        assert active is not None
        pending = next(r.kid for r in state.keys if r.state is KeyStatus.PENDING)
        document = json.loads(folder.jwks.read_text())
        document["keys"] = [k for k in document["keys"] if k["kid"] == pending]
        folder.jwks.write_text(json.dumps(document))
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [
            f"FAIL  jwks.json: lacks the active signing key {active.kid}: every new token "
            "would fail with unknown_kid",
            f"FAIL  keys/state.json: keys missing from the JWKS: {active.kid}",
        ]

    def test_private_material_in_jwks(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A JWKS carrying the private member d is a FAIL naming the member."""
        document = json.loads(folder.jwks.read_text())
        document["keys"][0]["d"] = "c2VjcmV0"
        folder.jwks.write_text(json.dumps(document))
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert "FAIL  jwks.json: holds private key material (members d)" in problems(lines)

    def test_signing_key_is_not_the_stores_active_key(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """signing.key holding the pending key instead of the active one is a FAIL."""
        assert main(["keys", "add", "--out", str(folder.root)]) == 0
        state = keyfolder.load(folder).state
        assert state.active is not None
        pending = next(r.kid for r in state.keys if r.state is KeyStatus.PENDING)
        shutil.copy(folder.key_file(pending), folder.signing_key)
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [
            f"FAIL  keys/state.json: active key is {state.active.kid} but signing.key is {pending}"
        ]

    def test_world_readable_key(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """A private key with mode 0644 is a FAIL naming the file and mode."""
        folder.ca_key.chmod(0o644)
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == ["FAIL  permissions: readable by others: ca.key (0644)"]

    def test_leaf_without_san(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """A serving certificate with only a CN and no subjectAltName is a FAIL."""
        ca_key = serialization.load_pem_private_key(folder.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca = x509.load_pem_x509_certificate(folder.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        folder.webhook_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        folder.webhook_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert problems(lines) == [
            "FAIL  webhook-tls.crt: no DNS/IP subjectAltName (clients ignore the CN)",
            "FAIL  webhook-tls.pem: holds another certificate than the .crt file",
        ]

    def test_missing_file(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """A missing required file is a FAIL line, not a crash."""
        folder.signing_key.unlink()
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 1
        assert "FAIL  signing.key: missing" in problems(lines)


class TestNamespace:
    """Serving certificates are issued for the Services' namespace (issue 17): the API server
    dials <service>.<namespace>.svc, so a folder for another namespace fails its TLS check."""

    def test_other_namespace_is_a_failure(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--namespace other-ns on a folder issued for agent-bootstrap: one FAIL per serving
        certificate naming the namespace it is for and the way out; exit 1."""
        code, lines = check(capsys, "--out", str(folder.root), "--namespace", "other-ns")
        assert code == 1
        advice = (
            ": the API server's TLS check fails and pods go unstamped; re-issue with "
            "`k8s-manifests --namespace other-ns --force`"
        )
        assert problems(lines) == [
            "FAIL  webhook-tls.crt: issued for namespace agent-bootstrap "
            "(agent-bootstrap-webhook.agent-bootstrap.svc), not other-ns" + advice,
            "FAIL  approver-tls.crt: issued for namespace agent-bootstrap "
            "(agent-bootstrap-approver.agent-bootstrap.svc), not other-ns" + advice,
        ]

    def test_right_namespace_is_ok(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The namespace the folder was issued for: an OK line per serving certificate."""
        code, lines = check(capsys, "--out", str(folder.root), "--namespace", "agent-bootstrap")
        assert code == 0
        assert "OK    webhook-tls.crt: issued for namespace agent-bootstrap" in lines
        assert "OK    approver-tls.crt: issued for namespace agent-bootstrap" in lines

    def test_serving_certificates_for_two_namespaces_warn(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without --namespace, a webhook and an approver certificate for different namespaces
        are a WARN (they are installed in one)."""
        retarget(folder, [Component.WEBHOOK], "other-ns", leaf_days=300, now=datetime.now(UTC))
        code, lines = check(capsys, "--out", str(folder.root))
        assert code == 0
        assert problems(lines) == [
            "WARN  namespaces: serving certificates for different namespaces: webhook-tls.crt "
            "in other-ns, approver-tls.crt in agent-bootstrap"
        ]

    def test_certificate_without_service_names_is_for_no_namespace(self) -> None:
        """Only svc.ns.svc(.cluster.local) names tell a namespace: a certificate for a URL
        (no Service name) is never a mismatch."""
        url_only = SubjectNames(dns=["webhook.example.com", "localhost"], ips=["10.0.0.1"])
        assert service_namespaces(url_only) == []
        assert namespace_problem(url_only, "any") is None
        svc = SubjectNames(dns=["a.b.svc.cluster.local", "c.d.svc", "e.f"], ips=[])
        assert service_namespaces(svc) == ["b", "d"]
        assert (
            namespace_problem(svc, "x")
            == "issued for namespaces b, d (a.b.svc.cluster.local), not x"
        )


class TestExplicitFiles:
    def test_only_the_given_files_are_checked(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With file flags, exactly the checks those files allow run."""
        code, lines = check(
            capsys,
            "--ca",
            str(folder.ca_cert),
            "--webhook-cert",
            str(folder.webhook_cert),
            "--webhook-key",
            str(folder.webhook_key),
        )
        assert code == 0
        subjects = [line.split()[1].rstrip(":") for line in lines[:-1]]
        assert set(subjects) == {
            str(folder.ca_cert),
            str(folder.webhook_cert),
            str(folder.webhook_key),
            "permissions",
        }
        assert len(lines) - 1 == 8

    def test_swapped_key_via_flags(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A mismatched pair given by flags fails the same way."""
        code, lines = check(
            capsys,
            "--webhook-cert",
            str(folder.webhook_cert),
            "--webhook-key",
            str(folder.approver_key),
        )
        assert code == 1
        assert problems(lines) == [
            f"FAIL  {folder.approver_key}: does not belong to {folder.webhook_cert}"
        ]

    @pytest.mark.parametrize("both", [False, True])
    def test_usage_errors(
        self, folder: Layout, capsys: pytest.CaptureFixture[str], both: bool
    ) -> None:
        """Neither --out nor file flags, or both, is a usage error (exit 2)."""
        args = ["--out", str(folder.root), "--ca", str(folder.ca_cert)] if both else []
        assert main(["check", *args]) == 2
        assert "usage error" in capsys.readouterr().err


def test_real_subprocess_run(folder: Layout) -> None:
    """`python -m certs_tooling check` exits 0 on a clean folder and 1 after a key swap."""
    clean = run_cli("check", "--out", str(folder.root))
    assert clean.returncode == 0, clean.stdout
    assert clean.stdout.splitlines()[-1].endswith("checks: OK")
    shutil.copy(folder.approver_key, folder.webhook_key)
    broken = run_cli("check", "--out", str(folder.root))
    assert broken.returncode == 1
    assert "FAIL  webhook-tls.key: does not belong to webhook-tls.crt" in broken.stdout
