"""``agentCertificates`` settings: a bad configuration stops the approver at start with the
field named (never a value); unusable CA files are named by field and path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from approver.config import ConfigError, load_settings
from approver.resources import signing_ca
from certs_tooling.pki import make_serving_cert
from tests.approver.agent_certs.pki import write_ca
from tests.conftest import Pki


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "approver.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(config_file=path, environ={})


def test_enabled_without_ca_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"caCertFile and agentCertificates\.caKeyFile"):
        _load(tmp_path, "agentCertificates:\n  enabled: true\n")


def test_enabled_without_tls(tmp_path: Path) -> None:
    ca = write_ca(tmp_path / "ca")
    with pytest.raises(ConfigError, match=r"agentCertificates\.enabled requires tlsCertFile"):
        _load(
            tmp_path,
            f"agentCertificates:\n  enabled: true\n  caCertFile: {ca.cert}\n"
            f"  caKeyFile: {ca.key}\n",
        )


def test_lifetime_bounds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lifetimeSeconds"):
        _load(tmp_path, "agentCertificates:\n  lifetimeSeconds: 10\n")


def _settings(tmp_path: Path, pki: Pki, cert: Path, key: Path) -> object:
    return _load(
        tmp_path,
        f"tlsCertFile: {pki.approver_cert}\ntlsKeyFile: {pki.approver_key}\n"
        f"agentCertificates:\n  enabled: true\n  caCertFile: {cert}\n  caKeyFile: {key}\n",
    )


def test_key_of_another_ca(tmp_path: Path, pki: Pki) -> None:
    one, other = write_ca(tmp_path / "one"), write_ca(tmp_path / "other")
    settings = _settings(tmp_path, pki, one.cert, other.key)
    with pytest.raises(ConfigError) as error:
        signing_ca(settings)  # type: ignore[arg-type]
    assert "agentCertificates.caKeyFile (config file" in str(error.value)
    assert str(other.key) in str(error.value)
    assert "does not match" in str(error.value)


def test_a_leaf_is_not_a_ca(tmp_path: Path, pki: Pki) -> None:
    ca = write_ca(tmp_path / "ca")
    leaf = make_serving_cert(ca=ca.issued, dns_names=["x"], valid_days=1, now=datetime.now(UTC))
    (tmp_path / "leaf.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem)
    settings = _settings(tmp_path, pki, tmp_path / "leaf.crt", tmp_path / "leaf.key")
    with pytest.raises(ConfigError, match="not a CA certificate"):
        signing_ca(settings)  # type: ignore[arg-type]
    for line in leaf.key_pem.decode().splitlines()[1:-1]:
        assert line not in str(settings)
