"""Where the admin client connects, and with which token: a kubeconfig-like file plus flags.

The file (``--config-file``, else ``$AGENT_BOOTSTRAP_CLIENT_CONFIG``, else
``$XDG_CONFIG_HOME/agent-bootstrap/config.yaml``, ``~/.config/agent-bootstrap/config.yaml`` when
``XDG_CONFIG_HOME`` is unset)::

    current-context: prod
    contexts:
      - name: prod
        server: https://approver.example.internal:8443
        certificate-authority: ca.crt          # PEM; relative to this file; default: system CAs
        token-file: prod.token                 # mode 0600 (refused when group/others may read)
      - name: dev
        server: https://localhost:8443
        insecure-skip-tls-verify: true         # only when written out; never with a CA
        token-env: DEV_APPROVER_TOKEN          # the token in this environment variable

A ``token`` key (a token written into the file) is refused: the token lives in its own file
(owner-only, as ssh requires of a private key) or in an environment variable. Unknown keys are
refused too, so that a misspelt one is not silently ignored.

Precedence: a flag (``--server``, ``--certificate-authority``, ``--insecure-skip-tls-verify``,
``--token-file``) over the chosen context (``--context``, else ``current-context``); without a
token from either, ``$AGENT_BOOTSTRAP_ADMIN_TOKEN``. A missing file is fine when the flags say
it all (``--server`` and a token); a file named by ``--config-file`` or the variable must exist.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

CONFIG_ENV = "AGENT_BOOTSTRAP_CLIENT_CONFIG"
TOKEN_ENV = "AGENT_BOOTSTRAP_ADMIN_TOKEN"  # noqa: S105 (a variable name, not a token)
#: What a bearer token may hold (RFC 6750 b64token is narrower; the approver decides).
_TOKEN = re.compile(r"[\x21-\x7e]+")
_CONTEXT_KEYS = frozenset(
    {
        "name",
        "server",
        "certificate-authority",
        "insecure-skip-tls-verify",
        "token-file",
        "token-env",
    }
)


class ClientConfigError(ValueError):
    """The config file, a flag or the token cannot be used (exit 2). The message names the file
    and the key, never a token."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the command line says: each field set wins over the context's."""

    config_file: Path | None = None
    context: str | None = None
    server: str | None = None
    certificate_authority: Path | None = None
    insecure_skip_tls_verify: bool = False
    token_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved connection: ``server`` (``https://host:port``, no trailing slash), the CA file
    (None: the system's), whether TLS verification is off, and the bearer token."""

    server: str
    certificate_authority: Path | None
    insecure_skip_tls_verify: bool
    token: str
    context: str | None

    def __repr__(self) -> str:  # never the token
        return (
            f"Target(server={self.server!r}, context={self.context!r}, "
            f"certificate_authority={self.certificate_authority!r}, "
            f"insecure_skip_tls_verify={self.insecure_skip_tls_verify})"
        )


def default_config_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/agent-bootstrap/config.yaml`` or ``~/.config/...``."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agent-bootstrap" / "config.yaml"


def load_file(path: Path) -> dict[str, Any]:
    """The parsed config file: ``{"current-context": str | None, "contexts": {name: context}}``.

    Raises:
        ClientConfigError: unreadable, not YAML, or not of the documented shape.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClientConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ClientConfigError(f"config file {path}: not YAML ({type(exc).__name__})") from None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ClientConfigError(f"config file {path}: must be a mapping")
    unknown = set(raw) - {"apiVersion", "kind", "current-context", "contexts"}
    if unknown:
        raise ClientConfigError(f"config file {path}: unknown key(s) {', '.join(sorted(unknown))}")
    contexts: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(raw.get("contexts") or []):
        where = f"config file {path}: contexts[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ClientConfigError(f"{where}: must be a mapping with a name")
        if "token" in item:
            raise ClientConfigError(
                f"{where}: a token is not written into the config file; "
                "use token-file (mode 0600) or token-env"
            )
        extra = set(item) - _CONTEXT_KEYS
        if extra:
            raise ClientConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        for key in ("server", "certificate-authority", "token-file", "token-env"):
            if key in item and not isinstance(item[key], str):
                raise ClientConfigError(f"{where}: {key} must be a string")
        if not isinstance(item.get("insecure-skip-tls-verify", False), bool):
            raise ClientConfigError(f"{where}: insecure-skip-tls-verify must be true or false")
        if item["name"] in contexts:
            raise ClientConfigError(f"{where}: context {item['name']!r} is defined twice")
        contexts[item["name"]] = item
    current = raw.get("current-context")
    if current is not None and not isinstance(current, str):
        raise ClientConfigError(f"config file {path}: current-context must be a string")
    return {"current-context": current, "contexts": contexts}


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped).

    Raises:
        ClientConfigError: the file cannot be read, is empty, or its mode lets group or others
            read or write it (``chmod 600`` it; the message names the path and the mode).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ClientConfigError(f"token file {path}: {exc.strerror or exc}") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ClientConfigError(
            f"token file {path} has mode {mode:04o}: open to users other than its owner; "
            "refused (chmod 600 it)"
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientConfigError(
            f"token file {path}: cannot be read ({type(exc).__name__})"
        ) from None
    if not token:
        raise ClientConfigError(f"token file {path} is empty")
    return token


def _relative_to(base: Path | None, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() or base is None else base.parent / path


def resolve(overrides: Overrides, environ: Mapping[str, str] | None = None) -> Target:
    """The connection the flags and the config file describe (module docstring).

    Raises:
        ClientConfigError: an explicit config file is missing, the context is unknown, no
            server or no token, the server is not ``https://``, a CA together with
            ``insecure-skip-tls-verify``, or a token file refused by :func:`read_token_file`.
    """
    env = os.environ if environ is None else environ
    explicit = overrides.config_file or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    path = explicit or default_config_path(env)
    parsed: dict[str, Any] = {"current-context": None, "contexts": {}}
    if explicit is not None or path.exists():
        parsed = load_file(path)
    name = overrides.context or parsed["current-context"]
    context: dict[str, Any] = {}
    if name is not None:
        if name not in parsed["contexts"]:
            raise ClientConfigError(f"context {name!r} is not in config file {path}")
        context = parsed["contexts"][name]
    server = overrides.server or context.get("server")
    if not server:
        raise ClientConfigError(
            f"no server: pass --server or set a context with a server in {path}"
        )
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise ClientConfigError(f"server {server!r}: must be an https:// URL")
    ca = overrides.certificate_authority or (
        _relative_to(path, context["certificate-authority"])
        if context.get("certificate-authority")
        else None
    )
    insecure = overrides.insecure_skip_tls_verify or context.get("insecure-skip-tls-verify", False)
    if insecure and ca is not None:
        raise ClientConfigError(
            "a certificate-authority together with insecure-skip-tls-verify is refused"
        )
    if overrides.token_file is not None:
        token = read_token_file(overrides.token_file)
    elif context.get("token-file"):
        token = read_token_file(_relative_to(path, context["token-file"]))
    elif context.get("token-env"):
        token = env.get(context["token-env"], "").strip()
        if not token:
            raise ClientConfigError(f"environment variable {context['token-env']} is not set")
    elif env.get(TOKEN_ENV, "").strip():
        token = env[TOKEN_ENV].strip()
    else:
        raise ClientConfigError(
            f"no token: pass --token-file, set token-file or token-env in the context, or "
            f"set {TOKEN_ENV}"
        )
    if not _TOKEN.fullmatch(token):
        raise ClientConfigError("the token holds characters a bearer token cannot have")
    return Target(
        server=server.rstrip("/"),
        certificate_authority=ca,
        insecure_skip_tls_verify=bool(insecure),
        token=token,
        context=name,
    )
