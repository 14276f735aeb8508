"""FileKeySet: the approver follows jwks.json without a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from approver.files.jwks import FileKeySet
from bootstrap_token import KeySet, SigningKey


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def write(path: Path, *keys: SigningKey) -> None:
    """Write a JWKS atomically (temp file + rename), as certs-tooling does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(KeySet([k.public_key for k in keys]).to_jwks()))
    os.replace(tmp, path)


class TestFileKeySet:
    def test_follows_added_and_removed_keys(self, tmp_path: Path) -> None:
        """After the interval, a key added to the file is known and a removed one is not."""
        a, b = SigningKey.generate(), SigningKey.generate()
        path = tmp_path / "jwks.json"
        write(path, a)
        clock = Clock()
        keys = FileKeySet(path, check_interval_seconds=1.0, monotonic=clock)
        assert list(keys) == [a.kid]
        write(path, a, b)
        assert b.kid not in keys  # not looked at again before the interval
        clock.t = 1.5
        assert b.kid in keys
        assert keys[b.kid] is not None
        write(path, b)
        clock.t = 3.0
        assert a.kid not in keys
        assert set(keys) == {b.kid}

    def test_unusable_change_keeps_the_keys(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A half-written or private-key JWKS keeps the keys in use and logs an error."""
        a = SigningKey.generate()
        path = tmp_path / "jwks.json"
        write(path, a)
        clock = Clock()
        keys = FileKeySet(path, monotonic=clock)
        path.write_text('{"keys": [')
        clock.t = 5.0
        assert list(keys) == [a.kid]
        assert "cannot be used" in caplog.text

    def test_symlink_swap_is_seen(self, tmp_path: Path) -> None:
        """A ConfigMap-style ..data symlink swap is followed."""
        a, b = SigningKey.generate(), SigningKey.generate()
        for name, key in (("v1", a), ("v2", b)):
            (tmp_path / name).mkdir()
            write(tmp_path / name / "jwks.json", key)
        (tmp_path / "..data").symlink_to("v1")
        (tmp_path / "jwks.json").symlink_to("..data/jwks.json")
        clock = Clock()
        keys = FileKeySet(tmp_path / "jwks.json", monotonic=clock)
        assert list(keys) == [a.kid]
        (tmp_path / "..data_tmp").symlink_to("v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        clock.t = 2.0
        assert list(keys) == [b.kid]
