"""A run's report: the results table (Markdown and rich), plots, resolved config and environment.

Everything here is rebuilt from the run folder (:mod:`llara.pipeline.results`), so ``llara report
RUN_DIR`` redraws a report without running anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rich import box
from rich.table import Table

from llara.paths import atomic_file
from llara.pipeline.catalog_report import catalog_section
from llara.pipeline.comparisons import HIT_RULES, compare_with_reference, comparison_table
from llara.pipeline.plots import plot_hr_at_k, plot_learning_curves, plot_schedule, plot_validation
from llara.pipeline.results import (
    ENVIRONMENT,
    RUN_CONFIG,
    ResultRow,
    RunIndex,
    Summary,
    VariantLog,
    format_summary,
    load_index,
    load_logs,
    load_results,
)

REPORT = "report.md"

#: (Markdown header, terminal header, metric name in metrics.json); HR@1 is over all rows (published)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ValidRatio", "Valid\nRatio", "valid_ratio"),
    ("HR@1", "HR@1", "hr@1"),
    ("HR@1 valid", "HR@1\nvalid", "hr@1_valid"),
    ("HR@5", "HR@5", "hr@5"),
    ("NDCG@5", "NDCG@5", "ndcg@5"),
)


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
        "Validation HR@1 during training": plot_validation(logs, folder / "validation_hr1.png"),
        "Realised schedule": plot_schedule(logs, folder / "schedule.png"),
        "Hit ratio by variant": plot_hr_at_k(rows, folder / "hr_at_k.png"),
    }
    return {title: path for title, path in drawn.items() if path is not None}


def _paired_section(run_dir: Path, index: RunIndex) -> list[str]:
    """Every variant against the run's reference variant on the same rows, per protocol."""
    reference = index.reference or (index.variants[0].name if index.variants else None)
    tables = [comparison_table(compare_with_reference(run_dir, index, reference, p)) for p in HIT_RULES]
    tables = [table for table in tables if table]
    if reference is None or not tables:
        return []
    intro = (
        f"HR@1 of each variant minus HR@1 of `{reference}` on the same rows: paired bootstrap 95% interval "
        "(10,000 resamples of the rows) and McNemar's exact test on the rows where exactly one of the two "
        "is right. An interval that excludes 0 (p < 0.05) is a difference the rows support."
    )
    return ["## Paired comparisons", "", intro, ""] + [part for table in tables for part in (table, "")]


def _render_markdown(
    run_dir: Path, index: RunIndex, rows: Sequence[ResultRow], plots: dict[str, Path]
) -> str:
    parts = [f"# Run `{index.name}`", "", f"Created {index.created}.", ""]
    parts += ["## Results", "",
              "Mean with 95% confidence interval. HR@1 counts every row (the published figure); HR@1 valid",
              "counts only rows whose generated answer names a candidate. SR baselines and the ranking",
              "protocol score every candidate (ValidRatio 1, so HR@1 valid would equal HR@1).", "",
              markdown_table(rows), ""]
    parts += _paired_section(run_dir, index)
    parts += catalog_section(run_dir, index)
    parts += ["## Variants", "", "| Variant | Kind | What |", "|---|---|---|"]
    parts += [f"| {e.name} | {e.kind} | {e.description} |" for e in index.variants]
    parts.append("")
    for title, path in plots.items():
        parts += [f"## {title}", "", f"![{title}]({path.relative_to(run_dir).as_posix()})", ""]
    config = run_dir / RUN_CONFIG
    if config.is_file():
        parts += ["## Resolved config", "", "```yaml", config.read_text(encoding="utf-8").rstrip(), "```", ""]
    environment = run_dir / ENVIRONMENT
    if environment.is_file():
        parts += ["## Environment", "", "```json", environment.read_text(encoding="utf-8").rstrip(), "```", ""]
    return "\n".join(parts)
