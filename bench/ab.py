"""Interleaved A/B runs of one benchmark between two versions of the code, with paired ratios.

``python -m bench.ab --old REF [--new REF] [--rounds N] BENCH -- [BENCH ARGS]``

This host's absolute figures drift by 20% and more between minutes, so two versions are
compared only inside one run: each round runs the benchmark once on the old version and once
on the new one, back to back (the order alternates between rounds), and the answer is the
median over rounds of the *paired* ratio new/old of every figure.

* ``--old REF`` / ``--new REF``: git revisions, checked out as throwaway worktrees under a
  temporary folder; ``--new`` defaults to the working tree as it is. Each side runs with its
  own folder first on ``PYTHONPATH`` and as the working directory, in this virtualenv (so the
  installed dependencies must suit both).
* ``BENCH``: a module of ``bench`` (``approver_bench``, ``webhook_bench``, ...); everything
  after ``--`` is passed to it. It must accept ``--json PATH`` and write either a list of rows
  or ``{"medians": [rows]}``, each row a dict named by its ``step`` or ``target`` member.

Prints one table: for every row and numeric figure, the old and new values of each round and
the median paired ratio. Example (issue 12's before/after)::

    python -m bench.ab --old b03a059 --rounds 4 approver_bench -- \\
        --duration 8 --warmup 2 --steps sqlite-1p,pg-1p --pg-dsn "$PG_DSN"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

Rows = dict[str, dict[str, float]]


def rows_of(document: Any) -> Rows:
    """``{row name: {figure: value}}`` of a benchmark's JSON (numeric figures only)."""
    items = document["medians"] if isinstance(document, dict) else document
    rows: Rows = {}
    for item in items:
        name = str(item.get("step", item.get("target", "?")))
        rows[name] = {
            key: float(value)
            for key, value in item.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
    return rows


def paired(old: list[Rows], new: list[Rows]) -> list[tuple[str, str, list[float], list[float]]]:
    """(row, figure, old values, new values) for every figure present in every round."""
    out = []
    for row, figures in old[0].items():
        for figure in figures:
            olds = [r[row][figure] for r in old if figure in r.get(row, {})]
            news = [r[row][figure] for r in new if figure in r.get(row, {})]
            if len(olds) == len(old) and len(news) == len(new):
                out.append((row, figure, olds, news))
    return out


def median_ratio(olds: list[float], news: list[float]) -> float:
    """The median of new/old over the pairs; NaN when an old value is 0 or not a number."""
    ratios = [n / o for o, n in zip(olds, news, strict=True) if o == o and o != 0 and n == n]
    return statistics.median(ratios) if ratios else float("nan")


def _worktree(ref: str, into: Path) -> Path:
    path = into / ref.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), ref],
        check=True,
        capture_output=True,
    )
    return path


def _run(side: Path, bench: str, args: list[str], out: Path) -> Rows:
    env = dict(os.environ, PYTHONPATH=str(side))
    command = [sys.executable, "-m", f"bench.{bench}", *args, "--json", str(out)]
    log = out.with_suffix(".log")
    with log.open("w") as sink:
        done = subprocess.run(command, cwd=side, env=env, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{bench} failed on {side} (exit {done.returncode}); see {log}")
    return rows_of(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    """Run the A/B; print the table. Exit 0, or non-zero when a run fails."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="git revision of the old side")
    parser.add_argument("--new", help="git revision of the new side (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("bench", help="module of bench, e.g. approver_bench")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        folder = Path(tmp)
        sides = {"old": _worktree(options.old, folder)}
        sides["new"] = _worktree(options.new, folder) if options.new else REPO
        results: dict[str, list[Rows]] = {"old": [], "new": []}
        try:
            for n in range(options.rounds):
                order = ("old", "new") if n % 2 == 0 else ("new", "old")
                for name in order:
                    out = folder / f"{name}-{n + 1}.json"
                    results[name].append(_run(sides[name], options.bench, extra, out))
                    print(f"round {n + 1}: {name} done", flush=True)
        finally:
            for path in sides.values():
                if path != REPO:
                    subprocess.run(
                        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                        check=False,
                        capture_output=True,
                    )
    new_name = options.new or "working tree"
    print(f"\n{options.bench}: new ({new_name}) / old ({options.old}), {options.rounds} rounds\n")
    print("| row | figure | old | new | median ratio new/old |")
    print("|---|---|---|---|---:|")
    for row, figure, olds, news in paired(results["old"], results["new"]):
        shown_old = ", ".join(f"{v:.4g}" for v in olds)
        shown_new = ", ".join(f"{v:.4g}" for v in news)
        ratio = median_ratio(olds, news)
        print(f"| {row} | {figure} | {shown_old} | {shown_new} | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
