"""A run's report: the results table (Markdown and rich), plots, resolved config and environment.

The pipeline leaves ``run.json`` in the run folder: one entry per variant with its kind, a one-line
description, its training log (if trained, ``train_log``) and its ``metrics.json`` as written by
:mod:`llara.evaluation.evaluate` (``{"metrics": {protocol: {name: summary}}}``), paths relative to the run
folder. Everything here is rebuilt from that index, so ``llara report RUN_DIR`` redraws a report
without running anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from llara.errors import LlaraError
from llara.paths import atomic_file
from llara.pipeline.plots import plot_hr_at_k, plot_learning_curves, plot_schedule

RUN_INDEX = "run.json"
REPORT = "report.md"

#: (Markdown header, terminal header, metric name in metrics.json); HR@1 is over all rows (published)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ValidRatio", "Valid\nRatio", "valid_ratio"),
    ("HR@1", "HR@1", "hr@1"),
    ("HR@1 valid", "HR@1\nvalid", "hr@1_valid"),
    ("HR@5", "HR@5", "hr@5"),
    ("NDCG@5", "NDCG@5", "ndcg@5"),
)

Summary = dict[str, float]


@dataclass(frozen=True)
class ResultRow:
    """One line of the results table: a variant evaluated under one protocol."""

    variant: str
    kind: str
    description: str
    protocol: str
    metrics: dict[str, Summary]

    @property
    def rows(self) -> int | None:
        """Number of evaluated rows (the ``n`` of HR@1)."""
        summary = self.metrics.get("hr@1")
        return int(summary["n"]) if summary else None


@dataclass(frozen=True)
class VariantLog:
    """A trained variant's log: one dict per logged optimizer step; ``behavioral`` if its prompts can
    carry behavioral tokens (then its realised schedule is drawn)."""

    variant: str
    records: list[dict[str, Any]] = field(default_factory=list)
    behavioral: bool = False


def read_json(path: Path) -> Any:
    """A JSON file, with a clear error naming it when missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlaraError(f"{path} is missing; re-run `llara run` to rebuild the run folder") from None
    except json.JSONDecodeError as exc:
        raise LlaraError(f"{path} is not valid JSON ({exc}); re-run `llara run`") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a half-written last line (from a crash) is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def load_index(run_dir: Path) -> dict[str, Any]:
    """The run index written by the pipeline."""
    if not (run_dir / RUN_INDEX).is_file():
        raise LlaraError(f"{run_dir} is not a run folder (no {RUN_INDEX}); run `llara run CONFIG` first")
    return read_json(run_dir / RUN_INDEX)


def load_results(run_dir: Path, index: dict[str, Any]) -> list[ResultRow]:
    """Every (variant, protocol) result named in the index, in index order."""
    return [
        ResultRow(
            variant=entry["name"],
            kind=entry["kind"],
            description=entry.get("description", ""),
            protocol=protocol,
            metrics=metrics,
        )
        for entry in index["variants"]
        for protocol, metrics in read_json(run_dir / entry["metrics"])["metrics"].items()
    ]


def load_logs(run_dir: Path, index: dict[str, Any]) -> list[VariantLog]:
    """Training logs of the trained variants (those whose log file exists)."""
    logs = []
    for entry in index["variants"]:
        log = entry.get("train_log")
        if log and (run_dir / log).is_file():
            logs.append(VariantLog(entry["name"], read_jsonl(run_dir / log), bool(entry.get("behavioral"))))
    return logs


def format_summary(summary: Summary | None) -> str:
    """``0.4421 [0.3450, 0.5427]`` (mean and 95% CI), or an en dash when the protocol lacks the metric."""
    if summary is None:
        return "–"
    return f"{summary['mean']:.4f} [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]"


def table_cells(row: ResultRow, cell: Callable[[Summary | None], str] = format_summary) -> list[str]:
    """The row's cells in table order: variant, protocol, metric columns (rendered by ``cell``), n."""
    metrics = [cell(row.metrics.get(name)) for _, _, name in COLUMNS]
    return [row.variant, row.protocol, *metrics, str(row.rows or "–")]


def table_headers() -> list[str]:
    """Markdown column headers matching :func:`table_cells`."""
    return ["Variant", "Protocol", *(header for header, _, _ in COLUMNS), "n"]


def markdown_table(rows: Sequence[ResultRow]) -> str:
    """The results as a GitHub Markdown table."""
    headers = table_headers()
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def _short(value: float) -> str:
    """Two decimals without the leading zero (``.35``): the CI line of the narrow terminal table."""
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text


def _terminal_cell(summary: Summary | None) -> str:
    """Mean on one line, its 95% CI dimmed below (keeps the table within 80 columns)."""
    if summary is None:
        return "–"
    return f"{summary['mean']:.4f}\n[dim]{_short(summary['ci_low'])}–{_short(summary['ci_high'])}[/]"


def rich_table(rows: Sequence[ResultRow], title: str = "Results: mean and 95% CI") -> Table:
    """The results as a rich table for the terminal (the Markdown report has the full intervals)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    table.add_column("Variant", overflow="fold")
    table.add_column("Protocol", no_wrap=True)
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*table_cells(row, _terminal_cell))
    return table


def write_report(run_dir: str | Path) -> tuple[Path, list[ResultRow]]:
    """Write ``report.md`` and ``plots/*.png`` for a run folder; return the report path and the rows."""
    run_dir = Path(run_dir)
    index = load_index(run_dir)
    rows = load_results(run_dir, index)
    logs = load_logs(run_dir, index)
    plots = _draw_plots(run_dir / "plots", rows, logs)
    text = _render_markdown(run_dir, index, rows, plots)
    with atomic_file(run_dir / REPORT) as handle:
        handle.write(text)
    return run_dir / REPORT, rows


def _draw_plots(folder: Path, rows: Sequence[ResultRow], logs: Sequence[VariantLog]) -> dict[str, Path]:
    drawn = {
        "Learning curves": plot_learning_curves(logs, folder / "learning_curves.png"),
        "Realised curriculum schedule": plot_schedule(logs, folder / "schedule.png"),
        "Hit ratio by variant": plot_hr_at_k(rows, folder / "hr_at_k.png"),
    }
    return {title: path for title, path in drawn.items() if path is not None}


def _render_markdown(
    run_dir: Path, index: dict[str, Any], rows: Sequence[ResultRow], plots: dict[str, Path]
) -> str:
    parts = [f"# Run `{index['name']}`", "", f"Created {index.get('created', '?')}.", ""]
    parts += ["## Results", "",
              "Mean with 95% confidence interval. HR@1 counts every row (the published figure); HR@1 valid",
              "counts only rows whose generated answer names a candidate. SR baselines and the ranking",
              "protocol score every candidate (ValidRatio 1, so HR@1 valid would equal HR@1).", "",
              markdown_table(rows), ""]
    parts += ["## Variants", "", "| Variant | Kind | What |", "|---|---|---|"]
    parts += [f"| {e['name']} | {e['kind']} | {e.get('description', '')} |" for e in index["variants"]]
    parts.append("")
    for title, path in plots.items():
        parts += [f"## {title}", "", f"![{title}]({path.relative_to(run_dir).as_posix()})", ""]
    config = run_dir / "config.yaml"
    if config.is_file():
        parts += ["## Resolved config", "", "```yaml", config.read_text(encoding="utf-8").rstrip(), "```", ""]
    environment = run_dir / "environment.json"
    if environment.is_file():
        parts += ["## Environment", "", "```json", environment.read_text(encoding="utf-8").rstrip(), "```", ""]
    return "\n".join(parts)
