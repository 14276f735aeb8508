"""``python -m bench`` (``make bench``): run every ``bench/*_bench.py`` module in turn.

Modules are found by name (``webhook_bench``, ``approver_bench``, ...), sorted, and each one's
``main([])`` is called; the exit status is the first non-zero one, else 0. Run a single one with
``python -m bench.<name>_bench`` (each takes ``--help``).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def bench_modules() -> list[str]:
    """Names of the ``*_bench`` modules next to this file, sorted."""
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.endswith("_bench"))


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark module (``argv`` is passed to each one)."""
    status = 0
    for name in bench_modules():
        print(f"== bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        result = int(module.main(list(argv or [])))
        status = status or result
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
