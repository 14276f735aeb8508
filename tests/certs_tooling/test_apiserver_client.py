"""``certs-tooling apiserver-client``: the API server's client certificate for the webhook's
``tlsClientCaFile``, its kubeconfig and the AdmissionConfiguration (Kubernetes "Dynamic
Admission Control", "Authenticate apiservers")."""

from __future__ import annotations

import asyncio
import base64
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs_tooling.cli import main
from certs_tooling.layout import Layout
from certs_tooling.pki import make_ca, make_client_cert
from tests.certs_tooling.certs import (
    DAY,
    T0,
    assert_is_ca,
    load,
    load_all,
    needs_openssl,
    openssl,
    run_cli,
)

KUBECONFIG_PATH = "/etc/kubernetes/agent-bootstrap/apiserver-client.kubeconfig"
SERVICE_NAME = "agent-bootstrap-webhook.agent-bootstrap.svc"


def issue(out: Path, *extra: str) -> int:
    return main(["apiserver-client", "--out", str(out), *extra])


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    """A folder with the serving material (init --local) and the API server's client material."""
    assert main(["init", "--out", str(tmp_path), "--local"]) == 0
    assert issue(tmp_path) == 0
    return Layout(tmp_path)


def read_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def client_verifier(bundle: Path) -> verification.ClientVerifier:
    """A path validator for TLS client certificates (EKU clientAuth) trusting only ``bundle``.

    The WebPKI end-entity policy wants a subjectAltName; a client certificate for a webhook
    is identified by its issuer, so the SAN is made optional here (OpenSSL does not ask for it).
    """
    ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
    )
    return (
        verification.PolicyBuilder()
        .store(verification.Store(load_all(bundle)))
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
        )
        .build_client_verifier()
    )


