"""``certs-tooling agent-ca``: the CA the approver signs agents' client certificates with; init,
an overlap rotation, a finish that waits out the agent certificates' lifetime, check and
k8s-manifests."""

from __future__ import annotations

import base64
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from bootstrap_token.x509_profiles import LEAF_KEY_USAGE
from certs_tooling import agent_ca
from certs_tooling.cli import main
from certs_tooling.errors import RotationError
from certs_tooling.files import mode_of, write_file
from certs_tooling.layout import Layout
from tests.certs_tooling.certs import DAY, T0, assert_is_ca, load, load_all, run_cli

#: When the tests rotate: one day after T0 (2025-01-02T00:00:00Z).
T_ROTATE = T0 + DAY
#: Five minutes: pki.CLOCK_SKEW.
SKEW = 300


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def agent_ca_cli(*args: str) -> int:
    return main(["agent-ca", *args])


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    """A folder with an agent CA made at T0."""
    out = tmp_path / "pki"
    assert agent_ca_cli("init", "--out", str(out), "--now", str(T0)) == 0
    return Layout(out)


@pytest.fixture
def rotated(folder: Layout) -> Layout:
    """The same folder after `agent-ca rotate` at T_ROTATE."""
    assert agent_ca_cli("rotate", "--out", str(folder.root), "--now", str(T_ROTATE)) == 0
    return folder


def private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def agent_certificate(layout: Layout, now: datetime, name: str = "agent-1") -> x509.Certificate:
    """What the approver issues an approved agent: a clientAuth-only leaf with a URI SAN naming
    the agent, signed with the folder's current agent-ca.key, valid 24 h."""
    ca = load(layout.agent_ca_cert)
    ca_key = private_key(layout.agent_ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=24))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            LEAF_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:agent-bootstrap:agent:{name}")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def verify_client(trusted: list[x509.Certificate], leaf: x509.Certificate, now: datetime) -> None:
    """Verify ``leaf`` as a TLS client certificate against ``trusted`` (RFC 5280 path
    validation by cryptography's verifier). Raises VerificationError when it does not chain."""
    verifier = PolicyBuilder().store(Store(trusted)).time(now).build_client_verifier()
    verified = verifier.verify(leaf, [])
    assert verified.chain[0] == leaf


