"""`llara run` (the whole pipeline, one command) and `llara report` (redraw a run's report)."""

from __future__ import annotations

from pathlib import Path

import typer


def run_command(
    config: Path = typer.Argument(..., help="Run config (YAML): data, sr, model, train, eval sections + variants."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=20."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: out_dir from the config, else runs/<name>)."),
    force: list[str] = typer.Option(
        None, "--force", help="Redo a stage even if finished (name or glob, e.g. 'train-*'); repeatable."
    ),
    only: list[str] = typer.Option(
        None, "--only", help="Run and report only these variants (name or glob; repeatable), with the variants "
        "they start from and the reference; other variants' stages stay on disk for a later full run.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars (on a terminal)."),
) -> None:
    """Prepare data, train SR backbones and LLaRA variants, evaluate them all and write the report.

    Finished stages whose config and inputs are unchanged are reused, so a re-run after a crash or an edit
    redoes only what changed. Stages: data, sr-<model>, train-<variant>, eval-<variant>.
    """
    from rich.console import Console

    from llara.config import RunConfig, load_config
    from llara.pipeline.report import rich_table
    from llara.pipeline.run import run_pipeline

    run_config = load_config(config, overrides or [], cls=RunConfig)
    outcome = run_pipeline(run_config, out_dir=out, force=force or [], only=only or [], progress=progress)
    console = Console()
    console.print(rich_table(outcome.rows, title=f"{run_config.name}: results (mean [95% CI])"))
    console.print(f"report: {outcome.report}", highlight=False)


def report_command(run_dir: Path = typer.Argument(..., help="A run folder written by `llara run`.")) -> None:
    """Rebuild report.md, the plots and the tables (LaTeX, CSV) of a run folder from its results, and print
    the table."""
    from rich.console import Console

    from llara.pipeline.report import rich_table, write_report

    report, rows = write_report(run_dir)
    console = Console()
    console.print(rich_table(rows))
    console.print(f"report: {report}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("run", rich_help_panel="Pipeline")(run_command)
    app.command("report", rich_help_panel="Pipeline")(report_command)
