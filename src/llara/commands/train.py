"""`llara train` command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from llara.commands.options import ALLOW_DATA_MISMATCH, FORCE_OUT
from llara.errors import LlaraError

if TYPE_CHECKING:
    from llara.config import ExperimentConfig


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("train", rich_help_panel="Stages")(train_command)


def train_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.lr=5e-4 model.prompt_mode=text"),
    config: Path = typer.Option(None, "--config", help="Experiment YAML (configs/*.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in train.out_dir."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    variant: str = typer.Option(
        None, "--variant", help="With a `llara run` config: the llara variant to train (needed if it has several)."
    ),
    force: bool = FORCE_OUT,
    allow_data_mismatch: bool = ALLOW_DATA_MISMATCH,
) -> None:
    """Curriculum prompt tuning of LLaRA; works under `accelerate launch` for several processes.

    --config takes an experiment YAML or a `llara run` config (then one of its llara variants is trained).
    """
    from llara.training.loop import train

    experiment = experiment_config(config, overrides or [], variant)
    export = train(experiment, resume=resume, progress=progress, force=force, allow_data_mismatch=allow_data_mismatch)
    typer.echo(f"exported to {export}")


def experiment_config(path: Path | None, overrides: list[str], variant: str | None = None) -> ExperimentConfig:
    """The experiment to train: ``path`` as an experiment YAML, or the ``llara`` variant ``variant`` of a
    ``llara run`` config (the only one, when ``variant`` is None); ``key=value`` overrides apply last."""
    from llara.config import (
        ExperimentConfig,
        RunConfig,
        deep_merge,
        load_config,
        parse_overrides,
        read_yaml,
        validate_config,
    )

    data = read_yaml(path) if path is not None else {}
    if "variants" not in data:
        if variant is not None:
            raise LlaraError(f"--variant {variant} needs a `llara run` config with variants; {path} has none")
        return load_config(path, overrides)
    run = validate_config(RunConfig, data, origin=str(path))
    trainable = {v.name: resolved for v, resolved in run.resolved_variants() if v.kind == "llara"}
    names = ", ".join(trainable) or "none"
    if variant is None and len(trainable) != 1:
        raise LlaraError(
            f"{path} is a `llara run` config with {len(trainable)} llara variants ({names}): choose one with "
            f"--variant NAME, or prepare, train and evaluate them all with `llara run {path}`"
        )
    chosen = trainable.get(variant) if variant is not None else next(iter(trainable.values()))
    if chosen is None:
        raise LlaraError(f"{path} has no llara variant {variant!r}; its llara variants: {names}")
    merged = deep_merge(chosen.model_dump(mode="json"), parse_overrides(overrides, ExperimentConfig))
    experiment = validate_config(ExperimentConfig, merged, origin=str(path))
    if experiment.train.data_dir is None:
        raise LlaraError(
            f"{path} is a `llara run` config, where the pipeline prepares the data and trains the SR backbone: "
            f"run `llara run {path}`, or give `llara train` train.data_dir=DIR (and train.sr_checkpoint=DIR)"
        )
    return experiment
