"""The ``agent-bootstrap-webhook`` CLI: exit 2 naming the field, and one real run over TLS."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.stack import free_port
from tests.conftest import Pki
from tests.payloads import streamspace_agent_review
from tests.webhook.conftest import ANNOTATION
from webhook.__main__ import main
from webhook.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, pki: Pki, **overrides: Any) -> Path:
    document: dict[str, Any] = {
        "trust": {"namespaces": ["streamspace"]},
        "cluster": "cli-test",
        "signingKeyFile": str(pki.signing_key),
        "tlsCertFile": str(pki.webhook_cert),
        "tlsKeyFile": str(pki.webhook_key),
        "host": "127.0.0.1",
        "port": free_port(),
        "metricsHost": "127.0.0.1",
        "metricsPort": free_port(),
        "shutdownDelaySeconds": 0,
    }
    document.update(overrides)
    path = tmp_path / "webhook.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


class TestStartupErrors:
    def test_missing_config_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A config file that cannot be read exits 2 and says so."""
        assert main(["--config", str(tmp_path / "absent.yaml")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("agent-bootstrap-webhook: config file ")
        assert "absent.yaml: cannot read" in err

    def test_bad_field(self, tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
        """A value out of bounds in the file exits 2 naming the file key and the file."""
        path = config(tmp_path, pki, tokenTtlSeconds=10)
        assert main(["--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"tokenTtlSeconds (config file {path}): " in err
        assert "AGENT_BOOTSTRAP_WEBHOOK_" not in err

    def test_bad_field_from_the_environment(
        self,
        tmp_path: Path,
        pki: Pki,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A bad value from a variable exits 2 naming the variable, not the file; a good value
        in the file next to it is not blamed."""
        path = config(tmp_path, pki, port=70000)
        monkeypatch.setenv("AGENT_BOOTSTRAP_WEBHOOK_INJECT_ENV", '{"variable": "1BAD"}')
        assert main(["--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "injectEnv.variable (env AGENT_BOOTSTRAP_WEBHOOK_INJECT_ENV): " in err
        assert f"port (config file {path}): " in err

    def test_invalid_json_in_a_variable(
        self,
        tmp_path: Path,
        pki: Pki,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A variable holding invalid JSON exits 2 with a message, no traceback, no value."""
        monkeypatch.setenv("AGENT_BOOTSTRAP_WEBHOOK_TRUST", '{"namespaces": [s3cr3t')
        assert main(["--config", str(config(tmp_path, pki))]) == 2
        err = capsys.readouterr().err
        assert err.startswith("agent-bootstrap-webhook: invalid configuration:\n")
        assert "  trust (env AGENT_BOOTSTRAP_WEBHOOK_TRUST): not valid JSON" in err
        assert "Traceback" not in err
        assert "s3cr3t" not in err

    def test_unreadable_signing_key(
        self, tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A signing key path that exists but cannot be read exits 2 naming signingKeyFile."""
        path = config(tmp_path, pki, signingKeyFile=str(tmp_path))  # a folder
        assert main(["--config", str(path)]) == 2
        assert "signingKeyFile " in capsys.readouterr().err

    def test_wrong_signing_key_type(
        self, tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A signing key that is not Ed25519 (here the TLS key) exits 2 naming signingKeyFile."""
        path = config(tmp_path, pki, signingKeyFile=str(pki.webhook_key))
        assert main(["--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "signingKeyFile " in err
        assert "PRIVATE KEY" not in err

    def test_unreadable_certificate(
        self, tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing serving certificate exits 2 naming tlsCertFile."""
        path = config(tmp_path, pki, tlsCertFile=str(tmp_path / "none.crt"))
        assert main(["--config", str(path)]) == 2
        assert "tlsCertFile " in capsys.readouterr().err

    def test_certificate_from_the_file_names_the_file(
        self, tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing serving certificate set in the file names the file key and the file."""
        missing = tmp_path / "none.crt"
        path = config(tmp_path, pki, tlsCertFile=str(missing))
        assert main(["--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"tlsCertFile (config file {path}) {missing}: cannot read" in err

    def test_certificate_from_the_environment_names_the_variable(
        self,
        tmp_path: Path,
        pki: Pki,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A TLS key set by a variable (over the file's) that does not match the certificate
        set in the file names each where it was set."""
        monkeypatch.setenv("AGENT_BOOTSTRAP_WEBHOOK_TLS_KEY_FILE", str(pki.signing_key))
        path = config(tmp_path, pki)
        assert main(["--config", str(path)]) == 2
        assert capsys.readouterr().err == (
            f"agent-bootstrap-webhook: tlsKeyFile (env AGENT_BOOTSTRAP_WEBHOOK_TLS_KEY_FILE) "
            f"{pki.signing_key}: does not match the certificate in tlsCertFile (config file "
            f"{path}) {pki.webhook_cert}\n"
        )

    def test_signing_key_from_the_file_names_the_file(
        self, tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A signing key that is not Ed25519, set in the file, names the file key and the file."""
        path = config(tmp_path, pki, signingKeyFile=str(pki.webhook_key))
        assert main(["--config", str(path)]) == 2
        assert f"signingKeyFile (config file {path}) {pki.webhook_key}: " in (
            capsys.readouterr().err
        )

    def test_missing_uvloop_names_where_it_was_asked_for(
        self,
        tmp_path: Path,
        pki: Pki,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """``eventLoop: uvloop`` without uvloop exits 2 naming the file key and the file."""
        import webhook.process as cli

        def no_uvloop(choice: object) -> None:
            raise ImportError("uvloop")

        monkeypatch.setattr(cli, "loop_factory", no_uvloop)
        path = config(tmp_path, pki, eventLoop="uvloop")
        settings = load_settings(config_file=path)
        assert cli.run_server(settings) == 2
        assert f"eventLoop (config file {path}): uvloop is not installed" in (
            capsys.readouterr().err
        )

    def test_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--help documents --config and exits 0."""
        with pytest.raises(SystemExit) as info:
            main(["--help"])
        assert info.value.code == 0
        assert "--config PATH" in capsys.readouterr().out


def wait_healthy(port: int, context: ssl.SSLContext, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"webhook exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(
                f"https://localhost:{port}/healthz", context=context, timeout=2
            ) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("webhook did not become healthy")


class TestRealRun:
    def test_python_m_webhook(self, tmp_path: Path, pki: Pki, client_ssl: ssl.SSLContext) -> None:
        """``python -m webhook`` serves TLS, stamps a pod, audits to stdout, exits 0 on SIGTERM."""
        path = config(tmp_path, pki)
        port = yaml.safe_load(path.read_text())["port"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "webhook", "--config", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_healthy(port, client_ssl, proc)
            request = urllib.request.Request(
                f"https://localhost:{port}/mutate",
                data=json.dumps(streamspace_agent_review(uid="uid-cli")).encode(),
                headers={"Content-Type": "application/json"},
            )
            # S310: the URL is the https literal above, not input.
            with urllib.request.urlopen(request, context=client_ssl, timeout=5) as resp:  # noqa: S310
                answer = json.load(resp)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err.decode()
        response = answer["response"]
        assert response["uid"] == "uid-cli"
        token = json.loads(base64.b64decode(response["patch"]))[0]["value"][ANNOTATION]
        events = [json.loads(line) for line in out.decode().splitlines()]
        assert [(e["event"], e["decision"], e["admission_uid"]) for e in events] == [
            ("admission.review", "stamped", "uid-cli")
        ]
        assert events[0]["cluster"] == "cli-test"
        assert token not in out.decode()
        assert token not in err.decode()
        assert "webhook listening on https://127.0.0.1:" in err.decode()
        assert "webhook stopping" in err.decode()
