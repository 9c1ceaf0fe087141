"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from llara.cli import main


def run_cli(args: list[str]) -> int:
    """Run ``llara ARGS`` in-process; return the exit status."""
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
