"""The admin client's configuration (approver.cli.config): the file, its contexts, the flags
over them, and the token, which is never written into the file nor taken from a file others can
read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from approver.cli.config import ClientConfigError, Overrides, resolve

TOKEN = "adm-" + "Ab3Cd4Ef5Gh6Ij7Kl8Mn9Op0Qr1St2Uv"


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    token = tmp_path / "ops.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    (tmp_path / "ca.crt").write_text("not read here")
    write(
        tmp_path / "config.yaml",
        {
            "current-context": "prod",
            "contexts": [
                {
                    "name": "prod",
                    "server": "https://prod.example:8443/",
                    "certificate-authority": "ca.crt",
                    "token-file": "ops.token",
                },
                {
                    "name": "dev",
                    "server": "https://localhost:8443",
                    "insecure-skip-tls-verify": True,
                    "token-env": "DEV_TOKEN",
                },
            ],
        },
    )
    return tmp_path


def env(home: Path, **more: str) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(home / "xdg"), **more}


def test_current_context_relative_paths_and_trailing_slash(home: Path) -> None:
    target = resolve(Overrides(config_file=home / "config.yaml"), env(home))
    assert (target.server, target.certificate_authority, target.token, target.context) == (
        "https://prod.example:8443",
        home / "ca.crt",
        TOKEN,
        "prod",
    )
    assert target.insecure_skip_tls_verify is False
    assert TOKEN not in repr(target)


def test_context_flag_and_token_env(home: Path) -> None:
    target = resolve(
        Overrides(config_file=home / "config.yaml", context="dev"), env(home, DEV_TOKEN=TOKEN)
    )
    assert (target.server, target.insecure_skip_tls_verify, target.token) == (
        "https://localhost:8443",
        True,
        TOKEN,
    )
    with pytest.raises(ClientConfigError, match="DEV_TOKEN is not set"):
        resolve(Overrides(config_file=home / "config.yaml", context="dev"), env(home))


def test_flags_win_over_the_context(home: Path) -> None:
    other = home / "other.token"
    other.write_text("adm-other")
    other.chmod(0o400)
    target = resolve(
        Overrides(
            config_file=home / "config.yaml",
            server="https://other:1",
            certificate_authority=home / "x.pem",
            token_file=other,
        ),
        env(home),
    )
    assert (target.server, target.certificate_authority, target.token) == (
        "https://other:1",
        home / "x.pem",
        "adm-other",
    )


def test_the_config_file_from_the_environment_and_the_default(home: Path) -> None:
    target = resolve(
        Overrides(), env(home, AGENT_BOOTSTRAP_CLIENT_CONFIG=str(home / "config.yaml"))
    )
    assert target.context == "prod"
    default = home / "xdg" / "agent-bootstrap" / "config.yaml"
    default.parent.mkdir(parents=True)
    default.write_text((home / "config.yaml").read_text())
    with pytest.raises(ClientConfigError, match="token file"):  # relative to the default file
        resolve(Overrides(), env(home))
    flags_only = resolve(
        Overrides(server="https://h:1", context=None, config_file=None),
        {"XDG_CONFIG_HOME": str(home / "none"), "AGENT_BOOTSTRAP_ADMIN_TOKEN": TOKEN},
    )
    assert (flags_only.server, flags_only.token, flags_only.context) == ("https://h:1", TOKEN, None)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_a_token_file_others_may_open_is_refused(home: Path, mode: int) -> None:
    (home / "ops.token").chmod(mode)
    with pytest.raises(ClientConfigError) as caught:
        resolve(Overrides(config_file=home / "config.yaml"), env(home))
    assert str(caught.value) == (
        f"token file {home / 'ops.token'} has mode {mode:04o}: open to users other than its "
        "owner; refused (chmod 600 it)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token": TOKEN}, "a token is not written into the config file"),
        ({"tokn-file": "x"}, "unknown key\\(s\\) tokn-file"),
        ({"server": "http://plain:80"}, "must be an https:// URL"),
        ({"insecure-skip-tls-verify": True}, "together with insecure-skip-tls-verify"),
        ({"insecure-skip-tls-verify": "yes"}, "must be true or false"),
    ],
)
def test_refused_contexts(home: Path, change: dict[str, Any], message: str) -> None:
    document = yaml.safe_load((home / "config.yaml").read_text())
    document["contexts"][0].update(change)
    config = write(home / "changed.yaml", document)
    with pytest.raises(ClientConfigError, match=message) as caught:
        resolve(Overrides(config_file=config), env(home))
    assert TOKEN not in str(caught.value)


def test_missing_pieces(home: Path) -> None:
    with pytest.raises(ClientConfigError, match=r"config file .*missing\.yaml"):
        resolve(Overrides(config_file=home / "missing.yaml"), env(home))
    with pytest.raises(ClientConfigError, match="context 'nope' is not in"):
        resolve(Overrides(config_file=home / "config.yaml", context="nope"), env(home))
    with pytest.raises(ClientConfigError, match="no server"):
        resolve(Overrides(), env(home))
    with pytest.raises(ClientConfigError, match="no token"):
        resolve(Overrides(server="https://h:1"), env(home))
    bad = home / "bad.token"
    bad.write_text("two words")
    bad.chmod(0o600)
    with pytest.raises(ClientConfigError, match="characters a bearer token cannot have"):
        resolve(Overrides(server="https://h:1", token_file=bad), env(home))
