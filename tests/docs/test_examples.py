"""Every YAML and JSON example of the guides, checked against the code that reads it.

Each block carries a marker (:mod:`tests.docs.markdown`) saying what it is an example of:

============================  =====================================================================
marker                        check
============================  =====================================================================
``webhook-config``            loads with ``webhook.config.load_settings`` (over the required files)
``approver-config``           loads with ``approver.config.load_settings`` (over ``token.jwksFile``)
``config``                    loads with both services' loaders (the shared ``trust`` shape)
``approver-defaults``         loads, and every section it shows equals the approver's defaults
``helm-values``               the chart renders with it (values.schema.json and its checks)
``streamspace-values``        StreamSpace's chart values: the ``extraEnv`` the demo renders pods
                              with, and ``controlPlaneUrl`` pointing at the chart's approver Service
``kubernetes``                Kubernetes objects, valid against the API's schemas (CRDs: shape)
``pod-spec``                  a pod ``spec`` excerpt, valid as a Pod's
``registration-request``      StreamSpace's captured registration body, byte for byte
``audit-line``                the webhook's own audit line for those fields, byte for byte
``inject-env``                the env entry the webhook's patch adds
``api-key-scope``             an API key scope the approver accepts, rendered back the same
``api-key-meta``              the approver's rendering of a key with those values
``service-account-token-claims``  claims the service-account verifier accepts
``review-answer``             the members of a real ``POST /api/v1/agents/review`` answer
``certificate-answer``        the members of a real ``POST /api/v1/agents/{id}/certificate``
                              answer
``client-config``             the admin client's config file: loads with ``approver.cli.config``,
                              and its current context resolves (token file made owner-only)
============================  =====================================================================

File paths in configuration examples (keys ending in ``File``/``Dir``, ``kubeconfig``) are made
to exist under a temporary folder first: the loaders check that they do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from approver.api_keys.records import ApiKeyRecord, KeySource
from approver.api_keys.scope import ApiKeyScope
from approver.api_keys.wire import key_json
from approver.cli.config import ClientConfigError, Overrides
from approver.cli.config import load_file as load_client_config
from approver.cli.config import resolve as resolve_client
from approver.config import ENV_PREFIX as APPROVER_PREFIX
from approver.config import ApproverSettings
from approver.config import load_settings as load_approver
from approver.service_accounts.claims import ServiceAccountTokenClaims
from bootstrap_token import AuditEvent
from tests.docs.markdown import Block, all_blocks
from webhook.audit import audit_line
from webhook.config import ENV_PREFIX as WEBHOOK_PREFIX
from webhook.config import WebhookSettings
from webhook.config import load_settings as load_webhook
from webhook.inject import env_var

REPO = Path(__file__).resolve().parents[2]
REGISTRATION_REQUEST = REPO / "tests" / "fixtures" / "streamspace" / "registration-request.json"

Check = Callable[[Block, Path], None]
CHECKS: dict[str, Check] = {}


def check(kind: str) -> Callable[[Check], Check]:
    def register(function: Check) -> Check:
        CHECKS[kind] = function
        return function

    return register


EXAMPLES = all_blocks("yaml", "json")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AGENT_BOOTSTRAP_* variable of the outer environment reaches the loaders."""
    for name in list(os.environ):
        if name.upper().startswith((WEBHOOK_PREFIX, APPROVER_PREFIX)):
            monkeypatch.delenv(name)


def test_every_example_is_marked() -> None:
    """Each YAML/JSON block says what it is an example of, with a kind this module checks."""
    unmarked = [b.where for b in EXAMPLES if b.kind is None]
    assert not unmarked, f"add <!-- example: KIND --> before: {unmarked} (kinds: {sorted(CHECKS)})"
    unknown = [f"{b.where} ({b.kind})" for b in EXAMPLES if b.kind not in CHECKS]
    assert not unknown, f"unknown example kinds: {unknown}"


@pytest.mark.parametrize("block", EXAMPLES, ids=[f"{b.where}-{b.kind}" for b in EXAMPLES])
def test_example(block: Block, tmp_path: Path) -> None:
    if block.kind in CHECKS:
        CHECKS[block.kind](block, tmp_path)


