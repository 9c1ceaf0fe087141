"""`llara config show`: the resolved configuration, each field with what it means."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Inspect configurations: resolved values and what each field means.", no_args_is_help=True)


@app.command("show")
def show(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.lr=5e-4 model.prompt_mode=text"),
    config: Path = typer.Option(None, "--config", help="Experiment or run YAML (configs/*.yaml); default: none."),
    section: str = typer.Option(None, "--section", help="Show only this section, e.g. train (default: all)."),
) -> None:
    """Print the config as `llara run` and `llara train` resolve it (defaults < YAML < overrides), commented."""
    from llara.config import RunConfig, describe_config, load_config

    typer.echo(describe_config(load_config(config, overrides or [], cls=RunConfig), section), nl=False)
