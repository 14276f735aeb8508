"""Session fixtures shared by every test package: real PKI made by ``certs-tooling init``."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap_token.audit import AUDIT_LOGGER
from bootstrap_token.log_setup import THIRD_PARTY_LOGGERS
from certs_tooling.cli import main as certs_main
from certs_tooling.layout import Layout


class Pki:
    """Paths of a ``certs-tooling init --local`` folder (CA, both serving certs, signing key)."""

    def __init__(self, root: Path) -> None:
        layout = Layout(root)
        self.layout = layout
        self.dir = root
        self.ca_cert = layout.ca_cert
        self.ca_key = layout.ca_key
        self.webhook_cert = layout.webhook_cert
        self.webhook_key = layout.webhook_key
        self.approver_cert = layout.approver_cert
        self.approver_key = layout.approver_key
        self.signing_key = layout.signing_key
        self.jwks = layout.jwks


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """A test that runs a command line in-process (``main([...])``) configures the process's
    logging (bootstrap_token.log_setup) with handlers on streams pytest captures and closes
    after the test; put back what was there, so later tests log into pytest's capture again."""
    root = logging.getLogger()
    audit = logging.getLogger(AUDIT_LOGGER)
    saved_root = (root.handlers[:], root.level)
    saved_audit = (audit.handlers[:], audit.level, audit.propagate)
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    yield
    root.handlers, root.level = saved_root
    audit.handlers, audit.level, audit.propagate = saved_audit
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A fresh CA, loopback serving certificates, Ed25519 signing key and JWKS."""
    root = tmp_path_factory.mktemp("pki")
    assert certs_main(["init", "--out", str(root), "--local", "--force"]) == 0
    return Pki(root)


@pytest.fixture(scope="session")
def client_ssl(pki: Pki) -> ssl.SSLContext:
    """A TLS client context that trusts only the test CA and checks the host name."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca_cert))
    return ctx


# --- CI guard: PostgreSQL tests must run, not skip, where AGENT_BOOTSTRAP_REQUIRE_PG=1 ---------

_SKIPPED_PG: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "postgres" in report.keywords:
        _SKIPPED_PG.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED_PG and os.environ.get("AGENT_BOOTSTRAP_REQUIRE_PG") == "1":
        print(f"\n{len(_SKIPPED_PG)} PostgreSQL test(s) skipped where they must run:")
        for nodeid in _SKIPPED_PG[:20]:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
