"""``certs-tooling cluster-bootstrap`` against the Kubernetes API stand-in (tests/kube_api.py).

The command runs as the chart's Job runs it (the console entry point, a kubeconfig instead of
the in-cluster configuration), in a worker thread with its own event loop while the stand-in
answers on the test's loop. Every object it reads or creates has the API's real shape, errors
come back as real ``Status`` bodies, and the caBundle patch is checked to be the JSON patch
kubernetes-asyncio sends.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from bootstrap_token import KeySet, SigningKey
from certs_tooling import k8s
from certs_tooling.certinfo import key_matches, load_private_key, subject_alt_names
from certs_tooling.cli import main
from certs_tooling.cluster_bootstrap import DEFAULT_CA_SECRET
from certs_tooling.keyfolder import jwks_bytes
from certs_tooling.layout import Layout
from certs_tooling.pki import make_ca
from tests.kube_api import KubeApi, make_mutating_webhook_configuration, write_kubeconfig

NS = "agent-bootstrap"
WEBHOOK_SVC = "agent-bootstrap-webhook"
APPROVER_SVC = "agent-bootstrap-approver"
MWC = "agent-bootstrap"
HOOK = "bootstrap-token.agents.streamspace.io"
FOREIGN_HOOK = "other.example.com"
WEBHOOK_SECRET = k8s.DEFAULT_WEBHOOK_SECRET
APPROVER_SECRET = k8s.DEFAULT_APPROVER_SECRET
JWKS = k8s.DEFAULT_JWKS_CONFIGMAP

Json = dict[str, Any]


@pytest.fixture
async def kube() -> AsyncIterator[KubeApi]:
    async with KubeApi() as api:
        mwc = make_mutating_webhook_configuration(
            MWC, service=WEBHOOK_SVC, namespace=NS, webhooks=[HOOK]
        )
        # A webhook of someone else's Service in the same configuration: never touched.
        foreign = make_mutating_webhook_configuration(
            MWC, service="other", namespace="elsewhere", webhooks=[FOREIGN_HOOK], ca_bundle="Zm9v"
        )["webhooks"][0]
        mwc["webhooks"].append(foreign)
        api.add_object(mwc)
        yield api


class Run:
    def __init__(self, code: int, out: str, err: str, logs: str) -> None:
        self.code, self.out, self.err, self.logs = code, out, err, logs

    @property
    def text(self) -> str:
        return self.out + self.err + self.logs


async def bootstrap(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    *args: str,
    patch: bool = True,
) -> Run:
    """Run the command line (as the chart's Job does) with a kubeconfig for the stand-in."""
    kubeconfig = write_kubeconfig(kube, tmp_path / "kubeconfig")
    argv = ["cluster-bootstrap", "--kubeconfig", str(kubeconfig), "--namespace", NS, *args]
    if patch:
        argv += ["--webhook-configuration", MWC]
    caplog.clear()
    capsys.readouterr()
    with caplog.at_level(logging.DEBUG):
        code = await asyncio.to_thread(main, argv)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err, caplog.text)


def secret(kube: KubeApi, name: str) -> dict[str, bytes]:
    obj = kube.get_object("Secret", name, NS)
    assert obj is not None, f"Secret {name} missing"
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


def ca_bundle(kube: KubeApi, hook: str = HOOK) -> bytes | None:
    obj = kube.get_object("MutatingWebhookConfiguration", MWC)
    assert obj is not None
    (found,) = [h for h in obj["webhooks"] if h["name"] == hook]
    value = found["clientConfig"].get("caBundle")
    return None if value is None else base64.b64decode(value)


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def verifies(bundle: bytes, leaf_pem: bytes) -> bool:
    leaf = cert(leaf_pem)
    for ca in x509.load_pem_x509_certificates(bundle):
        try:
            leaf.verify_directly_issued_by(ca)
        except Exception:  # noqa: S112  # wrong CA: try the next one
            continue
        return True
    return False


