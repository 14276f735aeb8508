"""Reading what the guides show: fenced blocks with their marker, settings tables, command lines.

Markers are HTML comments on the line right before what they mark (invisible when rendered):

* ``<!-- example: KIND -->`` before a ```` ```yaml ```` or ```` ```json ```` block says what the
  block is an example of (``webhook-config``, ``helm-values``, ...); every YAML and JSON block of
  the guides must carry one, so a new example cannot escape the checks;
* ``<!-- settings: SERVICE -->`` before a table of settings (``webhook`` or ``approver``) whose
  first column names file keys and, when there is one, whose ``env`` column names variables.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUIDES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]

_FENCE = re.compile(
    r"^(?P<fence>`{3,})(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.S | re.M
)
_MARKER = re.compile(r"^<!--\s*(?P<what>example|settings):\s*(?P<kind>[\w-]+)\s*-->\s*$")


def where(path: Path, line: int) -> str:
    """``docs/webhook.md:164``."""
    return f"{path.relative_to(REPO)}:{line}"


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, text and ``example`` marker (None when unmarked)."""

    path: Path
    line: int  # of the opening fence
    lang: str
    text: str
    kind: str | None

    @property
    def where(self) -> str:
        return where(self.path, self.line)


def _marker(lines: list[str], index: int, what: str) -> str | None:
    """The marker of ``what`` on the line before ``lines[index]``, or None."""
    if index == 0:
        return None
    found = _MARKER.match(lines[index - 1].strip())
    return found["kind"] if found and found["what"] == what else None


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in order."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    out = []
    for found in _FENCE.finditer(text):
        index = text.count("\n", 0, found.start())
        out.append(
            Block(
                path=path,
                line=index + 1,
                lang=found["lang"],
                text=found["body"],
                kind=_marker(lines, index, "example"),
            )
        )
    return out


def all_blocks(*langs: str) -> list[Block]:
    """The blocks of every guide in ``langs`` (all when none are given)."""
    return [b for path in GUIDES for b in blocks(path) if not langs or b.lang in langs]


@dataclass(frozen=True)
class Table:
    """A marked settings table: the service and its body rows as cells (header cells apart)."""

    path: Path
    line: int
    service: str
    header: list[str]
    rows: list[list[str]]

    @property
    def where(self) -> str:
        return where(self.path, self.line)


def _cells(line: str) -> list[str]:
    """The cells of a table row; ``\\|`` is a pipe inside a cell."""
    inner = line.strip().strip("|")
    return [cell.replace("\\|", "|").strip() for cell in re.split(r"(?<!\\)\|", inner)]


def tables(path: Path, *, marked: bool = True) -> list[Table]:
    """The tables of ``path`` marked ``<!-- settings: SERVICE -->``, or with ``marked=False``
    every table (``service`` then empty unless marked)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    out = []
    for index, line in enumerate(lines):
        service = _marker(lines, index, "settings")
        starts = line.lstrip().startswith("|") and (
            index == 0 or not lines[index - 1].lstrip().startswith("|")
        )  # a table may be indented under a list item
        if not starts or (marked and service is None):
            continue
        body = []
        for row in lines[index + 2 :]:
            if not row.lstrip().startswith("|"):
                break
            body.append(_cells(row))
        out.append(Table(path, index + 1, service or "", _cells(line), body))
    return out


def code_names(cell: str) -> list[str]:
    """The names in backticks in a table cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


# --- command lines ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One invocation of a program of this repository shown in a ```` ```sh ```` block."""

    where: str
    text: str  # as written (continuations joined)
    args: list[str]  # the arguments after the program, synopsis resolved
    program: str
    #: The example elides arguments (``...``) or shows placeholders (``KID``, ``EPOCH``): when
    #: it does not parse as a whole call, its command and the options it names are checked.
    partial: bool


_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
_PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_:]*|<[^>]+>|.*\$.*)$")


def _first_alternatives(text: str) -> str:
    """``[--a X | --b]`` -> ``--a X`` (an optional group shown with its first alternative);
    repeated for nested groups."""
    while True:
        resolved = _BRACKETS.sub(lambda m: m.group(1).split("|")[0].strip(), text)
        if resolved == text:
            return text
        text = resolved


def _shell_command(text: str) -> str:
    """``text`` up to the first shell operator or comment outside quotes (pipes, ``&&``, ``;``,
    redirections, ``)``)."""
    quote = ""
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in ";&>)" or (
            char in "|#" and (index == 0 or text[index - 1].isspace())
        ):  # a|b without spaces is a synopsis' alternation, not a pipe
            return text[:index]
    return text


def _logical_lines(body: str) -> Iterator[tuple[int, str]]:
    """(offset of the first line, line) with backslash continuations joined."""
    pending: list[str] = []
    start = 0
    for offset, line in enumerate(body.split("\n")):
        if not pending:
            start = offset
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        yield start, " ".join(part.strip() for part in pending)
        pending = []


def _pipeline(line: str) -> list[str]:
    """The commands of a pipeline: ``line`` split at `` | `` outside quotes and outside a
    synopsis' ``[...]`` (where ``|`` separates alternatives)."""
    parts: list[str] = []
    current: list[str] = []
    quote, depth = "", 0
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        elif char == "|" and depth == 0 and (index == 0 or line[index - 1].isspace()):
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def commands(programs: tuple[str, ...]) -> list[Command]:
    """Every call of ``programs`` in the guides' ``sh`` blocks: the commands of a pipeline that
    start with one, and ``$(program ...)`` substitutions anywhere."""
    out = []
    alternation = "|".join(re.escape(p) for p in programs)
    starts = re.compile(rf"^\s*(?:\$\s+)?(?P<call>(?:{alternation})(?=\s|$).*)$")
    substituted = re.compile(rf"\$\((?P<call>(?:{alternation})\s[^()]*)\)")
    for block in all_blocks("sh", "bash", "shell"):
        for offset, line in _logical_lines(block.text):
            calls = [m["call"] for m in substituted.finditer(line)]
            for part in _pipeline(line):
                found = starts.match(part)
                if found:
                    calls.append(_shell_command(_first_alternatives(found["call"])))
            for call in calls:
                out.append(_command(where(block.path, block.line + 1 + offset), call, programs))
    return out


def _command(place: str, call: str, programs: tuple[str, ...]) -> Command:
    resolved = _first_alternatives(call)
    tokens = shlex.split(resolved)
    program, args = tokens[0], tokens[1:]
    assert program in programs, f"{place}: {call}"
    resolved_args = []
    for token in args:
        if "|" in token and not token.startswith("|") and not token.endswith("|"):
            token = token.split("|")[0]  # --component webhook|approver|all
        resolved_args.append(token)
    partial = "..." in resolved_args or any(_PLACEHOLDER.match(t) for t in resolved_args)
    return Command(
        where=place,
        text=call.strip(),
        args=[t for t in resolved_args if t != "..."],
        program=program,
        partial=partial,
    )


def section(path: Path, heading: str) -> str:
    """The text under the heading ``heading`` (e.g. ``### Agent stuck pending``) up to the next
    heading of the same or a higher level.

    Raises:
        AssertionError: no such heading.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    level = len(heading) - len(heading.lstrip("#"))
    start = lines.index(heading)
    fenced = False
    for end in range(start + 1, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "\n".join(lines[start + 1 : end])
    return "\n".join(lines[start + 1 :])
