"""The webhook as a process: SIGTERM drains in-flight reviews, readiness, several workers.

Each test runs ``python -m webhook`` with the certs-tooling PKI on loopback ports. Waits are
bounded loops; nothing asserts on elapsed time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.stack import free_port
from tests.conftest import Pki
from tests.payloads import streamspace_agent_review

ROOT = Path(__file__).resolve().parents[2]


class Webhook:
    """A running ``python -m webhook`` and its ports."""

    def __init__(self, tmp_path: Path, pki: Pki, **overrides: Any) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        document: dict[str, Any] = {
            "trust": {"namespaces": ["streamspace"]},
            "cluster": "process-test",
            "signingKeyFile": str(pki.signing_key),
            "tlsCertFile": str(pki.webhook_cert),
            "tlsKeyFile": str(pki.webhook_key),
            "host": "127.0.0.1",
            "port": self.port,
            "metricsHost": "127.0.0.1",
            "metricsPort": self.metrics_port,
            "shutdownDelaySeconds": 0,
            "reloadIntervalSeconds": 0.05,
            **overrides,
        }
        config = tmp_path / "webhook.yaml"
        config.write_text(yaml.safe_dump(document))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webhook", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def get(self, path: str, context: ssl.SSLContext) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"https://localhost:{self.port}{path}", context=context, timeout=5
            ) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_for(self, path: str, status: int, context: ssl.SSLContext) -> None:
        for _ in range(300):
            if self.proc.poll() is not None:
                raise AssertionError(f"webhook exited with {self.proc.returncode}")
            try:
                if self.get(path, context)[0] == status:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {status}")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text: str = resp.read().decode()
            return text

    def stop(self, *, signal_it: bool = True) -> tuple[int, str, str]:
        """SIGTERM (unless already sent) and collect the exit status and output."""
        if signal_it and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out.decode(), err.decode()


@pytest.fixture
def start(tmp_path: Path, pki: Pki) -> Iterator[Any]:
    started: list[Webhook] = []

    def factory(**overrides: Any) -> Webhook:
        webhook = Webhook(tmp_path, pki, **overrides)
        started.append(webhook)
        return webhook

    yield factory
    for webhook in started:
        webhook.stop()


def post(port: int, context: ssl.SSLContext, review: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"https://localhost:{port}/mutate",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as resp:  # noqa: S310
        answer: dict[str, Any] = json.load(resp)
        return answer


def read_response(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class TestShutdown:
    def test_sigterm_finishes_a_review_in_flight(
        self, start: Any, client_ssl: ssl.SSLContext
    ) -> None:
        """A review whose body is still arriving at SIGTERM is answered 200; then exit 0."""
        webhook = start()
        webhook.wait_for("/readyz", 200, client_ssl)
        body = json.dumps(streamspace_agent_review(uid="uid-in-flight")).encode()
        raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=10)
        sock = client_ssl.wrap_socket(raw, server_hostname="localhost")
        try:
            sock.sendall(
                b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:100]
            )
            time.sleep(0.3)  # let the server start handling the request
            webhook.proc.send_signal(signal.SIGTERM)
            # The listener closes while the review waits for its body.
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", webhook.port), timeout=1).close()
                except ConnectionRefusedError:
                    break
                time.sleep(0.05)
            sock.sendall(body[100:])
            response = read_response(sock)
        finally:
            sock.close()
        status, out, err = webhook.stop(signal_it=False)
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        answer = json.loads(payload)
        assert answer["response"]["uid"] == "uid-in-flight"
        assert answer["response"]["auditAnnotations"]["decision"] == "stamped"
        assert status == 0, err
        assert "webhook stopping" in err
        assert "webhook stopped" in err
        assert "uid-in-flight" in out  # its audit line was written before exit

    def test_drain_delay_reports_not_ready_but_serves(
        self, start: Any, client_ssl: ssl.SSLContext
    ) -> None:
        """During shutdownDelaySeconds /readyz is 503 while reviews are still answered."""
        webhook = start(shutdownDelaySeconds=30)
        webhook.wait_for("/readyz", 200, client_ssl)
        webhook.proc.send_signal(signal.SIGTERM)
        webhook.wait_for("/readyz", 503, client_ssl)
        assert webhook.get("/readyz", client_ssl) == (503, "not ready: shutting down")
        answer = post(webhook.port, client_ssl, streamspace_agent_review(uid="uid-draining"))
        assert answer["response"]["auditAnnotations"]["decision"] == "stamped"
        # A second signal skips the rest of the delay (and does not kill the process).
        status, _, err = webhook.stop()
        assert status == 0, err


class TestReadiness:
    def test_ready_once_the_key_appears(
        self, start: Any, tmp_path: Path, pki: Pki, client_ssl: ssl.SSLContext
    ) -> None:
        """No key file yet: serves unstamped and not ready; the file appears: ready and stamping."""
        key_file = tmp_path / "later" / "signing.key"
        key_file.parent.mkdir()
        webhook = start(signingKeyFile=str(key_file))
        webhook.wait_for("/healthz", 200, client_ssl)
        assert webhook.get("/readyz", client_ssl) == (503, "not ready: no signing key loaded")
        answer = post(webhook.port, client_ssl, streamspace_agent_review())
        assert answer["response"]["auditAnnotations"]["decision"] == "no_signing_key"
        key_file.write_bytes(pki.signing_key.read_bytes())
        webhook.wait_for("/readyz", 200, client_ssl)
        answer = post(webhook.port, client_ssl, streamspace_agent_review())
        assert answer["response"]["auditAnnotations"]["decision"] == "stamped"
        status, _, err = webhook.stop()
        assert status == 0, err
        assert "not found; serving unstamped and not ready" in err

    def test_metrics_port_is_plain_http(self, start: Any, client_ssl: ssl.SSLContext) -> None:
        """The metrics port answers plain HTTP with counters, key age and certificate expiry."""
        webhook = start()
        webhook.wait_for("/readyz", 200, client_ssl)
        post(webhook.port, client_ssl, streamspace_agent_review())
        text = webhook.metrics()
        assert "agent_bootstrap_webhook_tokens_issued_total 1.0" in text
        assert "agent_bootstrap_webhook_signing_key_age_seconds " in text
        assert "agent_bootstrap_webhook_tls_certificate_expiry_seconds " in text
        assert webhook.get("/metrics", client_ssl)[0] == 404


class TestWorkers:
    def test_two_workers_share_the_port(self, start: Any, client_ssl: ssl.SSLContext) -> None:
        """workers: 2 serves on one port, sums both workers' metrics, stops on SIGTERM."""
        webhook = start(workers=2)
        webhook.wait_for("/readyz", 200, client_ssl)
        answers = [
            post(webhook.port, client_ssl, streamspace_agent_review(uid=f"uid-w{i}"))
            for i in range(20)
        ]
        assert {a["response"]["auditAnnotations"]["decision"] for a in answers} == {"stamped"}
        total = 0.0
        for _ in range(100):  # the metrics files are written as the workers count
            for line in webhook.metrics().splitlines():
                if line.startswith("agent_bootstrap_webhook_tokens_issued_total "):
                    total = float(line.split()[1])
            if total >= 20:
                break
            time.sleep(0.05)
        assert total == 20
        status, out, err = webhook.stop()
        assert status == 0, err
        assert "supervising 2 workers" in err
        assert len([line for line in out.splitlines() if '"uid-w' in line]) == 20