# --- configuration ----------------------------------------------------------------------------


def _yaml(block: Block) -> Any:
    return yaml.safe_load(block.text)


def _json(block: Block) -> Any:
    return json.loads(block.text)


def _materialise(data: Any, root: Path, key: str = "") -> Any:
    """``data`` with the absolute paths of file and folder settings moved under ``root`` and
    made to exist (a file for ``...File``/``kubeconfig``, a folder for ``...Dir``)."""
    if isinstance(data, dict):
        return {k: _materialise(v, root, k) for k, v in data.items()}
    if isinstance(data, list):
        return [_materialise(v, root, key) for v in data]
    if isinstance(data, str) and data.startswith("/"):
        path = root / data.lstrip("/")
        if key.endswith("Dir"):
            path.mkdir(parents=True, exist_ok=True)
        elif key.endswith("File") or key == "kubeconfig":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            return data
        return str(path)
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _write(root: Path, name: str, data: dict[str, Any]) -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def load_webhook_example(data: dict[str, Any], root: Path) -> WebhookSettings:
    """The webhook's settings from an example, completed with the three required files."""
    required = {
        "signingKeyFile": "/etc/agent-bootstrap/signing/signing.key",
        "tlsCertFile": "/etc/agent-bootstrap/tls/tls.crt",
        "tlsKeyFile": "/etc/agent-bootstrap/tls/tls.key",
    }
    document = _materialise(_merge(required, data), root)
    return load_webhook(config_file=_write(root, "webhook.yaml", document))


def load_approver_example(data: dict[str, Any], root: Path) -> ApproverSettings:
    """The approver's settings from an example, completed with ``token.jwksFile``."""
    base = {"token": {"jwksFile": "/etc/agent-bootstrap/jwks/jwks.json"}}
    document = _materialise(_merge(base, data), root)
    return load_approver(config_file=_write(root, "approver.yaml", document), environ={})


@check("webhook-config")
def _webhook_config(block: Block, root: Path) -> None:
    load_webhook_example(_yaml(block), root)


@check("approver-config")
def _approver_config(block: Block, root: Path) -> None:
    load_approver_example(_yaml(block), root)


@check("config")
def _both_configs(block: Block, root: Path) -> None:
    data = _yaml(block)
    webhook, approver = load_webhook_example(data, root), load_approver_example(data, root)
    assert webhook.trust == approver.trust


@check("approver-defaults")
def _approver_defaults(block: Block, root: Path) -> None:
    """A settings reference: loading it changes nothing, so every value shown is the default."""
    data = _yaml(block)
    shown = load_approver_example(data, root)
    defaults = load_approver_example({}, root)
    for key in data:
        name = next(n for n, f in ApproverSettings.model_fields.items() if key in (n, f.alias))
        assert getattr(shown, name) == getattr(defaults, name), f"{block.where}: {key}"


# --- Helm and Kubernetes ----------------------------------------------------------------------


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (the test extra)")
    from tests.manifests import chart

    return chart.render(values)


@check("helm-values")
def _helm_values(block: Block, root: Path) -> None:
    assert _render(_yaml(block))


@check("streamspace-values")
def _streamspace_values(block: Block, root: Path) -> None:
    """The values of StreamSpace's own chart: its chart is not here, but the demo renders its
    pods with these ``extraEnv`` (demo.cluster.guide_values_env), and the agents must be sent to
    the approver Service the chart installs, on its port."""
    from demo.cluster import guide_values_env

    agent = _yaml(block)["k8sAgent"]
    env = agent["extraEnv"]
    ca_file = next(e["value"] for e in env if e["name"] == "SSL_CERT_FILE")
    assert env == guide_values_env(ca_file=ca_file)
    mount = next(m for m in agent["extraVolumeMounts"] if ca_file.startswith(m["mountPath"]))
    assert any(v["name"] == mount["name"] for v in agent["extraVolumes"])
    url = agent["config"]["controlPlaneUrl"]
    host, port = url.split("://", 1)[1].split(":")
    service, namespace = host.split(".")[:2]
    rendered = [
        o for o in _render({}) if o["kind"] == "Service" and o["metadata"]["name"] == service
    ]
    assert rendered, f"{block.where}: the chart installs no Service {service}"
    assert namespace == rendered[0]["metadata"]["namespace"]
    assert int(port) in {p["port"] for p in rendered[0]["spec"]["ports"]}