def private_keys(kube: KubeApi) -> list[bytes]:
    """Every private key stored in a Secret of the stand-in (PEM)."""
    return [
        base64.b64decode(value)
        for (resource, _, _), obj in kube.objects.items()
        if resource == "secrets"
        for key, value in obj.get("data", {}).items()
        if key in ("tls.key", "signing.key")
    ]


def assert_no_key_material(kube: KubeApi, run: Run) -> None:
    """No private key, nor any line of its PEM body, nor its base64, in stdout, stderr or logs."""
    keys = private_keys(kube)
    assert keys
    for pem in keys:
        assert base64.b64encode(pem).decode() not in run.text
        for line in pem.decode().splitlines():
            if not line.startswith("-----"):
                assert line not in run.text


def snapshot(kube: KubeApi) -> dict[tuple[str, str, str], Json]:
    return {
        key: obj for key, obj in kube.objects.items() if key[0] != "mutatingwebhookconfigurations"
    }


def writes(kube: KubeApi) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in kube.requests if r.method in ("POST", "PATCH", "PUT")]


def hand_made(namespace: str = NS, *, with_ca: bool) -> tuple[list[Json], bytes]:
    """Secrets and ConfigMap from a real ``certs-tooling init`` folder through ``k8s.manifests``
    (what an administrator applies by hand); with ``with_ca`` the TLS Secrets also carry
    ``ca.crt``. Returns the objects and the folder's CA bundle."""
    with tempfile.TemporaryDirectory() as tmp:
        assert main(["init", "--out", tmp, "--namespace", namespace]) == 0
        layout = Layout(Path(tmp))
        material = k8s.Material(
            ca_bundle=layout.ca_bundle.read_bytes(),
            webhook_cert=layout.webhook_cert.read_bytes(),
            webhook_key=layout.webhook_key.read_bytes(),
            signing_key=layout.signing_key.read_bytes(),
            approver_cert=layout.approver_cert.read_bytes(),
            approver_key=layout.approver_key.read_bytes(),
            jwks=layout.jwks.read_bytes(),
        )
    objects = k8s.manifests(material, k8s.Names(namespace=NS))
    if with_ca:
        for obj in objects[:2]:
            obj["data"]["ca.crt"] = base64.b64encode(material.ca_bundle).decode()
    return objects, material.ca_bundle


# --- first install ---------------------------------------------------------------------------


