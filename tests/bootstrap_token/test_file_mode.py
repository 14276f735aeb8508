"""Secret files open to more users than the service needs (issue 17: no warning at all)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootstrap_token.file_mode import mode_warning, wider_than_needed


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "signing.key"
    path.write_text("not read here\n")
    return path


@pytest.mark.parametrize(
    ("mode", "wide"),
    [(0o600, False), (0o400, False), (0o644, True), (0o604, True), (0o640, True), (0o660, True)],
)
def test_own_file(secret: Path, mode: int, wide: bool) -> None:
    """A file this process owns needs no group or other bits: any of them is too wide."""
    secret.chmod(mode)
    assert wider_than_needed(secret) == (mode if wide else None)


def test_follows_symlinks(secret: Path, tmp_path: Path) -> None:
    """A Secret volume's file is a symlink through ``..data``: the target's mode counts."""
    secret.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(secret)
    assert wider_than_needed(link) == 0o644


def test_missing_file_is_no_warning(tmp_path: Path) -> None:
    assert wider_than_needed(tmp_path / "absent") is None
    assert mode_warning("signingKeyFile", tmp_path / "absent") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file another owner")
@pytest.mark.parametrize(("mode", "wide"), [(0o440, False), (0o460, True), (0o444, True)])
def test_read_through_the_group_is_needed(secret: Path, mode: int, wide: bool) -> None:
    """A Kubernetes Secret volume with fsGroup: owned by someone else, group = one of ours,
    mode 0440. The group bits are how this process reads it: not too wide. Group write, or
    others' bits, still are."""
    os.chown(secret, 65532, os.getegid())
    secret.chmod(mode)
    assert wider_than_needed(secret) == (mode if wide else None)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file another group")
def test_group_of_others_is_too_wide(secret: Path) -> None:
    """Group bits for a group this process is not in help nobody but that group."""
    others = max([*os.getgroups(), os.getegid()]) + 4242
    os.chown(secret, 65532, others)
    secret.chmod(0o440)
    assert wider_than_needed(secret) == 0o440


def test_warning_names_setting_path_and_mode(secret: Path) -> None:
    secret.chmod(0o644)
    assert mode_warning("signingKeyFile (config file w.yaml)", secret) == (
        f"signingKeyFile (config file w.yaml) {secret} has mode 0644: open to users other than "
        "its owner; make it owner-only (chmod 600), or in Kubernetes mount its Secret with "
        "defaultMode 0440 and the pod's fsGroup"
    )
