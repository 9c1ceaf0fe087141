"""`llara train` command."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("train")(train_command)


def train_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.lr=5e-4 model.prompt_mode=text"),
    config: Path = typer.Option(None, "--config", "-c", help="Experiment YAML (configs/*.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in train.out_dir."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Curriculum prompt tuning of LLaRA; works under `accelerate launch` for several processes."""
    from llara.config import load_config
    from llara.training.loop import train

    experiment = load_config(config, overrides or [])
    export = train(experiment, resume=resume, progress=progress)
    typer.echo(f"exported to {export}")