class TestFiles:
    def test_writes_every_file_with_private_files_0600(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Seven files; keys and the kubeconfig (which embeds the key) are 0600, the rest 0644;
        nothing printed holds key material."""
        out = tmp_path / "pki"
        assert issue(out) == 0
        layout = Layout(out)
        private = {
            layout.apiserver_client_ca_key,
            layout.apiserver_client_key,
            layout.apiserver_kubeconfig,
        }
        assert sorted(p.name for p in out.iterdir()) == sorted(
            p.name for p in layout.apiserver_client_files()
        )
        for path in layout.apiserver_client_files():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o600 if path in private else 0o644), path.name
        printed = capsys.readouterr()
        text = printed.out + printed.err
        assert "PRIVATE KEY" not in text
        for key in (layout.apiserver_client_key, layout.apiserver_client_ca_key):
            assert base64.b64encode(key.read_bytes()).decode()[40:80] not in text
        assert "Next steps:" in printed.out
        assert "--admission-control-config-file=/etc/kubernetes/agent-bootstrap/" in printed.out
        assert "tlsClientCaFile" in printed.out

    def test_client_ca_is_separate_from_the_serving_ca(self, folder: Layout) -> None:
        """The client CA is a pathlen-0 CA of its own: not ca.crt, not in ca-bundle.crt; the
        bundle for tlsClientCaFile holds exactly the client CA."""
        client_ca = load(folder.apiserver_client_ca_cert)
        assert_is_ca(client_ca)
        assert client_ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
            "agent-bootstrap-apiserver-client-ca"
        )
        assert client_ca != load(folder.ca_cert)
        assert client_ca.public_key() != load(folder.ca_cert).public_key()
        assert client_ca not in load_all(folder.ca_bundle)
        assert load_all(folder.apiserver_client_ca_bundle) == [client_ca]


class TestCertificate:
    def test_client_auth_only_and_chains_to_the_bundle(self, folder: Layout) -> None:
        """A clientAuth-only leaf with the documented extensions, its key matches, and it
        validates as a TLS client certificate against the written bundle."""
        cert = load(folder.apiserver_client_cert)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == "kube-apiserver-admission"
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical
        assert not bc.value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert ku.value.digital_signature
        assert not ku.value.key_cert_sign
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        assert not eku.critical
        assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        key = serialization.load_pem_private_key(
            folder.apiserver_client_key.read_bytes(), password=None
        )
        assert key.public_key() == cert.public_key()
        chain = client_verifier(folder.apiserver_client_ca_bundle).verify(cert, [])
        assert chain.chain == [cert, load(folder.apiserver_client_ca_cert)]

    def test_serving_certificates_do_not_pass_as_the_api_server(self, folder: Layout) -> None:
        """The webhook's serving certificate is neither signed by the client CA nor a client
        certificate: the bundle does not validate it."""
        verifier = client_verifier(folder.apiserver_client_ca_bundle)
        with pytest.raises(verification.VerificationError):
            verifier.verify(load(folder.webhook_cert), [])

    @needs_openssl
    def test_openssl_verifies_it_as_an_ssl_client_only(self, folder: Layout) -> None:
        """`openssl verify -purpose sslclient` accepts it against the bundle; as a server
        certificate (`-purpose sslserver`) it is refused."""
        bundle, cert = str(folder.apiserver_client_ca_bundle), str(folder.apiserver_client_cert)
        ok = openssl("verify", "-CAfile", bundle, "-purpose", "sslclient", cert)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip().endswith(": OK")
        server = openssl("verify", "-CAfile", bundle, "-purpose", "sslserver", cert)
        assert server.returncode != 0

    def test_validity_days_and_cap_at_the_ca(self) -> None:
        """--days counts from now (backdated 5 minutes for clock skew) and never passes the
        CA's notAfter."""
        now = datetime.fromtimestamp(T0, UTC)
        ca = make_ca(common_name="c", valid_days=30, now=now)
        short = make_client_cert(ca=ca, common_name="x", valid_days=10, now=now).certificate
        assert short.not_valid_after_utc == now + timedelta(days=10)
        assert short.not_valid_before_utc == now - timedelta(minutes=5)
        long = make_client_cert(ca=ca, common_name="x", valid_days=365, now=now).certificate
        assert long.not_valid_after_utc == ca.certificate.not_valid_after_utc
        with pytest.raises(ValueError, match="common name"):
            make_client_cert(ca=ca, common_name="", valid_days=1, now=now)

    def test_now_and_days_flags(self, tmp_path: Path) -> None:
        """The command takes --days and --ca-days (and the hidden --now)."""
        assert issue(tmp_path, "--days", "7", "--ca-days", "30", "--now", str(T0)) == 0
        layout = Layout(tmp_path)
        start = datetime.fromtimestamp(T0, UTC)
        assert load(layout.apiserver_client_cert).not_valid_after_utc == start + timedelta(days=7)
        ca = load(layout.apiserver_client_ca_cert)
        assert ca.not_valid_after_utc.timestamp() == T0 + 30 * DAY


class TestKubernetesFiles:
    def test_kubeconfig_shape(self, folder: Layout) -> None:
        """A v1 Config whose users entries, named after the Service with and without port 443,
        embed the certificate and key files byte for byte (base64 of the PEM)."""
        config = read_yaml(folder.apiserver_kubeconfig)
        cert_b64 = base64.b64encode(folder.apiserver_client_cert.read_bytes()).decode()
        key_b64 = base64.b64encode(folder.apiserver_client_key.read_bytes()).decode()
        user = {"client-certificate-data": cert_b64, "client-key-data": key_b64}
        assert config == {
            "apiVersion": "v1",
            "kind": "Config",
            "users": [
                {"name": f"{SERVICE_NAME}:443", "user": user},
                {"name": SERVICE_NAME, "user": user},
            ],
        }

    def test_admission_configuration_shape(self, folder: Layout) -> None:
        """An apiserver.config.k8s.io/v1 AdmissionConfiguration: both webhook plugins carry a
        WebhookAdmissionConfiguration naming the kubeconfig by its absolute path."""
        plugin_config = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": KUBECONFIG_PATH,
        }
        assert read_yaml(folder.admission_config) == {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [
                {"name": "ValidatingAdmissionWebhook", "configuration": plugin_config},
                {"name": "MutatingAdmissionWebhook", "configuration": plugin_config},
            ],
        }

    def test_names_port_hosts_and_paths(self, tmp_path: Path) -> None:
        """Another Service port gives SVC.NS.svc:PORT first; --host adds names; the
        AdmissionConfiguration carries --kubeconfig-path."""
        assert (
            issue(
                tmp_path,
                "--namespace",
                "ops",
                "--webhook-service",
                "hook",
                "--port",
                "8443",
                "--host",
                "hook.example.com:9443",
                "--kubeconfig-path",
                "/srv/k8s/admission.kubeconfig",
            )
            == 0
        )
        layout = Layout(tmp_path)
        users = read_yaml(layout.apiserver_kubeconfig)["users"]
        assert [u["name"] for u in users] == [
            "hook.ops.svc:8443",
            "hook.ops.svc",
            "hook.example.com:9443",
        ]
        assert len({str(u["user"]) for u in users}) == 1
        plugins = read_yaml(layout.admission_config)["plugins"]
        assert {p["configuration"]["kubeConfigFile"] for p in plugins} == {
            "/srv/k8s/admission.kubeconfig"
        }


