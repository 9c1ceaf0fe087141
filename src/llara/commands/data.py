"""`llara data ...`: prepare a source into frozen samples, summarise a prepared folder, show one sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llara.commands.options import FORCE_OUT

app = typer.Typer(help="Prepare datasets (LLaRA protocol) and inspect prepared folders.", no_args_is_help=True)
console = Console()


def _split_ratios(text: str) -> list[float]:
    from llara.errors import LlaraError

    try:
        ratios = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise LlaraError(f"--split {text!r} must be three comma-separated ratios, e.g. 0.8,0.1,0.1") from exc
    return ratios


def _data_config(config: Path | None, values: dict[str, Any], options: list[str]):
    """The DataConfig: defaults < the YAML file's ``data`` section < explicit command-line values."""
    from llara.config import DataConfig, deep_merge, parse_overrides, read_yaml, validate_config

    base = read_yaml(config).get("data", {}) if config else {}
    given = {k: v for k, v in values.items() if v is not None}
    merged = deep_merge(base, given)
    if options:
        merged = deep_merge(merged, {"options": parse_overrides(options)})
    return validate_config(DataConfig, merged, origin=str(config) if config else "data options")


@app.command("prepare")
def prepare(
    source: str = typer.Argument(
        None,
        help="movielens, movielens-download, steam, lastfm, amazon-sasrec, tabular, synthetic or llara "
        "(authors' files).",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: DATA_HOME/prepared/SOURCE)."),
    path: str = typer.Option(None, "--path", help="Raw data file or folder (movielens defaults to recbole's copy)."),
    seed: int = typer.Option(None, "--seed", help="Seed for the user split and the candidates (default: 0)."),
    history_len: int = typer.Option(None, "--history-len", help="Most history items per sample (default: 10)."),
    min_history: int = typer.Option(None, "--min-history", help="Fewest history items per sample (default: 3)."),
    num_candidates: int = typer.Option(None, "--num-candidates", help="Candidates per sample (default: 20)."),
    split: str = typer.Option(None, "--split", help="Train,val,test user ratios (default: 0.8,0.1,0.1)."),
    split_by: str = typer.Option(
        None, "--split-by", help="users (default, the paper's user split) or leave-one-out (last item per user)."
    ),
    val_windows: int = typer.Option(
        None, "--val-windows", help="Validation rows per validation user: their last k windows (default: 1)."
    ),
    option: list[str] = typer.Option(None, "--option", "-O", help="Reader option key=value (repeatable)."),
    config: Path = typer.Option(None, "--config", help="YAML file whose `data` section gives the defaults."),
    force: bool = FORCE_OUT,
) -> None:
    """Read a source, apply the LLaRA protocol and write frozen train/val/test samples (atomically)."""
    from llara.data.prepare import prepare_dataset
    from llara.paths import data_home

    values = {
        "source": source,
        "path": path,
        "seed": seed,
        "history_len": history_len,
        "min_history": min_history,
        "num_candidates": num_candidates,
        "split": _split_ratios(split) if split else None,
        "split_by": split_by,
        "val_windows": val_windows,
    }
    data_config = _data_config(config, values, option or [])
    out = out or data_home() / "prepared" / data_config.source
    with console.status(f"Preparing {data_config.source} ..."):
        data = prepare_dataset(data_config, out, force=force)
    _print_stats(data)
    console.print(f"Prepared folder: [bold]{escape(str(data.root))}[/]")


@app.command("stats")
def stats(directory: Path = typer.Argument(..., help="A prepared folder.")) -> None:
    """Print a summary table of a prepared folder."""
    from llara.data.dataset import PreparedData

    _print_stats(PreparedData.load(directory))


@app.command("show")
def show(
    directory: Path = typer.Argument(..., help="A prepared folder."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    row: int = typer.Option(0, "--row", help="Row number within the split (0-based)."),
) -> None:
    """Print one sample with titles: its history (oldest first) and candidates, the target marked."""
    from llara.data.dataset import PreparedData
    from llara.errors import LlaraError

    data = PreparedData.load(directory)
    frame = data.split(split)
    if not 0 <= row < len(frame):
        raise LlaraError(f"--row {row} is outside the {split} split (0..{len(frame) - 1})")
    sample, titles = frame.iloc[row], data.titles
    console.print(f"[bold]{split}[/] row {row}, user {escape(str(sample['user']))}")
    history = Table("#", "item", "title", title="History (oldest first)")
    for i, item in enumerate(sample["history"], start=1):
        history.add_row(str(i), str(item), escape(titles[item]))
    console.print(history)
    candidates = Table("#", "item", "title", "", title="Candidates")
    for i, item in enumerate(sample["candidates"], start=1):
        mark = "[green]target[/]" if item == sample["target"] else ""
        candidates.add_row(str(i), str(item), escape(titles[item]), mark)
    console.print(candidates)


def _print_stats(data) -> None:
    from llara.data.stats import dataset_stats

    summary = dataset_stats(data)
    facts = Table("", "", title=escape(f"Prepared data: {summary['source']} ({summary['domain']})"), show_header=False)
    for key, value in summary["counts"].items():
        facts.add_row(key.replace("_", " "), f"{value:,}")
    for key, value in summary["protocol"].items():
        facts.add_row(key.replace("_", " "), escape(str(value)))
    facts.add_row("seed", str(summary["seed"]))
    facts.add_row("content hash", summary["content_hash"])
    console.print(facts)
    splits = Table("split", "rows", "users", "history mean", "history min..max", "candidates", "distinct targets")
    for name, s in summary["splits"].items():
        splits.add_row(
            name,
            f"{s['rows']:,}",
            f"{s['users']:,}",
            f"{s['mean_history']:.2f}",
            f"{s['min_history']}..{s['max_history']}",
            s["candidates"],
            f"{s['distinct_targets']:,}",
        )
    console.print(splits)
