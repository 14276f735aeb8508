"""``certs-tooling k8s-manifests`` and ``jwks``: objects that carry exactly the folder's files."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from bootstrap_token import KeySet, SigningKey
from certs_tooling.cli import main
from certs_tooling.layout import Layout
from tests.certs_tooling.certs import load, run_cli


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    """A folder issued for namespace ``ops``, the namespace the tests print manifests for."""
    assert main(["init", "--out", str(tmp_path), "--local", "--namespace", "ops"]) == 0
    return Layout(tmp_path)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


class TestManifests:
    def test_objects_and_contents(self, folder: Layout, capsys: pytest.CaptureFixture[str]) -> None:
        """Two kubernetes.io/tls Secrets and a ConfigMap in the namespace, carrying the folder's
        files byte for byte; the webhook Secret also carries signing.key."""
        assert main(["k8s-manifests", "--out", str(folder.root), "--namespace", "ops"]) == 0
        webhook, approver, config_map = documents(capsys.readouterr().out)
        assert webhook["kind"] == "Secret"
        assert webhook["type"] == "kubernetes.io/tls"
        assert webhook["metadata"]["name"] == "agent-bootstrap-webhook-tls"
        assert webhook["metadata"]["namespace"] == "ops"
        assert webhook["data"] == {
            "tls.crt": b64(folder.webhook_cert),
            "tls.key": b64(folder.webhook_key),
            "signing.key": b64(folder.signing_key),
        }
        assert approver["type"] == "kubernetes.io/tls"
        assert approver["metadata"]["name"] == "agent-bootstrap-approver-tls"
        assert approver["data"] == {
            "tls.crt": b64(folder.approver_cert),
            "tls.key": b64(folder.approver_key),
        }
        assert config_map["kind"] == "ConfigMap"
        assert config_map["apiVersion"] == "v1"
        assert config_map["metadata"]["name"] == "agent-bootstrap-jwks"
        assert config_map["data"] == {"jwks.json": folder.jwks.read_text()}
        assert list(KeySet.from_jwks(config_map["data"]["jwks.json"])) == list(
            KeySet.from_file(folder.jwks)
        )

    def test_names_are_configurable(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--webhook-secret and --jwks-configmap rename the objects."""
        args = ["k8s-manifests", "--out", str(folder.root), "--namespace", "ops"]
        args += ["--webhook-secret", "wh", "--jwks-configmap", "keys"]
        assert main(args) == 0
        names = [d["metadata"]["name"] for d in documents(capsys.readouterr().out)]
        assert names == ["wh", "agent-bootstrap-approver-tls", "keys"]

    def test_ca_bundle_comment_and_flag(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The caBundle (base64 of ca-bundle.crt, one line) leads the YAML as a comment and is
        the whole output with --ca-bundle-only, including both CAs during a rotation."""
        assert main(["rotate-ca", "--out", str(folder.root)]) == 0
        capsys.readouterr()
        base = ["k8s-manifests", "--out", str(folder.root), "--namespace", "ops"]
        assert main(base) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1] == f"# {b64(folder.ca_bundle)}"
        assert main([*base, "--ca-bundle-only"]) == 0
        only = capsys.readouterr().out
        assert only == b64(folder.ca_bundle) + "\n"
        assert base64.b64decode(only).count(b"BEGIN CERTIFICATE") == 2

    def test_namespace_is_required(self, folder: Layout) -> None:
        """Without --namespace the command is a usage error (exit 2)."""
        assert main(["k8s-manifests", "--out", str(folder.root)]) == 2

    def test_missing_file_is_exit_1(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing serving key exits 1 naming the file, and prints no YAML."""
        folder.approver_key.unlink()
        assert main(["k8s-manifests", "--out", str(folder.root), "--namespace", "ops"]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"{folder.approver_key} is missing" in captured.err

    @pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
    def test_same_objects_as_kubectl_create(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The approver Secret and the ConfigMap carry the same type and data as
        `kubectl create secret tls` / `kubectl create configmap --from-file` make offline."""
        assert main(["k8s-manifests", "--out", str(folder.root), "--namespace", "ops"]) == 0
        _, approver, config_map = documents(capsys.readouterr().out)

        def kubectl(*args: str) -> dict[str, Any]:
            result = subprocess.run(
                ["kubectl", "create", *args, "-n", "ops", "--dry-run=client", "-o", "yaml"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            document: dict[str, Any] = yaml.safe_load(result.stdout)
            return document

        secret = kubectl(
            "secret",
            "tls",
            "agent-bootstrap-approver-tls",
            f"--cert={folder.approver_cert}",
            f"--key={folder.approver_key}",
        )
        assert (approver["type"], approver["data"]) == (secret["type"], secret["data"])
        assert approver["metadata"]["name"] == secret["metadata"]["name"]
        jwks = kubectl("configmap", "agent-bootstrap-jwks", f"--from-file=jwks.json={folder.jwks}")
        assert config_map["data"] == jwks["data"]

    def test_real_subprocess_run(self, folder: Layout) -> None:
        """`python -m certs_tooling k8s-manifests` prints three YAML documents."""
        result = run_cli("k8s-manifests", "--out", str(folder.root), "--namespace", "ops")
        assert result.returncode == 0, result.stderr
        assert [d["kind"] for d in documents(result.stdout)] == ["Secret", "Secret", "ConfigMap"]


class TestNamespaceMismatch:
    """A folder issued for another namespace: the API server dials <svc>.<ns>.svc and the
    certificate does not name it, so the TLS check fails and pods go unstamped (issue 17)."""

    @pytest.fixture
    def other(self, tmp_path: Path) -> Layout:
        """A folder issued for the default namespace, agent-bootstrap."""
        assert main(["init", "--out", str(tmp_path / "pki"), "--local"]) == 0
        return Layout(tmp_path / "pki")

    def test_refused_naming_the_mismatch(
        self, other: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Exit 1, no YAML, and the message names each certificate, the namespace it is for,
        one of its names, the namespace asked for and the way out."""
        webhook_before = other.webhook_cert.read_bytes()
        assert main(["k8s-manifests", "--out", str(other.root), "--namespace", "other-ns"]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert (
            "webhook-tls.crt is issued for namespace agent-bootstrap "
            "(agent-bootstrap-webhook.agent-bootstrap.svc), not other-ns; "
            "approver-tls.crt is issued for namespace agent-bootstrap "
            "(agent-bootstrap-approver.agent-bootstrap.svc), not other-ns: the API server dials "
            "<service>.other-ns.svc and would fail the TLS check"
        ) in captured.err
        assert "or --force to re-issue the serving certificates for other-ns" in captured.err
        assert other.webhook_cert.read_bytes() == webhook_before

    def test_matching_namespace_and_ca_bundle_are_not_refused(
        self, other: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The namespace the folder was issued for passes; the caBundle alone does not depend
        on the namespace."""
        base = ["k8s-manifests", "--out", str(other.root)]
        assert main([*base, "--namespace", "agent-bootstrap"]) == 0
        assert main([*base, "--namespace", "other-ns", "--ca-bundle-only"]) == 0
        assert capsys.readouterr().err == ""

    def test_force_reissues_for_the_namespace(
        self, other: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--force re-issues both serving certificates from the same CA for the namespace asked
        for (Service names moved, localhost and IPs kept), prints the new ones, and says so on
        stderr; check --namespace then passes."""
        bundle = other.ca_bundle.read_bytes()
        args = ["k8s-manifests", "--out", str(other.root), "--namespace", "other-ns", "--force"]
        assert main(args) == 0
        captured = capsys.readouterr()
        webhook, approver, _ = documents(captured.out)
        assert webhook["data"]["tls.crt"] == b64(other.webhook_cert)
        assert approver["data"]["tls.crt"] == b64(other.approver_cert)
        names = load(other.webhook_cert).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        assert names.value.get_values_for_type(x509.DNSName) == [
            "agent-bootstrap-webhook",
            "agent-bootstrap-webhook.other-ns",
            "agent-bootstrap-webhook.other-ns.svc",
            "agent-bootstrap-webhook.other-ns.svc.cluster.local",
            "localhost",
        ]
        assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == [
            "127.0.0.1",
            "::1",
        ]
        assert other.ca_bundle.read_bytes() == bundle
        assert "--force: webhook-tls.crt is issued for namespace agent-bootstrap" in captured.err
        assert "re-issued it for other-ns" in captured.err
        assert main(["check", "--out", str(other.root), "--namespace", "other-ns"]) == 0
        assert main(["k8s-manifests", "--out", str(other.root), "--namespace", "other-ns"]) == 0


class TestJwks:
    def test_prints_the_public_jwks(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`jwks` prints the JWKS of jwks.json: public OKP members only."""
        assert main(["keys", "add", "--out", str(folder.root)]) == 0
        capsys.readouterr()
        assert main(["jwks", "--out", str(folder.root)]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document == json.loads(folder.jwks.read_text())
        assert len(document["keys"]) == 2
        for jwk in document["keys"]:
            assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}

    def test_refuses_a_jwks_with_private_material(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A jwks.json with a private member is not printed; exit 1."""
        document = json.loads(folder.jwks.read_text())
        document["keys"][0]["d"] = "c2VjcmV0"
        folder.jwks.write_text(json.dumps(document))
        assert main(["jwks", "--out", str(folder.root)]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "private key material" in captured.err

    def test_cluster_ties_every_key(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`jwks --cluster NAME`: every key carries ``cluster: NAME``, which the approver's
        KeySet reads back as the key's tie (issue 13, item 12)."""
        assert main(["jwks", "--out", str(folder.root), "--cluster", "prod-eu-1"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert [jwk["cluster"] for jwk in document["keys"]] == ["prod-eu-1"]
        key_set = KeySet.from_jwks(document)
        assert [key_set.cluster_of(kid) for kid in key_set] == ["prod-eu-1"]

    def test_merge_keeps_each_clusters_tie(
        self, folder: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = SigningKey.generate()
        us = tmp_path / "us.json"
        us.write_text(json.dumps(KeySet([other.public_key]).tied_to("prod-us-1").to_jwks()))
        argv = ["jwks", "--out", str(folder.root), "--cluster", "prod-eu-1", "--merge", str(us)]
        assert main(argv) == 0
        key_set = KeySet.from_jwks(capsys.readouterr().out)
        own = next(iter(KeySet.from_file(folder.jwks)))
        assert {kid: key_set.cluster_of(kid) for kid in key_set} == {
            own: "prod-eu-1",
            other.kid: "prod-us-1",
        }

    def test_merge_refuses_a_key_tied_to_two_clusters(
        self, folder: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        same = tmp_path / "same.json"
        same.write_text(json.dumps(KeySet.from_file(folder.jwks).tied_to("staging").to_jwks()))
        argv = ["jwks", "--out", str(folder.root), "--cluster", "prod-eu-1", "--merge", str(same)]
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "tied to two clusters" in captured.err

    def test_real_subprocess_run(self, folder: Layout) -> None:
        """`python -m certs_tooling jwks` prints valid JSON."""
        result = run_cli("jwks", "--out", str(folder.root))
        assert result.returncode == 0, result.stderr
        assert list(KeySet.from_jwks(result.stdout)) == list(KeySet.from_file(folder.jwks))
