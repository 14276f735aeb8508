"""Benchmarks: ``python -m bench`` runs every ``bench/*_bench.py`` module (see ``__main__``).

Each ``<name>_bench`` module has ``main(argv: list[str] | None = None) -> int``. Benchmarks send
traffic to 127.0.0.1 only, bounded in time, and print a table; speed is measured here, never in
the test suite.
"""