class TestForce:
    def test_refuses_existing_files_without_force(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A second run without --force exits 1 and changes nothing."""
        before = {p: p.read_bytes() for p in folder.apiserver_client_files()}
        capsys.readouterr()
        assert issue(folder.root) == 1
        err = capsys.readouterr().err
        assert err.startswith("certs-tooling apiserver-client: ")
        assert "use --force" in err
        assert {p: p.read_bytes() for p in folder.apiserver_client_files()} == before

    def test_force_keeps_the_client_ca(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--force issues a new certificate and key from the same client CA; the bundle (the
        webhook's tlsClientCaFile) is unchanged, so no webhook step is printed."""
        ca_files = (
            folder.apiserver_client_ca_cert,
            folder.apiserver_client_ca_key,
            folder.apiserver_client_ca_bundle,
        )
        before = {p: p.read_bytes() for p in ca_files}
        old_cert = load(folder.apiserver_client_cert)
        old_key = folder.apiserver_client_key.read_bytes()
        capsys.readouterr()
        assert issue(folder.root, "--force") == 0
        out = capsys.readouterr().out
        assert "kept" in out
        assert "tlsClientCaFile" not in out
        assert {p: p.read_bytes() for p in ca_files} == before
        new_cert = load(folder.apiserver_client_cert)
        assert new_cert.serial_number != old_cert.serial_number
        assert folder.apiserver_client_key.read_bytes() != old_key
        client_verifier(folder.apiserver_client_ca_bundle).verify(new_cert, [])
        user = read_yaml(folder.apiserver_kubeconfig)["users"][0]["user"]
        assert base64.b64decode(user["client-key-data"]) == folder.apiserver_client_key.read_bytes()

    def test_force_without_ca_key_makes_a_new_ca(self, folder: Layout) -> None:
        """With the client CA key gone, --force makes a new client CA and rewrites the bundle."""
        old_ca = load(folder.apiserver_client_ca_cert)
        folder.apiserver_client_ca_key.unlink()
        assert issue(folder.root, "--force") == 0
        new_ca = load(folder.apiserver_client_ca_cert)
        assert new_ca != old_ca
        assert load_all(folder.apiserver_client_ca_bundle) == [new_ca]
        assert stat.S_IMODE(folder.apiserver_client_ca_key.stat().st_mode) == 0o600

    def test_force_refuses_a_bundle_without_the_ca(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bundle that does not hold the kept CA is refused (exit 1), not silently used."""
        folder.apiserver_client_ca_bundle.write_bytes(folder.ca_cert.read_bytes())
        assert issue(folder.root, "--force") == 1
        assert "does not contain apiserver-client-ca.crt" in capsys.readouterr().err


class TestUsage:
    @pytest.mark.parametrize(
        "extra",
        [
            ["--kubeconfig-path", "relative/kubeconfig"],
            ["--port", "0"],
            ["--port", "65536"],
            ["--days", "0"],
            ["--force", "--finish"],
            ["--new-ca", "--force"],
        ],
    )
    def test_usage_errors_exit_2(self, tmp_path: Path, extra: list[str]) -> None:
        """Bad flags are usage errors and write nothing."""
        assert issue(tmp_path / "pki", *extra) == 2
        assert not (tmp_path / "pki").exists()

    def test_bad_host_exits_1_and_writes_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A --host that is not host[:port] is refused before anything is written."""
        assert issue(tmp_path / "pki", "--host", "https://x/") == 1
        assert "not a host name" in capsys.readouterr().err
        assert not (tmp_path / "pki").exists()

    def test_real_process(self, tmp_path: Path) -> None:
        """As a real process: exit 0, then exit 1 on the second run without --force."""
        assert run_cli("apiserver-client", "--out", str(tmp_path)).returncode == 0
        second = run_cli("apiserver-client", "--out", str(tmp_path))
        assert second.returncode == 1
        assert "already holds" in second.stderr


# --- a real TLS round trip -----------------------------------------------------------------------


async def mutual_tls(
    folder: Layout, client: ssl.SSLContext, *, client_ca: Path | None = None
) -> bytes | None:
    """Serve the webhook's certificate on 127.0.0.1 with ``verify_mode=CERT_REQUIRED`` and the
    client CA bundle (what the webhook does with ``tlsClientCaFile``); connect with ``client``.

    Returns the CN of the client certificate the server saw, or None when the connection failed
    (with TLS 1.3 a refused client certificate shows up on the client's first read).
    """
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(folder.webhook_cert, folder.webhook_key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cafile=client_ca or folder.apiserver_client_ca_bundle)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        subject = dict(item[0] for item in peer["subject"])
        writer.write(subject["commonName"].encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname="localhost"
            )
            try:
                data = await reader.read()
            finally:
                writer.close()
        except (ssl.SSLError, ConnectionError):
            return None
    return data or None


def api_server_context(folder: Layout, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """The API server's side: trusts the serving CA and presents ``cert``/``key`` if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(folder.ca_bundle))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def client_files_from_kubeconfig(folder: Layout, tmp_path: Path) -> tuple[Path, Path]:
    """The certificate and key as the API server gets them: decoded from the kubeconfig."""
    user = read_yaml(folder.apiserver_kubeconfig)["users"][0]["user"]
    cert = tmp_path / "from-kubeconfig.crt"
    key = tmp_path / "from-kubeconfig.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    key.chmod(0o600)
    return cert, key


class TestMutualTls:
    async def test_server_requiring_the_bundle_accepts_the_issued_certificate(
        self, folder: Layout, client_files_from_kubeconfig: tuple[Path, Path]
    ) -> None:
        """The pair from the kubeconfig completes a handshake with a CERT_REQUIRED server that
        loads only the client CA bundle; the server sees CN kube-apiserver-admission."""
        client = api_server_context(folder, *client_files_from_kubeconfig)
        assert await mutual_tls(folder, client) == b"kube-apiserver-admission"

    async def test_no_certificate_is_refused(self, folder: Layout) -> None:
        """Without a client certificate the connection fails."""
        assert await mutual_tls(folder, api_server_context(folder, None, None)) is None

    async def test_a_serving_certificate_is_refused(self, folder: Layout) -> None:
        """The approver's serving pair (serving CA, serverAuth only) does not pass as the
        API server."""
        client = api_server_context(folder, folder.approver_cert, folder.approver_key)
        assert await mutual_tls(folder, client) is None

    async def test_another_client_ca_is_refused(self, folder: Layout, tmp_path: Path) -> None:
        """A client certificate from another run's client CA is refused."""
        other = Layout(tmp_path / "other")
        assert issue(other.root) == 0
        client = api_server_context(folder, other.apiserver_client_cert, other.apiserver_client_key)
        assert await mutual_tls(folder, client) is None


class TestNewCa:
    def test_new_ca_overlaps_until_finish(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--new-ca: a new client CA, the bundle holds new + previous (the API server's old
        certificate still validates); --finish leaves the new CA alone and the old certificate
        no longer validates."""
        old_ca = load(folder.apiserver_client_ca_cert)
        old_cert = load(folder.apiserver_client_cert)
        capsys.readouterr()
        assert issue(folder.root, "--new-ca") == 0
        out = capsys.readouterr().out
        assert "holds it and the previous client CA" in out
        assert "--finish" in out
        new_ca = load(folder.apiserver_client_ca_cert)
        assert new_ca != old_ca
        assert load_all(folder.apiserver_client_ca_bundle) == [new_ca, old_ca]
        verifier = client_verifier(folder.apiserver_client_ca_bundle)
        verifier.verify(old_cert, [])
        verifier.verify(load(folder.apiserver_client_cert), [])
        assert main(["apiserver-client", "--out", str(folder.root), "--finish"]) == 0
        assert load_all(folder.apiserver_client_ca_bundle) == [new_ca]
        verifier = client_verifier(folder.apiserver_client_ca_bundle)
        verifier.verify(load(folder.apiserver_client_cert), [])
        with pytest.raises(verification.VerificationError):
            verifier.verify(old_cert, [])

    def test_second_new_ca_before_finish_is_refused(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A second --new-ca while the bundle holds two CAs exits 1 and changes nothing."""
        assert issue(folder.root, "--new-ca") == 0
        before = {p: p.read_bytes() for p in folder.apiserver_client_files()}
        capsys.readouterr()
        assert issue(folder.root, "--new-ca") == 1
        assert "run apiserver-client --finish first" in capsys.readouterr().err
        assert {p: p.read_bytes() for p in folder.apiserver_client_files()} == before

    def test_finish_refuses_a_certificate_from_another_ca(
        self, folder: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--finish refuses when apiserver-client.crt is not issued by the current client CA
        (the API server would be locked out)."""
        other = Layout(tmp_path / "other")
        assert issue(other.root) == 0
        folder.apiserver_client_cert.write_bytes(other.apiserver_client_cert.read_bytes())
        bundle = folder.apiserver_client_ca_bundle.read_bytes()
        assert issue(folder.root, "--finish") == 1
        assert "is not issued by apiserver-client-ca.crt" in capsys.readouterr().err
        assert folder.apiserver_client_ca_bundle.read_bytes() == bundle

    def test_finish_in_an_empty_folder_exits_1(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--finish without the files is refused with the missing file named."""
        assert issue(tmp_path, "--finish") == 1
        assert "apiserver-client-ca.crt is missing" in capsys.readouterr().err
