"""`llara sr ...`: train, evaluate and import the sequential recommenders (SASRec, GRU4Rec, Caser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llara.commands.options import ALLOW_DATA_MISMATCH, FORCE_OUT

app = typer.Typer(
    help="Sequential recommenders: train, evaluate, import the authors' checkpoints.", no_args_is_help=True
)
console = Console()


def _float_list(text: str, option: str) -> list[float]:
    from llara.errors import LlaraError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise LlaraError(f"{option} {text!r} must be comma-separated numbers, e.g. 1e-3,1e-5,1e-7") from exc


def _sr_config(config: Path | None, values: dict[str, Any], overrides: list[str]):
    """The SRConfig: defaults < the YAML file's ``sr`` section < ``--set key=value`` < explicit options."""
    from llara.config import SRConfig, deep_merge, parse_overrides, read_yaml, validate_config

    merged = read_yaml(config).get("sr", {}) if config else {}
    merged = deep_merge(merged, parse_overrides(overrides, SRConfig))
    merged = deep_merge(merged, {k: v for k, v in values.items() if v is not None})
    return validate_config(SRConfig, merged, origin=str(config) if config else "sr options")


@app.command("train")
def train(
    data: Path = typer.Option(..., "--data", help="Prepared data folder (llara data prepare)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write (replaced when done)."),
    model: str = typer.Option(
        None, "--model", "-m", help="sasrec, gru4rec, caser, or count-based pop, markov, itemknn (default: sasrec)."
    ),
    l2: float = typer.Option(None, "--l2", help="L2 weight decay (default: 1e-6)."),
    loss: str = typer.Option(
        None, "--loss", help="bce (one sampled negative), ce (softmax over the catalog) or gbce (default: ce)."
    ),
    l2_grid: str = typer.Option(
        None, "--l2-grid", help="Comma-separated L2 values; keeps the best by validation HR@1."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Most epochs (default: 30)."),
    patience: int = typer.Option(
        None, "--patience", help="Stop after this many epochs without a better validation HR@1 (default: 5)."
    ),
    seed: int = typer.Option(None, "--seed", help="Random seed (first seed with --seeds)."),
    seeds: int = typer.Option(
        1, "--seeds", min=1, help="Train this many seeds into OUT/seed-<s>; report mean and std."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUT."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    config: Path = typer.Option(None, "--config", help="YAML file whose `sr` section gives the defaults."),
    override: list[str] = typer.Option(None, "--set", help="SRConfig field key=value (repeatable)."),
    force: bool = FORCE_OUT,
) -> None:
    """Train an SR model, early stopping on validation HR@1 (every validation row); count models (--model
    pop, markov, itemknn) are fitted in seconds, their hyperparameters chosen on the validation rows.

    The loss is softmax cross-entropy over the whole catalog (default), BCE with one sampled negative (--loss
    bce, the paper's) or gSASRec's calibrated BCE with 256 sampled negatives (--loss gbce); tune them with
    --set negatives=..., gbce_t=..., ce_sampled_above=..., min_epochs=...
    """
    values = {
        "model": model,
        "l2": l2,
        "loss": loss,
        "l2_grid": _float_list(l2_grid, "--l2-grid") if l2_grid else None,
        "max_epochs": epochs,
        "patience": patience,
        "seed": seed,
    }
    sr_config = _sr_config(config, values, override or [])
    if seeds > 1:
        _train_seeds(sr_config, data, out, seeds, resume, progress, force)
        return
    from llara.sr.checkpoint import read_sr_config
    from llara.sr.train import train_sr

    checkpoint = train_sr(sr_config, data, out, resume=resume, progress=progress, force=force)
    record = read_sr_config(checkpoint)["training"]
    if "chosen" in record:  # a count model: hyperparameters chosen on validation, no epochs
        found = ", ".join(f"{name} {value:g}" for name, value in record["chosen"].items()) or "no hyperparameters"
        where = f"with {found} (best of {len(record['grid'])} on {record['val_rows']} validation rows)"
    else:
        where = f"at epoch {record['best_epoch']} of {record['epoch']}"
    console.print(
        f"{sr_config.model}: best validation HR@1 {record['val_hr@1']:.4f} {where} ({record['seconds']:.0f} s)."
        f" Checkpoint: [bold]{escape(str(checkpoint))}[/]"
    )


def _train_seeds(sr_config, data: Path, out: Path, seeds: int, resume: bool, progress: bool, force: bool) -> None:
    from llara.metrics import HEADLINE
    from llara.sr.seeds import SEEDS_REPORT, train_seeds

    report = train_seeds(sr_config, data, out, seeds, resume=resume, progress=progress, force=force)
    labels = [name.upper() for name in HEADLINE]
    table = Table("seed", *labels, "train s", title=f"{sr_config.model}: test metrics per seed")
    for run in report["runs"]:
        cells = [f"{run['metrics'][name]['mean']:.4f}" for name in HEADLINE]
        table.add_row(str(run["seed"]), *cells, f"{run['train_seconds']:.0f}")
    summary = report["summary"]
    cells = [f"{summary[name]['mean']:.4f} ± {summary[name]['std']:.4f}" for name in HEADLINE]
    table.add_row("mean ± std", *cells, "", style="bold")
    console.print(table)
    console.print(f"Report: [bold]{escape(str(out / SEEDS_REPORT))}[/]")


@app.command("evaluate")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="SR checkpoint folder."),
    data: Path = typer.Option(..., "--data", help="Prepared data folder with the same items."),
    split: str = typer.Option("test", "--split", help="val or test."),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Metrics JSON (default: CHECKPOINT/metrics.json, metrics-SPLIT.json for val); an existing file is "
        "replaced only if it is a metrics file llara wrote, or with --force.",
    ),
    allow_data_mismatch: bool = ALLOW_DATA_MISMATCH,
    force: bool = typer.Option(False, "--force", help="Replace --out even if it is not a metrics file llara wrote."),
) -> None:
    """Rank each row's frozen candidates; print HR@1, HR@5, NDCG@5, NDCG@10 and MRR with 95% CIs."""
    from llara.evaluation.evaluate import evaluate_sr_checkpoint
    from llara.evaluation.outputs import METRICS_FILE, is_metrics_file, write_metrics
    from llara.metrics import HEADLINE
    from llara.paths import check_creatable, check_file_replaceable

    if out is not None:
        check_creatable(out.parent)
    out = out or checkpoint / (METRICS_FILE if split == "test" else f"metrics-{split}.json")
    check_file_replaceable(out, is_metrics_file, "metrics file (llara sr evaluate)", force)  # before evaluating
    result = evaluate_sr_checkpoint(checkpoint, data, split=split, allow_data_mismatch=allow_data_mismatch)
    write_metrics(out, result)
    metrics = result["metrics"]["rank"]
    table = Table("metric", "mean", "95% CI", title=escape(f"{checkpoint} on {split} ({result['rows']} rows)"))
    for name in HEADLINE:
        row = metrics[name]
        table.add_row(name.upper(), f"{row['mean']:.4f}", f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]")
    console.print(table)
    console.print(f"Metrics: [bold]{escape(str(out))}[/]")


@app.command("import")
def import_(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="The authors' .pt file (SASRec, GRU or Caser)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write."),
    force: bool = FORCE_OUT,
) -> None:
    """Convert an authors' SR checkpoint (pickled module) into ours, without executing the pickle."""
    from llara.sr.authors import import_authors_checkpoint
    from llara.sr.checkpoint import read_sr_config

    folder = import_authors_checkpoint(checkpoint, out, force=force)
    config = read_sr_config(folder)
    console.print(
        f"Imported {config['model_type']} ({config['num_items']} items, dim {config['dim']}, window "
        f"{config['max_len']}) into [bold]{escape(str(folder))}[/]. Its item ids are the authors': "
        "evaluate it on `llara data prepare llara --path ...` folders."
    )
