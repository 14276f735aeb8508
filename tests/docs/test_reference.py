"""What the guides state as reference, checked against the code: the settings tables (file keys,
variables, defaults), the ``auditAnnotations`` keys and their prefix (issue 17: docs/webhook.md
showed the wrong one), every annotation key the guides name, and the reason-code tables.
"""

from __future__ import annotations

import re
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from approver.api_keys.reasons import ApiKeyReason
from approver.config import ENV_PREFIX as APPROVER_PREFIX
from approver.config import ApproverSettings
from approver.service_accounts.reasons import SaReason
from bootstrap_token.config_file import env_name
from tests.docs.markdown import GUIDES, REPO, Table, code_names, section, tables
from webhook.config import ENV_PREFIX as WEBHOOK_PREFIX
from webhook.config import WebhookSettings
from webhook.response import AUDIT_KEYS, WEBHOOK_NAME
from webhook.stamp import Outcome

SERVICES: dict[str, tuple[type[BaseModel], str]] = {
    "webhook": (WebhookSettings, WEBHOOK_PREFIX),
    "approver": (ApproverSettings, APPROVER_PREFIX),
}
SETTINGS_TABLES = [t for path in GUIDES for t in tables(path)]
DEFAULT_ANNOTATION = WebhookSettings.model_fields["annotation_key"].default
WEBHOOK_GUIDE = REPO / "docs" / "webhook.md"
OPERATIONS = REPO / "docs" / "operations.md"
CREDENTIALS_GUIDE = REPO / "docs" / "api-keys-and-service-accounts.md"
CHART_VALUES = REPO / "manifests" / "helm" / "agent-bootstrap" / "values.yaml"
KUSTOMIZE_WEBHOOK = REPO / "manifests" / "kustomize" / "base" / "mutatingwebhook.yaml"