class TestInit:
    def test_writes_the_three_files_with_their_modes(self, folder: Layout) -> None:
        """agent-ca.crt 0644, agent-ca.key 0600, agent-ca-bundle.crt 0644, and nothing else (no
        agent-ca-previous.crt); the folder is 0700."""
        assert sorted(p.name for p in folder.root.iterdir()) == [
            "agent-ca-bundle.crt",
            "agent-ca.crt",
            "agent-ca.key",
        ]
        assert mode_of(folder.agent_ca_cert) == 0o644
        assert mode_of(folder.agent_ca_key) == 0o600
        assert mode_of(folder.agent_ca_bundle) == 0o644
        assert mode_of(folder.root) == 0o700

    def test_a_pathlen_0_p256_ca_with_its_name_and_validity(self, folder: Layout) -> None:
        """BasicConstraints ca=True pathlen=0 critical, KeyUsage keyCertSign + cRLSign critical,
        CN agent-bootstrap-agent-ca, P-256, notBefore T0 - 5 min, notAfter T0 + 5 years."""
        ca = load(folder.agent_ca_cert)
        assert_is_ca(ca)
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        assert (ku.key_cert_sign, ku.crl_sign, ku.digital_signature) == (True, True, False)
        assert ca.subject.rfc4514_string() == "CN=agent-bootstrap-agent-ca"
        public = ca.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == "secp256r1"
        assert ca.not_valid_before_utc == at(T0 - SKEW)
        assert ca.not_valid_after_utc == at(T0 + 5 * 365 * DAY)

    def test_key_matches_and_bundle_is_the_ca(self, folder: Layout) -> None:
        ca = load(folder.agent_ca_cert)
        public = ca.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert spki(private_key(folder.agent_ca_key).public_key()) == spki(public)
        assert load_all(folder.agent_ca_bundle) == [ca]
        assert folder.agent_ca_bundle.read_bytes() == folder.agent_ca_cert.read_bytes()

    def test_days(self, tmp_path: Path) -> None:
        assert agent_ca_cli("init", "--out", str(tmp_path), "--days", "30", "--now", str(T0)) == 0
        assert load(Layout(tmp_path).agent_ca_cert).not_valid_after_utc == at(T0 + 30 * DAY)

    def test_separate_from_the_serving_ca(self, tmp_path: Path) -> None:
        """In a folder of `init`, the agent CA is a CA of its own and leaves ca.* alone."""
        assert main(["init", "--out", str(tmp_path), "--local"]) == 0
        layout = Layout(tmp_path)
        before = {p: p.read_bytes() for p in (layout.ca_cert, layout.ca_key, layout.ca_bundle)}
        assert agent_ca_cli("init", "--out", str(tmp_path)) == 0
        assert {p: p.read_bytes() for p in before} == before
        assert load(layout.agent_ca_cert).public_key() != load(layout.ca_cert).public_key()
        assert load(layout.agent_ca_cert).subject != load(layout.ca_cert).subject

    def test_second_init_is_refused(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A second init exits 1, names the files and the ways out, and changes nothing."""
        before = {p: p.read_bytes() for p in folder.root.iterdir()}
        capsys.readouterr()
        assert agent_ca_cli("init", "--out", str(folder.root)) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(
            f"certs-tooling agent-ca init: {folder.root} already holds agent-ca.crt, "
            "agent-ca.key, agent-ca-bundle.crt; use `agent-ca rotate`"
        )
        assert {p: p.read_bytes() for p in folder.root.iterdir()} == before

    def test_force_replaces_the_ca_and_warns(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--force: a new CA and key, the bundle holds only it, and stderr says the old one's
        agent certificates are refused."""
        old_ca, old_key = load(folder.agent_ca_cert), folder.agent_ca_key.read_bytes()
        capsys.readouterr()
        assert agent_ca_cli("init", "--out", str(folder.root), "--force") == 0
        new_ca = load(folder.agent_ca_cert)
        assert new_ca != old_ca
        assert folder.agent_ca_key.read_bytes() != old_key
        assert load_all(folder.agent_ca_bundle) == [new_ca]
        assert "WARNING: --force: the previous agent CA was replaced without an overlap" in (
            capsys.readouterr().err
        )

    def test_force_abandons_a_running_rotation(self, rotated: Layout) -> None:
        assert agent_ca_cli("init", "--out", str(rotated.root), "--force") == 0
        assert not rotated.agent_ca_previous.exists()
        assert load_all(rotated.agent_ca_bundle) == [load(rotated.agent_ca_cert)]


class TestRotate:
    def test_bundle_holds_old_and_new(self, folder: Layout) -> None:
        """agent-ca-previous.crt is the old CA, the bundle [old, new], agent-ca.crt a new CA with
        a distinct subject (the CN plus the UTC time) whose key is agent-ca.key; modes kept."""
        old_ca = load(folder.agent_ca_cert)
        assert agent_ca_cli("rotate", "--out", str(folder.root), "--now", str(T_ROTATE)) == 0
        new_ca = load(folder.agent_ca_cert)
        assert_is_ca(new_ca)
        assert new_ca != old_ca
        assert new_ca.subject != old_ca.subject
        assert new_ca.subject.rfc4514_string() == "CN=agent-bootstrap-agent-ca 20250102T000000Z"
        assert load(folder.agent_ca_previous) == old_ca
        assert load_all(folder.agent_ca_bundle) == [old_ca, new_ca]
        public = new_ca.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert spki(private_key(folder.agent_ca_key).public_key()) == spki(public)
        assert new_ca.not_valid_after_utc == at(T_ROTATE + 5 * 365 * DAY)
        assert mode_of(folder.agent_ca_key) == 0o600
        assert mode_of(folder.agent_ca_previous) == 0o644

    def test_old_and_new_agent_certificates_verify_against_the_bundle(self, folder: Layout) -> None:
        """An agent certificate the old CA signed just before the rotation and one the new CA
        signs after it both verify as client certificates against the overlap bundle; against
        the new CA alone the old one does not."""
        now = at(T_ROTATE)
        old_leaf = agent_certificate(folder, now - timedelta(minutes=1), "agent-old")
        assert agent_ca_cli("rotate", "--out", str(folder.root), "--now", str(T_ROTATE)) == 0
        new_leaf = agent_certificate(folder, now, "agent-new")
        bundle = load_all(folder.agent_ca_bundle)
        verify_client(bundle, old_leaf, now + timedelta(hours=1))
        verify_client(bundle, new_leaf, now + timedelta(hours=1))
        old_leaf.verify_directly_issued_by(load(folder.agent_ca_previous))
        new_leaf.verify_directly_issued_by(load(folder.agent_ca_cert))
        with pytest.raises(VerificationError):
            verify_client([load(folder.agent_ca_cert)], old_leaf, now + timedelta(hours=1))

    def test_old_ca_key_is_not_kept(self, folder: Layout) -> None:
        old_key = folder.agent_ca_key.read_bytes()
        assert agent_ca_cli("rotate", "--out", str(folder.root), "--now", str(T_ROTATE)) == 0
        for path in folder.root.iterdir():
            assert old_key not in path.read_bytes(), path.name

    def test_write_order_never_signs_with_an_untrusted_ca(
        self, folder: Layout, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Files are written previous, bundle, key, cert; after every write the certificate on
        disk is in the bundle on disk, and a cert/key pair on disk that matches is in it too."""
        real_write = write_file
        order: list[str] = []

        def write(path: Path, data: bytes, *, private: bool) -> None:
            real_write(path, data, private=private)
            order.append(path.name)
            bundle = load_all(folder.agent_ca_bundle)
            cert = load(folder.agent_ca_cert)
            assert cert in bundle, f"after {path.name}"

        monkeypatch.setattr(agent_ca, "write_file", write)
        agent_ca.rotate(folder, now=at(T_ROTATE))
        assert order == [
            "agent-ca-previous.crt",
            "agent-ca-bundle.crt",
            "agent-ca.key",
            "agent-ca.crt",
        ]

    def test_second_rotate_is_refused(
        self, rotated: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        before = {p: p.read_bytes() for p in rotated.root.iterdir()}
        capsys.readouterr()
        assert agent_ca_cli("rotate", "--out", str(rotated.root)) == 1
        assert capsys.readouterr().err == (
            "certs-tooling agent-ca rotate: an agent CA rotation is already running "
            "(agent-ca-previous.crt exists); finish it with `agent-ca finish` first\n"
        )
        assert {p: p.read_bytes() for p in rotated.root.iterdir()} == before

    def test_refused_without_an_agent_ca(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert agent_ca_cli("rotate", "--out", str(tmp_path)) == 1
        assert "no agent CA to rotate (agent-ca.crt is missing" in capsys.readouterr().err
        assert list(tmp_path.iterdir()) == []

    def test_refused_when_the_key_does_not_match(
        self, folder: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = tmp_path / "other"
        assert agent_ca_cli("init", "--out", str(other)) == 0
        shutil.copy(Layout(other).agent_ca_key, folder.agent_ca_key)
        capsys.readouterr()
        assert agent_ca_cli("rotate", "--out", str(folder.root)) == 1
        assert "the private key does not belong to the certificate" in capsys.readouterr().err
        assert not folder.agent_ca_previous.exists()

    def test_refused_within_the_same_second_as_the_last_rotation(
        self, rotated: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A new CA must have another subject than the current one: rotating again within the
        same second (after a forced finish) is refused."""
        base = ["--out", str(rotated.root), "--now", str(T_ROTATE)]
        assert agent_ca_cli("finish", *base, "--force") == 0
        capsys.readouterr()
        assert agent_ca_cli("rotate", *base) == 1
        assert "would have the current one's subject" in capsys.readouterr().err
        assert agent_ca_cli("rotate", "--out", str(rotated.root), "--now", str(T_ROTATE + 1)) == 0


class TestFinish:
    #: The first second finish is allowed: the rotation + 24 h + 5 min of clock skew.
    SAFE = T_ROTATE + DAY + SKEW

    def finish(self, layout: Layout, now: int, *extra: str) -> int:
        return agent_ca_cli("finish", "--out", str(layout.root), "--now", str(now), *extra)

    @pytest.mark.parametrize("now", [T_ROTATE, T_ROTATE + DAY, SAFE - 1])
    def test_refused_inside_the_window(
        self, rotated: Layout, now: int, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Before rotation + 24 h + 5 min: exit 1, saying when it becomes safe; the overlap
        bundle and agent-ca-previous.crt stay."""
        bundle = rotated.agent_ca_bundle.read_bytes()
        capsys.readouterr()
        assert self.finish(rotated, now) == 1
        err = capsys.readouterr().err
        assert err.startswith("certs-tooling agent-ca finish: too early to finish")
        assert "just before the rotation (2025-01-02T00:00:00Z)" in err
        assert "may be in use until 2025-01-03T00:05:00Z" in err
        assert "run `agent-ca finish` from 2025-01-03T00:05:00Z on, or with --force" in err
        assert rotated.agent_ca_bundle.read_bytes() == bundle
        assert rotated.agent_ca_previous.exists()

    def test_after_the_window_the_bundle_holds_the_new_ca_only(
        self, rotated: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        new_ca = load(rotated.agent_ca_cert)
        capsys.readouterr()
        assert self.finish(rotated, self.SAFE) == 0
        captured = capsys.readouterr()
        assert captured.err == ""
        assert load_all(rotated.agent_ca_bundle) == [new_ca]
        assert rotated.agent_ca_bundle.read_bytes() == rotated.agent_ca_cert.read_bytes()
        assert mode_of(rotated.agent_ca_bundle) == 0o644
        assert not rotated.agent_ca_previous.exists()
        fingerprint = new_ca.fingerprint(hashes.SHA256()).hex()[:16]
        assert captured.out.startswith(
            "agent CA rotation finished: agent-ca-bundle.crt now holds only "
            f"agent-bootstrap-agent-ca 20250102T000000Z (sha256 {fingerprint}); "
            "agent-ca-previous.crt removed.\nNext steps:\n  1. Give the approvers "
        )

    def test_a_shorter_lifetime_shortens_the_window(self, rotated: Layout) -> None:
        lifetime = ["--max-certificate-lifetime-seconds", "3600"]
        assert self.finish(rotated, T_ROTATE + 3600 + SKEW - 1, *lifetime) == 1
        assert self.finish(rotated, T_ROTATE + 3600 + SKEW, *lifetime) == 0
        assert not rotated.agent_ca_previous.exists()

    def test_force_finishes_early_and_warns(
        self, rotated: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert self.finish(rotated, T_ROTATE + 60, "--force") == 0
        assert capsys.readouterr().err == (
            "WARNING: --force: finished although agent certificates signed by the previous "
            "agent CA may be in use until 2025-01-03T00:05:00Z; they are refused once the "
            "approvers read the new bundle.\n"
        )
        assert load_all(rotated.agent_ca_bundle) == [load(rotated.agent_ca_cert)]
        assert not rotated.agent_ca_previous.exists()

    def test_after_finish_only_new_agent_certificates_verify(self, folder: Layout) -> None:
        now = at(T_ROTATE)
        old_leaf = agent_certificate(folder, now - timedelta(minutes=1), "agent-old")
        assert agent_ca_cli("rotate", "--out", str(folder.root), "--now", str(T_ROTATE)) == 0
        new_leaf = agent_certificate(folder, now, "agent-new")
        assert self.finish(folder, T_ROTATE + 60, "--force") == 0
        bundle = load_all(folder.agent_ca_bundle)
        verify_client(bundle, new_leaf, now + timedelta(hours=1))
        with pytest.raises(VerificationError):
            verify_client(bundle, old_leaf, now + timedelta(hours=1))

    def test_refused_without_a_rotation(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        bundle = folder.agent_ca_bundle.read_bytes()
        capsys.readouterr()
        assert self.finish(folder, self.SAFE, "--force") == 1
        assert capsys.readouterr().err == (
            "certs-tooling agent-ca finish: no agent CA rotation is running "
            "(no agent-ca-previous.crt); nothing to finish\n"
        )
        assert folder.agent_ca_bundle.read_bytes() == bundle

    def test_the_api_reports_the_window(self, rotated: Layout) -> None:
        """finish() returns the CA, when it became safe and whether force was needed; the
        window counts from the rotation (the CA's notBefore + CLOCK_SKEW)."""
        ca = load(rotated.agent_ca_cert)
        assert agent_ca.rotated_at(ca) == at(T_ROTATE)
        lifetime = timedelta(hours=2)
        with pytest.raises(RotationError, match="until 2025-01-02T02:05:00Z"):
            agent_ca.finish(rotated, max_certificate_lifetime=lifetime, now=at(T_ROTATE + 7499))
        finished = agent_ca.finish(
            rotated, max_certificate_lifetime=lifetime, now=at(T_ROTATE + 7500)
        )
        assert finished == agent_ca.Finished(ca=ca, safe_at=at(T_ROTATE + 7500), forced=False)


class TestCommandLine:
    @pytest.mark.parametrize(
        ("command", "expected"),
        [
            (["agent-ca"], "rotate"),
            (["agent-ca", "init"], "--days"),
            (["agent-ca", "rotate"], "--days"),
            (["agent-ca", "finish"], "--max-certificate-lifetime-seconds"),
        ],
    )
    def test_help(
        self, command: list[str], expected: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main([*command, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: certs-tooling {' '.join(command)}")
        assert expected in out
        assert "--now" not in out

    def test_listed_in_the_top_level_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--help"]) == 0
        assert "agent-ca" in capsys.readouterr().out

    @pytest.mark.parametrize(
        "argv",
        [
            ["agent-ca"],
            ["agent-ca", "init"],
            ["agent-ca", "init", "--out", "x", "--days", "0"],
            ["agent-ca", "rotate", "--out", "x", "--force"],
            ["agent-ca", "finish", "--out", "x", "--max-certificate-lifetime-seconds", "-1"],
        ],
    )
    def test_usage_errors_return_2(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(argv) == 2
        assert "usage: certs-tooling" in capsys.readouterr().err

    def test_init_output(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """What was written (subject, fingerprint, notAfter) and the step to apply it."""
        assert agent_ca_cli("init", "--out", str(tmp_path), "--now", str(T0)) == 0
        ca = load(Layout(tmp_path).agent_ca_cert)
        fingerprint = ca.fingerprint(hashes.SHA256()).hex()[:16]
        out = capsys.readouterr().out
        assert out.startswith(
            f"agent CA created: agent-bootstrap-agent-ca (sha256 {fingerprint}, valid until "
            "2029-12-31T00:00:00Z); wrote agent-ca.key, agent-ca.crt and agent-ca-bundle.crt "
            f"to {tmp_path}\nNext steps:\n  1. Give the approver {tmp_path}/agent-ca.crt"
        )
        assert f"certs-tooling k8s-manifests --out {tmp_path} --namespace NS" in out

    def test_rotate_output(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """Both CAs named with their fingerprints, then bundle first, signing CA second, finish
        third."""
        old = load(folder.agent_ca_cert)
        capsys.readouterr()
        assert agent_ca_cli("rotate", "--out", str(folder.root), "--now", str(T_ROTATE)) == 0
        new = load(folder.agent_ca_cert)
        out = capsys.readouterr().out
        assert out.startswith(
            "agent CA rotation started: new agent CA agent-bootstrap-agent-ca 20250102T000000Z "
            f"(sha256 {new.fingerprint(hashes.SHA256()).hex()[:16]}, valid until "
            "2030-01-01T00:00:00Z); previous agent CA agent-bootstrap-agent-ca "
            f"(sha256 {old.fingerprint(hashes.SHA256()).hex()[:16]}) kept as "
            "agent-ca-previous.crt; agent-ca-bundle.crt holds both.\nNext steps:\n"
        )
        assert (
            f"  1. Give every approver {folder.agent_ca_bundle} (old + new agent CA) first" in out
        )
        assert "  2. Then give them the new signing CA" in out
        assert "  3. When the longest agent certificate lifetime" in out
        assert f"certs-tooling agent-ca finish --out {folder.root}" in out
        assert out.index("  1.") < out.index("  2.") < out.index("  3.")

    def test_real_processes(self, tmp_path: Path) -> None:
        """`python -m certs_tooling agent-ca` init, rotate and a refused then forced finish."""
        out = str(tmp_path / "pki")
        made = run_cli("agent-ca", "init", "--out", out)
        assert made.returncode == 0, made.stderr
        started = run_cli("agent-ca", "rotate", "--out", out)
        assert started.returncode == 0, started.stderr
        assert len(load_all(Layout(Path(out)).agent_ca_bundle)) == 2
        early = run_cli("agent-ca", "finish", "--out", out)
        assert early.returncode == 1
        assert "too early to finish the agent CA rotation" in early.stderr
        forced = run_cli("agent-ca", "finish", "--out", out, "--force")
        assert forced.returncode == 0, forced.stderr
        assert len(load_all(Layout(Path(out)).agent_ca_bundle)) == 1


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


class TestManifestsAndCheck:
    @pytest.fixture
    def full(self, tmp_path: Path) -> Layout:
        """A folder of `init` (namespace ops) without an agent CA."""
        assert main(["init", "--out", str(tmp_path), "--local", "--namespace", "ops"]) == 0
        return Layout(tmp_path)

    def manifests(self, layout: Layout, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
        capsys.readouterr()
        assert main(["k8s-manifests", "--out", str(layout.root), "--namespace", "ops", *extra]) == 0
        return capsys.readouterr().out

    def test_agent_ca_secret_only_when_the_folder_has_one(
        self, full: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without an agent CA: three objects, as before. With one: the same text, byte for
        byte, followed by an Opaque Secret with the three agent CA files."""
        before = self.manifests(full, capsys)
        assert [d["kind"] for d in documents(before)] == ["Secret", "Secret", "ConfigMap"]
        assert "agent-bootstrap-agent-ca" not in before
        assert agent_ca_cli("init", "--out", str(full.root)) == 0
        after = self.manifests(full, capsys)
        assert after.startswith(before)
        extra = documents(after[len(before) :])
        assert len(extra) == 1
        secret = extra[0]
        assert secret["kind"] == "Secret"
        assert secret["type"] == "Opaque"
        assert secret["metadata"]["name"] == "agent-bootstrap-agent-ca"
        assert secret["metadata"]["namespace"] == "ops"
        assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "approver"
        assert secret["data"] == {
            "ca.crt": b64(full.agent_ca_cert),
            "ca.key": b64(full.agent_ca_key),
            "ca-bundle.crt": b64(full.agent_ca_bundle),
        }

    def test_secret_name_and_rotation_bundle(
        self, full: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert agent_ca_cli("init", "--out", str(full.root)) == 0
        assert agent_ca_cli("rotate", "--out", str(full.root)) == 0
        secret = documents(self.manifests(full, capsys, "--agent-ca-secret", "agents-ca"))[-1]
        assert secret["metadata"]["name"] == "agents-ca"
        bundle = base64.b64decode(secret["data"]["ca-bundle.crt"])
        assert x509.load_pem_x509_certificates(bundle) == load_all(full.agent_ca_bundle)
        assert len(x509.load_pem_x509_certificates(bundle)) == 2

    def test_missing_agent_ca_key_is_exit_1(
        self, full: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert agent_ca_cli("init", "--out", str(full.root)) == 0
        full.agent_ca_key.unlink()
        capsys.readouterr()
        assert main(["k8s-manifests", "--out", str(full.root), "--namespace", "ops"]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"{full.agent_ca_key} is missing" in captured.err

    def check(self, layout: Layout, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = main(["check", "--out", str(layout.root)])
        return code, capsys.readouterr().out.splitlines()

    def test_check_reports_the_agent_ca(
        self, full: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No agent CA: no agent-ca lines. With one: CA, key and bundle OK, agent-ca.key among
        the private files."""
        code, lines = self.check(full, capsys)
        assert code == 0
        assert not [line for line in lines if "agent-ca" in line]
        assert "OK    permissions: 7 private files are owner-only" in lines
        assert agent_ca_cli("init", "--out", str(full.root)) == 0
        code, lines = self.check(full, capsys)
        assert code == 0
        assert [line for line in lines if "agent-ca" in line][1:] == [
            "OK    agent-ca.crt: is a CA (cA, keyCertSign)",
            "OK    agent-ca.key: matches agent-ca.crt",
            "OK    agent-ca-bundle.crt: contains agent-ca.crt",
        ]
        assert "OK    permissions: 8 private files are owner-only" in lines

    def test_check_warns_during_a_rotation(
        self, full: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert agent_ca_cli("init", "--out", str(full.root)) == 0
        assert agent_ca_cli("rotate", "--out", str(full.root)) == 0
        code, lines = self.check(full, capsys)
        assert code == 0
        assert [line for line in lines if line.startswith("WARN")] == [
            "WARN  agent-ca-previous.crt: agent CA rotation in progress: once no agent "
            "certificate of the previous agent CA can be in use, run `agent-ca finish`"
        ]
        assert "OK    agent-ca-bundle.crt: contains agent-ca-previous.crt" in lines

    @pytest.mark.parametrize(
        ("break_it", "expected"),
        [
            (
                lambda layout: shutil.copy(layout.ca_key, layout.agent_ca_key),
                ["FAIL  agent-ca.key: does not belong to agent-ca.crt"],
            ),
            (
                lambda layout: shutil.copy(layout.ca_cert, layout.agent_ca_bundle),
                [
                    "FAIL  agent-ca-bundle.crt: does not contain agent-ca.crt: the approver's "
                    "gate would refuse the agent certificates it issues"
                ],
            ),
            (
                lambda layout: layout.agent_ca_key.chmod(0o644),
                ["FAIL  permissions: readable by others: agent-ca.key (0644)"],
            ),
            (
                lambda layout: layout.agent_ca_bundle.unlink(),
                ["FAIL  agent-ca-bundle.crt: missing"],
            ),
            (
                lambda layout: shutil.copy(layout.ca_cert, layout.agent_ca_cert),
                [
                    "FAIL  agent-ca.key: does not belong to agent-ca.crt",
                    "FAIL  agent-ca-bundle.crt: does not contain agent-ca.crt: the approver's "
                    "gate would refuse the agent certificates it issues",
                ],
            ),
        ],
        ids=["key-mismatch", "bundle-without-ca", "key-mode", "bundle-missing", "other-cert"],
    )
    def test_check_fails_a_broken_agent_ca(
        self,
        full: Layout,
        capsys: pytest.CaptureFixture[str],
        break_it: Any,
        expected: list[str],
    ) -> None:
        assert agent_ca_cli("init", "--out", str(full.root)) == 0
        break_it(full)
        code, lines = self.check(full, capsys)
        assert code == 1
        assert [line for line in lines[:-1] if not line.startswith("OK")] == expected
        assert lines[-1].endswith("checks: FAIL")
