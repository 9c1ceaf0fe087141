"""The ``llara`` command: one Typer app, one sub-module of ``llara.commands`` per area.

Heavy libraries (torch, transformers) are imported inside the commands, so ``llara --help`` is fast.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from llara.commands import data, evaluate, run, serve, sr, train
from llara.errors import LlaraError

app = typer.Typer(
    name="llara",
    help="LLaRA: LLM-based sequential recommendation with behavioral tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
) -> None:
    """LLaRA: LLM-based sequential recommendation with behavioral tokens."""


app.add_typer(data.app, name="data")
app.add_typer(sr.app, name="sr")
train.register(app)
evaluate.register(app)
serve.register(app)
run.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a LlaraError becomes one red line and exit status 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="llara", standalone_mode=True)
    except LlaraError as exc:
        if debug:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