# --- settings tables ----------------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (through ``X | None`` and ``Annotated``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def resolve(model: type[BaseModel], dotted: str) -> tuple[list[str], FieldInfo] | None:
    """(field-name location, field) of a dotted file key such as ``token.jwksFile``, or None."""
    current: type[BaseModel] | None = model
    loc: list[str] = []
    info: FieldInfo | None = None
    for part in dotted.split("."):
        if current is None:
            return None
        name = next((n for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        if name is None:
            return None
        loc.append(name)
        info = current.model_fields[name]
        current = _model_of(info.annotation)
    assert info is not None
    return loc, info


def _keys(model: type[BaseModel], cell: str) -> list[tuple[str, list[str], FieldInfo]]:
    """The settings a first cell names (``a.b`` / ``c``: ``c`` may be relative to ``a.``)."""
    names = code_names(cell)
    out = []
    for name in names:
        found = resolve(model, name)
        if found is None and "." in names[0]:
            name = names[0].rsplit(".", 1)[0] + "." + name
            found = resolve(model, name)
        assert found is not None, f"`{name}` is not a setting of {model.__name__}"
        out.append((name, *found))
    return out


def _plain(value: Any) -> Any:
    """A default as YAML would write it."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, frozenset | set | tuple):
        return sorted(value) if isinstance(value, frozenset | set) else list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _only_values(cell: str) -> bool:
    """True when a default cell is nothing but code values (``a`` / ``b``), remarks in
    parentheses aside: then each value is a key's default, in order."""
    bare = re.sub(r"\([^)]*\)", "", cell)
    return re.fullmatch(r"\s*`[^`]+`(\s*/\s*`[^`]+`)*\s*", bare) is not None


def _env_variables(cell: str, prefix: str) -> list[str]:
    return [
        name.removeprefix("..._").removeprefix(prefix) for name in code_names(cell) if name != "..."
    ]


def _variable_resolves(model: type[BaseModel], variable: str) -> bool:
    current: type[BaseModel] | None = model
    for part in variable.split("__"):
        if current is None:
            return False
        name = next(
            (
                n
                for n, f in current.model_fields.items()
                if part in (n.upper(), (f.alias or n).upper())
            ),
            None,
        )
        if name is None:
            return False
        current = _model_of(current.model_fields[name].annotation)
    return True


def test_settings_tables_are_marked() -> None:
    """The four settings tables are found (README's two, the services' guides' one each)."""
    found = sorted((t.path.name, t.service) for t in SETTINGS_TABLES)
    assert found == [
        ("README.md", "approver"),
        ("README.md", "webhook"),
        ("approver.md", "approver"),
        ("webhook.md", "webhook"),
    ]


@pytest.mark.parametrize("table", SETTINGS_TABLES, ids=[t.where for t in SETTINGS_TABLES])
def test_settings_table(table: Table) -> None:
    """Every key is a setting of that service; every variable is its variable; every default
    written as code is the default."""
    model, prefix = SERVICES[table.service]
    header = [h.lower() for h in table.header]
    env_column = next((i for i, h in enumerate(header) if h.startswith("env")), None)
    default_column = header.index("default")
    problems = []
    for row in table.rows:
        try:
            keys = _keys(model, row[0])
        except AssertionError as exc:
            problems.append(f"{row[0]}: {exc}")
            continue
        if env_column is not None:
            variables = _env_variables(row[env_column], prefix)
            expected = [env_name("", model, loc) for _, loc, _ in keys]
            if not set(expected) <= set(variables):
                problems.append(f"{row[0]}: variables {variables}, the code's are {expected}")
            problems += [
                f"{row[0]}: {v} is no variable"
                for v in variables
                if not _variable_resolves(model, v)
            ]
        shown = code_names(row[default_column])
        if len(shown) == len(keys) and _only_values(row[default_column]):
            for (name, _, info), text in zip(keys, shown, strict=True):
                default = _plain(info.get_default(call_default_factory=True))
                if yaml.safe_load(text) != default:
                    problems.append(f"{name}: default shown {text}, the code's is {default!r}")
    assert not problems, f"{table.where}:\n  " + "\n  ".join(problems)


# --- auditAnnotations and annotation keys -----------------------------------------------------


def test_webhook_name_is_the_charts() -> None:
    """WEBHOOK_NAME is the name the chart and the kustomize base give the webhook."""
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    assert values["webhook"]["name"] == WEBHOOK_NAME
    configuration = yaml.safe_load(KUSTOMIZE_WEBHOOK.read_text(encoding="utf-8"))
    assert [w["name"] for w in configuration["webhooks"]] == [WEBHOOK_NAME]


def test_audit_annotations_table() -> None:
    """docs/webhook.md's auditAnnotations: the example key is WEBHOOK_NAME/decision, the table
    lists AUDIT_KEYS in order, and the decision row every Outcome and ``error``."""
    text = section(WEBHOOK_GUIDE, "## Answers")
    bullet = text[text.index("**`auditAnnotations`**") :]
    examples = re.findall(r"`([a-z0-9.-]+)/(decision|reason|jti|kid)`", bullet)
    assert examples, "no prefixed example key"
    assert {prefix for prefix, _ in examples} == {WEBHOOK_NAME}
    table = next(t for t in tables(WEBHOOK_GUIDE, marked=False) if t.header[:2] == ["key", "when"])
    assert [code_names(row[0])[0] for row in table.rows] == list(AUDIT_KEYS)
    decisions = code_names(table.rows[0][2])
    assert set(decisions) == {o.value for o in Outcome} | {"error"}


#: A key under streamspace.io as the guides write it, also inside a JSONPath
#: (``{.metadata.annotations.agents\.streamspace\.io/bootstrap-token}``).
ANNOTATION_LIKE = re.compile(r"(?:[a-z0-9-]+(?:\\?\.))+streamspace\\?\.io/[A-Za-z0-9_.-]+")


def _annotation_key(found: str) -> str:
    """The key of a match: in a JSONPath, the part after the last unescaped dot."""
    if "\\." in found:
        found = re.split(r"(?<!\\)\.", found)[-1]
    return found.replace("\\.", ".")


def test_every_annotation_key_in_the_guides() -> None:
    """An annotation key the guides name is the token's annotation or a prefixed audit key."""
    allowed = {DEFAULT_ANNOTATION} | {f"{WEBHOOK_NAME}/{key}" for key in AUDIT_KEYS}
    wrong = []
    for path in GUIDES:
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
            for key in map(_annotation_key, ANNOTATION_LIKE.findall(line)):
                if key not in allowed:
                    wrong.append(f"{path.relative_to(REPO)}:{number}: {key}")
    assert not wrong, "unknown annotation keys:\n" + "\n".join(wrong)


# --- reason codes -------------------------------------------------------------------------------


def _reason_rows(path: Path) -> dict[str, str]:
    """reason -> answer, from every ``| reason | answer | ... |`` table of ``path``."""
    rows: dict[str, str] = {}
    for table in tables(path, marked=False):
        if [h.lower() for h in table.header[:2]] == ["reason", "answer"]:
            for row in table.rows:
                for reason in code_names(row[0]):
                    rows[reason] = row[1]
    return rows


def _answer(reason: ApiKeyReason | SaReason) -> str:
    """The registration answer of a verifier's reason: the decision engine approves an
    accepted credential, goes on to the next step without one, rejects a security refusal
    (403) and leaves the agent pending for any other (202)."""
    if reason.value.endswith("_accepted"):
        return "200"
    if reason in (
        ApiKeyReason.DISABLED,
        ApiKeyReason.NOT_PRESENTED,
        SaReason.DISABLED,
        SaReason.NOT_PRESENTED,
    ):
        return "(next step)"
    return "403" if reason.security else "202"


@pytest.mark.parametrize("reason", [*ApiKeyReason, *SaReason], ids=str)
def test_reason_code_is_documented_with_its_answer(reason: ApiKeyReason | SaReason) -> None:
    rows = _reason_rows(CREDENTIALS_GUIDE)
    assert reason.value in rows, f"{reason.value} is not in {CREDENTIALS_GUIDE.name}"
    assert rows[reason.value] == _answer(reason)


@pytest.mark.parametrize(
    "reason", [r for r in [*ApiKeyReason, *SaReason] if _answer(r) == "202"], ids=str
)
def test_every_pending_reason_is_in_the_troubleshooting_table(
    reason: ApiKeyReason | SaReason,
) -> None:
    """An agent left pending by a credential path can look its reason up (issue 17: with API
    keys on, StreamSpace's shared secret got ``api_key_malformed``, which was not listed)."""
    table = section(OPERATIONS, "### Agent stuck pending")
    assert f"`{reason.value}`" in table


# --- paths ----------------------------------------------------------------------------------------

_PACKAGES = (
    "approver",
    "webhook",
    "bootstrap_token",
    "certs_tooling",
    "manifests",
    "demo",
    "bench",
)
_CITED_PATH = re.compile(r"`((?:" + "|".join(_PACKAGES) + r")/[\w./-]*)`")


def test_every_cited_path_exists() -> None:
    """Every repository path a guide cites in backticks (``approver/domain/decision.py``,
    ``approver/http/``) exists: a code map that outlived a move (issue 12) fails here."""
    missing = [
        f"{path.relative_to(REPO)}: {cited}"
        for path in GUIDES
        for cited in _CITED_PATH.findall(path.read_text(encoding="utf-8"))
        if not (REPO / cited.rstrip("/")).exists()
    ]
    assert missing == []