def _validate(obj: dict[str, Any], where: str) -> None:
    if obj["apiVersion"].split("/")[0].endswith(("cert-manager.io", "coreos.com")):
        assert obj["metadata"]["name"]  # a custom resource: no schema here
        return
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    try:
        kubernetes_validate.validate(obj, "1.35", strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{where}: {obj['kind']}: {path}: {exc.message}")


@check("kubernetes")
def _kubernetes(block: Block, root: Path) -> None:
    documents = [d for d in yaml.safe_load_all(block.text) if d is not None]
    assert documents
    for obj in documents:
        _validate(obj, block.where)


@check("pod-spec")
def _pod_spec(block: Block, root: Path) -> None:
    spec = _yaml(block)["spec"]
    for container in spec["containers"]:
        container.setdefault("image", "example")  # an excerpt: the image is the chart's
    _validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec}, "")


# --- wire formats -----------------------------------------------------------------------------


@check("registration-request")
def _registration_request(block: Block, root: Path) -> None:
    """The captured body, byte for byte once the guide's line breaks are taken out."""
    captured = json.loads(REGISTRATION_REQUEST.read_text(encoding="utf-8"))
    shown = "".join(line.strip() for line in block.text.splitlines())
    assert shown == captured["body"]
    assert len(shown.encode()) == int(captured["headers"]["Content-Length"])


@check("audit-line")
def _audit_line(block: Block, root: Path) -> None:
    """The line the webhook writes for these fields at that time, byte for byte."""
    line = block.text.strip()
    event = AuditEvent.model_validate_json(line)
    fields = event.model_dump(exclude_none=True, exclude={"time"})
    assert audit_line(fields, now=event.time) == line


@check("inject-env")
def _inject_env(block: Block, root: Path) -> None:
    defaults = WebhookSettings.model_fields
    expected = env_var(
        variable=defaults["inject_env"].get_default(call_default_factory=True).variable,
        annotation_key=defaults["annotation_key"].default,
    )
    assert _json(block) == expected


@check("client-config")
def _client_config(block: Block, root: Path) -> None:
    config = root / "config.yaml"
    config.write_text(block.text)
    loaded = load_client_config(config)
    assert loaded["current-context"] in loaded["contexts"]
    context = loaded["contexts"][loaded["current-context"]]
    token = root / context["token-file"]
    token.write_text("adm-example")
    token.chmod(0o600)
    target = resolve_client(Overrides(config_file=config), {"XDG_CONFIG_HOME": str(root)})
    assert (target.server, target.token) == (context["server"], "adm-example")
    token.chmod(0o644)
    with pytest.raises(ClientConfigError, match="refused"):
        resolve_client(Overrides(config_file=config), {"XDG_CONFIG_HOME": str(root)})


@check("api-key-scope")
def _api_key_scope(block: Block, root: Path) -> None:
    scope = ApiKeyScope.model_validate(_json(block))
    assert scope.to_json() == _json(block)


@check("api-key-meta")
def _api_key_meta(block: Block, root: Path) -> None:
    shown = _json(block)

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    created = when(shown["createdAt"])
    assert created is not None
    record = ApiKeyRecord(
        key_id=shown["id"],
        name=shown["name"],
        secret_hash="0" * 64,
        scope=ApiKeyScope.model_validate(shown["scope"]),
        source=KeySource(shown["source"]),
        created_at=created,
        created_by=shown["createdBy"],
        expires_at=when(shown["expiresAt"]),
        revoke_at=when(shown["revokeAt"]),
        revoked_by=shown["revokedBy"],
        last_used_at=when(shown["lastUsedAt"]),
        approved_count=shown["approvedCount"],
        replaced_by=shown["replacedBy"],
    )
    assert key_json(record, at=created + timedelta(hours=1)) == shown


