"""Where a setting came from (bootstrap_token.config_file.Origins), on a small settings model."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bootstrap_token.config_file import Origins, env_name, file_key, origins

PREFIX = "CFG_TEST_"


class _Inner(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True)

    ttl_seconds: int = Field(default=60, alias="ttlSeconds", ge=1)


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=PREFIX, env_nested_delimiter="__", validate_by_name=True
    )

    inner: _Inner = Field(default_factory=_Inner)
    max_bytes: int = Field(default=1, alias="maxBytes", ge=1)


def _errors(**data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Settings.model_validate(data)
    return info.value


class TestOrigins:
    def test_names(self) -> None:
        """File keys are camelCase, variables the upper-cased field names joined by __."""
        assert file_key(_Settings, ("inner", "ttl_seconds")) == "inner.ttlSeconds"
        assert env_name(PREFIX, _Settings, ("inner", "ttlSeconds")) == PREFIX + "INNER__TTL_SECONDS"

    def test_from_the_file(self, tmp_path: Path) -> None:
        """A value only the file set names the file key and the file."""
        path = tmp_path / "c.yaml"
        found = Origins(model=_Settings, env_prefix=PREFIX, file=path, file_data={"maxBytes": 0})
        exc = _errors(maxBytes=0)
        assert (
            found.describe_errors(exc)
            .splitlines()[1]
            .strip()
            .startswith(f"maxBytes (config file {path}): ")
        )

    def test_environment_wins(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A value both sources set is named by the variable (it is the one used)."""
        monkeypatch.setenv(PREFIX + "INNER__TTL_SECONDS", "0")
        path = tmp_path / "c.yaml"
        found = origins(_Settings, file=path, file_data={"inner": {"ttlSeconds": 5}})
        assert found.source(("inner", "ttlSeconds")) == "env"
        assert found.describe(("inner", "ttlSeconds")) == (
            f"inner.ttlSeconds (env {PREFIX}INNER__TTL_SECONDS)"
        )

    def test_whole_section_as_json(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A section set as one JSON variable is named by that variable."""
        monkeypatch.setenv(PREFIX + "INNER", '{"ttl_seconds": 0}')
        found = origins(_Settings, file=None, file_data={})
        assert found.describe(("inner", "ttl_seconds")) == f"inner.ttlSeconds (env {PREFIX}INNER)"

    def test_default(self) -> None:
        """A value nobody set is named with both ways to set it."""
        found = Origins(model=_Settings, env_prefix=PREFIX)
        assert found.source(("maxBytes",)) is None
        assert found.describe(("maxBytes",)) == (
            f"maxBytes (config file key, or env {PREFIX}MAX_BYTES)"
        )

    def test_unknown_file_key(self, tmp_path: Path) -> None:
        """An unknown key in the file names the file."""
        path = tmp_path / "c.yaml"
        found = Origins(model=_Settings, env_prefix=PREFIX, file=path, file_data={"maxByte": 1})
        text = found.describe_errors(_errors(maxByte=1))
        assert f"maxByte: unknown key in config file {path}" in text
