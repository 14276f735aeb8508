"""Which environment variable holds the JSON pydantic-settings could not parse.

pydantic-settings parses a variable for a list, a set, a mapping or a model as JSON, and when
that fails raises ``SettingsError('error parsing value for field "trust" from source
"EnvSettingsSource"')``: it names the top-level field and a class, not the variable (which may
be ``..._TRUST__NAMESPACES``). :func:`json_location` tells, for a variable, the field it sets
when that field is parsed as JSON, so :meth:`bootstrap_token.config_file.Origins.
describe_settings_error` can name the variable and its file key. Pure.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

#: The field a ``SettingsError`` names.
SETTINGS_ERROR_FIELD = re.compile(r'field "([^"]+)"')


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, through ``X | None`` and ``Annotated``; None for other types."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def is_complex(annotation: Any) -> bool:
    """True for a field the environment source parses as JSON: a model, a list, set, tuple or
    mapping, or an optional/union of one (pydantic-settings' rule, simplified)."""
    if _model_in(annotation) is not None:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return is_complex(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(is_complex(arg) for arg in typing.get_args(annotation))
    container = origin or annotation
    return (
        isinstance(container, type)
        and issubclass(container, list | set | frozenset | tuple | dict | Sequence | Mapping)
        and not issubclass(container, str | bytes)
    )


def json_location(model: type[BaseModel], variable: str) -> list[str]:
    """The field location (field names) the variable ``variable`` (without the prefix, any
    case, nested parts joined by ``__``) sets, when that field is parsed as JSON; [] when it
    names no field or a field given as plain text."""
    current: type[BaseModel] | None = model
    loc: list[str] = []
    annotation: Any = None
    for part in variable.upper().split("__"):
        if current is None:
            return []
        fields = current.model_fields
        found = next(
            (n for n, f in fields.items() if part in (n.upper(), (f.alias or n).upper())), None
        )
        if found is None:
            return []
        loc.append(found)
        annotation = fields[found].annotation
        current = _model_in(annotation)
    return loc if is_complex(annotation) else []


def is_json(value: str) -> bool:
    """True when ``value`` parses as JSON."""
    try:
        json.loads(value)
    except ValueError:
        return False
    return True