async def test_first_install_creates_everything_and_patches_the_ca_bundle(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing exists: the CA, both serving certificates (the Services' four DNS names), the
    signing key and its JWKS are created, and the caBundle is the CA that verifies both serving
    certificates, set by a JSON patch on our webhook only."""
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 0, run.err
    assert run.err == ""

    ca = secret(kube, DEFAULT_CA_SECRET)
    assert set(ca) == {"tls.crt", "tls.key", "ca.crt"}
    assert ca["ca.crt"] == ca["tls.crt"]
    webhook = secret(kube, WEBHOOK_SECRET)
    approver = secret(kube, APPROVER_SECRET)
    assert set(webhook) == {"tls.crt", "tls.key", "ca.crt", "signing.key"}
    assert set(approver) == {"tls.crt", "tls.key", "ca.crt"}
    for name in (DEFAULT_CA_SECRET, WEBHOOK_SECRET, APPROVER_SECRET):
        obj = kube.get_object("Secret", name, NS)
        assert obj is not None
        assert obj["type"] == "kubernetes.io/tls"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "certs-tooling"

    bundle = ca_bundle(kube)
    assert bundle == ca["tls.crt"]
    for data, service in ((webhook, WEBHOOK_SVC), (approver, APPROVER_SVC)):
        assert verifies(bundle, data["tls.crt"])
        assert key_matches(cert(data["tls.crt"]), load_private_key(data["tls.key"]))
        assert subject_alt_names(cert(data["tls.crt"])).dns == [
            service,
            f"{service}.{NS}",
            f"{service}.{NS}.svc",
            f"{service}.{NS}.svc.cluster.local",
        ]
    # Someone else's webhook in the same configuration keeps its caBundle.
    assert ca_bundle(kube, FOREIGN_HOOK) == b"foo"

    signing = SigningKey.from_pem(webhook["signing.key"])
    jwks = kube.get_object("ConfigMap", JWKS, NS)
    assert jwks is not None
    assert list(KeySet.from_jwks(jwks["data"]["jwks.json"])) == [signing.kid]

    (patch,) = [r for r in kube.requests if r.method == "PATCH"]
    assert patch.content_type == "application/json-patch+json"
    assert patch.body == [
        {"op": "test", "path": "/webhooks/0/name", "value": HOOK},
        {
            "op": "add",
            "path": "/webhooks/0/clientConfig/caBundle",
            "value": base64.b64encode(bundle).decode(),
        },
    ]
    assert f"created Secret {NS}/{WEBHOOK_SECRET}" in run.out
    assert f"patched caBundle of MutatingWebhookConfiguration {MWC}" in run.out
    assert_no_key_material(kube, run)


async def test_rerun_overwrites_nothing(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A re-install or upgrade: every object byte-identical (same resourceVersion), no create,
    no patch (the caBundle is already right)."""
    assert (await bootstrap(kube, tmp_path, capsys, caplog)).code == 0
    before, bundle = snapshot(kube), ca_bundle(kube)
    kube.requests.clear()
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 0, run.err
    assert snapshot(kube) == before
    assert writes(kube) == []
    assert ca_bundle(kube) == bundle
    assert "already current" in run.out
    assert run.out.count("kept existing") == 3  # the CA Secret is not even read: nothing to sign
    assert_no_key_material(kube, run)


async def test_ca_bundle_reset_by_an_upgrade_is_patched_back(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When something (a `helm upgrade` from values with another caBundle) changed it, the
    post-upgrade run puts the CA of the Secrets back, without touching any Secret."""
    assert (await bootstrap(kube, tmp_path, capsys, caplog)).code == 0
    mwc = kube.get_object("MutatingWebhookConfiguration", MWC)
    assert mwc is not None
    right = mwc["webhooks"][0]["clientConfig"].pop("caBundle")
    kube.add_object(mwc)
    before = snapshot(kube)
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 0, run.err
    assert snapshot(kube) == before
    assert ca_bundle(kube) == base64.b64decode(right)


async def test_without_webhook_configuration_nothing_is_patched(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pre-install run (no --webhook-configuration): Secrets and JWKS only."""
    run = await bootstrap(kube, tmp_path, capsys, caplog, patch=False)
    assert run.code == 0, run.err
    assert ca_bundle(kube) is None
    assert not any("mutatingwebhook" in r.path for r in kube.requests)


# --- objects made by hand --------------------------------------------------------------------


async def test_hand_made_secrets_with_their_ca_are_kept_and_their_ca_injected(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a first run, the administrator replaces the serving Secrets with a certs-tooling
    folder's (ca.crt included). The re-run keeps them byte for byte and the caBundle follows
    their CA, not the CA Secret's."""
    assert (await bootstrap(kube, tmp_path, capsys, caplog)).code == 0
    objects, their_ca = hand_made(with_ca=True)
    for obj in objects:
        kube.add_object(obj)
    before = snapshot(kube)
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 0, run.err
    assert snapshot(kube) == before
    assert ca_bundle(kube) == their_ca
    assert verifies(their_ca, secret(kube, WEBHOOK_SECRET)["tls.crt"])
    assert_no_key_material(kube, run)


async def test_hand_made_secret_whose_ca_is_unknown_is_kept_and_reported(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hand-made webhook Secret without ca.crt, signed by another CA than the CA Secret: kept,
    the mismatch named clearly, exit 1, and the caBundle left as it was (no PATCH)."""
    assert (await bootstrap(kube, tmp_path, capsys, caplog)).code == 0
    old_bundle = ca_bundle(kube)
    objects, _ = hand_made(with_ca=False)
    kube.add_object(objects[0])  # the webhook Secret only
    before = snapshot(kube)
    kube.requests.clear()
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 1
    assert snapshot(kube) == before
    assert writes(kube) == []
    assert ca_bundle(kube) == old_bundle
    assert f"Secret {NS}/{DEFAULT_CA_SECRET} holds CA" in run.err
    assert f"Secret {NS}/{WEBHOOK_SECRET} was issued by CN=agent-bootstrap-ca" in run.err
    assert "Both kept as they are" in run.err
    assert "caBundle of MutatingWebhookConfiguration" in run.err
    assert_no_key_material(kube, run)


async def test_hand_made_secrets_without_any_ca_make_no_ca_and_say_what_to_do(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Everything applied by hand (certs-tooling k8s-manifests) before the first run: nothing is
    created (no CA Secret either: nothing needs issuing), and without a ca.crt the run says how
    to give it the CA."""
    objects, _ = hand_made(with_ca=False)
    for obj in objects:
        kube.add_object(obj)
    before = snapshot(kube)
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 1
    assert snapshot(kube) == before
    assert kube.get_object("Secret", DEFAULT_CA_SECRET, NS) is None
    assert "add the CA bundle to that Secret as ca.crt, or set the chart's tls.caBundle" in run.err
    assert ca_bundle(kube) is None


async def test_jwks_without_the_signing_key_is_kept_and_reported(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A JWKS ConfigMap that exists but does not publish the stored key: kept, exit 1."""
    other = KeySet([SigningKey.generate().public_key])
    kube.add_object(k8s.jwks_configmap(JWKS, NS, jwks_bytes(other)))
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 1
    jwks = kube.get_object("ConfigMap", JWKS, NS)
    assert jwks is not None
    assert list(KeySet.from_jwks(jwks["data"]["jwks.json"])) == list(other)
    assert "does not publish the signing key" in run.err
    assert ca_bundle(kube) is None


async def test_wrong_namespace_certificate_is_reported(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hand-made serving certificate for another namespace: the API server would refuse it."""
    objects, _ = hand_made("elsewhere", with_ca=True)
    for obj in objects:
        kube.add_object(obj)
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 1
    assert f"does not name {WEBHOOK_SVC}.{NS}.svc" in run.err


# --- races and refusals ----------------------------------------------------------------------


async def test_409_race_uses_the_other_runs_ca(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another Job creates the CA Secret between our read and our create: our create gets 409
    AlreadyExists, we read theirs and issue from it; the caBundle is their CA."""
    theirs = make_ca(common_name="their-ca", valid_days=30, now=datetime.now(UTC))

    def other_job(resource: str, body: Json) -> None:
        if resource == "secrets" and body["metadata"]["name"] == DEFAULT_CA_SECRET:
            kube.add_object(
                k8s.tls_secret(
                    DEFAULT_CA_SECRET,
                    NS,
                    "certificates",
                    cert=theirs.cert_pem,
                    key=theirs.key_pem,
                    extra={"ca.crt": theirs.cert_pem},
                )
            )

    kube.before_create = other_job
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 0, run.err
    assert "created meanwhile by another run" in run.out
    assert secret(kube, DEFAULT_CA_SECRET)["tls.crt"] == theirs.cert_pem
    assert ca_bundle(kube) == theirs.cert_pem
    assert verifies(theirs.cert_pem, secret(kube, WEBHOOK_SECRET)["tls.crt"])
    assert verifies(theirs.cert_pem, secret(kube, APPROVER_SECRET)["tls.crt"])
    assert_no_key_material(kube, run)


async def test_409_race_on_the_jwks_keeps_theirs(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same for the JWKS ConfigMap: theirs (made from the same stored key) is kept."""

    def other_job(resource: str, body: Json) -> None:
        if resource == "configmaps":
            kube.add_object({**body, "metadata": {**body["metadata"], "labels": {"by": "them"}}})

    kube.before_create = other_job
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 0, run.err
    jwks = kube.get_object("ConfigMap", JWKS, NS)
    assert jwks is not None
    assert jwks["metadata"]["labels"] == {"by": "them"}


@pytest.mark.parametrize(
    ("refused", "message"),
    [
        (
            ("create", "secrets"),
            f"cannot create Secret {NS}/{DEFAULT_CA_SECRET}: 403 Forbidden: secrets is forbidden",
        ),
        (("get", "configmaps"), f"cannot get ConfigMap {NS}/{JWKS}: 403 Forbidden"),
        (
            ("patch", "mutatingwebhookconfigurations"),
            f"cannot patch MutatingWebhookConfiguration {MWC}: 403 Forbidden",
        ),
    ],
)
async def test_api_refusal_is_a_clear_error_with_exit_3(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    refused: tuple[str, str],
    message: str,
) -> None:
    """RBAC says no: exit 3, the verb, object and Status message on stderr, where to look."""
    kube.forbidden.add(refused)
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 3
    assert message in run.err
    assert "check the Job's Role/ClusterRole" in run.err
    if refused[1] == "secrets":
        assert snapshot(kube) == {}
    if private_keys(kube):
        assert_no_key_material(kube, run)


async def test_missing_webhook_configuration_is_exit_3(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube.objects.pop(("mutatingwebhookconfigurations", "", MWC))
    run = await bootstrap(kube, tmp_path, capsys, caplog)
    assert run.code == 3
    assert f"cannot get MutatingWebhookConfiguration {MWC}: 404 NotFound" in run.err
    assert "run this after it exists" in run.err


async def test_unreachable_api_server_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    async with KubeApi() as gone:
        kubeconfig = write_kubeconfig(gone, tmp_path / "kubeconfig")
    code = await asyncio.to_thread(
        main, ["cluster-bootstrap", "--kubeconfig", str(kubeconfig), "--namespace", NS]
    )
    assert code == 3
    assert "cannot reach the API server at http://127.0.0.1:" in capsys.readouterr().err


# --- other modes ------------------------------------------------------------------------------


async def test_cert_manager_mode_ensures_only_the_signing_key_and_jwks(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--no-serving-certs (cert-manager owns the TLS Secrets and the caBundle): an Opaque
    signing-key Secret of its own and the JWKS; no CA, no TLS Secret, no webhook call."""
    run = await bootstrap(
        kube,
        tmp_path,
        capsys,
        caplog,
        "--no-serving-certs",
        "--signing-secret",
        "agent-bootstrap-signing-key",
        patch=False,
    )
    assert run.code == 0, run.err
    assert {name for (_, _, name) in snapshot(kube)} == {"agent-bootstrap-signing-key", JWKS}
    stored = kube.get_object("Secret", "agent-bootstrap-signing-key", NS)
    assert stored is not None
    assert stored["type"] == "Opaque"
    signing = SigningKey.from_pem(base64.b64decode(stored["data"]["signing.key"]))
    jwks = kube.get_object("ConfigMap", JWKS, NS)
    assert jwks is not None
    assert list(KeySet.from_jwks(jwks["data"]["jwks.json"])) == [signing.kid]
    assert not any("mutatingwebhook" in r.path for r in kube.requests)
    assert_no_key_material(kube, run)


async def test_plain_http_approver_gets_no_certificate(
    kube: KubeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = await bootstrap(kube, tmp_path, capsys, caplog, "--no-approver-tls")
    assert run.code == 0, run.err
    assert kube.get_object("Secret", APPROVER_SECRET, NS) is None
    assert ca_bundle(kube) == secret(kube, DEFAULT_CA_SECRET)["tls.crt"]


@pytest.mark.parametrize(
    "args",
    [
        ["--no-serving-certs"],  # the signing key would have to go into cert-manager's Secret
        ["--no-serving-certs", "--signing-secret", "s", "--webhook-configuration", MWC],
        ["--leaf-days", "0"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cluster-bootstrap", "--namespace", NS, *args]) == 2
    assert "certs-tooling cluster-bootstrap:" in capsys.readouterr().err


def test_namespace_comes_from_pod_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --namespace and outside a pod: usage error naming both sources; with
    POD_NAMESPACE (the Job's downward API) it goes on (and fails on the missing config)."""
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["cluster-bootstrap"]) == 2
    assert "give --namespace or set POD_NAMESPACE" in capsys.readouterr().err
    monkeypatch.setenv("POD_NAMESPACE", NS)
    assert main(["cluster-bootstrap"]) == 3
    assert "cannot use the in-cluster configuration" in capsys.readouterr().err
