"""Reading the files ``certs-tooling check`` looks at: a whole folder, or explicit paths.

A required file that is missing or unreadable becomes a FAIL finding here; the checks
themselves are pure (:mod:`certs_tooling.check`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from certs_tooling.check import (
    AgentCaInputs,
    ClientInputs,
    Finding,
    Inputs,
    Level,
    Named,
    ServingInputs,
)
from certs_tooling.files import mode_of
from certs_tooling.layout import Component, Layout


@dataclass(frozen=True, slots=True)
class Paths:
    """Explicit file paths (the ``check`` flags). None skips the checks needing that file."""

    ca: Path | None = None
    ca_key: Path | None = None
    ca_bundle: Path | None = None
    webhook_cert: Path | None = None
    webhook_key: Path | None = None
    approver_cert: Path | None = None
    approver_key: Path | None = None
    signing_key: Path | None = None
    jwks: Path | None = None

    def given(self) -> bool:
        """True when at least one path is set."""
        return any(getattr(self, f.name) is not None for f in fields(self))


class _Reader:
    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.problems: list[Finding] = []
        self.private: list[tuple[str, int]] = []

    def name(self, path: Path) -> str:
        if self.root is not None and path.is_relative_to(self.root):
            return str(path.relative_to(self.root))
        return str(path)

    def read(self, path: Path | None, *, required: bool, private: bool = False) -> Named | None:
        if path is None:
            return None
        name = self.name(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if required:
                self.problems.append(Finding(Level.FAIL, name, "missing"))
            return None
        except OSError as exc:
            self.problems.append(Finding(Level.FAIL, name, f"cannot read: {exc.strerror}"))
            return None
        if private:
            self.private.append((name, mode_of(path)))
        return Named(name, data)


def _client(r: _Reader, layout: Layout) -> ClientInputs | None:
    """The ``apiserver-client`` files, or None when the folder holds none of them. Once one is
    there, all but ``apiserver-client-ca.key`` are required."""
    names = (
        layout.apiserver_client_cert,
        layout.apiserver_client_key,
        layout.apiserver_client_ca_cert,
        layout.apiserver_client_ca_key,
        layout.apiserver_client_ca_bundle,
        layout.apiserver_kubeconfig,
    )
    if not any(path.exists() for path in names):
        return None
    return ClientInputs(
        cert=r.read(layout.apiserver_client_cert, required=True),
        key=r.read(layout.apiserver_client_key, required=True, private=True),
        ca=r.read(layout.apiserver_client_ca_cert, required=True),
        ca_key=r.read(layout.apiserver_client_ca_key, required=False, private=True),
        bundle=r.read(layout.apiserver_client_ca_bundle, required=True),
        kubeconfig=r.read(layout.apiserver_kubeconfig, required=True, private=True),
    )


def _agent_ca(r: _Reader, layout: Layout) -> AgentCaInputs | None:
    """The ``agent-ca`` files, or None when the folder holds no ``agent-ca.crt``. Once it is
    there, ``agent-ca.key`` and ``agent-ca-bundle.crt`` are required too."""
    if not layout.agent_ca_cert.exists():
        return None
    return AgentCaInputs(
        ca=r.read(layout.agent_ca_cert, required=True),
        key=r.read(layout.agent_ca_key, required=True, private=True),
        bundle=r.read(layout.agent_ca_bundle, required=True),
        previous=r.read(layout.agent_ca_previous, required=False),
    )


def from_folder(layout: Layout, *, namespace: str | None = None) -> tuple[Inputs, list[Finding]]:
    """Inputs for a certs-tooling folder (``namespace``: the Services' namespace to check the
    serving certificates against, or None), and FAIL findings for missing required files.

    Required: ``ca.crt``, both serving certificates and keys, ``signing.key``, ``jwks.json``.
    Optional (checked when present): ``ca.key``, ``ca-bundle.crt``, ``ca-previous.crt``, the
    combined ``.pem`` files, ``keys/state.json``, ``keys/<kid>.key`` (permissions), the
    ``apiserver-client`` files (see :func:`_client`) and the ``agent-ca`` files (see
    :func:`_agent_ca`).
    """
    r = _Reader(layout.root)
    serving = []
    for component in Component:
        files = layout.serving(component)
        cert = r.read(files.cert, required=True)
        key = r.read(files.key, required=True, private=True)
        pair = r.read(files.pair, required=False, private=True)
        if cert is not None:
            serving.append(ServingInputs(cert=cert, key=key, pair=pair))
    ca = r.read(layout.ca_cert, required=True)
    ca_key = r.read(layout.ca_key, required=False, private=True)
    signing_key = r.read(layout.signing_key, required=True, private=True)
    if layout.keys_dir.is_dir():
        for path in sorted(layout.keys_dir.glob("*.key")):
            r.private.append((r.name(path), mode_of(path)))
    client = _client(r, layout)
    agent = _agent_ca(r, layout)
    inputs = Inputs(
        ca=ca,
        ca_key=ca_key,
        ca_bundle=r.read(layout.ca_bundle, required=False),
        ca_previous=r.read(layout.ca_previous, required=False),
        serving=serving,
        signing_key=signing_key,
        jwks=r.read(layout.jwks, required=True),
        key_state=r.read(layout.key_state, required=False),
        apiserver_client=client,
        agent_ca=agent,
        private_modes=tuple(r.private),
        namespace=namespace,
    )
    return inputs, r.problems


def from_paths(paths: Paths, *, namespace: str | None = None) -> tuple[Inputs, list[Finding]]:
    """Inputs for explicitly named files; every named file is required. ``namespace`` as for
    :func:`from_folder`."""
    r = _Reader(None)
    serving = []
    for cert_path, key_path in (
        (paths.webhook_cert, paths.webhook_key),
        (paths.approver_cert, paths.approver_key),
    ):
        cert = r.read(cert_path, required=True)
        key = r.read(key_path, required=True, private=True)
        if cert is not None:
            serving.append(ServingInputs(cert=cert, key=key))
    ca_key = r.read(paths.ca_key, required=True, private=True)
    signing_key = r.read(paths.signing_key, required=True, private=True)
    inputs = Inputs(
        ca=r.read(paths.ca, required=True),
        ca_key=ca_key,
        ca_bundle=r.read(paths.ca_bundle, required=True),
        serving=serving,
        signing_key=signing_key,
        jwks=r.read(paths.jwks, required=True),
        private_modes=tuple(r.private),
        namespace=namespace,
    )
    return inputs, r.problems
