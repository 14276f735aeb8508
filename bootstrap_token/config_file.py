"""The YAML config file both services read, as a pydantic-settings source.

Both services take settings from the environment (snake_case field names, nested with ``__``)
over a YAML file (camelCase keys, as Helm renders them) over defaults. pydantic-settings merges
sources by key, so the file's keys are renamed to field names at every level before the merge:
kept as aliases (``tokenTtlSeconds``) next to the environment's field names
(``token_ttl_seconds``) they would give the merged input both spellings of one field, and a
variable could not override the file. Unknown keys are kept as written, so ``extra="forbid"``
reports them.

:class:`Origins` tells where a field's value came from (a variable wins over the file, the
file over the default), so an error names what the operator must change: the file key and the
file when the value came from the file, the environment variable when it came from the
environment, both when the value is missing or a default.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bootstrap_token.env_json import SETTINGS_ERROR_FIELD, is_json, json_location
from bootstrap_token.log_setup import LogFormat, LogLevel

#: A port a service listens on, the same rule for both services: 1..65535. Port 0 ("any free
#: port") is refused: a Service, a probe or an agent cannot point at a port chosen at random.
ListenPort = Annotated[int, Field(ge=1, le=65535)]


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


Loc = Sequence[int | str]
Source = Literal["env", "file"]


def _parts(model: type[BaseModel], loc: Loc) -> list[tuple[str, str, bool]]:
    """(field name, file key, is a model field) of each part of ``loc``, a location given with
    field names or aliases in any mix (pydantic reports both)."""
    parts: list[tuple[str, str, bool]] = []
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not isinstance(fields, dict) or not isinstance(part, str):
            parts.append((str(part), str(part), False))
            current = None
            continue
        name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
        if name is None:
            parts.append((part, part, False))
            current = None
            continue
        info = fields[name]
        parts.append((name, info.alias or name, True))
        current = info.annotation
    return parts


def file_key(model: type[BaseModel], loc: Loc) -> str:
    """The dotted camelCase file key of a field location, e.g. ``token.jwksFile``."""
    return ".".join(key for _, key, _ in _parts(model, loc))


def env_name(prefix: str, model: type[BaseModel], loc: Loc) -> str:
    """The environment variable of a field location: ``prefix`` + field names upper-cased,
    joined with ``__``, e.g. ``AGENT_BOOTSTRAP_APPROVER_TOKEN__JWKS_FILE``."""
    return prefix + "__".join(name.upper() for name, _, _ in _parts(model, loc))


def _present(data: Mapping[str, Any], model: type[BaseModel], loc: Loc) -> int:
    """How many leading parts of ``loc`` ``data`` (a source's mapping) gives a value for: 0 when
    none, ``len(loc)`` or fewer when a value (a list, a scalar) covers the rest."""
    node: Any = data
    current: Any = model
    for depth, part in enumerate(loc):
        if not isinstance(node, Mapping):
            return depth
        fields = getattr(current, "model_fields", None)
        spellings = {part}
        if isinstance(fields, dict):
            name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
            if name is not None:
                spellings |= {name, fields[name].alias or name}
                current = fields[name].annotation
            else:
                current = None
        else:
            current = None
        key = next((k for k in spellings if k in node), None)
        if key is None:
            return 0
        node = node[key]
    return len(loc)


@dataclass(frozen=True)
class Origins:
    """Where each setting came from, for error messages (module docstring).

    Attributes:
        model: the settings model.
        env_prefix: its environment prefix, e.g. ``AGENT_BOOTSTRAP_APPROVER_``.
        file: the YAML file read, or None.
        file_data: that file's mapping (as written, camelCase keys).
        env_data: what the environment source gave (``EnvSettingsSource()``), field names.
        environ: the environment variable names (to name the one actually set).
    """

    model: type[BaseModel]
    env_prefix: str
    file: Path | None = None
    file_data: Mapping[str, Any] = field(default_factory=dict)
    env_data: Mapping[str, Any] = field(default_factory=dict)
    environ: frozenset[str] = field(default_factory=frozenset)

    def source(self, loc: Loc) -> Source | None:
        """``env`` or ``file`` when that source set the value at ``loc`` (the environment is
        asked first: it wins), else None (a default, or missing)."""
        if loc and _present(self.env_data, self.model, loc):
            return "env"
        if loc and self.file is not None and _present(self.file_data, self.model, loc):
            return "file"
        return None

    def variable(self, loc: Loc) -> str:
        """The variable that set ``loc``: the deepest of ``TOKEN__JWKS_FILE``, ``TOKEN`` (a JSON
        object) that is set, in any case; else the canonical name of ``loc``."""
        parts = _parts(self.model, loc)
        upper = {name.upper() for name in self.environ}
        for depth in range(len(parts), 0, -1):
            spellings = [
                {name.upper(), key.upper()} if is_field else {name.upper()}
                for name, key, is_field in parts[:depth]
            ]
            for combo in itertools.product(*spellings):
                candidate = self.env_prefix + "__".join(combo)
                if candidate in upper:
                    return candidate
        return env_name(self.env_prefix, self.model, loc)

    def describe(self, loc: Loc) -> str:
        """A field as the operator must look for it: ``token.jwksFile (config file x.yaml)``,
        ``token.jwksFile (env AGENT_..._TOKEN__JWKS_FILE)``, or, when neither set it,
        ``token.jwksFile (config file key, or env AGENT_..._TOKEN__JWKS_FILE)``."""
        key = file_key(self.model, loc)
        where = self.source(loc)
        if where == "env":
            return f"{key} (env {self.variable(loc)})"
        if where == "file":
            return f"{key} (config file {self.file})"
        return f"{key} (config file key, or env {env_name(self.env_prefix, self.model, loc)})"

    def describe_errors(self, exc: ValidationError) -> str:
        """Every validation error of ``exc`` as one line naming its field and where it was set
        (:meth:`describe`), never the value. Errors about the whole model (cross-field rules)
        are ``settings: <message>``; their message names the keys."""
        lines = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = err["loc"]
            if not loc or not isinstance(loc[0], str):
                lines.append(f"settings: {err['msg']}")
                continue
            if err["type"] == "extra_forbidden":
                where = self.source(loc)
                if where == "file":
                    key = file_key(self.model, loc)
                    lines.append(f"{key}: unknown key in config file {self.file}")
                elif where == "env":
                    lines.append(f"{self.variable(loc)}: unknown setting")
                else:
                    lines.append(f"{file_key(self.model, loc)}: unknown key")
                continue
            lines.append(f"{self.describe(loc)}: {err['msg']}")
        return "invalid configuration:\n  " + "\n  ".join(lines)

    def describe_settings_error(self, exc: Exception, environ: Mapping[str, str]) -> str:
        """A pydantic-settings ``SettingsError`` (a variable for a list or an object that does
        not hold JSON; its own text names only the top-level field and the source class) as
        lines naming each variable at fault and its file key, never the value:
        ``trust.namespaces (env AGENT_..._TRUST__NAMESPACES): not valid JSON (a list or an
        object is written as JSON in the environment, e.g. ["a"] or {"key": "value"})``.

        Args:
            exc: the ``SettingsError``.
            environ: the environment the settings were read from (``os.environ``).
        """
        match = SETTINGS_ERROR_FIELD.search(str(exc))
        top = match.group(1).upper() if match else ""
        hint = (
            "not valid JSON (a list or an object is written as JSON in the environment, "
            'e.g. ["a"] or {"key": "value"})'
        )
        lines = []
        for name in sorted(self.environ):
            rest = name.upper()[len(self.env_prefix) :]
            if top and rest != top and not rest.startswith(top + "__"):
                continue
            loc = json_location(self.model, name[len(self.env_prefix) :])
            if loc and not is_json(environ.get(name, "")):
                lines.append(f"{file_key(self.model, loc)} (env {name}): {hint}")
        if not lines:
            key = file_key(self.model, [match.group(1)]) if match else "settings"
            where = env_name(self.env_prefix, self.model, [match.group(1)]) if match else ""
            lines.append(f"{key} (env {where or self.env_prefix + '...'}): {hint}")
        return "invalid configuration:\n  " + "\n  ".join(lines)


def origins(
    settings_cls: type[BaseSettings],
    *,
    file: Path | None,
    file_data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Origins:
    """The :class:`Origins` of ``settings_cls`` built from ``file`` (already read into
    ``file_data``) and the environment (``os.environ`` by default; pydantic-settings always
    reads ``os.environ``)."""
    env = os.environ if environ is None else environ
    prefix = str(settings_cls.model_config.get("env_prefix") or "")
    try:
        env_data: Mapping[str, Any] = EnvSettingsSource(settings_cls)()
    except ValueError:
        env_data = {}
    return Origins(
        model=settings_cls,
        env_prefix=prefix,
        file=file,
        file_data=file_data,
        env_data=env_data,
        environ=frozenset(n for n in env if n.upper().startswith(prefix.upper())),
    )


# --- the settings base of both services ------------------------------------------------------

# The file being read by load_service_settings() (path, mapping) while it builds a settings
# object: its YAML source, see ServiceSettings.settings_customise_sources.
_CONFIG_FILE: ContextVar[tuple[Path, dict[str, Any]] | None] = ContextVar(
    "agent_bootstrap_config_file", default=None
)


class ServiceSettings(BaseSettings):
    """The base of both services' settings: sources, the variable prefix, and naming a field
    where the operator set it.

    Sources, highest first: keyword arguments, the environment (``<prefix><FIELD>``, nested with
    ``__``; both the field name and its camelCase alias are prefixed, so no unprefixed variable
    such as ``PORT`` is ever read), then the YAML file of :func:`load_service_settings` (camelCase
    keys). No dotenv, no secrets directory. Immutable; unknown keys are errors.

    Subclasses set ``model_config = SettingsConfigDict(env_prefix=...)``; the rest is inherited.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix_target="all",
        env_nested_delimiter="__",
        validate_by_name=True,
        validate_by_alias=True,
    )

    #: Where each value came from (set by :func:`load_service_settings`), for error messages.
    _origins: Origins | None = PrivateAttr(default=None)

    def describe_field(self, *loc: str) -> str:
        """A field named for an error message, where the operator set it: ``token.jwksFile
        (config file /etc/approver.yaml)`` or ``token.jwksFile (env
        AGENT_BOOTSTRAP_APPROVER_TOKEN__JWKS_FILE)``; for settings not built by
        :func:`load_service_settings`, the file key and the variable."""
        if self._origins is not None:
            return self._origins.describe(loc)
        cls = type(self)
        prefix = str(cls.model_config.get("env_prefix", ""))
        return f"{file_key(cls, loc)} (env {env_name(prefix, cls, loc)})"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the YAML file."""
        read = _CONFIG_FILE.get()
        if read is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, YamlFileSource(settings_cls, read[1]))


_S = TypeVar("_S", bound=ServiceSettings)


def load_service_settings(
    settings_cls: type[_S],
    *,
    config_file: Path | None,
    config_env: str,
    error: Callable[[str], Exception],
    environ: Mapping[str, str] | None = None,
) -> _S:
    """Build and validate a service's settings from the environment and the YAML file.

    Args:
        settings_cls: the service's :class:`ServiceSettings` subclass.
        config_file: the YAML file (``--config``); when None, the variable ``config_env``
            names it, if set.
        config_env: e.g. ``AGENT_BOOTSTRAP_APPROVER_CONFIG``.
        error: makes the service's configuration error from a message.
        environ: where to look up ``config_env`` (default ``os.environ``); the fields
            themselves are always read from ``os.environ``.

    Returns:
        The frozen settings, knowing where each value came from.

    Raises:
        The exception ``error`` makes: unreadable or invalid YAML, unknown keys, missing
        required fields, values out of bounds or inconsistent, a variable holding invalid JSON;
        the message names each field where it was set (the file key and the file, or the
        environment variable), never its value.
    """
    env = os.environ if environ is None else environ
    named = env.get(config_env)
    path = config_file or (Path(named) if named else None)
    try:
        data = read_yaml(path) if path is not None else {}
    except ConfigFileError as exc:
        raise error(str(exc)) from None
    where = origins(settings_cls, file=path, file_data=data)
    token = _CONFIG_FILE.set((path, data) if path is not None else None)
    try:
        settings = settings_cls()
    except ValidationError as exc:
        raise error(where.describe_errors(exc)) from None
    except SettingsError as exc:
        # A variable that should hold JSON (a list, an object) does not; the message names the
        # variable and its file key, not the value.
        raise error(where.describe_settings_error(exc, os.environ)) from None
    finally:
        _CONFIG_FILE.reset(token)
    settings._origins = where
    return settings


class GuardedServiceSettings(ServiceSettings):
    """:class:`ServiceSettings` plus the settings the same in both services: the connection
    guard's two (:mod:`bootstrap_token.http_guard`) and logging's two
    (:mod:`bootstrap_token.log_setup`)."""

    log_format: LogFormat = Field(
        default=LogFormat.TEXT,
        alias="logFormat",
        description="text: '<time> <LEVEL> <logger>: <message>' lines on stderr; json: one JSON "
        "object per line (time, level, logger, message, exception). Audit events are JSON "
        "lines on stdout either way (bootstrap_token.log_setup). Default text.",
    )
    log_level: LogLevel = Field(
        default=LogLevel.INFO,
        alias="logLevel",
        description="debug, info, warning or error: the least severe of this project's lines "
        "written; libraries log WARNING and above only. Default info.",
    )

    head_timeout_seconds: float = Field(
        default=10.0,
        alias="headTimeoutSeconds",
        ge=1,
        le=60,
        description="Seconds a request's head (request line and header fields) may take to "
        "arrive; slower gets 408 and the connection closed (bootstrap_token.http_guard). "
        "Default 10.",
    )
    max_incomplete_connections: int = Field(
        default=256,
        alias="maxIncompleteConnections",
        ge=1,
        le=65536,
        description="Connections at once that have not sent a whole request; one more closes "
        "stalled heads (waiting 1 s, or a quarter of headTimeoutSeconds), then trickled bodies "
        "(read that long at under 16 KiB/s), oldest first, with 503 + Retry-After; a burst of "
        "fresh connections is let in over it, a newcomer never refused. "
        "Open WebSockets and idle kept-alive connections never count. Default 256.",
    )
