"""The certificate-issuance benchmark runs end to end for a moment and prints its figures.

Speed is not asserted here (``bench/__init__``: speed is measured by the benchmarks, never in
the test suite): only that one short run on SQLite exits 0 after its checks (every answer 200,
sampled certificates verify against the agent CA, one row per answer, the audit chain) and
prints every figure under its label.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from approver.domain.agent_certificates import build_certificate, check_csr, lifetime
from bench.cert_bench import Request, agent_identity, check_sample, new_csr
from certs_tooling.cli import main as certs_main

ROOT = Path(__file__).resolve().parents[2]

LABELS = (
    "(a) ECDSA P-256 sign of 32 bytes, SHA-256",
    "(b) leaf certificate: build_certificate (sign P-256)",
    "(c) CSR parse + signature check: check_csr (Ed25519)",
    "| database | issued | window s | issued/s (wall) | approver CPU µs/issuance | "
    "issued/s per core | approver cores busy | client CPU µs/request | non-200 |",
    "x the CPU of one raw certificate signing (b)",
    "- supersession: ",
    "- check: all ",
    "sampled certificates verify against the agent CA (verify_directly_issued_by)",
    "- check: agent_certificates holds one row per 200 answer",
    "- check: audit verify: audit chain intact",
)

NUMBER = r"([\d,]+(?:\.\d+)?)"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def test_a_short_run_prints_every_figure_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cert_bench",
            "--duration",
            "1",
            "--warmup",
            "0.5",
            "--connections",
            "2",
            "--agents",
            "5",
            "--crypto-seconds",
            "0.05",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = done.stdout
    for label in LABELS:
        assert label in printed, label
    assert "FAILED" not in printed
    for label in LABELS[:3]:
        row = re.search(rf"\| {re.escape(label)} \| {NUMBER} \| {NUMBER} \|", printed)
        assert row is not None, label
        assert _number(row.group(1)) > 0
        assert _number(row.group(2)) > 0
    issued = re.search(rf"\| sqlite \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", printed)
    assert issued is not None, printed
    assert all(_number(issued.group(n)) > 0 for n in range(1, 5))
    rows = {row["step"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {
        "raw-ecdsa-p256-sign",
        "raw-build-certificate",
        "raw-check-csr",
        "issue-sqlite",
    }
    issue = rows["issue-sqlite"]
    assert issue["non_200"] == 0
    assert issue["failures"] == []
    assert issue["issued"] > 0
    assert issue["total_issued"] >= issue["issued"]


def _answer(ca_cert: Path, ca_key: Path, agent: int, csr: str) -> bytes:
    """An approver-shaped 200 body for agent ``agent``'s ``csr``, signed by the CA at
    ``ca_cert``/``ca_key``."""
    certificate = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    identity = agent_identity(agent)
    leaf = build_certificate(
        identity=identity,
        public_key=check_csr(csr, identity),
        ca_certificate=certificate,
        ca_key=key,
        serial=12345,
        validity=lifetime(
            now=datetime.now(UTC), seconds=600, ca_not_after=certificate.not_valid_after_utc
        ),
    )
    return json.dumps(
        {
            "certificate": leaf.public_bytes(serialization.Encoding.PEM).decode(),
            "caCertificate": ca_cert.read_text(),
            "serial": format(leaf.serial_number, "x"),
        }
    ).encode()


def test_the_sample_check_refuses_a_certificate_of_another_ca(tmp_path: Path) -> None:
    """The exit status rests on :func:`bench.cert_bench.check_sample`: a certificate the agent
    CA signed passes; one of another CA, or for another key, is a failure."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for folder in (ours, theirs):
        assert certs_main(["agent-ca", "init", "--out", str(folder)]) == 0
    csr, raw = new_csr("k8s-bench-cert-00003")
    request = Request(agent=3, api_key="unused", body=b"", public_key=raw)
    good = _answer(ours / "agent-ca.crt", ours / "agent-ca.key", 3, csr)
    foreign = _answer(theirs / "agent-ca.crt", theirs / "agent-ca.key", 3, csr)
    _, failures = check_sample([(request, good)], ours / "agent-ca.crt")
    assert failures == []
    _, failures = check_sample([(request, foreign)], ours / "agent-ca.crt")
    assert len(failures) == 1
    _, other_raw = new_csr("k8s-bench-cert-00003")
    other_key = Request(agent=3, api_key="unused", body=b"", public_key=other_raw)
    _, failures = check_sample([(other_key, good)], ours / "agent-ca.crt")
    assert failures == ["k8s-bench-cert-00003: ValueError: the certificate's key is not the CSR's"]
