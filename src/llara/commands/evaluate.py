"""`llara evaluate` command."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llara.commands.options import ALLOW_DATA_MISMATCH, DTYPE, VERIFY_EXPORT, DtypeChoice


class ProtocolChoice(str, Enum):
    """Which evaluation protocol(s) to run."""

    generate = "generate"
    rank = "rank"
    both = "both"


class TemplateChoice(str, Enum):
    """The instruction of evaluation prompts."""

    fixed = "fixed"
    drawn = "drawn"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("evaluate", rich_help_panel="Stages")(evaluate)


def evaluate(
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="A LLaRA export or an SR checkpoint folder."),
    base_model: str | None = typer.Option(
        None, "--base-model", help="Evaluate this base LLM zero-shot (text prompts) instead of a checkpoint."
    ),
    data: Path | None = typer.Option(None, "--data", help="Prepared data folder (default: the export's own)."),
    protocol: ProtocolChoice = typer.Option(ProtocolChoice.both, "--protocol", help="generate, rank or both."),
    constrained: bool = typer.Option(
        False, "--constrained", help="Also report generate-constrained (answers restricted to the candidates)."
    ),
    split: str = typer.Option("test", "--split", help="Which split to evaluate (val or test)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per forward pass."),
    max_rows: int | None = typer.Option(None, "--max-rows", min=1, help="Evaluate only the first N rows."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder to write predictions.parquet and metrics.json to (other files there are left alone; "
        "such files llara did not write are refused unless --force).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace predictions.parquet / metrics.json in --out even if llara did not write them."
    ),
    allow_data_mismatch: bool = ALLOW_DATA_MISMATCH,
    verify: bool = VERIFY_EXPORT,
    device: str | None = typer.Option(
        None, "--device", help="Where the model runs: auto, cpu, cuda, cuda:1 (default: accelerate's device per process)."
    ),
    dtype: DtypeChoice = DTYPE,
    template: TemplateChoice = typer.Option(
        TemplateChoice.fixed, "--template",
        help="The prompts' instruction: fixed (the first template) or drawn (one of three per row, seeded; also "
        "reports metrics per template).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (on a terminal)."),
) -> None:
    """Evaluate on the frozen candidates: HR@1 as published (generation) and full rankings (likelihood)."""
    from accelerate import PartialState

    from llara.evaluation.evaluate import PROTOCOLS, evaluate_checkpoint, with_constrained

    protocols = with_constrained(list(PROTOCOLS) if protocol is ProtocolChoice.both else [protocol.value], constrained)
    result = evaluate_checkpoint(
        checkpoint, data, protocols, split, batch_size, max_rows, out, base_model, allow_data_mismatch, device, progress,
        force=force, verify=verify, dtype=dtype.value, template=template.value,
    )
    if PartialState().is_main_process:
        Console().print(metrics_table(result))
        if out is not None:
            Console().print(f"wrote {out}/predictions.parquet and {out}/metrics.json")


def metrics_table(result: dict[str, Any]) -> Table:
    """Every metric of every protocol: mean and 95% confidence interval (and HR@1 per drawn template)."""
    table = Table(title=f"{result['split']} split, {result['rows']} rows")
    for header in ("protocol", "metric", "mean", "95% CI", "n"):
        table.add_column(header, justify="right" if header in ("mean", "n") else "left")
    for protocol, metrics in result["metrics"].items():
        for name, summary in metrics.items():
            table.add_row(protocol, name, *_summary_cells(summary))
    for protocol, per_template in result.get("metrics_by_template", {}).items():
        for number, metrics in per_template.items():
            if "hr@1" in metrics:
                table.add_row(f"{protocol}, template {number}", "hr@1", *_summary_cells(metrics["hr@1"]))
    return table


def _summary_cells(summary: dict[str, Any]) -> tuple[str, str, str]:
    return f"{summary['mean']:.4f}", f"[{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]", str(summary["n"])

