"""The YAML config file both services read, as a pydantic-settings source.

Both services take settings from the environment (snake_case field names, nested with ``__``)
over a YAML file (camelCase keys, as Helm renders them) over defaults. pydantic-settings merges
sources by key, so the file's keys are renamed to field names at every level before the merge:
kept as aliases (``tokenTtlSeconds``) next to the environment's field names
(``token_ttl_seconds``) they would give the merged input both spellings of one field, and a
variable could not override the file. Unknown keys are kept as written, so ``extra="forbid"``
reports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class ConfigFileError(ValueError):
    """The config file cannot be read, is not YAML, or is not a mapping (message names the
    file and line, never its content)."""


def os_reason(exc: BaseException) -> str:
    """A short reason for an I/O error (``strerror``), never the data involved."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is ``{}``).

    Raises:
        ConfigFileError: unreadable, not valid YAML (with the line), or not a mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"config file {path}: cannot read: {os_reason(exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigFileError(f"config file {path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {path}: top level must be a mapping")
    return data


def by_field_name(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every key that is a field's alias (or name) renamed to the field's name,
    recursively into nested models; other keys unchanged."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = next((n for n, f in model.model_fields.items() if key in (n, f.alias)), key)
        field = model.model_fields.get(name)
        sub = field.annotation if field is not None else None
        if isinstance(value, dict) and isinstance(sub, type) and issubclass(sub, BaseModel):
            value = by_field_name(sub, value)
        out[name] = value
    return out


class YamlFileSource(PydanticBaseSettingsSource):
    """The parsed YAML file, keys renamed to field names (see the module docstring)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the whole mapping at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return by_field_name(self.settings_cls, self._data)
