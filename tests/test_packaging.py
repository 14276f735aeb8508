"""What `make demo` installs is what the demo imports, and no more (it used to install the whole
test toolchain, quietly, before the demo said a word).

The ``demo`` extra must hold every distribution the demo's code imports, following its imports
into this repository's packages (``tests/streamspace``, ``tests/kube_api.py``, the services), that
the core dependencies do not already bring; the ``test`` extra holds the demo's needs too, since
the suite runs the demo and the StreamSpace stand-ins.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
LOCAL = {"demo", "tests", "approver", "webhook", "bootstrap_token", "certs_tooling", "agent_proxy"}
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: Iterable[str]) -> set[str]:
    return {_normal(Requirement(r).name) for r in requirements}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_distributions(package: str) -> set[str]:
    """The third-party top-level modules ``package`` imports, directly or through local
    modules, mapped to their distributions."""
    seen: set[Path] = set()
    todo = list((REPO / package).glob("*.py"))
    third_party: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for module in modules:
                top = module.split(".")[0]
                if top in LOCAL:
                    found = _module_file(module)
                    if found is not None:
                        todo.append(found)
                        parent = found.parent / "__init__.py"
                        if parent.is_file():
                            todo.append(parent)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.add(top)
    mapping = importlib.metadata.packages_distributions()
    return {_normal(d) for top in third_party for d in mapping.get(top, [top])}


def closure(names: Iterable[str]) -> set[str]:
    """``names`` and everything they require when installed without extras."""
    out: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_normal(requirement.name))
    return out


def test_the_demo_extra_holds_what_the_demo_imports() -> None:
    core = _names(PROJECT["dependencies"])
    demo = _names(PROJECT["optional-dependencies"]["demo"])
    needed = imported_distributions("demo")
    assert {"bcrypt", "jsonpatch"} <= needed  # the reader follows demo -> tests/streamspace
    missing = needed - closure(core | demo)
    assert not missing, f"add to the demo extra: {sorted(missing)}"
    unneeded = demo - needed
    assert not unneeded, f"the demo does not import: {sorted(unneeded)}"


def test_the_test_extra_holds_the_demo_extra() -> None:
    optional = PROJECT["optional-dependencies"]
    assert set(optional["demo"]) <= set(optional["test"])


def test_make_demo_installs_the_demo_extra_and_says_so() -> None:
    """`make demo` installs `.[demo]` (not the test toolchain), with pip's progress (no
    --quiet), after saying what it does; `make test` installs `.[test]`."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "--quiet" not in makefile
    assert " -q " not in makefile
    recipes = re.findall(r"^(\$\(\w+_STAMP\)):.*\n((?:\t.*\n)+)", makefile, re.M)
    by_target = {target: body for target, body in recipes}
    demo, test = by_target["$(DEMO_STAMP)"], by_target["$(TEST_STAMP)"]
    assert "-e '.[demo]'" in demo
    assert "'.[test]'" not in demo
    assert "-e '.[test]'" in test
    for body in (demo, test):
        assert body.lstrip().startswith('@echo "==> installing')
    assert re.search(r"^demo: \$\(DEMO_STAMP\)\n\t@echo", makefile, re.M)