@check("service-account-token-claims")
def _service_account_claims(block: Block, root: Path) -> None:
    ServiceAccountTokenClaims.model_validate(_json(block))


@check("review-answer")
def _review_answer(block: Block, root: Path) -> None:
    shown = _json(block)
    answer = _real_review_answer(root)
    assert list(shown) == list(answer)
    assert {type(v) for v in shown.values()} >= {bool, str}


def _real_review_answer(root: Path) -> dict[str, Any]:
    """The answer of ``POST /api/v1/agents/review`` for a key no agent has, from the app."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from approver.http.app import create_app
    from approver.store import Store
    from bootstrap_token import KeySet

    tokens = root / "review-tokens"
    tokens.write_text("control-plane:review-token-0123456789abcdef\n", encoding="utf-8")
    tokens.chmod(0o600)
    settings = ApproverSettings(review_tokens_file=tokens)

    async def call() -> dict[str, Any]:
        store = Store.open(f"sqlite+aiosqlite:///{root / 'approver.db'}")
        await store.migrate()
        app = create_app(settings, key_set=KeySet(), store=store, background=False)
        async with TestClient(TestServer(app)) as client:
            response = await client.post(
                "/api/v1/agents/review",
                json={"apiKey": "aga_" + "a" * 40},
                headers={"Authorization": "Bearer review-token-0123456789abcdef"},
            )
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    return asyncio.run(call())


@check("certificate-answer")
def _certificate_answer(block: Block, root: Path) -> None:
    shown = _json(block)
    answer = _real_certificate_answer(root)
    assert list(shown) == list(answer)
    assert all(isinstance(v, str) for v in shown.values())


def _real_certificate_answer(root: Path) -> dict[str, Any]:
    """The answer of ``POST /api/v1/agents/{agentId}/certificate`` for an active agent's key,
    from the app (over plain HTTP: the key is the credential)."""
    import asyncio
    import uuid

    from aiohttp.test_utils import TestClient, TestServer

    from approver.domain.agent_keys import key_digest, new_agent_key
    from approver.domain.records import AgentStatus
    from approver.http.app import create_app
    from approver.store import Store
    from bootstrap_token import KeySet
    from tests.approver.agent_certs.pki import csr_pem, new_key, write_ca
    from tests.approver.helpers import agent_record

    ca = write_ca(root / "agent-ca")
    settings = ApproverSettings(
        tls_cert_file=ca.cert,  # must exist; the app does not serve TLS here
        tls_key_file=ca.key,
        agent_certificates={"enabled": True, "ca_cert_file": ca.cert, "ca_key_file": ca.key},
    )
    key = new_agent_key()

    async def call() -> dict[str, Any]:
        store = Store.open(f"sqlite+aiosqlite:///{root / 'certificates.db'}")
        await store.migrate()
        async with store.transaction() as tx:
            await tx.insert_agent(
                agent_record(AgentStatus.ACTIVE, id=uuid.uuid4(), api_key_hash=key_digest(key))
            )
        record = agent_record(AgentStatus.ACTIVE)
        app = create_app(settings, key_set=KeySet(), store=store, background=False)
        async with TestClient(TestServer(app)) as client:
            response = await client.post(
                f"/api/v1/agents/{record.agent_id}/certificate",
                json={"csr": csr_pem(new_key())},
                headers={"X-Agent-API-Key": key},
            )
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    return asyncio.run(call())


def _kinds() -> Iterator[str]:
    yield from sorted({b.kind for b in EXAMPLES if b.kind})


def test_each_kind_is_exercised() -> None:
    """Every check above has an example in the guides (a renamed marker is noticed)."""
    assert set(_kinds()) == set(CHECKS)


def test_the_examples_were_found() -> None:
    assert len(EXAMPLES) >= 20
    assert {b.path.name for b in EXAMPLES} >= {"README.md", "webhook.md", "streamspace.md"}
